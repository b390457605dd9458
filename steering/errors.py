"""The exception family of steering-lens.

Every error the toolkit raises on bad input is a :class:`SteeringError`. Each
message names the offending value, what was allowed, and how to fix it, so a
notebook user can act on it without reading the source.

Example:
    >>> import steering as st
    >>> try:
    ...     raise st.LayerOutOfRangeError("layer 40 is out of range for this model")
    ... except st.SteeringError as err:
    ...     print(type(err).__name__)
    LayerOutOfRangeError
"""

import os
import sys
import warnings

__all__ = [
    "SteeringError",
    "UnknownModelError",
    "ModelFetchError",
    "LayerOutOfRangeError",
    "UnknownHookError",
    "VectorMismatchError",
    "InvalidVectorError",
    "EmptyPromptError",
    "InvalidCoefficientError",
    "ContextLengthError",
    "InvalidArgumentError",
    "PromptTooShortError",
    "VectorFileError",
    "NonFiniteError",
    "CacheDamagedError",
    "FileAccessError",
    "DatasetError",
    "SteeringWarning",
    "warn_user",
]


class SteeringError(Exception):
    """Base class of every error steering-lens raises on bad input."""


class UnknownModelError(SteeringError, KeyError):
    """A model name is neither built in, a local path, nor reachable on the hub."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ModelFetchError(SteeringError):
    """Fetching or verifying a built-in model's files failed."""


class LayerOutOfRangeError(SteeringError, IndexError):
    """A layer index is outside ``0 .. n_layers - 1``."""


class UnknownHookError(SteeringError, KeyError):
    """A hook name is not one of the model's hook points."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class VectorMismatchError(SteeringError):
    """A vector does not fit the model (or the other vector) it is used with."""


class InvalidVectorError(SteeringError, ValueError):
    """A vector holds NaN/Inf values or has an unusable shape."""


class InvalidArgumentError(SteeringError, ValueError):
    """An option has a value outside its allowed set."""


class EmptyPromptError(InvalidArgumentError):
    """A prompt that must contain text is empty (an :class:`InvalidArgumentError` too)."""


class InvalidCoefficientError(SteeringError, ValueError):
    """A steering coefficient is not a finite number."""


class ContextLengthError(SteeringError, ValueError):
    """Prompts (plus generated tokens) do not fit in the model's context."""


class PromptTooShortError(SteeringError, ValueError):
    """A prompt has fewer tokens than a front-aligned vector has positions (with ``short_prompt="error"``)."""


class VectorFileError(SteeringError, ValueError):
    """A file is missing, unreadable, or not a steering-lens vector file this version can read."""


class NonFiniteError(SteeringError, ArithmeticError):
    """Steering drove the model's activations or logits to Inf/NaN (an addition far beyond the residual's scale)."""


class CacheDamagedError(ModelFetchError):
    """A cached built-in model's files are missing, truncated or changed since they were fetched.

    The message names the file and the fix (``steer fetch NAME --force``).
    """


class FileAccessError(SteeringError, OSError):
    """The operating system refused a file operation (permission, no space, read-only, name too long, not a file).

    Also an :class:`OSError`, so code that catches ``OSError`` keeps working. The message names
    the path, the cause and the fix. ``path`` and ``cause`` are attributes too.
    """

    def __init__(self, message: str, *, path: "str | None" = None, cause: "str | None" = None) -> None:
        super().__init__(message)
        self.path = path
        self.cause = cause

    def __str__(self) -> str:  # OSError would otherwise format errno / strerror
        return str(self.args[0]) if self.args else ""


class DatasetError(InvalidArgumentError):
    """A dataset file or text is malformed (an :class:`InvalidArgumentError` too).

    The message names the file (or the in-memory source) and the line number, what was found,
    what the format allows and the fix (see :mod:`steering.datasets`).
    """


class SteeringWarning(UserWarning):
    """A warning about a steering setting that works but may not do what you expect."""


_LIBRARY_MARKERS = (
    "steering", "torch", "transformers", "transformer_lens", "contextlib", "tqdm", "jaxtyping", "beartype",
)


def warn_user(message: str) -> None:
    """Issue a :class:`SteeringWarning` attributed to the caller's own code.

    Steering warnings often fire inside a hook, deep in torch / transformers; the
    reported file and line are those of the first frame outside those libraries.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_user("careful")
        >>> caught[0].category.__name__
        'SteeringWarning'
    """
    level, frame = 2, sys._getframe(1)  # stacklevel 2 = the caller of warn_user
    while frame is not None:
        parts = os.path.normpath(frame.f_code.co_filename).split(os.sep)
        if not any(marker in parts for marker in _LIBRARY_MARKERS):
            break
        frame, level = frame.f_back, level + 1
    warnings.warn(message, SteeringWarning, stacklevel=level if frame is not None else 2)
