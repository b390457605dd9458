"""Atomic file writes: a file is either fully written or left exactly as it was.

:func:`atomic_write` has the caller write a temporary file beside the target (same folder,
so same file system), flushes it to disk, gives it the mode an ordinary new file gets (``0o666``
less the umask — temporary files start private) and moves it over the target with
``os.replace``. If anything fails — an exception in the writer, a full disk, Ctrl-C — the
temporary file is removed and the target is untouched.

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_text_atomic(folder / "notes.txt", "hello").read_text(encoding="utf-8")
    'hello'
    >>> def broken(tmp):
    ...     raise ValueError("no")
    >>> try:
    ...     atomic_write(folder / "notes.txt", broken)
    ... except ValueError:
    ...     pass
    >>> (folder / "notes.txt").read_text(encoding="utf-8"), sorted(p.name for p in folder.iterdir())
    ('hello', ['notes.txt'])
"""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Union

__all__ = ["atomic_write", "write_text_atomic"]

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[str], None], *, parents: bool = False) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it into place.

    Args:
        path: The file to create or replace.
        write: Writes the content to the path it is given (a ``str``); it may open, truncate
            or rewrite that file as it likes.
        parents: Create missing parent folders first (otherwise a missing folder raises
            ``FileNotFoundError``).

    Returns:
        ``path`` as a ``pathlib.Path``.

    Raises:
        Whatever ``write``, the file system or the user (``KeyboardInterrupt``) raises; the
        temporary file is removed first and ``path`` keeps its old content.

    Example:
        >>> import pathlib, tempfile
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "sub" / "data.bin"
        >>> atomic_write(out, lambda tmp: pathlib.Path(tmp).write_bytes(b"\\x00\\x01"), parents=True).read_bytes()
        b'\\x00\\x01'
    """
    target = Path(os.fspath(path))
    if parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:  # the bytes reach the disk before the rename makes them visible
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; the result is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def write_text_atomic(path: PathLike, text: str, *, encoding: str = "utf-8", parents: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`).

    Args:
        path: The file to create or replace.
        text: Its new content.
        encoding: The text encoding.
        parents: Create missing parent folders first.

    Returns:
        ``path`` as a ``pathlib.Path``.

    Example:
        >>> import pathlib, tempfile
        >>> out = write_text_atomic(pathlib.Path(tempfile.mkdtemp()) / "a" / "b.txt", "é", parents=True)
        >>> out.read_text(encoding="utf-8")
        'é'
    """
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding=encoding), parents=parents)
