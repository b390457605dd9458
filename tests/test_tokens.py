"""steering.tokens: BOS-first tokenization, the ActAdd pair pad id, the fill id, left/right padding."""

from types import SimpleNamespace

import pytest
import torch

import steering as st
from steering.tokens import fill_id, left_pad, pad_batch, pair_pad_id, readable, right_pad, tokenize_prompt


def char_ids(model, chars):
    """BOS + one token per character (the tiny models' vocabulary is character level)."""
    return [model.tokenizer.bos_token_id] + model.tokenizer.convert_tokens_to_ids(list(chars))


# ---------------------------------------------------------------- tokenize_prompt
def test_tokenize_prompt_puts_exactly_one_bos_first(tiny):
    bos = tiny.tokenizer.bos_token_id
    assert tokenize_prompt(tiny, "ab").tolist() == char_ids(tiny, "ab")
    assert tokenize_prompt(tiny, "").tolist() == [bos]
    assert tokenize_prompt(tiny, "abc").tolist().count(bos) == 1


def test_tokenize_prompt_of_both_architectures_is_on_the_cpu_and_one_dimensional(any_tiny):
    ids = tokenize_prompt(any_tiny, "love it")
    assert ids.ndim == 1 and ids.device.type == "cpu" and ids.dtype == torch.long
    assert ids.tolist() == char_ids(any_tiny, "love it")


# ---------------------------------------------------------------- pair_pad_id
def test_pair_pad_id_rules(tiny):
    tok = tiny.tokenizer
    assert pair_pad_id(tiny) == tok.convert_tokens_to_ids(" ")  # the paper's space token
    assert pair_pad_id(tiny, "space") == tok.convert_tokens_to_ids(" ")
    assert pair_pad_id(tiny, " ") == tok.convert_tokens_to_ids(" ")
    assert pair_pad_id(tiny, "eos") == tok.eos_token_id
    assert pair_pad_id(tiny, "pad") == tok.pad_token_id
    assert pair_pad_id(tiny, "z") == tok.convert_tokens_to_ids("z")
    assert pair_pad_id(tiny, 7) == 7


@pytest.mark.parametrize(
    "pad, match",
    [
        ("ab", r"pad='ab' encodes to 2 tokens .*allowed: a string that is exactly one token.*Fix: pass the id"),
        (1000, r"pad=1000 is not a token id of this model; allowed: 0\.\.99, 'space', 'eos', 'pad' or a one-token"),
        (-1, r"pad=-1 is not a token id"),
        ("", r"pad=''; allowed: 'space', 'eos', 'pad', a one-token string or a token id"),
    ],
)
def test_bad_pair_pad_rules_are_refused(tiny, pad, match):
    with pytest.raises(st.errors.InvalidArgumentError, match=match):
        pair_pad_id(tiny, pad)


@pytest.mark.parametrize("pad, token", [("eos", "EOS"), ("pad", "pad")])
def test_a_missing_special_token_is_refused(pad, token):
    tokenizer = SimpleNamespace(eos_token_id=None, pad_token_id=None)
    model = SimpleNamespace(tokenizer=tokenizer, cfg=SimpleNamespace(d_vocab=10))
    match = rf"pad='{pad}' but the tokenizer has no {token} token\. Fix: use pad='space'\."
    with pytest.raises(st.errors.InvalidArgumentError, match=match):
        pair_pad_id(model, pad)


# ---------------------------------------------------------------- fill_id
def test_fill_id_prefers_pad_then_eos_then_zero(tiny):
    assert fill_id(tiny) == tiny.tokenizer.pad_token_id
    eos_only = SimpleNamespace(tokenizer=SimpleNamespace(pad_token_id=None, eos_token_id=5))
    assert fill_id(eos_only) == 5
    neither = SimpleNamespace(tokenizer=SimpleNamespace(pad_token_id=None, eos_token_id=None))
    assert fill_id(neither) == 0


# ---------------------------------------------------------------- left / right padding
def test_left_pad_puts_the_padding_first_and_masks_it():
    tokens, mask = left_pad([torch.tensor([1, 5]), torch.tensor([1, 6, 7]), torch.tensor([1])], pad_id=9)
    assert tokens.tolist() == [[9, 1, 5], [1, 6, 7], [9, 9, 1]]
    assert mask.tolist() == [[0, 1, 1], [1, 1, 1], [0, 0, 1]]
    assert tokens.dtype == mask.dtype == torch.long


def test_right_pad_puts_the_padding_last_and_masks_it():
    tokens, mask = right_pad([torch.tensor([1, 5]), torch.tensor([1, 6, 7])], pad_id=9)
    assert tokens.tolist() == [[1, 5, 9], [1, 6, 7]]
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_equal_lengths_are_not_padded():
    rows = [torch.tensor([1, 2]), torch.tensor([3, 4])]
    for side in ("left", "right"):
        tokens, mask = pad_batch(rows, 0, side)
        assert tokens.tolist() == [[1, 2], [3, 4]] and bool(mask.all())


def test_an_unknown_side_is_refused():
    rows = [torch.tensor([1])]
    with pytest.raises((st.errors.InvalidArgumentError, TypeError), match=r"side"):
        pad_batch(rows, 0, "middle")


def test_readable_shows_bpe_markers_as_characters():
    assert readable("Ġweddings") == " weddings"
    assert readable("▁love") == " love"
    assert readable("Ċ") == "\n"
    assert readable("plain") == "plain"


@pytest.mark.parametrize("pad", [True, False, [1], {"a": 1}, 2.5, None])
def test_pair_pad_id_refuses_other_types(tiny, untyped, pad):
    with pytest.raises(st.errors.InvalidArgumentError, match="allowed: 'space'"):
        pair_pad_id(tiny, pad)


def test_a_prompt_that_starts_with_the_bos_text_gets_no_second_bos(tiny):
    bos = tiny.tokenizer.bos_token_id
    assert tokenize_prompt(tiny, "<s>ab").tolist() == tokenize_prompt(tiny, "ab").tolist() == [bos, 4, 5]
    assert tokenize_prompt(tiny, "a<s>b").tolist().count(bos) == 2  # a BOS text later is the text's own
