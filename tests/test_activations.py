"""steering.activations: the batched activation reader and per-prompt features at a token rule.

Reference values come from one prompt at a time: a full forward pass (no ``stop_at_layer``,
no padding, no mask), the token picked in plain Python.
"""

from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

import steering as st
from conftest import CountRuns
from steering.activations import check_token_rule, prompt_features, read_activations, weight_mode
from steering.tokens import left_pad, tokenize_prompt

PROMPTS = ["I love you", "what a great day", "so good!", "nice", "ab"]


def full_run(model, tokens, name):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[name])
    return cache[name]


def by_hand(model, text, name, token):
    acts = full_run(model, tokenize_prompt(model, text).unsqueeze(0), name)[0].float()
    if token == "last":
        return acts[-1]
    if token == "mean":
        return acts[1:].mean(dim=0)
    return acts[token]


# ---------------------------------------------------------------- read_activations
def test_read_activations_equals_a_full_forward_pass(any_tiny):
    tokens = torch.stack([tokenize_prompt(any_tiny, "love it"), tokenize_prompt(any_tiny, "hate it")])
    names = ["blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    acts = read_activations(any_tiny, tokens, names)
    assert list(acts) == names
    for name in names:
        assert acts[name].shape == (2, tokens.shape[1], any_tiny.cfg.d_model)
        assert not acts[name].requires_grad
        torch.testing.assert_close(acts[name], full_run(any_tiny, tokens, name), atol=1e-5, rtol=1e-5)


def test_read_activations_stops_after_the_deepest_layer_and_caches_only_what_is_asked(tiny, monkeypatch):
    runs = CountRuns(tiny, monkeypatch)
    tokens = tokenize_prompt(tiny, "abc").unsqueeze(0)
    read_activations(tiny, tokens, ["blocks.0.hook_resid_pre"])
    read_activations(tiny, tokens, ["blocks.1.hook_resid_post", "blocks.0.hook_mlp_out"])
    assert [c["stop_at_layer"] for c in runs.calls] == [1, 2]
    assert runs.calls[0]["names_filter"] == ["blocks.0.hook_resid_pre"]
    assert runs.calls[1]["names_filter"] == ["blocks.1.hook_resid_post", "blocks.0.hook_mlp_out"]
    assert all("attention_mask" not in c for c in runs.calls)


def test_a_shallow_read_never_runs_the_later_blocks(tiny):
    ran = []
    handle = tiny.blocks[1].register_forward_hook(lambda *args: ran.append(1))
    try:
        read_activations(tiny, tokenize_prompt(tiny, "abc").unsqueeze(0), ["blocks.0.hook_resid_post"])
        assert ran == []
        read_activations(tiny, tokenize_prompt(tiny, "abc").unsqueeze(0), ["blocks.1.hook_resid_pre"])
        assert ran == [1]
    finally:
        handle.remove()


def test_read_activations_with_a_mask_ignores_left_padding(any_tiny):
    short, long = tokenize_prompt(any_tiny, "ab"), tokenize_prompt(any_tiny, "abcde")
    tokens, mask = left_pad([short, long], pad_id=0)
    name = "blocks.1.hook_resid_pre"
    acts = read_activations(any_tiny, tokens, [name], attention_mask=mask)
    alone = full_run(any_tiny, short.unsqueeze(0), name)[0]
    torch.testing.assert_close(acts[name][0, -short.numel():], alone, atol=1e-4, rtol=1e-4)


def test_read_activations_refuses_no_names_and_non_block_hooks(tiny):
    tokens = torch.tensor([[1, 4, 5]])
    with pytest.raises(st.errors.InvalidArgumentError, match=r"names=\[\]; allowed: at least one full hook name"):
        read_activations(tiny, tokens, [])
    with pytest.raises(st.errors.UnknownHookError, match=r"hook 'hook_embed' is not a block hook"):
        read_activations(tiny, tokens, ["hook_embed"])


# ---------------------------------------------------------------- prompt_features
@pytest.mark.parametrize("token", ["last", "mean", 1, 2, -1, -2])
def test_prompt_features_equal_per_prompt_runs(any_tiny, token):
    name = "blocks.1.hook_resid_post"
    feats = prompt_features(any_tiny, PROMPTS, [name], token, batch_size=2)[name]
    assert feats.shape == (len(PROMPTS), any_tiny.cfg.d_model) and feats.dtype == torch.float32
    expected = torch.stack([by_hand(any_tiny, text, name, token) for text in PROMPTS])  # rows in input order
    torch.testing.assert_close(feats, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("token", ["last", "mean", 2, -2])
def test_prompt_features_do_not_depend_on_the_batch_size(any_tiny, token):
    names = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
    ref = prompt_features(any_tiny, PROMPTS, names, token, batch_size=1)
    for batch_size in (2, 3, 5, 64):
        feats = prompt_features(any_tiny, PROMPTS, names, token, batch_size=batch_size)
        for name in names:
            torch.testing.assert_close(feats[name], ref[name], atol=1e-5, rtol=1e-5)


_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(
    prompts=hst.lists(hst.text(alphabet="abcdefgh ", min_size=1, max_size=9), min_size=1, max_size=6),
    batch_size=hst.integers(min_value=1, max_value=7),
    token=hst.sampled_from(["last", "mean", 1, -1]),
)
def test_random_batches_give_the_one_at_a_time_features(tiny, prompts, batch_size, token):
    name = "blocks.1.hook_resid_pre"
    batched = prompt_features(tiny, prompts, [name], token, batch_size=batch_size)[name]
    single = torch.cat([prompt_features(tiny, [p], [name], token, batch_size=1)[name] for p in prompts])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_prompt_features_run_one_pass_per_batch_with_a_mask(tiny, monkeypatch):
    runs = CountRuns(tiny, monkeypatch)
    prompt_features(tiny, PROMPTS, ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"], "last", batch_size=2)
    assert len(runs.calls) == 3  # 5 prompts
    assert all(c["stop_at_layer"] == 2 and "attention_mask" in c for c in runs.calls)


def test_one_string_is_one_prompt(tiny):
    name = "blocks.1.hook_resid_pre"
    assert prompt_features(tiny, "love it", [name])[name].shape == (1, tiny.cfg.d_model)


@pytest.mark.parametrize(
    "prompts, kwargs, error, match",
    [
        (["abcd", "ab"], {"token": 3}, st.errors.InvalidArgumentError,
         r"token=3 is out of range for prompts\[1\]='ab', which has 3 tokens with BOS \(indices 0\.\.2, or -3\.\.-1\)"),
        (["ab"], {"token": -3}, st.errors.InvalidArgumentError, r"token=-3 selects the BOS token of prompts\[0\]='ab'"),
        (["ab"], {"token": 3, "labels": ["pos_prompts[7]"]}, st.errors.InvalidArgumentError,
         r"token=3 is out of range for pos_prompts\[7\]='ab'"),
        (["ab", ""], {}, st.errors.EmptyPromptError, r"prompts\[1\] is the empty string; allowed: prompts with at least one"),
        (["a" * 300], {}, st.errors.ContextLengthError, r"prompts\[0\]='aaaa.*is 301 tokens long but the model's context is 256"),
        (["ab"], {"batch_size": 0}, st.errors.InvalidArgumentError, r"batch_size=0; allowed: an int ≥ 1 \(prompts per forward"),
        (["ab"], {"token": 0}, st.errors.InvalidArgumentError, r"token=0 selects the BOS token"),
        (["ab"], {"token": "first"}, st.errors.InvalidArgumentError, r"token='first'; allowed: 'last'"),
        (["ab"], {"labels": ["x", "y"]}, st.errors.InvalidArgumentError, r"labels has 2 entries but prompts has 1"),
    ],
)
def test_prompt_features_refusals(tiny, untyped, prompts, kwargs, error, match):
    with pytest.raises(error, match=match):
        prompt_features(tiny, prompts, ["blocks.1.hook_resid_pre"], **kwargs)
    assert st.active_hooks(tiny) == 0


def test_a_hook_without_residual_shape_is_refused(tiny):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"hook 'blocks\.0\.attn\.hook_pattern' gives activations of shape"):
        prompt_features(tiny, ["ab"], ["blocks.0.attn.hook_pattern"])


# ---------------------------------------------------------------- token rules and weight mode
def test_check_token_rule_accepts_the_rules():
    assert [check_token_rule(t) for t in ("last", "mean", 1, -1, 5)] == ["last", "mean", 1, -1, 5]


@pytest.mark.parametrize(
    "token, match",
    [
        ("first", r"token='first'; allowed: 'last' .*'mean' .*or an int index.*Fix: pass e.g. token='last'"),
        (True, r"token=True; allowed: 'last'"),
        (1.0, r"token=1\.0; allowed: 'last'"),
        (0, r"token=0 selects the BOS token.*allowed: 'last', 'mean', or an index of a real token.*Fix: pass token=1"),
    ],
)
def test_check_token_rule_refusals(token, match):
    with pytest.raises(st.errors.InvalidArgumentError, match=match):
        check_token_rule(token)


def test_weight_mode():
    assert weight_mode(SimpleNamespace()) == "hf"
    assert weight_mode(SimpleNamespace(compatibility_mode=False)) == "hf"
    assert weight_mode(SimpleNamespace(compatibility_mode=True)) == "compat"


@pytest.mark.parametrize("token, starts, fragment", [
    ("response", None, "token='response' with response_starts=None"),
    ("mean", [1], "token='mean' with response_starts=1"),
    ("response", [1, 2], "response_starts=2"),
    ("response", [9], "is 9; allowed: an index of one of its tokens after BOS (1..3)"),
    ("response", [0], "is 0; allowed"),
])
def test_response_starts_are_checked(tiny, token, starts, fragment):
    with pytest.raises(st.errors.InvalidArgumentError, match="Fix") as info:
        prompt_features(tiny, ["abc"], ["blocks.1.hook_resid_pre"], token, response_starts=starts)
    assert fragment in str(info.value)


def test_response_rule_means_from_the_given_start(tiny):
    name = "blocks.1.hook_resid_pre"
    feats = prompt_features(tiny, ["abcd", "ab"], [name], "response", response_starts=[3, 1], batch_size=2)[name]
    _, cache = tiny.run_with_cache(tokenize_prompt(tiny, "abcd")[None])
    assert torch.allclose(feats[0], cache[name][0, 3:].float().mean(dim=0), atol=1e-5)
    assert torch.allclose(feats[1], prompt_features(tiny, ["ab"], [name], "mean")[name][0], atol=1e-6)
