"""File access for every read and write: atomic writes, checked paths, operating-system errors in words.

:func:`atomic_write` has the caller write a temporary file beside the target (same folder,
so same file system), flushes it to disk, gives it the mode an ordinary new file gets (``0o666``
less the umask — temporary files start private) and moves it over the target with
``os.replace``. If anything fails — an exception in the writer, a full disk, Ctrl-C — the
temporary file is removed and the target is untouched.

An ``OSError`` the operating system raises on a path (permission denied, no space left, read-only
file system, file name too long …) becomes a :class:`~steering.errors.FileAccessError` naming the
path, the cause in words and the fix (:func:`file_access_error`, :func:`file_errors`).
:func:`check_readable_file` and :func:`check_writable_target` check a path *before* any work: an
input must be an existing regular file the process may read (a named pipe is refused without
opening it, since opening one blocks), an output must be a file name in an existing, writable folder.

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
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Union

from .errors import FileAccessError, InvalidArgumentError, SteeringError

__all__ = [
    "atomic_write", "write_text_atomic", "file_access_error", "file_errors", "check_readable_file",
    "check_writable_target", "as_path",
]

PathLike = Union[str, "os.PathLike[str]"]
#: What was being done to the path when the operating system refused.
Action = Literal["read", "write"]

_CHECK_PERMS = "check the permissions with ls -l"
# errno -> (cause in words, fix when reading, fix when writing)
_CAUSES: dict[int, tuple[str, str, str]] = {
    errno.EACCES: ("permission denied",
                   f"make it readable (chmod u+r FILE; {_CHECK_PERMS}) or copy it somewhere you can read",
                   f"write into a folder you own (e.g. your home folder), or {_CHECK_PERMS} and chmod u+w FOLDER"),
    errno.ENOSPC: ("no space left on device", "free disk space (df -h shows it) and try again",
                   "free disk space (df -h shows it) or write to another disk"),
    errno.EROFS: ("read-only file system", "copy the file to a writable folder first",
                  "write to a folder on a writable disk, e.g. your home folder or /tmp"),
    errno.ENAMETOOLONG: ("file name too long", "use a shorter path (move or rename the file)",
                         "use a shorter file name (most file systems allow 255 bytes per name)"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "check the folders in the path",
                    "check the folders in the path; each must be a folder"),
    errno.EISDIR: ("it is a folder", "pass a file inside the folder", "pass a file name inside the folder"),
    errno.ENOENT: ("no such file or folder", "check the path and the working directory (os.getcwd())",
                   "create the folder first (os.makedirs(folder, exist_ok=True)) and check the path"),
    errno.EMFILE: ("too many open files", "close files you no longer need, or raise the limit (ulimit -n)",
                   "close files you no longer need, or raise the limit (ulimit -n)"),
    errno.EIO: ("input/output error (the disk or network share failed)", "check the disk (dmesg) and try again",
                "check the disk (dmesg), or write to another disk"),
    errno.ELOOP: ("too many levels of symbolic links", "check the symbolic links in the path",
                  "check the symbolic links in the path"),
    errno.EFBIG: ("file too large for this file system", "copy it to another disk",
                  "write to a disk whose file system allows larger files"),
    errno.EBUSY: ("the file is busy", "close the program that uses it and try again",
                  "close the program that uses it and try again"),
    errno.EEXIST: ("a file of that name already exists", "check the path",
                   "remove the file that is in the way, or choose another name"),
    errno.ENXIO: ("not a regular file (a device or named pipe with no other end)", "pass a regular file",
                  "choose a regular file name"),
}
_CAUSES[errno.EPERM] = ("operation not permitted",) + _CAUSES[errno.EACCES][1:]
_CAUSES[errno.ENFILE] = _CAUSES[errno.EMFILE]
_CAUSES[errno.ETXTBSY] = _CAUSES[errno.EBUSY]
if hasattr(errno, "EDQUOT"):
    _CAUSES[errno.EDQUOT] = ("disk quota exceeded", "free space in your quota and try again",
                             "delete files you no longer need, or write to another disk")
_ALLOWED = {"read": "an existing regular file that this process may read",
            "write": "a file name in an existing, writable folder on a disk with free space"}
_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))
# flags that keep a check from blocking on a named pipe that appeared after the stat
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def as_path(path: Any, what: str = "file") -> Path:
    """``path`` as a ``pathlib.Path`` (``~`` expanded), or :class:`~steering.errors.InvalidArgumentError`.

    Example:
        >>> as_path(3, "vector file")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: vector file path=3 is a int; allowed: a str or os.PathLike file path. Fix: pass e.g. 'vector.safetensors'.
    """
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"{what} path={path!r} is a {type(path).__name__}; allowed: a str or os.PathLike file path. "
            "Fix: pass e.g. 'vector.safetensors'."
        )
    text = os.fspath(path)
    if not isinstance(text, str) or "\x00" in text or not text:
        raise InvalidArgumentError(
            f"{what} path={path!r} is not a usable file path; allowed: a non-empty str or os.PathLike file path "
            "without NUL bytes. Fix: pass e.g. 'vector.safetensors'."
        )
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~user of an unknown user: keep the path as written
        return Path(text)


def file_access_error(err: OSError, path: PathLike, action: Action = "write", what: str = "file") -> FileAccessError:
    """The :class:`~steering.errors.FileAccessError` for ``err``, raised while doing ``action`` on ``path``.

    The message names the path, the cause in words (from ``err.errno``: permission denied, no
    space left on device, read-only file system, file name too long …) and the fix. ``errno``,
    ``strerror`` and ``filename`` are copied, so code that inspects the ``OSError`` keeps working.
    A ``FileAccessError`` is returned unchanged.

    Example:
        >>> import errno
        >>> err = file_access_error(OSError(errno.ENOSPC, "No space left on device"), "/data/v.safetensors")
        >>> print(err)
        cannot write file '/data/v.safetensors': no space left on device ([Errno 28] No space left on device); allowed: a file name in an existing, writable folder on a disk with free space. Fix: free disk space (df -h shows it) or write to another disk.
        >>> err.cause, err.errno, isinstance(err, OSError)
        ('no space left on device', 28, True)
    """
    if isinstance(err, FileAccessError):
        return err
    cause, fix_read, fix_write = _CAUSES.get(
        err.errno, ("the operating system refused", "check the path and the disk, then try again",
                    "check the path, the folder's permissions and the free disk space, then try again"))
    fix = fix_read if action == "read" else fix_write
    detail = str(err) or type(err).__name__
    out = FileAccessError(
        f"cannot {action} {what} '{os.fspath(path)}': {cause} ({detail}); allowed: {_ALLOWED[action]}. Fix: {fix}.",
        path=os.fspath(path), cause=cause,
    )
    out.errno, out.strerror, out.filename = err.errno, err.strerror, os.fspath(path)
    return out


def _refusal(code: int, path: PathLike, action: Action, what: str) -> FileAccessError:
    return file_access_error(OSError(code, os.strerror(code)), path, action, what)


@contextlib.contextmanager
def file_errors(path: PathLike, action: Action = "read", what: str = "file") -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into :func:`file_access_error` for ``path``.

    :class:`~steering.errors.SteeringError` passes unchanged.

    Example:
        >>> with file_errors("/no/such/folder/x.txt", "read"):
        ...     open("/no/such/folder/x.txt", "rb")
        Traceback (most recent call last):
        ...
        steering.errors.FileAccessError: cannot read file '/no/such/folder/x.txt': no such file or folder ([Errno 2] No such file or directory: '/no/such/folder/x.txt'); allowed: an existing regular file that this process may read. Fix: check the path and the working directory (os.getcwd()).
    """
    try:
        yield
    except SteeringError:
        raise
    except OSError as err:
        raise file_access_error(err, path, action, what) from err


def _not_regular(path: Path, mode: int, action: Action, what: str) -> FileAccessError:
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    cause = f"not a regular file (it is {kind})"
    fix = "pass a regular file" if action == "read" else "choose a file name that is not a pipe, socket or device"
    out = FileAccessError(
        f"cannot {action} {what} '{path}': {cause}; allowed: {_ALLOWED[action]} (a regular file). Fix: {fix}.",
        path=str(path), cause=cause,
    )
    out.filename = str(path)
    return out


def check_readable_file(path: Any, what: str = "file") -> Path:
    """An existing regular file this process may read, as a ``pathlib.Path`` (checked before opening it).

    A named pipe, socket or device is refused from ``os.stat`` alone (opening a named pipe
    blocks until a writer appears); "does not exist" and "exists but may not be read" are told apart.

    Args:
        path: The file, a str or ``os.PathLike`` (anything else is refused with a clear error).
        what: How messages name the file, e.g. ``"vector file"``.

    Raises:
        InvalidArgumentError: ``path`` is not a str / ``os.PathLike``, or it is a folder.
        FileAccessError: it does not exist, is not a regular file, or may not be read
            (permission denied, name too long …).

    Example:
        >>> check_readable_file("/no/such/v.safetensors", "vector file")
        Traceback (most recent call last):
        ...
        steering.errors.FileAccessError: cannot read vector file '/no/such/v.safetensors': no such file or folder ([Errno 2] No such file or directory: '/no/such/v.safetensors'); allowed: an existing regular file that this process may read. Fix: check the path and the working directory (os.getcwd()).
        >>> check_readable_file("/", "vector file")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: '/' is a folder, not a vector file; allowed: a file. Fix: pass the file inside it.
    """
    source = as_path(path, what)
    with file_errors(source, "read", what):
        info = os.stat(source)
    if stat.S_ISDIR(info.st_mode):
        raise InvalidArgumentError(f"'{source}' is a folder, not a {what}; allowed: a file. Fix: pass the file inside it.")
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(source, info.st_mode, "read", what)
    if not os.access(source, os.R_OK):
        raise _refusal(errno.EACCES, source, "read", what)
    with file_errors(source, "read", what):
        os.close(os.open(source, os.O_RDONLY | _NONBLOCK))
    return source


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _is_read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1))
    except (OSError, AttributeError):
        return False


def check_writable_target(path: Any, what: str = "output file") -> Path:
    """A file path that can be written, as a ``pathlib.Path``: checked before any work is done.

    The folder must exist, be a folder and be writable (not on a read-only file system), the name
    must fit the file system, and an existing target must be a regular file (not a folder, pipe,
    socket or device). The file itself is replaced atomically later (:func:`atomic_write`).

    Args:
        path: The output file, a str or ``os.PathLike`` (anything else is refused with a clear error).
        what: How messages name the file, e.g. ``"report page"``.

    Raises:
        InvalidArgumentError: ``path`` is not a str / ``os.PathLike``, is a folder, or its folder
            does not exist.
        FileAccessError: the folder may not be written (permission, read-only file system), the
            name is too long, or the target is not a regular file.

    Example:
        >>> check_writable_target("/no/such/folder/v.safetensors")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: cannot write '/no/such/folder/v.safetensors': the folder '/no/such/folder' does not exist; allowed: a path in an existing folder. Fix: create it first with os.makedirs('/no/such/folder', exist_ok=True).
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> check_writable_target(folder / "v.safetensors") == folder / "v.safetensors"
        True
        >>> check_writable_target(folder / ("x" * 300))
        Traceback (most recent call last):
        ...
        steering.errors.FileAccessError: cannot write output file '...xxx': file name too long ...
    """
    target = as_path(path, what)
    try:
        info = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        info = None
    except OSError as err:
        raise file_access_error(err, target, "write", what) from err
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise InvalidArgumentError(
            f"{what} path '{target}' is a folder; allowed: a file path. Fix: pass a file name inside it, "
            f"e.g. '{target / ('out' + target.suffix)}'."
        )
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise _not_regular(target, info.st_mode, "write", what)
    parent = target.parent
    if not parent.is_dir():
        raise InvalidArgumentError(
            f"cannot write '{target}': the folder '{parent}' does not exist; allowed: a path in an existing folder. "
            f"Fix: create it first with os.makedirs({str(parent)!r}, exist_ok=True)."
            if not parent.exists() else
            f"cannot write '{target}': '{parent}' is a file, not a folder; allowed: a path in an existing folder. "
            "Fix: choose another folder."
        )
    if len(os.fsencode(target.name)) > _name_max(parent):
        raise _refusal(errno.ENAMETOOLONG, target, "write", what)
    if _is_read_only(parent):
        raise _refusal(errno.EROFS, target, "write", what)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _refusal(errno.EACCES, target, "write", what)
    return target


def atomic_write(path: PathLike, write: Callable[[str], None], *, parents: bool = False) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it into place.

    Args:
        path: The file to create or replace.
        write: Writes the content to the path it is given (a ``str``); it may open, truncate
            or rewrite that file as it likes.
        parents: Create missing parent folders first (otherwise a missing folder raises
            :class:`~steering.errors.FileAccessError`, cause "no such file or folder").

    Returns:
        ``path`` as a ``pathlib.Path``.

    Raises:
        FileAccessError: the operating system refused (no space left, read-only file system,
            permission denied …) while creating, writing, flushing or moving the temporary file;
            the message names ``path`` and the cause.
        Whatever else ``write`` or the user (``KeyboardInterrupt``) raises. In every case the
        temporary file is removed first and ``path`` keeps its old content.

    Example:
        >>> import pathlib, tempfile
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "sub" / "data.bin"
        >>> atomic_write(out, lambda tmp: pathlib.Path(tmp).write_bytes(b"\\x00\\x01"), parents=True).read_bytes()
        b'\\x00\\x01'
    """
    target = Path(os.fspath(path))
    with file_errors(target, "write"):
        if parents:
            target.parent.mkdir(parents=True, exist_ok=True)
        # the temporary name must fit the file system's limit whenever the target's does
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:120]}.", suffix=".tmp", dir=target.parent)
    try:
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as handle:  # the bytes reach the disk before the rename makes them visible
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; the result is an ordinary file
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, SteeringError):
            raise file_access_error(err, target, "write") from err
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

    Raises:
        FileAccessError: the operating system refused the write (see :func:`atomic_write`).

    Example:
        >>> import pathlib, tempfile
        >>> out = write_text_atomic(pathlib.Path(tempfile.mkdtemp()) / "a" / "b.txt", "é", parents=True)
        >>> out.read_text(encoding="utf-8")
        'é'
    """
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding=encoding), parents=parents)
