"""The error catalogue: each failure is a SteeringError whose message names the offending value,
what is allowed, and the fix — and no failure leaves a hook attached."""

import math

import pytest

import steering as st
from steering.testing import tiny_model

PROMPT = "I went up to my friend and said"

ERRORS = [
    ("UnknownModelError", KeyError),
    ("ModelFetchError", Exception),
    ("LayerOutOfRangeError", IndexError),
    ("UnknownHookError", KeyError),
    ("VectorMismatchError", Exception),
    ("InvalidVectorError", ValueError),
    ("EmptyPromptError", ValueError),
    ("InvalidCoefficientError", ValueError),
    ("ContextLengthError", ValueError),
    ("InvalidArgumentError", ValueError),
    ("PromptTooShortError", ValueError),
    ("DatasetError", ValueError),
]


@pytest.mark.parametrize("name, builtin", ERRORS)
def test_every_error_is_a_steering_error(name, builtin):
    cls = getattr(st.errors, name)
    assert issubclass(cls, st.SteeringError) and issubclass(cls, builtin)
    assert name in st.errors.__all__
    err = cls("the message")
    assert str(err) == "the message"  # KeyError subclasses do not quote it


def test_steering_warning_is_a_user_warning():
    assert issubclass(st.SteeringWarning, UserWarning) and not issubclass(st.SteeringWarning, st.SteeringError)


@pytest.fixture
def vec(tiny):
    return st.actadd(tiny, "Love", "Hate", layer=1)


# ---------------------------------------------------------------- models
@pytest.fixture
def offline(monkeypatch):
    """No hub access, failing at once (the hub library reads its offline flag at import time)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_unknown_model_name(offline):
    with pytest.raises(st.errors.UnknownModelError) as info:
        st.load_model("definitely-not-a-model", device="cpu")
    message = str(info.value)
    assert message.startswith("unknown model 'definitely-not-a-model': not a built-in name")
    assert "Built-in models: 'gemma3-270m', 'smollm2-135m'" in message
    assert "the hub could not provide it" in message
    assert "Fix: use a built-in name, a path that exists" in message


@pytest.mark.parametrize("path, why", [("./nope.gguf", "no file at nope.gguf"), ("./nope/", "no such path")])
def test_nonexistent_local_path(offline, path, why):
    with pytest.raises(st.errors.UnknownModelError, match=rf"unknown model '{path}'.*\({why}\).*'gemma3-270m', 'smollm2-135m'.*Fix:"):
        st.load_model(path, device="cpu")


def test_directory_without_config(offline, tmp_path):
    with pytest.raises(st.errors.UnknownModelError, match=r"is a directory without config\.json.*Built-in models"):
        st.load_model(tmp_path, device="cpu")


def test_fetch_of_an_unknown_builtin():
    with pytest.raises(st.errors.UnknownModelError, match=r"unknown model 'gemma4'.*Built-in models: 'gemma3-270m', 'smollm2-135m'"):
        st.models.fetch_model("gemma4", progress=False)


# ---------------------------------------------------------------- layers and hooks
@pytest.mark.parametrize("layer", [2, 40, -3])
def test_layer_out_of_range(tiny, layer, no_hooks):
    with pytest.raises(
        st.errors.LayerOutOfRangeError,
        match=rf"layer={layer} is out of range for this model \(2 layers\); allowed: 0\.\.1 \(or -2\.\.-1 from the end\)\. "
        r"Fix: pick a layer in that range",
    ):
        st.actadd(tiny, "Love", "Hate", layer=layer)
    no_hooks(tiny)


def test_unknown_hook_suggests_the_nearest(tiny, no_hooks):
    with pytest.raises(
        st.errors.UnknownHookError,
        match=r"hook='resid_pr' is not a hook point of this model \('blocks\.1\.hook_resid_pr' not in model\.hook_dict\); "
        r"allowed: resid_pre, .*Did you mean 'resid_pre'",
    ):
        st.actadd(tiny, "Love", "Hate", layer=1, hook="resid_pr")
    no_hooks(tiny)


# ---------------------------------------------------------------- vectors that do not fit
def test_vector_from_another_architecture(tiny, tiny_gpt2, no_hooks):
    v = st.actadd(tiny_gpt2, "Love", "Hate", layer=1)
    match = r"the vector comes from model 'tiny-gpt2' but is applied to 'tiny-llama'.*Fix: rebuild it on this model"
    with pytest.raises(st.errors.VectorMismatchError, match=match):
        with st.steer(tiny, v, 5.0):
            pytest.fail("the block must not run")
    with pytest.raises(st.errors.VectorMismatchError, match=match):
        st.generate(tiny, PROMPT, v, 5.0, max_new_tokens=2)
    no_hooks(tiny)


def test_vector_of_another_width(tiny, no_hooks):
    narrow = tiny_model("llama", d_model=32)
    v = st.actadd(narrow, "Love", "Hate", layer=1)
    with pytest.raises(
        st.errors.VectorMismatchError,
        match=r"the vector has d_model=32 but model 'tiny-llama' has d_model=64; allowed: vectors taken from this model\. "
        r"Fix: rebuild the vector on this model",
    ):
        with st.steer(tiny, v, 5.0):
            pytest.fail("the block must not run")
    no_hooks(tiny)
    no_hooks(narrow)


def test_vector_from_a_renamed_model(tiny, vec, no_hooks):
    other = tiny_model("llama")  # same weights and width, other name
    other.cfg.model_name = "my-llama"
    with pytest.raises(st.errors.VectorMismatchError, match=r"comes from model 'tiny-llama' but is applied to 'my-llama'.*vec\.model_name = model\.cfg\.model_name"):
        st.generate(other, PROMPT, vec, 5.0, max_new_tokens=2)
    no_hooks(other)
    vec2 = vec.clone()
    vec2.model_name = "my-llama"  # the documented fix
    st.generate(other, PROMPT, vec2, 5.0, max_new_tokens=2)


def test_a_bad_vector_in_a_list_attaches_nothing(tiny, tiny_gpt2, vec, no_hooks):
    bad = st.actadd(tiny_gpt2, "Love", "Hate", layer=0)
    with pytest.raises(st.errors.VectorMismatchError):
        with st.steer(tiny, [vec, bad], 5.0):
            pytest.fail("the block must not run")
    no_hooks(tiny)


def test_not_a_vector(tiny, no_hooks):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"vector=\[\] is not a SteeringVector; allowed: a SteeringVector or a list of them\. Fix: build one with st\.actadd"):
        with st.steer(tiny, [], 5.0):
            pytest.fail("the block must not run")
    no_hooks(tiny)


# ---------------------------------------------------------------- NaN / Inf
@pytest.mark.parametrize("value, counts", [(float("nan"), "1 NaN and 0 Inf"), (float("inf"), "0 NaN and 1 Inf")])
def test_nan_or_inf_vector(tiny, vec, value, counts, no_hooks):
    t = vec.tensor.clone()
    t[2, 5] = value
    match = rf"the vector at blocks\.1\.hook_resid_pre holds {counts} value\(s\) \(first at index \(2, 5\)\); allowed: finite values only\. Fix: rebuild it"
    with pytest.raises(st.errors.InvalidVectorError, match=match):
        st.SteeringVector(t, hook_name=vec.hook_name)
    corrupted = vec.clone()
    corrupted.tensor[2, 5] = value  # made bad after construction: caught when applied
    with pytest.raises(st.errors.InvalidVectorError, match=match):
        with st.steer(tiny, corrupted, 5.0):
            pytest.fail("the block must not run")
    with pytest.raises(st.errors.InvalidVectorError, match=match):
        st.generate(tiny, PROMPT, corrupted, 5.0, max_new_tokens=2)
    no_hooks(tiny)


# ---------------------------------------------------------------- prompts
@pytest.mark.parametrize("prompts, index", [("", 0), (["I hate you", ""], 1)])
def test_empty_prompt_given_to_generate(tiny, vec, prompts, index, no_hooks):
    with pytest.raises(
        st.errors.EmptyPromptError,
        match=rf"prompts\[{index}\] is empty; allowed: a prompt with at least one character .*Fix: pass text",
    ):
        st.generate(tiny, prompts, vec, 5.0, max_new_tokens=2)
    no_hooks(tiny)


def test_empty_negative_prompt_is_fine_in_actadd(tiny):
    v = st.actadd(tiny, " weddings", "", layer=1)
    assert v.n_pos == 10 and v.prompts["neg"] == ""


def test_no_prompts_given_to_generate(tiny, vec, no_hooks):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"prompts=\[\]; allowed: a non-empty string or a non-empty list of strings"):
        st.generate(tiny, [], vec, 5.0)
    no_hooks(tiny)


# ---------------------------------------------------------------- coefficients
@pytest.mark.parametrize("coeff", [float("nan"), float("inf"), -math.inf])
def test_non_finite_coefficient(tiny, vec, coeff, no_hooks):
    match = rf"coeff={coeff!r} is not a finite number; allowed: any finite float .*Fix: pass e\.g\. coeff=5\.0"
    with pytest.raises(st.errors.InvalidCoefficientError, match=match):
        with st.steer(tiny, vec, coeff):
            pytest.fail("the block must not run")
    with pytest.raises(st.errors.InvalidCoefficientError, match=match):
        st.generate(tiny, PROMPT, vec, coeff, max_new_tokens=2)
    with pytest.raises(st.errors.InvalidCoefficientError, match=match):
        st.generate(tiny, PROMPT, None, coeff, max_new_tokens=2)  # checked even without a vector
    no_hooks(tiny)


def test_coefficient_that_is_not_a_number(tiny, vec, no_hooks):
    """The documented error (InvalidCoefficientError, "not a number") — also under the test run's type checks."""
    match = r"coeff='5' is not a finite number; allowed: any finite float"
    with pytest.raises(st.errors.InvalidCoefficientError, match=match):
        with st.steer(tiny, vec, "5"):
            pytest.fail("the block must not run")
    with pytest.raises(st.errors.InvalidCoefficientError, match=match):
        st.generate(tiny, PROMPT, vec, "5", max_new_tokens=2)
    no_hooks(tiny)


# ---------------------------------------------------------------- context length
def test_prompt_pair_longer_than_the_context(tiny, no_hooks):
    n_ctx = tiny.cfg.n_ctx
    assert n_ctx == 256
    with pytest.raises(
        st.errors.ContextLengthError,
        match=r"the prompt pair is 301 tokens long after padding but the model's context is 256; allowed: at most 256 "
        r"tokens\. Fix: shorten the prompts",
    ):
        st.actadd(tiny, "a" * 300, "", layer=0)
    no_hooks(tiny)


def test_prompt_pair_of_exactly_the_context_is_fine(tiny):
    assert st.actadd(tiny, "a" * 255, "b", layer=0).n_pos == 256


def test_generation_longer_than_the_context(tiny, vec, no_hooks):
    with pytest.raises(
        st.errors.ContextLengthError,
        match=r"has 251 tokens; with max_new_tokens=10 that is 261 > the model's context of 256\. Fix: shorten the "
        r"prompt or lower max_new_tokens",
    ):
        st.generate(tiny, "a" * 250, vec, 5.0, max_new_tokens=10)
    no_hooks(tiny)
    assert len(st.generate(tiny, "a" * 250, vec, 5.0, max_new_tokens=5, do_sample=False)) == 1  # 256: fits


def test_prompt_longer_than_the_context_is_counted_in_full(tiny, vec, no_hooks):
    with pytest.raises(st.errors.ContextLengthError, match=r"has 301 tokens; with max_new_tokens=5 that is 306 >"):
        st.generate(tiny, "a" * 300, vec, 5.0, max_new_tokens=5)
    no_hooks(tiny)


# ---------------------------------------------------------------- other options
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_new_tokens=0), r"max_new_tokens=0; allowed: an integer ≥ 1\. Fix: pass e\.g\. max_new_tokens=4"),
        (dict(n=0), r"n=0; allowed: an integer ≥ 1"),
        (dict(batch_size=-1), r"batch_size=-1; allowed: an integer ≥ 1"),
        (dict(temperature=0.0), r"temperature=0\.0; allowed: a finite number > 0"),
        (dict(top_p=1.5), r"top_p=1\.5; allowed: a number in \(0, 1\], or None"),
        (dict(freq_penalty=float("nan")), r"freq_penalty=nan; allowed: a finite number"),
    ],
)
def test_bad_generation_options(tiny, vec, kwargs, match, no_hooks):
    with pytest.raises(st.errors.InvalidArgumentError, match=match):
        st.generate(tiny, PROMPT, vec, 5.0, **kwargs)
    no_hooks(tiny)


def test_short_prompt_rule_error_leaves_no_hook(tiny, no_hooks):
    long_vec = st.actadd(tiny, "I love you so much", "", layer=1)
    with pytest.raises(st.errors.PromptTooShortError, match=r"a prompt has 3 tokens \(BOS included\) but the vector .* has 19 positions"):
        st.generate(tiny, "Hi", long_vec, 5.0, max_new_tokens=3, short_prompt="error")
    no_hooks(tiny)


def test_unknown_model_fails_at_once_when_the_hub_is_unreachable(monkeypatch):
    """Offline and without HF_HUB_OFFLINE, the hub is not even called (no retry loop)."""
    from transformer_lens.model_bridge import TransformerBridge

    import steering.models as models

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=2.0: False)

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("boot_transformers was called although the hub is unreachable")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", must_not_be_called)
    with pytest.raises(st.errors.UnknownModelError, match=r"unknown model 'some-org/some-model'.*hub is unreachable.*"
                       r"Built-in models: 'gemma3-270m', 'smollm2-135m'"):
        st.load_model("some-org/some-model", device="cpu")


def test_hub_probe_reports_an_unreachable_endpoint(monkeypatch):
    import steering.models as models

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    assert models._hub_reachable(timeout=0.5) is False
