"""The ``steer`` command's standard streams: output any terminal or pipe can take, quiet closed pipes.

* :func:`ascii_fallback` (registered as the codec error handler ``"steer-ascii"``) writes a
  character the stream's encoding lacks as its ASCII look-alike (``"−"`` → ``"-"``, ``"×"``
  → ``"x"``, ``"…"`` → ``"..."``, ``"→"`` → ``"->"``) or, failing that, as a backslash escape
  (``"ü"`` → ``"\\xfc"``), so ``PYTHONIOENCODING=ascii steer …`` prints instead of crashing;
  :func:`protect_streams` puts it on ``sys.stdout`` and ``sys.stderr``.
* :func:`silence_stdout` points the stdout file descriptor at the null device once the
  reader has gone (``steer models | head -1``), so the interpreter's last flush cannot fail.

Light (no torch): :func:`steering.cli.main` uses it before it parses the arguments.

Example:
    >>> "5 − 3 × 2 … ü".encode("ascii", errors=ERRORS)
    b'5 - 3 x 2 ... \\\\xfc'
"""

import codecs
import contextlib
import os
import sys
from typing import Any

__all__ = ["ERRORS", "ASCII_LOOKALIKES", "ascii_fallback", "protect_streams", "flush_stdout", "silence_stdout",
           "CLOSED_PIPE_STATUS"]

#: Name of the codec error handler registered by this module.
ERRORS = "steer-ascii"

#: Exit status when stdout's reader has gone: 128 + SIGPIPE (13), as ``yes | head -1`` reports.
CLOSED_PIPE_STATUS = 141

#: ASCII stand-ins for the non-ASCII characters the toolkit's own output uses.
ASCII_LOOKALIKES = {
    "−": "-", "–": "-", "—": "-", "‐": "-", "‑": "-", "×": "x", "·": ".", "…": "...", "→": "->", "←": "<-",
    "↔": "<->", "≥": ">=", "≤": "<=", "≠": "!=", "≈": "~", "±": "+/-", "‘": "'", "’": "'", "“": '"', "”": '"',
    "•": "*", "°": " deg", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "✓": "v", "✗": "x", "∞": "inf",
    "²": "^2", "√": "sqrt", "‖": "||", "∈": " in ",
}


def ascii_fallback(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: ASCII look-alikes, else backslash escapes, for unencodable characters.

    Args:
        err: The ``UnicodeEncodeError`` the codec raised (any other error is re-raised).

    Returns:
        ``(replacement, position to resume at)``, as :func:`codecs.register_error` expects.

    Example:
        >>> "a → b".encode("latin-1", errors=ERRORS), "é".encode("latin-1", errors=ERRORS)
        (b'a -> b', b'\\xe9')
    """
    if not isinstance(err, UnicodeEncodeError):
        raise err
    text = err.object[err.start:err.end]
    out = []
    for char in text:
        if char in ASCII_LOOKALIKES:
            out.append(ASCII_LOOKALIKES[char])
        else:
            out.append(char.encode("ascii", errors="backslashreplace").decode("ascii"))
    return "".join(out), err.end


codecs.register_error(ERRORS, ascii_fallback)


def protect_streams(*streams: Any) -> None:
    """Let ``streams`` (default ``sys.stdout`` and ``sys.stderr``) write any character.

    A text stream whose error handler is ``"strict"`` (stdout by default) gets
    :data:`ERRORS`; others (stderr's ``"backslashreplace"`` included) get it too, since it is
    the more readable of the two. Streams that cannot be reconfigured (``io.StringIO``,
    doctest's spoof) are left as they are. Characters the encoding has are written unchanged.

    Example:
        >>> import io
        >>> out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
        >>> protect_streams(out)
        >>> _ = out.write("c = 5 → −0.3"); out.flush(); out.buffer.getvalue()
        b'c = 5 -> -0.3'
    """
    for stream in streams or (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None or getattr(stream, "errors", None) not in ("strict", "backslashreplace"):
            continue
        with contextlib.suppress(ValueError, OSError):  # a closed or detached stream
            reconfigure(errors=ERRORS)


def silence_stdout() -> None:
    """Point the stdout file descriptor at the null device (after its reader has gone).

    Output still buffered in ``sys.stdout`` then goes nowhere instead of raising
    ``BrokenPipeError`` in the interpreter's final flush. A stdout without a file
    descriptor (pytest's capture, a ``StringIO``) is left alone.

    Example:
        >>> silence_stdout()  # under doctest, stdout has no file descriptor: nothing happens
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def flush_stdout() -> bool:
    """Flush ``sys.stdout``; ``False`` (after :func:`silence_stdout`) when its reader has gone.

    Example:
        >>> flush_stdout()
        True
    """
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        return False
    except (AttributeError, ValueError):  # no stdout, or a closed one
        pass
    return True
