"""actadd / actadd_layers: the paper's Algorithm 1 (BOS first, space right-padding, per-position difference)."""

import string
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

import steering as st
from conftest import CountRuns
from steering.extract import actadd_layers
from steering.hooks import STEERABLE_HOOKS
from steering.tokens import tokenize_prompt

BOS = "<s>"


def ids(model, chars, pad_char=" ", length=None):
    """Token ids of BOS + one token per character, right-padded with ``pad_char`` to ``length``."""
    tok = model.tokenizer
    out = [tok.bos_token_id] + tok.convert_tokens_to_ids(list(chars))
    pad = pad_char if isinstance(pad_char, int) else tok.convert_tokens_to_ids(pad_char)
    return out + [pad] * ((length or len(out)) - len(out))


def by_hand(model, pos_ids, neg_ids, name):
    """h+ − h− from one full forward pass (no stop_at_layer) of the padded pair."""
    tokens = torch.tensor([pos_ids, neg_ids])
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[name])
    return cache[name][0] - cache[name][1]


def logits(model, text="I went up to my friend and said"):
    with torch.no_grad():
        return model(model.to_tokens(text))


# ---------------------------------------------------------------- padding of the pair
def test_bos_first_and_shorter_prompt_padded_with_spaces(any_tiny):
    v = st.actadd(any_tiny, "love it", "hate", layer=1)
    assert v.tokens["pos"] == [BOS, "l", "o", "v", "e", " ", "i", "t"]
    assert v.tokens["neg"] == [BOS, "h", "a", "t", "e", " ", " ", " "]
    assert v.n_pos == 8 and v.pad == "space"
    assert v.meta["n_pos_tokens"] == 8 and v.meta["n_neg_tokens"] == 5
    assert v.meta["pad_token_id"] == any_tiny.tokenizer.convert_tokens_to_ids(" ")


def test_the_shorter_positive_prompt_is_padded_too(tiny):
    v = st.actadd(tiny, "ok", "terrible", layer=0)
    assert v.tokens["pos"] == [BOS, "o", "k"] + [" "] * 6
    assert v.tokens["neg"] == [BOS] + list("terrible")


def test_equal_lengths_are_not_padded(tiny):
    v = st.actadd(tiny, "love", "hate", layer=0)
    assert v.tokens == {"pos": [BOS, "l", "o", "v", "e"], "neg": [BOS, "h", "a", "t", "e"]}


@pytest.mark.parametrize(
    "pad, pad_token, label",
    [("space", " ", "space"), (" ", " ", " "), ("eos", "</s>", "eos"), ("pad", "<pad>", "pad"), ("z", "z", "z")],
)
def test_pad_rules(tiny, pad, pad_token, label):
    v = st.actadd(tiny, "love it", "hate", layer=1, pad=pad)
    assert v.tokens["neg"] == [BOS, "h", "a", "t", "e"] + [pad_token] * 3
    assert v.pad == label
    pad_id = tiny.tokenizer.convert_tokens_to_ids(pad_token)
    assert v.meta["pad_token_id"] == pad_id
    expected = by_hand(tiny, ids(tiny, "love it"), ids(tiny, "hate", pad_id, 8), "blocks.1.hook_resid_pre")
    torch.testing.assert_close(v.tensor, expected, atol=1e-5, rtol=1e-5)


def test_pad_by_token_id(tiny):
    x = tiny.tokenizer.convert_tokens_to_ids("x")
    v = st.actadd(tiny, "love it", "hate", layer=1, pad=x)
    assert v.tokens["neg"][-3:] == ["x", "x", "x"] and v.pad == f"id:{x}"
    expected = by_hand(tiny, ids(tiny, "love it"), ids(tiny, "hate", x, 8), "blocks.1.hook_resid_pre")
    torch.testing.assert_close(v.tensor, expected, atol=1e-5, rtol=1e-5)


def test_pad_rule_changes_the_vector(tiny):
    space = st.actadd(tiny, "love it", "hate", layer=1)
    eos = st.actadd(tiny, "love it", "hate", layer=1, pad="eos")
    assert torch.equal(space.tensor[:5], eos.tensor[:5])  # causal: padding only changes padded positions
    assert not torch.allclose(space.tensor[5:], eos.tensor[5:])


@pytest.mark.parametrize(
    "pad, match",
    [
        ("ab", r"pad='ab' encodes to 2 tokens .*allowed: a string that is exactly one token"),
        (1000, r"pad=1000 is not a token id of this model; allowed: 0\.\.99"),
        (-1, r"pad=-1 is not a token id"),
        ("", r"pad=''; allowed: 'space', 'eos', 'pad', a one-token string or a token id"),
    ],
)
def test_bad_pad_rules_are_refused(tiny, pad, match):
    with pytest.raises(st.errors.InvalidArgumentError, match=match):
        st.actadd(tiny, "love it", "hate", layer=1, pad=pad)
    assert st.active_hooks(tiny) == 0


# ---------------------------------------------------------------- the vector itself
def test_bos_position_is_exactly_zero(any_tiny):
    for layer in (0, 1):
        v = st.actadd(any_tiny, "Love", "Hurt", layer=layer)
        assert torch.equal(v.tensor[0], torch.zeros_like(v.tensor[0]))
        assert v.norm()[0].item() == 0.0
        assert bool((v.norm()[1:] > 0).all())


@pytest.mark.parametrize("hook", STEERABLE_HOOKS)
@pytest.mark.parametrize("layer", [0, 1])
def test_vector_equals_difference_of_a_full_forward_pass(any_tiny, hook, layer):
    v = st.actadd(any_tiny, "love it", "hate", layer=layer, hook=hook)
    name = f"blocks.{layer}.hook_{hook}"
    assert v.hook_name == name and v.layer == layer and v.hook == hook
    expected = by_hand(any_tiny, ids(any_tiny, "love it"), ids(any_tiny, "hate", " ", 8), name)
    torch.testing.assert_close(v.tensor, expected, atol=1e-5, rtol=1e-5)


def test_metadata(tiny):
    v = st.actadd(tiny, "Love", "Hate", layer=1)
    assert v.method == "actadd"
    assert v.prompts == {"pos": "Love", "neg": "Hate"}
    assert v.model_name == tiny.cfg.model_name == "tiny-llama"
    assert v.weight_mode == "hf"
    assert v.dtype == torch.float32 and not v.tensor.requires_grad
    v.check_compatible(tiny)


def test_actadd_is_deterministic(tiny):
    a = st.actadd(tiny, "Love", "Hate", layer=1)
    b = st.actadd(tiny, "Love", "Hate", layer=1)
    assert torch.equal(a.tensor, b.tensor)


def test_swapping_the_prompts_negates_the_vector(tiny):
    a = st.actadd(tiny, "Love", "Hate", layer=1)
    b = st.actadd(tiny, "Hate", "Love", layer=1)
    torch.testing.assert_close(b.tensor, -a.tensor, atol=1e-6, rtol=0)


def test_empty_negative_prompt_is_all_spaces(any_tiny):
    v = st.actadd(any_tiny, "wed", "", layer=1)
    assert v.tokens == {"pos": [BOS, "w", "e", "d"], "neg": [BOS, " ", " ", " "]}
    expected = by_hand(any_tiny, ids(any_tiny, "wed"), ids(any_tiny, "", " ", 4), "blocks.1.hook_resid_pre")
    torch.testing.assert_close(v.tensor, expected, atol=1e-5, rtol=1e-5)


def test_empty_positive_prompt_is_allowed(tiny):
    v = st.actadd(tiny, "", "wed", layer=1)
    assert v.tokens["pos"] == [BOS, " ", " ", " "]
    torch.testing.assert_close(v.tensor, -st.actadd(tiny, "wed", "", layer=1).tensor, atol=1e-6, rtol=0)


def test_both_prompts_empty_is_refused(tiny):
    with pytest.raises(st.errors.EmptyPromptError, match=r"pos='' and neg='' are both empty; allowed: at least one non-empty.*Fix:"):
        st.actadd(tiny, "", "", layer=1)
    assert st.active_hooks(tiny) == 0


@pytest.mark.parametrize("hook", ["resid_pre", "mlp_out"])
def test_negative_layers_count_from_the_end(any_tiny, hook):
    n = any_tiny.cfg.n_layers
    for neg in range(-n, 0):
        a = st.actadd(any_tiny, "Love", "Hate", layer=neg, hook=hook)
        b = st.actadd(any_tiny, "Love", "Hate", layer=neg + n, hook=hook)
        assert a.hook_name == b.hook_name == f"blocks.{neg + n}.hook_{hook}"
        assert torch.equal(a.tensor, b.tensor)


def test_layers_give_different_vectors(tiny):
    a = st.actadd(tiny, "Love", "Hate", layer=0)
    b = st.actadd(tiny, "Love", "Hate", layer=1)
    assert not torch.allclose(a.tensor[1:], b.tensor[1:])


def test_actadd_leaves_no_hook_behind(any_tiny):
    st.actadd(any_tiny, "Love", "Hate", layer=1, hook="resid_post")
    assert st.active_hooks(any_tiny) == 0


# ---------------------------------------------------------------- actadd_layers
@pytest.mark.parametrize("hook", ["resid_pre", "mlp_out", "resid_post"])
def test_actadd_layers_equals_per_layer_actadd_exactly(any_tiny, hook):
    vecs = actadd_layers(any_tiny, "love it", "hate", "all", hook=hook)
    assert [v.layer for v in vecs] == [0, 1]
    for v in vecs:
        ref = st.actadd(any_tiny, "love it", "hate", layer=v.layer, hook=hook)
        assert torch.equal(v.tensor, ref.tensor)
        assert (v.hook_name, v.method, v.prompts, v.tokens, v.pad, v.meta, v.weight_mode, v.model_name) == (
            ref.hook_name, ref.method, ref.prompts, ref.tokens, ref.pad, ref.meta, ref.weight_mode, ref.model_name
        )


def test_actadd_layers_keeps_the_order_given_and_counts_negatives_from_the_end(tiny):
    assert [v.hook_name for v in actadd_layers(tiny, "a", "b", [1, 0])] == [
        "blocks.1.hook_resid_pre", "blocks.0.hook_resid_pre"
    ]
    assert [v.layer for v in actadd_layers(tiny, "a", "b", [-1])] == [1]
    assert [v.layer for v in actadd_layers(tiny, "a", "b", range(2))] == [0, 1]
    (only,) = actadd_layers(tiny, "a", "b", 1, pad="eos")  # one int: a one-element list
    assert torch.equal(only.tensor, st.actadd(tiny, "a", "b", layer=1, pad="eos").tensor)


def test_actadd_layers_runs_one_forward_pass(tiny, monkeypatch):
    runs = CountRuns(tiny, monkeypatch)
    actadd_layers(tiny, "love", "hate", [0, 1], hook="resid_post")
    assert len(runs.calls) == 1
    assert runs.calls[0]["names_filter"] == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert runs.calls[0]["stop_at_layer"] == 2
    runs.calls.clear()
    actadd_layers(tiny, "love", "hate", [0])
    assert runs.calls[0]["stop_at_layer"] == 1


def test_actadd_layers_list_steers_all_layers_together(any_tiny, no_hooks):
    vecs = actadd_layers(any_tiny, "love", "hate", "all")
    with st.steer(any_tiny, vecs, coeff=3.0):
        both = logits(any_tiny)
    with st.steer(any_tiny, vecs[0], coeff=3.0):
        first = logits(any_tiny)
    assert not torch.allclose(both, logits(any_tiny)) and not torch.allclose(both, first)
    no_hooks(any_tiny)


def test_actadd_layers_refuses_what_actadd_refuses(tiny):
    with pytest.raises(st.errors.EmptyPromptError, match=r"pos='' and neg='' are both empty"):
        actadd_layers(tiny, "", "", "all")
    with pytest.raises(st.errors.UnknownHookError, match=r"hook='resid_pr' is not a hook point.*Did you mean 'resid_pre'"):
        actadd_layers(tiny, "a", "b", "all", hook="resid_pr")
    with pytest.raises(st.errors.ContextLengthError, match=r"300 tokens long after padding.*context is 256"):
        actadd_layers(tiny, "a" * 299, "b", "all")

def test_a_prompt_that_is_not_a_string_is_refused(tiny, untyped):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"neg=3 is a int; allowed: str\. Fix: pass the prompt text\."):
        st.actadd(tiny, "a", 3, layer=1)
    with pytest.raises(st.errors.InvalidArgumentError, match=r"pos=None is a NoneType; allowed: str"):
        actadd_layers(tiny, None, "", "all")


def test_a_bad_prompt_is_reported_before_a_bad_pad_rule(tiny):
    with pytest.raises(st.errors.EmptyPromptError, match=r"pos='' and neg='' are both empty"):
        st.actadd(tiny, "", "", layer=1, pad="ab")


def test_a_pair_longer_than_the_context_is_refused(tiny):
    with pytest.raises(st.errors.ContextLengthError, match=r"the prompt pair is 257 tokens long after padding but the model's "
                       r"context is 256; allowed: at most 256 tokens\. Fix: shorten the prompts\."):
        st.actadd(tiny, "a" * 256, "", layer=0)
    assert st.active_hooks(tiny) == 0


# ---------------------------------------------------------------- property-based: positions stay aligned
_ALPHABET = string.ascii_lowercase + " "
_prompt = hst.text(alphabet=_ALPHABET, min_size=1, max_size=10)
_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(
    rows=hst.lists(hst.tuples(_prompt, hst.integers(min_value=0, max_value=5)), min_size=1, max_size=4),
    arch=hst.sampled_from(["llama", "gpt2"]),
    layer=hst.integers(min_value=0, max_value=1),
    pair=hst.sampled_from([("love", "hate"), ("wedding", ""), ("ab", "abcdef")]),
)
def test_front_steering_of_a_left_padded_batch_equals_per_row_steering(tiny, tiny_gpt2, rows, arch, layer, pair):
    model = tiny if arch == "llama" else tiny_gpt2
    vec = st.actadd(model, *pair, layer=layer)
    encoded = [tokenize_prompt(model, text) for text, _ in rows]
    width = max(ids.numel() + extra for ids, (_, extra) in zip(encoded, rows))  # random left padding per row
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, ids in enumerate(encoded):
        tokens[i, width - ids.numel():] = ids
        mask[i, width - ids.numel():] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.SteeringWarning)  # prompts shorter than the vector: truncated
        with torch.no_grad(), st.steer(model, vec, coeff=5.0):
            batched = model(tokens, attention_mask=mask)
            singles = [model(ids.unsqueeze(0))[0] for ids in encoded]
    for i, (ids, single) in enumerate(zip(encoded, singles)):
        torch.testing.assert_close(batched[i, width - ids.numel():], single, atol=1e-4, rtol=1e-4)
    assert st.active_hooks(model) == 0


def test_actadd_chat_equals_the_hand_formatted_pair(tiny, monkeypatch, no_hooks):
    from steering.chat import TINY_TEMPLATE

    monkeypatch.setattr(tiny.tokenizer, "chat_template", TINY_TEMPLATE, raising=False)
    chat = st.actadd(tiny, "love", "hate", layer=1, chat=True, system="hi")
    by_hand = st.actadd(tiny, "<s>s:hi|u:love|a:", "<s>s:hi|u:hate|a:", layer=1)
    assert torch.equal(chat.tensor, by_hand.tensor) and chat.prompts == by_hand.prompts
    assert chat.tokens["pos"].count("<s>") == 1  # the template's BOS only
    assert float(chat.norm()[:7].abs().max()) == 0.0  # the shared header "<s>s:hi|u:" cancels
    layers = st.actadd_layers(tiny, "love", "hate", "all", chat=True)
    assert torch.equal(layers[1].tensor, st.actadd(tiny, "love", "hate", layer=1, chat=True).tensor)
    with pytest.raises(st.errors.EmptyPromptError, match="neg='' with chat=True"):
        st.actadd(tiny, " weddings", "", layer=1, chat=True)
    with pytest.raises(st.errors.InvalidArgumentError, match="system= only with chat=True"):
        st.actadd(tiny, "love", "hate", layer=1, system="hi")
    no_hooks(tiny)
