"""Checks of the ``steer`` options, run while the arguments are parsed — before any model loads.

Light on purpose (no torch): :mod:`steering.cli` builds its parser from these, so a bad value
is a usage error (exit status 2, argparse's message) that costs no model load. Each ``*_option``
function returns an argparse ``type=`` callable that converts the string and checks its range;
:func:`parse_list` reads ``--layers`` / ``--coeffs``. (``--out`` is checked after parsing, with
:func:`steering.files.check_writable_target`, by :func:`steering.cli.main`.)

Example:
    >>> positive_int("--n")("3")
    3
    >>> positive_int("--n")("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 0 is out of range; allowed: an integer ≥ 1. Fix: pass e.g. --n 4.
"""

import argparse
import math
import re
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import InvalidArgumentError, SteeringError

__all__ = [
    "int_option", "positive_int", "seed_option", "float_option", "finite_float", "probability",
    "text_option", "device_option", "list_option", "parse_list", "MAX_SEED",
]

#: Seeds are 64-bit signed integers (``torch.manual_seed`` refuses larger ones).
MAX_SEED = 2**63 - 1

#: Torch device types ``--device`` accepts, each optionally with ``:INDEX``.
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "hpu", "npu", "xla", "mtia", "meta")


def int_option(flag: str, minimum: int, maximum: Optional[int] = None, example: int = 4) -> Callable[[str], int]:
    """An argparse ``type=`` that reads an integer in ``minimum .. maximum``.

    Args:
        flag: The option, for the message (``"--n"``).
        minimum: The smallest allowed value.
        maximum: The largest allowed value (``None``: no limit).
        example: A valid value for the message's fix.

    Returns:
        The converter; it raises ``argparse.ArgumentTypeError`` naming the value, the range
        and a fix.

    Example:
        >>> int_option("--layer", 0, example=6)("-1")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: -1 is out of range; allowed: an integer ≥ 0. Fix: pass e.g. --layer 6.
    """
    allowed = f"an integer ≥ {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"

    def convert(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an integer; allowed: {allowed}. Fix: pass e.g. {flag} {example}.") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {allowed}. Fix: pass e.g. {flag} {example}.")
        return value

    convert.__name__ = "integer"
    return convert


def positive_int(flag: str, example: int = 4) -> Callable[[str], int]:
    """An argparse ``type=`` for a count: an integer ≥ 1 (see :func:`int_option`).

    Example:
        >>> positive_int("--max-new-tokens", 40)("12")
        12
    """
    return int_option(flag, 1, example=example)


def seed_option(flag: str = "--seed") -> Callable[[str], int]:
    """An argparse ``type=`` for a sampling seed: ``0 .. 2**63 - 1``.

    Example:
        >>> seed_option()(str(2**63))
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: 9223372036854775808 is out of range; allowed: an integer in 0..9223372036854775807. Fix: pass e.g. --seed 0.
    """
    return int_option(flag, 0, MAX_SEED, example=0)


def float_option(flag: str, *, low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False,
                 allowed: str = "a finite number", example: str = "1") -> Callable[[str], float]:
    """An argparse ``type=`` that reads a finite float, optionally bounded.

    Args:
        flag: The option, for the message.
        low: The lower bound (``None``: none).
        high: The upper bound, inclusive (``None``: none).
        low_open: ``low`` itself is not allowed (``value > low``).
        allowed: The allowed set in words, for the message.
        example: A valid value for the message's fix.

    Returns:
        The converter; NaN, ±Inf and values out of bounds raise ``argparse.ArgumentTypeError``.

    Example:
        >>> float_option("--top-p", low=0.0, high=1.0, low_open=True, allowed="a number in (0, 1]")("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: 0.0 is out of range; allowed: a number in (0, 1]. Fix: pass e.g. --top-p 1.
    """

    def convert(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number; allowed: {allowed}. Fix: pass e.g. {flag} {example}.") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"{text.strip()} is not a finite number; allowed: {allowed}. Fix: pass e.g. {flag} {example}.")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value!r} is out of range; allowed: {allowed}. Fix: pass e.g. {flag} {example}.")
        return value

    convert.__name__ = "number"
    return convert


def finite_float(flag: str, example: str = "1") -> Callable[[str], float]:
    """An argparse ``type=`` for any finite float (a coefficient, a penalty).

    Example:
        >>> finite_float("--coeff", "5")("nan")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: nan is not a finite number; allowed: a finite number. Fix: pass e.g. --coeff 5.
    """
    return float_option(flag, example=example)


def probability(flag: str = "--top-p") -> Callable[[str], float]:
    """An argparse ``type=`` for a probability mass in ``(0, 1]``.

    Example:
        >>> probability()("0.3")
        0.3
    """
    return float_option(flag, low=0.0, high=1.0, low_open=True, allowed="a number in (0, 1]", example="0.3")


def text_option(flag: str, example: str) -> Callable[[str], str]:
    """An argparse ``type=`` for a text that must not be empty (a prompt, a target token).

    Example:
        >>> text_option("--prompt", "'I think that'")("")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: '' is empty; allowed: a non-empty text. Fix: pass e.g. --prompt 'I think that'.
    """

    def convert(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"'' is empty; allowed: a non-empty text. Fix: pass e.g. {flag} {example}.")
        return text

    convert.__name__ = "text"
    return convert


def device_option(text: str) -> str:
    """An argparse ``type=`` for ``--device``: a torch device type, optionally with ``:INDEX``.

    Example:
        >>> device_option("cuda:1")
        'cuda:1'
        >>> device_option("gpu")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: 'gpu' is not a device; allowed: cpu, cuda, mps, xpu, hpu, npu, xla, mtia, meta, each optionally with :INDEX (cuda:0). Fix: pass e.g. --device cpu.
    """
    if not re.fullmatch(rf"(?:{'|'.join(DEVICE_TYPES)})(?::\d+)?", text.strip()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device; allowed: {', '.join(DEVICE_TYPES)}, each optionally with :INDEX (cuda:0). "
            "Fix: pass e.g. --device cpu.")
    return text.strip()


def parse_list(text: str, cast: Callable[[str], Any], what: str) -> Any:
    """Parse a list option: ``"0,2,4"`` → ``[0, 2, 4]``; ``"0-3"`` (ints) → ``[0, 1, 2, 3]``; ``"all"`` → ``"all"``.

    Args:
        text: The option's value.
        cast: ``int`` or ``float``.
        what: The option's name (without ``--``), for error messages.

    Raises:
        InvalidArgumentError: ``text`` is not such a list, is empty, or (floats) holds NaN/Inf.

    Example:
        >>> parse_list("0-2,5", int, "layers"), parse_list("0,2.5", float, "coeffs"), parse_list("all", int, "layers")
        ([0, 1, 2, 5], [0.0, 2.5], 'all')
    """
    if text == "all":
        return "all"
    out = []
    try:
        for part in text.split(","):
            part = part.strip()
            if cast is int and "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else part[1:].split("-", 1)
                out += list(range(int(lo), int(hi) + 1))
            elif part:
                out.append(cast(part))
    except ValueError:
        raise InvalidArgumentError(f"--{what} {text!r} is not a list; allowed: e.g. '0,2,4'" +
                                   (", '0-17' or 'all'" if cast is int else "") + ".") from None
    if not out:
        raise InvalidArgumentError(f"--{what} {text!r} is empty.")
    if cast is float and not all(math.isfinite(x) for x in out):
        raise InvalidArgumentError(f"--{what} {text!r} holds a value that is not a finite number; allowed: e.g. '0,2,4'.")
    return out


def list_option(cast: Callable[[str], Any], what: str, *, minimum: Optional[int] = None) -> Callable[[str], Any]:
    """An argparse ``type=`` that reads a list with :func:`parse_list` (``"all"`` stays ``"all"``).

    Args:
        cast: ``int`` or ``float``.
        what: The option's name without ``--``.
        minimum: The smallest allowed element (``None``: no limit).

    Example:
        >>> list_option(int, "layers", minimum=0)("2,4-6")
        [2, 4, 5, 6]
        >>> list_option(int, "layers", minimum=0)("-1")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: --layers '-1' holds -1; allowed: layers ≥ 0, e.g. '0,2,4', '0-17' or 'all'.
    """

    def convert(text: str) -> Any:
        try:
            values = parse_list(text, cast, what)
        except SteeringError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        low = [v for v in values if minimum is not None and v < minimum] if values != "all" else []
        if low:
            raise argparse.ArgumentTypeError(
                f"--{what} {text!r} holds {low[0]}; allowed: {what} ≥ {minimum}, e.g. '0,2,4', '0-17' or 'all'.")
        return values

    convert.__name__ = "list"
    return convert
