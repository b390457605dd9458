"""Operators (add / ablate / clamp) and positions ("prompt", "generated") on tiny models."""

import pytest
import torch

import steering as st
from steering.vectors import SteeringVector

PROMPTS = ["hello there friend", "ab", "the quick brown fox"]


@pytest.fixture(params=["llama", "gpt2"])
def model_and_dir(request, tiny, tiny_gpt2):
    model = tiny if request.param == "llama" else tiny_gpt2
    torch.manual_seed(1)
    direction = SteeringVector(
        torch.randn(model.cfg.d_model), hook_name="blocks.1.hook_resid_pre", model_name=model.cfg.model_name
    )
    return model, direction


def _hook_output(model, direction, **steer_kwargs):
    """The residual at the hook after steering (our hook runs first; this one sees its result)."""
    seen = {}

    def capture(x, hook):
        seen["x"] = x.detach().clone()

    tokens = model.to_tokens("hello there friend")
    with st.steer(model, direction, **steer_kwargs), model.hooks(fwd_hooks=[(direction.hook_name, capture)]):
        logits = model(tokens)
    return seen["x"][0], logits


def test_ablate_removes_the_projection(model_and_dir):
    model, direction = model_and_dir
    unit = direction.tensor / direction.tensor.norm()
    resid, _ = _hook_output(model, direction, coeff=1.0, op="ablate")
    torch.testing.assert_close(resid @ unit, torch.zeros(resid.shape[0]), atol=1e-4, rtol=0)
    half, _ = _hook_output(model, direction, coeff=0.5, op="ablate")
    plain, _ = _hook_output(model, direction, coeff=0.0, op="ablate")
    torch.testing.assert_close(half @ unit, 0.5 * (plain @ unit), atol=1e-4, rtol=1e-4)
    # the orthogonal part is untouched
    torch.testing.assert_close(resid - (resid @ unit)[:, None] * unit, plain - (plain @ unit)[:, None] * unit,
                               atol=1e-4, rtol=1e-4)


def test_clamp_sets_the_projection(model_and_dir):
    model, direction = model_and_dir
    unit = direction.tensor / direction.tensor.norm()
    resid, _ = _hook_output(model, direction, op="clamp", value=3.0)
    torch.testing.assert_close(resid @ unit, torch.full((resid.shape[0],), 3.0), atol=1e-4, rtol=1e-4)


def test_ablate_equals_by_hand(model_and_dir):
    model, direction = model_and_dir
    unit = direction.tensor / direction.tensor.norm()

    def by_hand(x, hook):
        return x - (x @ unit)[..., None] * unit

    tokens = model.to_tokens("hello there friend")
    with model.hooks(fwd_hooks=[(direction.hook_name, by_hand)]):
        expected = model(tokens)
    _, got = _hook_output(model, direction, op="ablate")
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_prompt_positions_in_a_plain_forward_equal_all(model_and_dir):
    model, direction = model_and_dir
    _, all_logits = _hook_output(model, direction, coeff=3.0, positions="all")
    _, prompt_logits = _hook_output(model, direction, coeff=3.0, positions="prompt")
    _, gen_logits = _hook_output(model, direction, coeff=3.0, positions="generated")
    torch.testing.assert_close(prompt_logits, all_logits)
    torch.testing.assert_close(gen_logits, model(model.to_tokens("hello there friend")))


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
@pytest.mark.parametrize("op", ["add", "ablate", "clamp"])
def test_kv_cache_and_left_padding_agree(model_and_dir, positions, op):
    model, direction = model_and_dir
    kw = dict(max_new_tokens=6, do_sample=False, positions=positions, op=op, coeff=4.0 if op == "add" else 1.0)
    if op == "clamp":
        kw["value"] = 2.0
    cached = st.generate(model, PROMPTS, direction, **kw)
    uncached = st.generate(model, PROMPTS, direction, use_cache=False, **kw)
    one_by_one = [st.generate(model, p, direction, **kw)[0] for p in PROMPTS]
    assert cached == uncached
    assert cached == one_by_one
    assert st.active_hooks(model) == 0


def test_generated_positions_leave_the_first_token_alone(model_and_dir):
    model, direction = model_and_dir
    kw = dict(max_new_tokens=1, do_sample=False)
    base = st.generate(model, PROMPTS, None, **kw)
    generated = st.generate(model, PROMPTS, direction, coeff=50.0, positions="generated", **kw)
    prompt_only = st.generate(model, PROMPTS, direction, coeff=50.0, positions="prompt", **kw)
    everywhere = st.generate(model, PROMPTS, direction, coeff=50.0, positions="all", **kw)
    assert generated == base  # the first new token comes from the prompt pass
    assert prompt_only == everywhere
    assert prompt_only != base  # a coefficient of 50 on a random direction changes something


def test_prompt_and_generated_split_all(model_and_dir):
    """Steering the prompt with one op and the generated tokens with nothing differs from 'all'."""
    model, direction = model_and_dir
    kw = dict(max_new_tokens=8, do_sample=False, coeff=30.0)
    everywhere = st.generate(model, PROMPTS, direction, positions="all", **kw)
    prompt_only = st.generate(model, PROMPTS, direction, positions="prompt", **kw)
    generated_only = st.generate(model, PROMPTS, direction, positions="generated", **kw)
    assert everywhere != prompt_only or everywhere != generated_only


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"op": "scale"}, st.errors.InvalidArgumentError, r"op='scale'; allowed: 'add', 'ablate', 'clamp'"),
        ({"op": "clamp"}, st.errors.InvalidArgumentError, r"op='clamp' needs value=.*Fix: pass e\.g\. value=0\.0"),
        ({"op": "clamp", "value": float("nan")}, st.errors.InvalidCoefficientError, r"coeff=nan is not a finite number"),
        ({"value": 1.0}, st.errors.InvalidArgumentError, r"value=1\.0 is only used with op='clamp'"),
        ({"positions": "middle"}, st.errors.InvalidArgumentError, r"positions='middle'; allowed: 'front'.*'generated'"),
    ],
)
def test_operator_errors(model_and_dir, kwargs, error, pattern, untyped):
    model, direction = model_and_dir
    with pytest.raises(error, match=pattern):
        with st.steer(model, direction, **kwargs):
            pytest.fail("the block must not run")
    assert st.active_hooks(model) == 0


def test_ablate_needs_a_direction(tiny):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with pytest.raises(st.errors.InvalidArgumentError, match=r"op='ablate' acts along a single direction.*vec\.direction"):
        with st.steer(tiny, vec, op="ablate"):
            pass
    zero = SteeringVector(torch.zeros(tiny.cfg.d_model), hook_name="blocks.1.hook_resid_pre", model_name="tiny-llama")
    with pytest.raises(st.errors.InvalidVectorError, match=r"op='clamp' needs a non-zero direction"):
        with st.steer(tiny, zero, op="clamp", value=1.0):
            pass
    with pytest.raises(st.errors.InvalidArgumentError, match=r"positions='prompt' adds one direction at each selected"):
        with st.steer(tiny, vec, positions="prompt"):
            pass
    assert st.active_hooks(tiny) == 0
