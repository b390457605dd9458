"""Argument validators shared by every module: coefficients, text lists, counts, vector lists.

Each returns the checked value in a normal form, or raises a
:class:`~steering.errors.SteeringError` subclass whose message names the value, what is
allowed and the fix. A module that needs one of these checks imports it from here.

Example:
    >>> coeff_list([0, 2.5])
    [0.0, 2.5]
    >>> text_list("prompts", "hello")
    ['hello']
    >>> count("n", 0)
    Traceback (most recent call last):
    ...
    steering.errors.InvalidArgumentError: n=0; allowed: an integer ≥ 1. Fix: pass e.g. n=4.
"""

import math
from typing import Any, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from .errors import EmptyPromptError, InvalidArgumentError, InvalidCoefficientError
from .vectors import SteeringVector

__all__ = ["coeff", "coeffs", "coeff_list", "count", "top_k", "text_list", "vector_list", "finite_number"]


def coeff(value: Any, name: str = "coeff") -> float:
    """A steering coefficient (or any value that must be a finite number) as a float.

    Example:
        >>> coeff(5)
        5.0
        >>> coeff(float("inf"))
        Traceback (most recent call last):
        ...
        steering.errors.InvalidCoefficientError: coeff=inf is not a finite number; allowed: any finite float (typical ActAdd values: 1..20, negative to steer the other way). Fix: pass e.g. coeff=5.0.
    """
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    try:  # an int beyond float range (10**400) overflows here rather than in the model
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    except OverflowError:
        ok = False
    if not ok:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "…"
        raise InvalidCoefficientError(
            f"{name}={shown} is not a finite number; allowed: any finite float (typical ActAdd values: "
            f"1..20, negative to steer the other way). Fix: pass e.g. {name}=5.0."
        )
    return float(value)


def coeffs(value: Any) -> Union[float, Float[Tensor, " batch"]]:
    """A coefficient that may be per batch row: a number, or a 1-D sequence of numbers (a tensor).

    A sequence gives row ``i`` of every forward batch the coefficient ``value[i]``.

    Example:
        >>> coeffs(2)
        2.0
        >>> coeffs([0, 1.5])
        tensor([0.0000, 1.5000])
        >>> coeffs([])
        Traceback (most recent call last):
        ...
        steering.errors.InvalidCoefficientError: coeff=[] is an empty sequence; allowed: a finite number or a non-empty 1-D sequence of them (one per batch row). Fix: pass e.g. coeff=5.0 or coeff=[0, 5.0].
    """
    if isinstance(value, Tensor) and value.ndim == 1 and value.numel() > 1:
        value = value.tolist()
    if isinstance(value, range):
        value = list(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise InvalidCoefficientError(
                "coeff=[] is an empty sequence; allowed: a finite number or a non-empty 1-D sequence of them "
                "(one per batch row). Fix: pass e.g. coeff=5.0 or coeff=[0, 5.0]."
            )
        return torch.tensor([coeff(c) for c in value], dtype=torch.float32)
    return coeff(value)


def coeff_list(value: Any) -> list[float]:
    """One coefficient or several, as a list of floats.

    Example:
        >>> coeff_list(3), coeff_list(range(2))
        ([3.0], [0.0, 1.0])
    """
    checked = coeffs(value)
    return checked.tolist() if isinstance(checked, Tensor) else [checked]


def finite_number(name: str, value: Any, *, positive: bool = False) -> float:
    """A finite number (``positive``: also > 0), as a float.

    Example:
        >>> finite_number("temperature", 0, positive=True)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: temperature=0; allowed: a finite number > 0.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        raise InvalidArgumentError(f"{name}={value!r}; allowed: a finite number{' > 0' if positive else ''}.")
    return float(value)


def count(name: str, value: Any, minimum: int = 1, *, caller: str = "", example: int = 4) -> int:
    """An integer count ``>= minimum`` (bools refused).

    Args:
        name: The argument's name, for the message.
        value: The value to check.
        minimum: The smallest allowed value.
        caller: Prefixed to the message (``"packed_weights: "``) when set.
        example: The value the message suggests.

    Example:
        >>> count("rows", 3, caller="packed_weights")
        3
        >>> count("boundary", -1, 0, caller="shared_rows")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: shared_rows: boundary=-1; allowed: an int >= 0. Pass the count as a plain int.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        if caller:
            raise InvalidArgumentError(
                f"{caller}: {name}={value!r}; allowed: an int >= {minimum}. Pass the count as a plain int."
            )
        raise InvalidArgumentError(f"{name}={value!r}; allowed: an integer ≥ {minimum}. Fix: pass e.g. {name}={example}.")
    return value


def top_k(k: Any, vocab: int) -> int:
    """A number of tokens to keep: an int in ``1 .. vocab``.

    Example:
        >>> top_k(0, 100)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: k=0; allowed: an int in 1..100 (the vocabulary size). Fix: pass e.g. k=10.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= vocab:
        raise InvalidArgumentError(f"k={k!r}; allowed: an int in 1..{vocab} (the vocabulary size). Fix: pass e.g. k=10.")
    return k


_EMPTY = (
    "{name}[{i}] is the empty string; allowed: texts with at least one character (an empty prompt has nothing but "
    "BOS to read or continue). Fix: give it text or drop it."
)


def text_list(name: str, value: Any, *, allowed: str = "a non-empty string or a non-empty list of strings",
              example: str = "['I went up to my friend and said']", empty: str = "") -> list[str]:
    """A non-empty list of non-empty strings (one string counts as a list of one).

    Args:
        name: The argument's name, for the messages.
        value: A string or a list/tuple of strings.
        allowed: How the message describes what is allowed.
        example: The fix the message suggests (Python source).
        empty: The message for an empty string, with ``{name}`` and ``{i}`` fields (default: a
            general one).

    Raises:
        InvalidArgumentError: not a string or a non-empty list, or an item is not a string.
        EmptyPromptError: an item is the empty string (a subclass of InvalidArgumentError).

    Example:
        >>> text_list("texts", ["a", ""])
        Traceback (most recent call last):
        ...
        steering.errors.EmptyPromptError: texts[1] is the empty string; allowed: texts with at least one character (an empty prompt has nothing but BOS to read or continue). Fix: give it text or drop it.
    """
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidArgumentError(f"{name}={value!r}; allowed: {allowed}. Fix: pass e.g. {name}={example}.")
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise InvalidArgumentError(
                f"{name}[{i}]={text!r} is a {type(text).__name__}; allowed: str. Fix: pass the prompt text."
            )
        if not text:
            raise EmptyPromptError((empty or _EMPTY).format(name=name, i=i))
    return list(value)


def vector_list(value: Any, name: str = "vector", *, allow_empty: bool = False) -> list[SteeringVector]:
    """One :class:`~steering.vectors.SteeringVector` or a list of them, as a list.

    Example:
        >>> vector_list([1])
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: vector=[1] is not a SteeringVector; allowed: a SteeringVector or a list of them. Fix: build one with st.actadd(model, pos, neg, layer).
    """
    if isinstance(value, SteeringVector):
        return [value]
    items: Sequence[Any] = value if isinstance(value, (list, tuple)) else []
    if (not items and not (allow_empty and isinstance(value, (list, tuple)))) or not all(
        isinstance(v, SteeringVector) for v in items
    ):
        raise InvalidArgumentError(
            f"{name}={value!r:.200} is not a SteeringVector; allowed: a SteeringVector or a list of them. "
            "Fix: build one with st.actadd(model, pos, neg, layer)."
        )
    return list(items)
