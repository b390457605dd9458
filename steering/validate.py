"""Argument validators shared by every module: coefficients, integers, numbers, flags, seeds, counts, texts.

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
import numbers
import operator
from typing import Any, Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor

from .errors import EmptyPromptError, InvalidArgumentError, InvalidCoefficientError

__all__ = [
    "coeff", "coeffs", "coeff_list", "count", "top_k", "top_p", "text_list", "finite_number",
    "integer", "number", "flag", "seed", "shown", "describe", "as_int", "as_real", "SEED_RANGE",
]

#: The seeds ``torch.manual_seed`` takes: ``-2**63 .. 2**64 - 1``.
SEED_RANGE = (-(2**63), 2**64 - 1)


def shown(value: Any, width: int = 40) -> str:
    """``repr(value)``, cut to ``width`` characters (for messages).

    Example:
        >>> shown("x" * 50, 10)
        "'xxxxxx…"
    """
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "…"


def describe(value: Any) -> str:
    """What a refused value is, for messages: ``a str``, ``a bool``, ``a float32 tensor of shape ()`` …

    Example:
        >>> describe("5"), describe(1), describe(torch.tensor(1.7))
        ('a str', 'an int', 'a float32 tensor of shape ()')
    """
    if value is None:
        return "None"
    if isinstance(value, Tensor):
        where = " on the meta device" if value.is_meta else ""
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}{where}"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _is_bool(value: Any) -> bool:
    """A Python or numpy bool (``numpy.bool_``; not a numpy integer)."""
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"))


def as_int(value: Any) -> Optional[int]:
    """``value`` as an int if it is one: an int, a numpy integer or a 0-d integer tensor; else ``None``.

    Bools (Python, numpy, torch) are not ints here, and float values are never rounded.

    Example:
        >>> import numpy as np
        >>> as_int(np.int64(3)), as_int(torch.tensor(2)), as_int(torch.tensor(1.7)), as_int(True), as_int(2.0)
        (3, 2, None, None, None)
    """
    if isinstance(value, bool) or (isinstance(value, Tensor) and (value.ndim != 0 or value.dtype == torch.bool)):
        return None
    try:
        return operator.index(value)
    except Exception:  # noqa: BLE001 - a float, a str, a float/meta tensor: not an int
        return None


def as_real(value: Any) -> Optional[float]:
    """``value`` as a float if it is a real number (int, float, numpy number, 0-d real tensor); else ``None``.

    ``None`` for bools, strings, complex numbers and ints beyond float range.

    Example:
        >>> as_real(torch.tensor(0.5)), as_real("0.5"), as_real(True), as_real(10**400)
        (0.5, None, None, None)
    """
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_meta or value.dtype == torch.bool or value.is_complex():
            return None
        value = value.item()
    if _is_bool(value) or not isinstance(value, numbers.Real):
        return None
    try:  # an int beyond float range (10**400) overflows here rather than in the model
        return float(value)
    except (OverflowError, TypeError, ValueError):
        return None


def _span(minimum: Any, maximum: Any, above: bool = False) -> str:
    if minimum is not None and maximum is not None and not above:
        return f" in {minimum:g}..{maximum:g}"
    parts = [f"{'>' if above else '≥'} {minimum:g}" if minimum is not None else "",
             f"≤ {maximum:g}" if maximum is not None else ""]
    return " " + " and ".join(p for p in parts if p) if any(parts) else ""


def integer(name: str, value: Any, minimum: Optional[int] = None, maximum: Optional[int] = None, *,
            example: Any = None, error: type = InvalidArgumentError, what: str = "") -> int:
    """An integer argument in ``minimum .. maximum`` (either bound optional), as a plain ``int``.

    Ints, numpy integers and 0-d integer tensors are ints; bools, floats (``2.0`` included), strings
    and float tensors (``torch.tensor(1.7)``) are refused, never rounded.

    Args:
        name: The argument's name, for the message.
        value: The value to check.
        minimum: The smallest allowed value (``None``: no bound).
        maximum: The largest allowed value (``None``: no bound).
        example: The value the message suggests (default: ``minimum``).
        error: The :class:`~steering.errors.SteeringError` subclass to raise.
        what: What the number counts, added to the message (``"rows per forward pass"``).

    Example:
        >>> integer("layer", torch.tensor(1), 0, 5), integer("n", 3)
        (1, 3)
        >>> integer("top_k", "5", 1)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: top_k='5' is a str; allowed: an int ≥ 1. Fix: pass e.g. top_k=1.
        >>> integer("layer", torch.tensor(1.7), 0, 5)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: layer=tensor(1.7000) is a float32 tensor of shape (); allowed: an int in 0..5 (floats are not rounded). Fix: pass e.g. layer=0.
    """
    checked = as_int(value)
    allowed = f"an int{_span(minimum, maximum)}{f' ({what})' if what else ''}"
    fix = f"Fix: pass e.g. {name}={example if example is not None else (minimum if minimum is not None else 1)}."
    if checked is None:
        rounded = " (floats are not rounded)" if as_real(value) is not None else ""
        raise error(f"{name}={shown(value)} is {describe(value)}; allowed: {allowed}{rounded}. {fix}")
    if (minimum is not None and checked < minimum) or (maximum is not None and checked > maximum):
        raise error(f"{name}={shown(value)} is out of range; allowed: {allowed}. {fix}")
    return checked


def number(name: str, value: Any, minimum: Optional[Union[int, float]] = None, maximum: Optional[Union[int, float]] = None, *,
           above: bool = False, example: Any = None, error: type = InvalidArgumentError, what: str = "") -> float:
    """A finite real argument in ``[minimum, maximum]`` (``above=True``: ``minimum`` excluded), as a float.

    Ints, floats, numpy numbers and one-element real tensors are numbers; bools, strings, complex
    numbers, NaN and ±Inf are refused.

    Args:
        name: The argument's name, for the message.
        value: The value to check.
        minimum: The smallest allowed value (``None``: no bound).
        maximum: The largest allowed value (``None``: no bound).
        above: Exclude ``minimum`` itself (``> minimum``).
        example: The value the message suggests.
        error: The :class:`~steering.errors.SteeringError` subclass to raise.
        what: What the number means, added to the message.

    Example:
        >>> number("top_p", 0.5, 0, 1, above=True)
        0.5
        >>> number("freq_penalty", 1e308, -100, 100, example=1.0)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: freq_penalty=1e+308; allowed: a finite number in -100..100. Fix: pass e.g. freq_penalty=1.0.
    """
    checked = as_real(value)
    ok = checked is not None and math.isfinite(checked)
    if ok and minimum is not None:
        ok = checked > minimum if above else checked >= minimum
    if ok and maximum is not None:
        ok = checked <= maximum
    if not ok:
        kind = f" is {describe(value)}" if checked is None and value is not None else ""
        fix = f" Fix: pass e.g. {name}={example}." if example is not None else ""
        raise error(f"{name}={shown(value)}{kind}; allowed: a finite number{_span(minimum, maximum, above)}"
                    f"{f' ({what})' if what else ''}.{fix}")
    return float(checked)  # type: ignore[arg-type]


def flag(name: str, value: Any, *, optional: bool = False) -> Optional[bool]:
    """A yes/no argument: ``True`` or ``False`` only (``optional``: ``None`` too). ``"no"``, 0 and 1 are refused.

    Example:
        >>> flag("do_sample", False), flag("progress", None, optional=True)
        (False, None)
        >>> flag("do_sample", "no")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: do_sample='no' is a str; allowed: True or False. Fix: pass do_sample=False (or True).
    """
    if value is None and optional:
        return None
    if _is_bool(value):
        return bool(value)
    allowed = "True, False or None" if optional else "True or False"
    raise InvalidArgumentError(f"{name}={shown(value)} is {describe(value)}; allowed: {allowed}. "
                               f"Fix: pass {name}=False (or True).")


def seed(value: Any, name: str = "seed") -> Optional[int]:
    """A random seed: ``None`` (no seeding) or an int that ``torch.manual_seed`` takes (:data:`SEED_RANGE`).

    Example:
        >>> seed(None), seed(7)
        (None, 7)
        >>> seed(2**70)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: seed=1180591620717411303424 is out of range; allowed: an int in -2**63..2**64-1 (what torch.manual_seed takes), or None for no seeding. Fix: pass e.g. seed=0.
    """
    if value is None:
        return None
    checked = as_int(value)
    if checked is None or not SEED_RANGE[0] <= checked <= SEED_RANGE[1]:
        kind = f" is {describe(value)}" if checked is None else " is out of range"
        raise InvalidArgumentError(f"{name}={shown(value)}{kind}; allowed: an int in -2**63..2**64-1 (what "
                                   f"torch.manual_seed takes), or None for no seeding. Fix: pass e.g. {name}=0.")
    return checked


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
    checked = as_real(value)
    if checked is None or not math.isfinite(checked):
        raise InvalidCoefficientError(
            f"{name}={shown(value)} is not a finite number; allowed: any finite float (typical ActAdd values: "
            f"1..20, negative to steer the other way). Fix: pass e.g. {name}=5.0."
        )
    return checked


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


def finite_number(name: str, value: Any, *, positive: bool = False, bound: Optional[Union[int, float]] = None,
                  example: Any = None) -> float:
    """A finite number (``positive``: also > 0; ``bound``: also ``|value| ≤ bound``), as a float.

    Example:
        >>> finite_number("temperature", 0, positive=True)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: temperature=0; allowed: a finite number > 0. Fix: pass e.g. temperature=1.0.
    """
    low = 0.0 if positive else (-bound if bound is not None else None)
    return number(name, value, low, bound, above=positive, example=1.0 if example is None else example)


def count(name: str, value: Any, minimum: int = 1, *, caller: str = "", example: int = 4) -> int:
    """An integer count ``>= minimum``: an int, a numpy integer or a 0-d integer tensor (bools and floats refused).

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
        >>> count("batch_size", 2.0)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: batch_size=2.0; allowed: an integer ≥ 1. Fix: pass e.g. batch_size=4. (Got a float; it is not rounded or converted.)
    """
    checked = as_int(value)
    if checked is None or checked < minimum:
        if caller:
            raise InvalidArgumentError(
                f"{caller}: {name}={shown(value)}; allowed: an int >= {minimum}. Pass the count as a plain int."
            )
        kind = f" (Got {describe(value)}; it is not rounded or converted.)" if checked is None else ""
        raise InvalidArgumentError(
            f"{name}={shown(value)}; allowed: an integer ≥ {minimum}. Fix: pass e.g. {name}={example}.{kind}"
        )
    return checked


def top_k(k: Any, vocab: int, name: str = "k") -> int:
    """A number of tokens to keep: an int in ``1 .. vocab`` (``name``: the argument's name in the message).

    Example:
        >>> top_k(0, 100)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: k=0; allowed: an int in 1..100 (the vocabulary size). Fix: pass e.g. k=10.
    """
    checked = as_int(k)
    if checked is None or not 1 <= checked <= vocab:
        kind = f" is {describe(k)}" if checked is None else ""
        raise InvalidArgumentError(
            f"{name}={shown(k)}{kind}; allowed: an int in 1..{vocab} (the vocabulary size). "
            f"Fix: pass e.g. {name}={min(10, vocab)}."
        )
    return checked


def top_p(value: Any) -> Optional[float]:
    """A nucleus mass: a number in ``(0, 1]``, or ``None`` (no nucleus filter).

    Example:
        >>> top_p(0.3), top_p(None)
        (0.3, None)
        >>> top_p(True)
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: top_p=True is a bool; allowed: a number in (0, 1], or None. Fix: pass e.g. top_p=0.3 (the paper's), or top_p=None for no nucleus filter.
    """
    if value is None:
        return None
    checked = as_real(value)
    if checked is None or not 0 < checked <= 1:
        kind = f" is {describe(value)}" if checked is None else ""
        raise InvalidArgumentError(f"top_p={shown(value)}{kind}; allowed: a number in (0, 1], or None. Fix: pass "
                                   "e.g. top_p=0.3 (the paper's), or top_p=None for no nucleus filter.")
    return checked


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
