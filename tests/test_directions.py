"""Directions from many prompt pairs: direction_from_pairs and its aggregators, mean_diff (CAA), pca_direction (RepE).

Reference values are computed by hand: one prompt at a time, a full forward pass (no
``stop_at_layer``, no padding, no mask), the token picked in plain Python.
"""

import math
import string

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

import steering as st
from conftest import CountRuns, BAD_LAYER_SPECS
from steering.directions import (
    direction_from_pairs,
    mean_aggregator,
    mean_diff,
    pca_aggregator,
    pca_direction,
    principal_direction,
)
from steering.extract import actadd_layers
from steering.tokens import tokenize_prompt
from steering.validate import text_list

POS = ["I love you", "what a great day", "so good!", "nice"]
NEG = ["I hate you", "what an awful day", "so bad!!", "mean"]
TEXT = "I went up to my friend and said"


# ---------------------------------------------------------------- helpers
def one_prompt_acts(model, text, name):
    """[pos, d_model] activations of one prompt, unpadded, full forward pass."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokenize_prompt(model, text).unsqueeze(0), names_filter=[name])
    return cache[name][0].float()


def pick(acts, token):
    """The token rule applied by hand to one prompt's [pos, d_model] activations (BOS at 0)."""
    if token == "last":
        return acts[-1]
    if token == "mean":
        return acts[1:].mean(dim=0)
    return acts[token]


def by_hand_diffs(model, pos, neg, name, token):
    return torch.stack([pick(one_prompt_acts(model, p, name), token) - pick(one_prompt_acts(model, q, name), token)
                        for p, q in zip(pos, neg)])


def logits(model, text=TEXT):
    with torch.no_grad():
        return model(model.to_tokens(text))


# ---------------------------------------------------------------- layer specs (every method)
@pytest.mark.parametrize("layers, match", BAD_LAYER_SPECS)
def test_bad_layers_are_refused(tiny, layers, match):
    with pytest.raises(st.errors.LayerOutOfRangeError, match=match):
        actadd_layers(tiny, "love", "hate", layers)
    with pytest.raises(st.errors.LayerOutOfRangeError, match=match):
        mean_diff(tiny, ["love"], ["hate"], layers)
    with pytest.raises(st.errors.LayerOutOfRangeError, match=match):
        pca_direction(tiny, ["love"], ["hate"], layers)


# ---------------------------------------------------------------- mean_diff
@pytest.mark.parametrize("token", ["last", "mean", 1, 2, -1, -3])
@pytest.mark.parametrize("hook", ["resid_pre", "resid_post"])
def test_mean_diff_equals_a_by_hand_per_prompt_computation(any_tiny, token, hook):
    vecs = mean_diff(any_tiny, POS, NEG, "all", hook=hook, token=token, batch_size=3)
    for v in vecs:
        diffs = by_hand_diffs(any_tiny, POS, NEG, v.hook_name, token)
        torch.testing.assert_close(v.tensor, diffs.mean(dim=0), atol=1e-4, rtol=1e-4)
        assert v.tensor.shape == (any_tiny.cfg.d_model,) and v.is_direction


def test_mean_diff_metadata(tiny):
    v = mean_diff(tiny, POS, NEG, layer=1, token=-2)
    assert v.method == "mean_diff" and v.hook_name == "blocks.1.hook_resid_pre"
    assert v.prompts == {"pos": POS, "neg": NEG}
    assert v.meta == {"token": -2, "n_pairs": 4}
    assert v.model_name == "tiny-llama" and v.weight_mode == "hf" and v.dtype == torch.float32
    assert not v.tensor.requires_grad
    v.check_compatible(tiny)
    assert "mean_diff" in repr(v)


@pytest.mark.parametrize("token", ["last", "mean", 2, -2])
def test_mean_diff_does_not_depend_on_batching(any_tiny, token):
    ref = mean_diff(any_tiny, POS, NEG, layer=1, token=token, batch_size=1)
    for batch_size in (2, 3, 5, 64):
        v = mean_diff(any_tiny, POS, NEG, layer=1, token=token, batch_size=batch_size)
        torch.testing.assert_close(v.tensor, ref.tensor, atol=1e-5, rtol=1e-5)


def test_mean_diff_runs_one_forward_pass_per_batch_for_all_layers(tiny, monkeypatch):
    runs = CountRuns(tiny, monkeypatch)
    mean_diff(tiny, POS, NEG, "all", batch_size=3)  # 8 prompts -> 3 batches
    assert len(runs.calls) == 3
    assert all(c["names_filter"] == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"] for c in runs.calls)
    assert all(c["stop_at_layer"] == 2 and "attention_mask" in c for c in runs.calls)


def test_mean_diff_layer_list_equals_per_layer_calls(any_tiny):
    vecs = mean_diff(any_tiny, POS, NEG, [1, 0], token="mean")
    assert [v.layer for v in vecs] == [1, 0]
    for v in vecs:
        torch.testing.assert_close(v.tensor, mean_diff(any_tiny, POS, NEG, v.layer, token="mean").tensor)


def test_last_is_index_minus_one(tiny):
    a = mean_diff(tiny, POS, NEG, layer=1, token="last")
    b = mean_diff(tiny, POS, NEG, layer=1, token=-1)
    assert torch.equal(a.tensor, b.tensor)


def test_one_pair_matches_actadd_at_the_last_position(any_tiny):
    # Same-length prompts: ActAdd pads nothing, so its last position is the single-pair difference.
    act = st.actadd(any_tiny, "love it", "hate it", layer=1)
    v = mean_diff(any_tiny, "love it", "hate it", layer=1)  # a string is one pair
    torch.testing.assert_close(v.tensor, act.tensor[-1], atol=1e-5, rtol=1e-5)
    assert v.prompts == {"pos": ["love it"], "neg": ["hate it"]} and v.meta["n_pairs"] == 1


def test_swapping_the_lists_negates_the_mean(tiny):
    a = mean_diff(tiny, POS, NEG, layer=1)
    b = mean_diff(tiny, NEG, POS, layer=1)
    torch.testing.assert_close(b.tensor, -a.tensor, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "pos, neg, kwargs, error, match",
    [
        (["a", "b"], ["c"], {}, st.errors.InvalidArgumentError,
         r"pos_prompts has 2 prompts but neg_prompts has 1; allowed: equal counts.*Fix: pair every"),
        ([], [], {}, st.errors.InvalidArgumentError, r"pos_prompts=\[\]; allowed: a non-empty list of strings.*Fix:"),
        (["a"], [], {}, st.errors.InvalidArgumentError, r"neg_prompts=\[\]; allowed: a non-empty list of strings"),
        (["a", ""], ["b", "c"], {}, st.errors.EmptyPromptError, r"pos_prompts\[1\] is the empty string; allowed:.*Fix:"),
        (["ab"], ["cd"], {"token": "first"}, st.errors.InvalidArgumentError,
         r"token='first'; allowed: 'last' .*'mean' .*or an int index.*Fix: pass e.g. token='last'"),
        (["ab"], ["cd"], {"token": True}, st.errors.InvalidArgumentError, r"token=True; allowed: 'last'"),
        (["ab"], ["cd"], {"token": 0}, st.errors.InvalidArgumentError,
         r"token=0 selects the BOS token.*allowed: 'last', 'mean', or an index of a real token.*Fix: pass token=1"),
        (["abcd", "ab"], ["efgh", "efgh"], {"token": 3}, st.errors.InvalidArgumentError,
         r"token=3 is out of range for pos_prompts\[1\]='ab', which has 3 tokens with BOS \(indices 0\.\.2, or "
         r"-3\.\.-1\); allowed: an index inside every prompt\. Fix:"),
        (["abcd"], ["ef"], {"token": -4}, st.errors.InvalidArgumentError,
         r"token=-4 is out of range for neg_prompts\[0\]='ef', which has 3 tokens"),
        (["abcd"], ["ef"], {"token": -3}, st.errors.InvalidArgumentError,
         r"token=-3 selects the BOS token of neg_prompts\[0\]='ef'.*Fix:"),
        (["ab"], ["cd"], {"batch_size": 0}, st.errors.InvalidArgumentError, r"batch_size=0; allowed: an int ≥ 1.*Fix:"),
        (["a" * 300], ["b"], {}, st.errors.ContextLengthError,
         r"pos_prompts\[0\]='aaaa.*is 301 tokens long but the model's context is 256.*Fix: shorten"),
        (["ab"], ["cd"], {"hook": "attn.hook_pattern"}, st.errors.InvalidArgumentError,
         r"hook 'blocks.1.attn.hook_pattern' gives activations of shape \(2, 4, 3, 3\); allowed: hooks with "
         r"\[batch, pos, d_model\]"),
        (["ab"], ["cd"], {"hook": "resid"}, st.errors.UnknownHookError, r"hook='resid' is not a hook point"),
    ],
)
@pytest.mark.parametrize("method", [mean_diff, pca_direction])
def test_bad_inputs_are_refused(tiny, untyped, method, pos, neg, kwargs, error, match):
    with pytest.raises(error, match=match):
        method(tiny, pos, neg, 1, **kwargs)
    assert st.active_hooks(tiny) == 0


@pytest.mark.parametrize("method", [mean_diff, pca_direction])
def test_a_prompt_that_is_not_a_string_is_refused(tiny, untyped, method):
    # With the runtime checks off: under them the public signature rejects these first.
    with pytest.raises(st.errors.InvalidArgumentError, match=r"neg_prompts\[1\]=3 is a int; allowed: str\. Fix:"):
        method(tiny, ["a", "b"], ["a", 3], 1)
    with pytest.raises(st.errors.InvalidArgumentError, match=r"pos_prompts=None; allowed: a non-empty list of strings "
                       r"\(one prompt per pair\)\. Fix: pass e\.g\. pos_prompts=\['I love you', 'What a great day'\]\."):
        method(tiny, None, ["b"], 1)
    assert text_list("pos_prompts", "one") == ["one"]  # the validator the methods use: a string is one pair


def test_an_empty_prompt_is_refused_with_the_pair_wording(tiny):
    with pytest.raises(st.errors.EmptyPromptError, match=r"^neg_prompts\[0\] is the empty string; allowed: prompts with at least "
                       r"one token after BOS \(an empty prompt would read the BOS activation, the same for every "
                       r"prompt\)\. Fix: give it text or drop the pair\.$"):
        mean_diff(tiny, ["a"], [""], 1)


def test_every_refusal_is_a_steering_error(tiny, untyped):
    for bad in (dict(token="x"), dict(batch_size=-1), dict(layer=[])):
        kwargs = {"layer": 1, **bad}
        with pytest.raises(st.SteeringError):
            mean_diff(tiny, ["a"], ["b"], **kwargs)


# ---------------------------------------------------------------- pca_direction: the math
def test_pca_recovers_the_one_direction_the_differences_share():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(64, generator=gen)
    u = u / u.norm()
    scales = torch.tensor([0.5, 2.0, -1.0, 3.0, 1.5])  # multiples of u, mean along +u
    for noise in (0.0, 1e-3):
        diffs = scales[:, None] * u + noise * torch.randn(5, 64, generator=gen)
        for center in (True, False):
            direction, proj, ratio = principal_direction(diffs, center=center)
            assert float(direction @ u) == pytest.approx(1.0, abs=1e-4)  # cosine ≈ 1, sign aligned
            assert float(direction.norm()) == pytest.approx(1.0, abs=1e-5)
            assert float(proj) == pytest.approx(float(scales.mean()), abs=1e-2)
            assert ratio == pytest.approx(1.0, abs=1e-3)


def test_pca_sign_follows_the_mean_difference():
    gen = torch.Generator().manual_seed(1)
    diffs = torch.randn(6, 16, generator=gen) + torch.linspace(-1, 1, 16)
    for sign in (1.0, -1.0):
        d = sign * diffs
        direction, proj, _ = principal_direction(d)
        assert float(direction @ d.mean(dim=0)) > 0 and float(proj) > 0
    a, _, _ = principal_direction(diffs)
    b, _, _ = principal_direction(-diffs)
    torch.testing.assert_close(a, -b, atol=1e-5, rtol=0)


def test_pca_is_the_top_singular_direction_of_the_centred_differences():
    gen = torch.Generator().manual_seed(2)
    diffs = torch.randn(8, 12, generator=gen) * torch.linspace(3, 0.1, 12) + 0.5
    direction, proj, ratio = principal_direction(diffs)
    centred = diffs - diffs.mean(dim=0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    assert abs(float(direction @ vh[0])) == pytest.approx(1.0, abs=1e-5)
    assert float(proj) == pytest.approx(float(direction @ diffs.mean(dim=0)), abs=1e-5)
    assert ratio == pytest.approx(float(s[0] ** 2 / (s**2).sum()), abs=1e-5)


def test_pca_without_spread_is_the_normalised_mean():
    d = torch.tensor([[3.0, 4.0, 0.0]])
    for diffs in (d, d.repeat(4, 1)):  # one pair, or identical pairs
        direction, proj, ratio = principal_direction(diffs)
        torch.testing.assert_close(direction, torch.tensor([0.6, 0.8, 0.0]))
        assert float(proj) == pytest.approx(5.0) and ratio is None


# ---------------------------------------------------------------- pca_direction on models
@pytest.mark.parametrize("token", ["last", "mean", 2])
def test_pca_on_a_model_matches_the_by_hand_differences(any_tiny, token):
    for v in pca_direction(any_tiny, POS, NEG, "all", token=token, scale="unit"):
        diffs = by_hand_diffs(any_tiny, POS, NEG, v.hook_name, token)
        direction, _, _ = principal_direction(diffs)
        torch.testing.assert_close(v.tensor, direction, atol=1e-3, rtol=1e-3)
        assert float(v.tensor @ diffs.mean(dim=0)) > 0


def test_pca_scaling_is_the_mean_difference_projected(any_tiny):
    mean = mean_diff(any_tiny, POS, NEG, layer=1)
    unit = pca_direction(any_tiny, POS, NEG, layer=1, scale="unit")
    proj = pca_direction(any_tiny, POS, NEG, layer=1)
    assert float(unit.norm()) == pytest.approx(1.0, abs=1e-5)
    expected = float(unit.tensor @ mean.tensor) * unit.tensor
    torch.testing.assert_close(proj.tensor, expected, atol=1e-5, rtol=1e-4)
    assert 0 < float(proj.norm()) <= float(mean.norm()) + 1e-5
    assert proj.cosine_similarity(unit) == pytest.approx(1.0, abs=1e-5)
    assert float(proj.tensor @ mean.tensor) > 0


def test_pca_metadata(tiny):
    v = pca_direction(tiny, POS, NEG, layer=0, token="mean", center=False)
    assert v.method == "pca" and v.hook_name == "blocks.0.hook_resid_pre" and v.is_direction
    assert v.prompts == {"pos": POS, "neg": NEG}
    assert v.meta["token"] == "mean" and v.meta["n_pairs"] == 4
    assert v.meta["center"] is False and v.meta["scale"] == "projection" and v.meta["fallback"] is None
    assert 0 < v.meta["explained_variance_ratio"] <= 1
    v.check_compatible(tiny)


def test_pca_of_one_pair_falls_back_to_the_normalised_difference(any_tiny):
    mean = mean_diff(any_tiny, ["love it"], ["hate it"], layer=1)
    unit = pca_direction(any_tiny, ["love it"], ["hate it"], layer=1, scale="unit")
    proj = pca_direction(any_tiny, ["love it"], ["hate it"], layer=1)
    torch.testing.assert_close(unit.tensor, mean.tensor / mean.tensor.norm(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(proj.tensor, mean.tensor, atol=1e-5, rtol=1e-5)  # equals mean_diff
    assert unit.meta["fallback"].startswith("mean difference") and unit.meta["explained_variance_ratio"] is None


def test_pca_of_repeated_pairs_equals_mean_diff(tiny):
    pos, neg = ["love it"] * 3, ["hate it"] * 3
    torch.testing.assert_close(
        pca_direction(tiny, pos, neg, layer=1).tensor, mean_diff(tiny, pos, neg, layer=1).tensor, atol=1e-5, rtol=1e-5
    )


def test_pca_warns_when_the_pairs_cancel(tiny):
    # (x, y) and (y, x): the differences are d and −d, their mean is ~0: no sign, no projection.
    with pytest.warns(st.SteeringWarning, match=r"orthogonal to the mean difference.*sign is arbitrary"):
        v = pca_direction(tiny, ["love it", "hate it"], ["hate it", "love it"], layer=1)
    assert float(v.norm()) < 1e-3


def test_pca_refuses_identical_pairs_and_bad_options(tiny, untyped):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"at blocks.1.hook_resid_pre every positive prompt has exactly "
                       r"the activation of its negative prompt \(all 2 differences are zero\).*Fix:"):
        pca_direction(tiny, ["same", "also"], ["same", "also"], layer=1)
    with pytest.raises(st.errors.InvalidArgumentError, match=r"scale='norm'; allowed: 'projection' .*or 'unit'.*Fix:"):
        pca_direction(tiny, POS, NEG, layer=1, scale="norm")
    with pytest.raises(st.errors.InvalidArgumentError, match=r"center=1; allowed: True or False\. Fix: pass center=True\."):
        pca_direction(tiny, POS, NEG, layer=1, center=1)


def test_the_options_are_checked_by_the_runtime_type_checks_too(tiny):
    with pytest.raises(TypeError, match=r"scale"):  # jaxtyping.TypeCheckError is a TypeError
        pca_direction(tiny, POS, NEG, layer=1, scale="norm")
    with pytest.raises(TypeError, match=r"token"):
        mean_diff(tiny, POS, NEG, layer=1, token="first")


# ---------------------------------------------------------------- direction_from_pairs: pluggable aggregators
def test_the_wrappers_are_the_runner_with_their_aggregator_bit_for_bit(any_tiny):
    for token in ("last", "mean", 2):
        mean = mean_diff(any_tiny, POS, NEG, "all", token=token, batch_size=3)
        ran = direction_from_pairs(any_tiny, POS, NEG, "all", mean_aggregator(), method="mean_diff", token=token,
                                   batch_size=3)
        for a, b in zip(mean, ran):
            assert torch.equal(a.tensor, b.tensor) and a.meta == b.meta and a.method == b.method == "mean_diff"
        for center, scale in ((True, "projection"), (False, "unit")):
            pca = pca_direction(any_tiny, POS, NEG, 1, token=token, center=center, scale=scale)
            ran = direction_from_pairs(any_tiny, POS, NEG, 1, pca_aggregator(center, scale), method="pca", token=token)
            assert torch.equal(pca.tensor, ran.tensor) and pca.meta == ran.meta and ran.method == "pca"


def test_mean_aggregator_is_the_mean_of_the_differences():
    diffs = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
    direction, meta = mean_aggregator()(diffs, "blocks.0.hook_resid_pre")
    assert torch.equal(direction, diffs.mean(dim=0)) and meta == {}


def test_pca_aggregator_is_the_principal_direction_scaled():
    diffs = torch.randn(6, 8, generator=torch.Generator().manual_seed(4)) + 1.0
    direction, proj, ratio = principal_direction(diffs)
    unit, meta = pca_aggregator(scale="unit")(diffs, "blocks.0.hook_resid_pre")
    scaled, _ = pca_aggregator()(diffs, "blocks.0.hook_resid_pre")
    assert torch.equal(unit, direction) and torch.equal(scaled, proj * direction)
    assert meta == {"center": True, "scale": "unit", "explained_variance_ratio": ratio, "fallback": None}


def test_a_custom_aggregator_gets_the_differences_and_its_meta_is_kept(any_tiny):
    seen = []

    def aggregate(diffs, hook_name):
        seen.append((hook_name, diffs.shape, diffs.dtype))
        return diffs.median(dim=0).values, {"statistic": "median"}

    vecs = direction_from_pairs(any_tiny, POS, NEG, [1, 0], aggregate, method="median", token="mean")
    assert seen == [(f"blocks.{layer}.hook_resid_pre", (4, any_tiny.cfg.d_model), torch.float32) for layer in (1, 0)]
    for v in vecs:
        assert v.method == "median" and v.prompts == {"pos": POS, "neg": NEG}
        assert v.meta == {"token": "mean", "n_pairs": 4, "statistic": "median"}
        expected = by_hand_diffs(any_tiny, POS, NEG, v.hook_name, "mean").median(dim=0).values
        torch.testing.assert_close(v.tensor, expected, atol=1e-4, rtol=1e-4)


def test_the_runner_reads_every_layer_in_one_pass_per_batch(tiny, monkeypatch):
    runs = CountRuns(tiny, monkeypatch)
    direction_from_pairs(tiny, POS, NEG, "all", mean_aggregator(), batch_size=8)
    assert len(runs.calls) == 1 and runs.calls[0]["stop_at_layer"] == 2


def test_bad_aggregators_are_refused(tiny, untyped):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"aggregator='mean'; allowed: a callable aggregate\(diffs, "
                       r"hook_name\) -> \(direction, meta\)\. Fix: pass e\.g\. aggregator=mean_aggregator\(\)\."):
        direction_from_pairs(tiny, POS, NEG, 1, "mean")
    with pytest.raises(st.errors.InvalidArgumentError, match=r"the aggregator returned Tensor at blocks\.1\.hook_resid_pre; "
                       r"allowed: a \(tensor, dict\) pair"):
        direction_from_pairs(tiny, POS, NEG, 1, lambda diffs, name: diffs.mean(dim=0))
    with pytest.raises(st.errors.InvalidArgumentError, match=r"scale='norm'; allowed: 'projection'"):
        pca_aggregator(scale="norm")


# ---------------------------------------------------------------- everything steers
@pytest.mark.parametrize("hook", ["resid_pre", "resid_post"])
def test_every_method_passes_through_steer(any_tiny, hook, no_hooks):
    base = logits(any_tiny)
    results = [
        (actadd_layers(any_tiny, "love", "hate", "all", hook=hook), None),
        (mean_diff(any_tiny, POS, NEG, 1, hook=hook), "all"),
        (mean_diff(any_tiny, POS, NEG, "all", hook=hook, token="mean"), "all"),
        (pca_direction(any_tiny, POS, NEG, 0, hook=hook), "all"),
        (pca_direction(any_tiny, POS, NEG, "all", hook=hook, scale="unit"), "all"),
    ]
    for vector, positions in results:
        with st.steer(any_tiny, vector, coeff=4.0, positions=positions):
            steered = logits(any_tiny)
        assert torch.isfinite(steered).all() and not torch.allclose(steered, base)
        no_hooks(any_tiny)
    texts = st.generate(any_tiny, ["ab"], results[1][0], coeff=2.0, max_new_tokens=3, n=1, seed=0)
    assert len(texts) == 1


def test_coefficient_zero_of_a_direction_changes_nothing(tiny):
    v = mean_diff(tiny, POS, NEG, layer=1)
    with st.steer(tiny, v, coeff=0.0):
        assert torch.equal(logits(tiny), logits(tiny))


# ---------------------------------------------------------------- property-based: batching
_ALPHABET = string.ascii_lowercase + " "
_prompt = hst.text(alphabet=_ALPHABET, min_size=1, max_size=10)
_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(
    pairs=hst.lists(hst.tuples(_prompt, _prompt), min_size=1, max_size=5),
    batch_size=hst.integers(min_value=1, max_value=12),
    token=hst.sampled_from(["last", "mean", 1, -1]),
    arch=hst.sampled_from(["llama", "gpt2"]),
)
def test_mean_diff_of_random_pairs_matches_per_prompt_runs(tiny, tiny_gpt2, pairs, batch_size, token, arch):
    model = tiny if arch == "llama" else tiny_gpt2
    pos, neg = [p for p, _ in pairs], [q for _, q in pairs]
    v = mean_diff(model, pos, neg, layer=1, token=token, batch_size=batch_size)
    expected = by_hand_diffs(model, pos, neg, v.hook_name, token).mean(dim=0)
    torch.testing.assert_close(v.tensor, expected, atol=1e-4, rtol=1e-4)
    assert math.isfinite(float(v.norm()))


# ---------------------------------------------------------------------------------------------
# chat=True: prompts in the chat template; token="response" reads the assistant turn


@pytest.fixture
def chat_tiny(tiny, monkeypatch):
    from steering.chat import TINY_TEMPLATE

    monkeypatch.setattr(tiny.tokenizer, "chat_template", TINY_TEMPLATE, raising=False)
    return tiny


def _answer(question, answer):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def _hand_features(model, text, start, layer):
    ids = tokenize_prompt(model, text)
    _, cache = model.run_with_cache(ids[None])
    return cache[f"blocks.{layer}.hook_resid_pre"][0, start:].float().mean(dim=0)


def test_chat_mean_diff_equals_hand_formatted_texts(chat_tiny, no_hooks):
    chat = mean_diff(chat_tiny, ["I love it", "so good"], ["I hate it", "so bad"], layer=1, chat=True, system="be kind")
    by_hand = mean_diff(chat_tiny, ["<s>s:be kind|u:I love it|a:", "<s>s:be kind|u:so good|a:"],
                        ["<s>s:be kind|u:I hate it|a:", "<s>s:be kind|u:so bad|a:"], layer=1)
    assert torch.equal(chat.tensor, by_hand.tensor)
    assert chat.prompts["pos"][0] == "<s>s:be kind|u:I love it|a:"  # one BOS: the template's
    no_hooks(chat_tiny)


def test_response_token_rule_is_the_mean_over_the_assistant_turn(chat_tiny, no_hooks):
    pos = [_answer("how was it", "lovely"), _answer("and then", "so fine")]
    neg = [_answer("how was it", "awful"), _answer("and then", "so bad!")]
    vec = mean_diff(chat_tiny, pos, neg, layer=1, chat=True, token="response", batch_size=1)
    expected = []
    for p, n in zip(pos, neg):
        q = p[0]["content"]
        start = len(tokenize_prompt(chat_tiny, f"<s>u:{q}|"))  # the header "a:" is the turn's first token
        expected.append(_hand_features(chat_tiny, f"<s>u:{q}|a:{p[1]['content']}", start, 1)
                        - _hand_features(chat_tiny, f"<s>u:{q}|a:{n[1]['content']}", start, 1))
    assert torch.allclose(vec.tensor, torch.stack(expected).mean(dim=0), atol=1e-5)
    assert vec.meta["token"] == "response"
    last = pca_direction(chat_tiny, pos, neg, layer=1, chat=True, token="last")  # CAA: the answer's last token
    assert last.method == "pca" and last.meta["token"] == "last"
    no_hooks(chat_tiny)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"token": "response"}, "token='response' and system= only with chat=True"),
    ({"system": "be kind"}, "only with chat=True"),
    ({"chat": True, "pos_prompts": [[{"role": "assistant", "content": "x"}]]}, "pos_prompts[0]: prompt="),
    ({"chat": True, "neg_prompts": [[{"role": "boss", "content": "x"}]]}, "neg_prompts[0]: message[0] has role='boss'"),
    ({"chat": True, "pos_prompts": []}, "pos_prompts=[]"),
    ({"chat": 1}, "chat=1"),
])
def test_chat_direction_errors_name_the_fix(chat_tiny, no_hooks, untyped, kwargs, fragment):
    args = {"pos_prompts": ["good"], "neg_prompts": ["bad"], **kwargs}
    with pytest.raises(st.errors.InvalidArgumentError, match="Fix") as info:
        mean_diff(chat_tiny, layer=1, **args)
    assert fragment in str(info.value)
    no_hooks(chat_tiny)


def test_chat_needs_a_template(tiny, no_hooks):
    assert not getattr(tiny.tokenizer, "chat_template", None)
    with pytest.raises(st.errors.InvalidArgumentError, match="no chat template"):
        mean_diff(tiny, ["good"], ["bad"], layer=1, chat=True)
    no_hooks(tiny)


def test_mean_diff_and_probe_take_a_dataset(chat_tiny, no_hooks):
    from steering.datasets import parse_dataset

    lines = "\n".join('{"prompt": "%s", "positive": "%s", "negative": "%s"}' % t for t in
                      [("hi", "so nice", "so bad"), ("and you", "lovely", "awful"), ("well", "good one", "bad one")])
    ds = parse_dataset(lines, "demo")
    for chat in (False, True):
        pos, neg = ds.pairs(chat=chat)
        got = mean_diff(chat_tiny, ds, None, layer=1, chat=chat, token="response" if chat else "last")
        want = mean_diff(chat_tiny, pos, neg, layer=1, chat=chat, token="response" if chat else "last")
        assert torch.equal(got.tensor, want.tensor)
        probe = st.probe_direction(chat_tiny, ds, None, layer=1, heldout=0.0, chat=chat)
        assert torch.equal(probe.tensor, st.probe_direction(chat_tiny, pos, neg, layer=1, heldout=0.0, chat=chat).tensor)
    with pytest.raises(st.errors.InvalidArgumentError, match="neg_prompts=None with a dataset"):
        mean_diff(chat_tiny, ds, ["x"], layer=1)
    with pytest.raises(st.errors.InvalidArgumentError, match="negative_texts=None with a dataset"):
        st.probe_direction(chat_tiny, ds, ["x"], layer=1)
    no_hooks(chat_tiny)
