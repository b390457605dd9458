"""Tokenization and padding: every token id steering-lens feeds a model is made here.

* :func:`tokenize_prompt` — a prompt's ids with exactly one BOS first (the paper's convention).
* :func:`pair_pad_id` — the id that right-pads the shorter prompt of an ActAdd pair (the
  paper's space token by default).
* :func:`fill_id` — the id that fills masked padding of a batch (the tokenizer's pad token,
  else EOS, else 0; its value never reaches a real position).
* :func:`left_pad` / :func:`right_pad` — 1-D id tensors into a ``[batch, pos]`` batch plus
  its attention mask.

Example:
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> ids = [tokenize_prompt(model, "ab"), tokenize_prompt(model, "abc")]
    >>> tokens, mask = left_pad(ids, fill_id(model))
    >>> tokens.tolist(), mask.tolist()
    ([[0, 1, 4, 5], [1, 4, 5, 6]], [[0, 1, 1, 1], [1, 1, 1, 1]])
"""

from typing import Any, Literal, Sequence, Union

import torch
from jaxtyping import Int
from torch import Tensor

from .errors import InvalidArgumentError

__all__ = ["tokenize_prompt", "pair_pad_id", "fill_id", "left_pad", "right_pad", "pad_batch", "readable", "single_token_texts", "PadRule"]

#: How the shorter prompt of an ActAdd pair is padded: ``"space"`` (the paper's rule), ``"eos"``,
#: ``"pad"``, another one-token string, or a token id.
PadRule = Union[str, int]


def tokenize_prompt(model: Any, prompt: str) -> Int[Tensor, " pos"]:
    """Token ids of ``prompt`` with exactly one BOS first (the paper's convention).

    A prompt that already starts with the BOS token's text (a chat template writes it) is
    tokenized as it is: its own BOS is the one BOS, none is added.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> tokenize_prompt(model, "ab").tolist(), tokenize_prompt(model, "<s>ab").tolist()
        ([1, 4, 5], [1, 4, 5])
    """
    if not isinstance(prompt, str):
        raise InvalidArgumentError(
            f"prompt={prompt!r} is a {type(prompt).__name__}; allowed: str. Fix: pass the prompt text."
        )
    bos_text = getattr(model.tokenizer, "bos_token", None)
    # a chat template writes its own BOS text: tokenize that one, add none
    own_bos = isinstance(bos_text, str) and bool(bos_text) and prompt.startswith(bos_text)
    tokens = model.to_tokens(prompt, prepend_bos=not own_bos, truncate=False)[0].cpu()
    bos = model.tokenizer.bos_token_id
    if bos is not None and (tokens.numel() == 0 or int(tokens[0]) != bos):
        tokens = torch.cat([torch.tensor([bos]), tokens])
    return tokens


def fill_id(model: Any) -> int:
    """The id that fills masked padding: the tokenizer's pad token, else EOS, else 0.

    Example:
        >>> from steering.testing import tiny_model
        >>> fill_id(tiny_model())
        0
    """
    tok = model.tokenizer
    return next((int(t) for t in (tok.pad_token_id, tok.eos_token_id) if t is not None), 0)


def pair_pad_id(model: Any, pad: PadRule = "space") -> int:
    """The token id used to right-pad the shorter prompt of an ActAdd pair.

    Args:
        model: The bridge.
        pad: ``"space"`` (the paper's rule: the model's single-space token), ``"eos"``,
            ``"pad"`` (the tokenizer's pad token), another string that is exactly one
            token, or a token id.

    Example:
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> model.tokenizer.convert_ids_to_tokens(pair_pad_id(model, "space"))
        ' '
    """
    tok = model.tokenizer
    if isinstance(pad, bool) or not isinstance(pad, (str, int)):
        raise InvalidArgumentError(
            f"pad={pad!r} is a {type(pad).__name__}; allowed: 'space', 'eos', 'pad', a one-token string or a token "
            "id (int). Fix: pass pad='space' (the paper's rule)."
        )
    if isinstance(pad, int):
        if not 0 <= pad < int(model.cfg.d_vocab):
            raise InvalidArgumentError(
                f"pad={pad} is not a token id of this model; allowed: 0..{int(model.cfg.d_vocab) - 1}, "
                "'space', 'eos', 'pad' or a one-token string."
            )
        return pad
    named = {"eos": tok.eos_token_id, "pad": tok.pad_token_id}
    if pad in named:
        if named[pad] is None:
            raise InvalidArgumentError(
                f"pad={pad!r} but the tokenizer has no {'EOS' if pad == 'eos' else 'pad'} token. Fix: use pad='space'."
            )
        return int(named[pad])
    text = " " if pad == "space" else pad
    if not isinstance(text, str) or not text:
        raise InvalidArgumentError(f"pad={pad!r}; allowed: 'space', 'eos', 'pad', a one-token string or a token id.")
    ids = tok.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise InvalidArgumentError(
            f"pad={pad!r} encodes to {len(ids)} tokens {ids} with this tokenizer; allowed: a string that is exactly "
            "one token, 'eos', 'pad' or a token id. Fix: pass the id of a neutral token, e.g. pad=<int>."
        )
    return int(ids[0])


def pad_batch(
    sequences: Sequence[Tensor], pad_id: int, side: Literal["left", "right"]
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Pad 1-D token tensors on ``side`` into a batch; return ``(tokens, attention_mask)``.

    Example:
        >>> import torch
        >>> toks, mask = pad_batch([torch.tensor([1, 5]), torch.tensor([1, 6, 7])], 0, "right")
        >>> toks.tolist(), mask.tolist()
        ([[1, 5, 0], [1, 6, 7]], [[1, 1, 0], [1, 1, 1]])
    """
    if side not in ("left", "right"):
        raise InvalidArgumentError(f"side={side!r}; allowed: 'left', 'right'.")
    width = max(int(s.numel()) for s in sequences)
    tokens = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        where = slice(width - seq.numel(), width) if side == "left" else slice(0, seq.numel())
        tokens[i, where] = seq
        mask[i, where] = 1
    return tokens, mask


def left_pad(
    sequences: Sequence[Tensor], pad_id: int
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Left-pad 1-D token tensors into a batch (generation, last-position reads).

    Example:
        >>> import torch
        >>> toks, mask = left_pad([torch.tensor([1, 5]), torch.tensor([1, 6, 7])], pad_id=0)
        >>> toks.tolist(), mask.tolist()
        ([[0, 1, 5], [1, 6, 7]], [[0, 1, 1], [1, 1, 1]])
    """
    return pad_batch(sequences, pad_id, "left")


def right_pad(
    sequences: Sequence[Tensor], pad_id: int
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Right-pad 1-D token tensors into a batch (every row starts at position 0).

    Example:
        >>> import torch
        >>> right_pad([torch.tensor([1]), torch.tensor([1, 6])], pad_id=0)[0].tolist()
        [[1, 0], [1, 6]]
    """
    return pad_batch(sequences, pad_id, "right")


def readable(token: str) -> str:
    """Show byte-level BPE markers (Ġ, ▁, Ċ) as the characters they stand for.

    Example:
        >>> readable("Ġweddings")
        ' weddings'
    """
    return token.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n")


def single_token_texts(model: Any, candidates: Sequence[str]) -> list[str]:
    """The candidates that are one token for this model's tokenizer, or the first candidate if none is.

    Used to pick target words whose log-prob can be read at one position.

    Example:
        >>> from steering.testing import tiny_model
        >>> single_token_texts(tiny_model(), ["ab", "a", "b"])  # "ab" is two tokens in the tiny vocabulary
        ['a', 'b']
    """
    single = [t for t in candidates if len(model.tokenizer.encode(t, add_special_tokens=False)) == 1]
    return single or list(candidates[:1])
