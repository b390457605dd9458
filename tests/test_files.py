"""Atomic writes (steering.files): all or nothing, no temporary file left, ordinary permissions."""

import os

import pytest

from steering.files import atomic_write, write_text_atomic


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
    with pytest.raises(FileNotFoundError):
        write_text_atomic(target, "no folder")
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
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "a.txt", os.unlink)
    assert list(tmp_path.iterdir()) == []
