"""Atomic writes (steering.files): all or nothing, no temporary file left, ordinary permissions."""

import errno
import os
import socket
import stat
import tempfile
import types

import pytest

from conftest import within
from steering.errors import FileAccessError, InvalidArgumentError, SteeringError
from steering.files import (
    as_path, atomic_write, check_readable_file, check_writable_target, file_access_error, file_errors, write_text_atomic,
)

ROOT = os.geteuid() == 0  # root ignores file modes: permission cases are emulated through os.access


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_writes_and_replaces(tmp_path):
    target = tmp_path / "a.txt"
    assert write_text_atomic(target, "one") == target
    assert write_text_atomic(str(target), "two") == target
    assert target.read_text(encoding="utf-8") == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_writer_gets_a_temporary_path_beside_the_target(tmp_path):
    seen = []

    def write(tmp):
        seen.append(tmp)
        with open(tmp, "wb") as handle:
            handle.write(b"\x00\x01")

    out = atomic_write(tmp_path / "data.bin", write)
    assert out.read_bytes() == b"\x00\x01"
    assert os.path.dirname(seen[0]) == str(tmp_path) and os.path.basename(seen[0]).startswith(".data.bin.")
    assert not os.path.exists(seen[0])


def test_parents(tmp_path):
    target = tmp_path / "x" / "y" / "a.txt"
    with pytest.raises(FileAccessError, match=r"cannot write file '.*a\.txt': no such file or folder.*os\.makedirs") as caught:
        write_text_atomic(target, "no folder")
    assert caught.value.errno == errno.ENOENT and isinstance(caught.value, OSError)
    assert write_text_atomic(target, "made", parents=True).read_text(encoding="utf-8") == "made"


@pytest.mark.parametrize("error", [ValueError("broken writer"), KeyboardInterrupt()])
def test_failing_writer_keeps_the_old_file_and_leaves_no_temp(tmp_path, error):
    target = tmp_path / "a.txt"
    target.write_text("old", encoding="utf-8")

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, write)
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failing_replace_leaves_nothing_new(tmp_path, monkeypatch, error):
    def broken_replace(src, dst):
        raise error

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(type(error)):
        write_text_atomic(tmp_path / "new.txt", "text")
    assert list(tmp_path.iterdir()) == []


def test_writer_that_removes_its_file(tmp_path):
    """A writer that deletes the temporary file fails cleanly (nothing to clean up, no target)."""
    with pytest.raises(FileAccessError, match="no such file or folder"):
        atomic_write(tmp_path / "a.txt", os.unlink)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- file-system faults (issue 17, category 7)
CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "file name too long",
    errno.EDQUOT: "disk quota exceeded",
    errno.EIO: "input/output error",
    errno.EMFILE: "too many open files",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENOENT: "no such file or folder",
}


def deny(monkeypatch, path, mode):
    """Make ``path`` refuse ``mode`` (os.R_OK / os.W_OK): chmod when not root, else an emulated os.access."""
    if not ROOT:
        os.chmod(path, 0o555 if mode == os.W_OK else 0o000)  # put back by the restore_modes fixture
        return
    real = os.access

    def access(p, m, *args, **kwargs):
        if os.fspath(p) == os.fspath(path) and m & mode:
            return False
        return real(p, m, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


@pytest.fixture
def restore_modes(tmp_path):
    yield
    for p in [tmp_path, *tmp_path.rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)


@pytest.mark.parametrize("code", sorted(CAUSES))
def test_every_cause_is_named_with_a_fix(code):
    err = file_access_error(OSError(code, os.strerror(code), "/tmp/.x.tmp"), "/data/out.safetensors", "write")
    assert isinstance(err, FileAccessError) and isinstance(err, OSError) and isinstance(err, SteeringError)
    text = str(err)
    assert "'/data/out.safetensors'" in text and CAUSES[code] in text and "Fix: " in text and "allowed: " in text
    assert err.errno == code and err.path == "/data/out.safetensors" and CAUSES[code] in err.cause
    assert file_access_error(err, "/elsewhere") is err


def test_an_unknown_errno_still_names_path_and_fix():
    err = file_access_error(OSError("weird"), "/x/y", "read", "vector file")
    assert str(err).startswith("cannot read vector file '/x/y': the operating system refused (weird)")
    assert "Fix: " in str(err)


def test_file_errors_passes_steering_errors_and_other_exceptions():
    with pytest.raises(InvalidArgumentError):
        with file_errors("/x"):
            raise InvalidArgumentError("mine")
    with pytest.raises(ValueError):
        with file_errors("/x"):
            raise ValueError("not an OS error")
    with pytest.raises(FileAccessError, match=r"cannot write report '/x': permission denied"):
        with file_errors("/x", "write", "report"):
            raise PermissionError(errno.EACCES, "Permission denied")


@pytest.mark.parametrize("stage", ["mkstemp", "write", "fsync", "chmod", "replace"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EIO])
def test_an_os_refusal_at_any_stage_is_a_file_access_error(tmp_path, monkeypatch, stage, code):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old \x00 bytes")
    before = target.read_bytes()

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    def write(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"new content")
        if stage == "write":
            refuse()

    if stage == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    elif stage != "write":
        monkeypatch.setattr(os, stage, refuse)
    with pytest.raises(FileAccessError) as caught:
        atomic_write(target, write)
    text = str(caught.value)
    assert f"'{target}'" in text and CAUSES[code] in text and "Fix: " in text
    assert caught.value.errno == code
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temporary file left


def test_a_name_that_fits_gets_a_temporary_name_that_fits_too(tmp_path):
    name = "n" * 250 + ".txt"  # 254 bytes: the target fits in 255, ".{name}.XXXXXXXX.tmp" would not
    assert write_text_atomic(tmp_path / name, "ok").read_text(encoding="utf-8") == "ok"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_name_too_long_is_a_file_access_error(tmp_path):
    target = tmp_path / ("n" * 300)
    with pytest.raises(FileAccessError, match=r"file name too long.*shorter file name"):
        write_text_atomic(target, "x")
    with pytest.raises(FileAccessError, match=rf"cannot write output file '{tmp_path}/n+': file name too long"):
        check_writable_target(target)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- check_readable_file
def test_readable_file_is_returned(tmp_path):
    path = tmp_path / "v.bin"
    path.write_bytes(b"x")
    assert check_readable_file(path) == path and check_readable_file(str(path), "vector file") == path


def test_a_missing_file_is_not_reported_as_unreadable(tmp_path):
    with pytest.raises(FileAccessError, match=r"cannot read vector file '.*nope\.bin': no such file or folder.*os\.getcwd") as caught:
        check_readable_file(tmp_path / "nope.bin", "vector file")
    assert caught.value.errno == errno.ENOENT


def test_an_unreadable_file_is_not_reported_as_missing(tmp_path, monkeypatch, restore_modes):
    path = tmp_path / "secret.bin"
    path.write_bytes(b"x")
    deny(monkeypatch, path, os.R_OK)
    with pytest.raises(FileAccessError, match=rf"cannot read file '{path}': permission denied.*chmod u\+r") as caught:
        check_readable_file(path)
    assert "no such" not in str(caught.value) and caught.value.errno == errno.EACCES


def test_a_folder_is_refused_as_an_argument(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"is a folder, not a vector file; allowed: a file"):
        check_readable_file(tmp_path, "vector file")


@pytest.mark.parametrize("bad", [3, None, b"bytes", True])
def test_a_path_of_the_wrong_type_is_refused(bad):
    with pytest.raises(InvalidArgumentError, match=r"allowed: a str or os\.PathLike file path"):
        check_readable_file(bad)
    with pytest.raises(InvalidArgumentError, match=r"allowed: a str or os\.PathLike file path"):
        check_writable_target(bad)
    with pytest.raises(InvalidArgumentError):
        as_path("a\x00b")


def test_a_named_pipe_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    box = within(5.0, lambda: check_readable_file(fifo, "vector file"))
    assert isinstance(box.get("error"), FileAccessError), box
    assert f"'{fifo}'" in str(box["error"]) and "not a regular file (it is a named pipe (FIFO))" in str(box["error"])


def test_a_socket_and_a_device_are_refused(tmp_path):
    sock_path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(sock_path))
        with pytest.raises(FileAccessError, match=r"not a regular file \(it is a socket\)"):
            check_readable_file(sock_path)
        with pytest.raises(FileAccessError, match=r"not a regular file \(it is a socket\)"):
            check_writable_target(sock_path)
    finally:
        server.close()
    if os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode):
        with pytest.raises(FileAccessError, match=r"not a regular file \(it is a character device\)"):
            check_readable_file("/dev/null")


# ---------------------------------------------------------------- check_writable_target
def test_writable_target_is_returned(tmp_path):
    assert check_writable_target(tmp_path / "out.html") == tmp_path / "out.html"
    (tmp_path / "out.html").write_text("old")
    assert check_writable_target(str(tmp_path / "out.html"), "report") == tmp_path / "out.html"


def test_writable_target_refuses_folders_and_missing_folders(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"is a folder; allowed: a file path"):
        check_writable_target(tmp_path)
    with pytest.raises(InvalidArgumentError, match=r"the folder '.*nope' does not exist.*os\.makedirs"):
        check_writable_target(tmp_path / "nope" / "x.bin")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgumentError, match=r"'.*file' is a file, not a folder"):
        check_writable_target(tmp_path / "file" / "x.bin")


def test_writable_target_refuses_a_named_pipe(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    box = within(5.0, lambda: check_writable_target(fifo))
    assert isinstance(box.get("error"), FileAccessError), box
    assert "not a regular file (it is a named pipe (FIFO))" in str(box["error"])


def test_writable_target_refuses_a_folder_without_write_permission(tmp_path, monkeypatch, restore_modes):
    folder = tmp_path / "locked"
    folder.mkdir()
    deny(monkeypatch, folder, os.W_OK)
    with pytest.raises(FileAccessError, match=rf"cannot write output file '{folder}/x\.bin': permission denied") as caught:
        check_writable_target(folder / "x.bin")
    assert caught.value.errno == errno.EACCES and list(folder.iterdir()) == []


def test_writable_target_refuses_a_read_only_file_system(tmp_path, monkeypatch):
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: types.SimpleNamespace(f_flag=os.ST_RDONLY | real(p).f_flag))
    with pytest.raises(FileAccessError, match=r"read-only file system.*writable disk") as caught:
        check_writable_target(tmp_path / "x.bin")
    assert caught.value.errno == errno.EROFS
