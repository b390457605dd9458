"""Saving and loading steering vectors as ``.safetensors`` files.

One file holds one vector (:meth:`SteeringVector.save` / :meth:`SteeringVector.load`)
or a set of vectors, one per hook point (:func:`save_vectors` / :func:`load_vectors`;
a vector spread over several layers is a plain list of vectors). The tensors are
stored by ``safetensors`` and everything else as JSON in the file's header
metadata, so loading never unpickles anything.

File layout (format 1):

* tensors: ``"vector"`` for a single vector; the hook name (e.g.
  ``"blocks.1.hook_resid_pre"``) for each vector of a set;
* header metadata ``"steering_lens"``: a JSON object ``{"format": 1,
  "steering_version": "0.1.0", "kind": "vector" | "set", "vectors": [...]}``, one
  record per tensor with ``key``, ``hook_name``, ``layer``, ``hook``, ``model_name``,
  ``d_model``, ``method``, ``prompts``, ``tokens``, ``pad``, ``weight_mode``, ``meta``,
  ``shape`` and ``dtype``.

Writes are atomic: the file is written next to its destination under a temporary
name and moved into place with ``os.replace``, so a failure never leaves a partial
file (and never destroys an older file of the same name).

A loaded vector still carries the name of the model it came from, and
:meth:`SteeringVector.check_compatible` (called when it is applied) refuses it on
another model; :meth:`SteeringVector.retarget` is the deliberate override.

Example:
    >>> import os, tempfile, torch
    >>> from steering import SteeringVector
    >>> from steering.persist import load_vectors, save_vectors
    >>> vecs = [SteeringVector(torch.ones(64), hook_name=f"blocks.{l}.hook_resid_post") for l in (0, 1)]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = save_vectors(vecs, os.path.join(folder, "set.safetensors"))
    ...     loaded = load_vectors(path)
    >>> [v.hook_name for v in loaded]
    ['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import torch

from .errors import InvalidArgumentError, SteeringError
from .vectors import SteeringVector, _parse_hook_name

__all__ = ["save_vectors", "load_vectors", "VectorFileError", "FORMAT_VERSION"]

#: Version of the file layout this module writes; files with a larger number are refused.
FORMAT_VERSION = 1
_METADATA_KEY = "steering_lens"
_SINGLE_KEY = "vector"
_FLOAT_DTYPES = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}

PathLike = Union[str, os.PathLike]


class VectorFileError(SteeringError, ValueError):
    """A file is missing, unreadable, or not a steering-lens vector file this version can read."""


# ---------------------------------------------------------------------------- paths and atomic writes
def _check_path_type(path: Any) -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"path={path!r} is a {type(path).__name__}; allowed: a str or os.PathLike file path. "
            "Fix: pass e.g. 'vector.safetensors'."
        )
    return Path(os.fspath(path)).expanduser()


def _output_path(path: Any) -> Path:
    target = _check_path_type(path)
    if target.is_dir():
        raise InvalidArgumentError(
            f"path '{target}' is a folder; allowed: a file path. Fix: pass a file name inside it, "
            f"e.g. '{target / 'vector.safetensors'}'."
        )
    parent = target.parent
    if not parent.is_dir():
        raise InvalidArgumentError(
            f"cannot write '{target}': the folder '{parent}' does not exist; allowed: a path in an existing "
            f"folder. Fix: create it first with os.makedirs({str(parent)!r}, exist_ok=True)."
        )
    return target


def _input_path(path: Any, what: str = "vector file") -> Path:
    source = _check_path_type(path)
    if not source.exists():
        raise VectorFileError(
            f"no {what} at '{source}' (the path does not exist); allowed: a file written by steering-lens. "
            "Fix: check the path and the working directory (os.getcwd())."
        )
    if source.is_dir():
        raise VectorFileError(
            f"'{source}' is a folder, not a {what}; allowed: a file. Fix: pass the file inside it."
        )
    return source


def _atomic_write(target: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``target``, then move it into place.

    On any failure the temporary file is removed and ``target`` is left as it was.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:  # the bytes reach the disk before the rename makes them visible
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


# ---------------------------------------------------------------------------- metadata
def _check_json(value: Any, where: str) -> Any:
    """Return ``value`` as plain JSON data (tuples become lists), or raise naming the bad part."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_check_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(
                    f"{where} has the key {key!r} ({type(key).__name__}); allowed: str keys only (the metadata "
                    f"is stored as JSON). Fix: use str({key!r}) as the key."
                )
            out[key] = _check_json(item, f"{where}[{key!r}]")
        return out
    raise InvalidArgumentError(
        f"{where} holds a {type(value).__name__} ({value!r:.60}); allowed: JSON values (str, int, float, bool, "
        "None, lists and dicts with str keys), since the metadata is stored as JSON. Fix: convert it, e.g. "
        "with .item() / .tolist() / float(...), or leave it out before saving."
    )


def _record(vec: SteeringVector, key: str, where: str) -> dict[str, Any]:
    return {
        "key": key,
        "hook_name": vec.hook_name,
        "layer": vec.layer,
        "hook": vec.hook,
        "model_name": _check_json(vec.model_name, f"{where}.model_name"),
        "d_model": vec.d_model,
        "method": _check_json(vec.method, f"{where}.method"),
        "prompts": _check_json(vec.prompts, f"{where}.prompts"),
        "tokens": _check_json(vec.tokens, f"{where}.tokens"),
        "pad": _check_json(vec.pad, f"{where}.pad"),
        "weight_mode": vec.weight_mode,
        "meta": _check_json(vec.meta, f"{where}.meta"),
        "shape": list(vec.tensor.shape),
        "dtype": str(vec.dtype).removeprefix("torch."),
    }


def _check_vector(vec: Any, where: str) -> SteeringVector:
    if not isinstance(vec, SteeringVector):
        raise InvalidArgumentError(
            f"{where} is a {type(vec).__name__}; allowed: a SteeringVector. Fix: wrap the tensor in "
            "SteeringVector(tensor, hook_name=...)."
        )
    if vec.dtype not in _FLOAT_DTYPES.values():
        raise InvalidArgumentError(
            f"{where} has dtype {vec.dtype}; allowed: {', '.join(_FLOAT_DTYPES)}. Fix: cast it with "
            "vec.to(torch.float32)."
        )
    vec.check_finite()
    return vec


def _write(vectors: list[SteeringVector], keys: list[str], kind: str, path: Any) -> Path:
    from safetensors.torch import save_file

    from . import __version__

    target = _output_path(path)
    records = [_record(v, k, f"vector {i} ({v.hook_name})") for i, (v, k) in enumerate(zip(vectors, keys))]
    header = {"format": FORMAT_VERSION, "steering_version": __version__, "kind": kind, "vectors": records}
    metadata = {_METADATA_KEY: json.dumps(header, ensure_ascii=False)}
    # own, contiguous CPU copies: safetensors refuses tensors that share storage
    tensors = {k: v.tensor.detach().to("cpu").contiguous().clone() for v, k in zip(vectors, keys)}
    return _atomic_write(target, lambda tmp: save_file(tensors, tmp, metadata=metadata))


# ---------------------------------------------------------------------------- reading
def _read(path: Any, device: Union[str, torch.device]) -> list[SteeringVector]:
    from safetensors import safe_open

    source = _input_path(path)
    try:
        with safe_open(str(source), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            keys = set(handle.keys())
            header = _parse_header(source, metadata)
            tensors = {}
            for i, rec in enumerate(header["vectors"]):
                key = rec.get("key") if isinstance(rec, dict) else None
                if key not in keys:
                    raise VectorFileError(
                        f"'{source}' is damaged: record {i} names tensor {key!r}, which the file does not hold "
                        f"(it holds {sorted(keys)}); allowed: a file written by steering-lens. Fix: save the vector "
                        "again."
                    )
                tensors[key] = handle.get_tensor(key)
    except SteeringError:
        raise
    except Exception as err:  # safetensors raises its own error type for a malformed header
        raise VectorFileError(
            f"'{source}' is not a readable .safetensors file ({type(err).__name__}: {err}); allowed: a file written "
            "by SteeringVector.save or steering.persist.save_vectors. Fix: check that the path points at such a "
            "file and that it was copied completely."
        ) from err
    return [_from_record(source, i, rec, tensors[rec["key"]]) for i, rec in enumerate(header["vectors"])]


def _parse_header(source: Path, metadata: dict[str, str]) -> dict[str, Any]:
    raw = metadata.get(_METADATA_KEY)
    if raw is None:
        raise VectorFileError(
            f"'{source}' is a .safetensors file without steering-lens metadata (header keys: "
            f"{sorted(metadata) or 'none'}); allowed: a file written by SteeringVector.save or save_vectors. "
            "Fix: for a bare tensor file, read it with safetensors.torch.load_file and wrap the tensor in "
            "SteeringVector(tensor, hook_name=...)."
        )
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as err:
        raise VectorFileError(
            f"'{source}' has steering-lens metadata that is not valid JSON ({err}); allowed: a file written by "
            "steering-lens. Fix: save the vector again."
        ) from err
    if not isinstance(header, dict):
        raise VectorFileError(f"'{source}' has steering-lens metadata that is not a JSON object. Fix: save the vector again.")
    version = header.get("format")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise VectorFileError(
            f"'{source}' has format={version!r} in its steering-lens metadata; allowed: an integer 1..{FORMAT_VERSION}. "
            "Fix: save the vector again with this version."
        )
    if version > FORMAT_VERSION:
        raise VectorFileError(
            f"'{source}' was written by steering-lens {header.get('steering_version', '?')} in file format {version}; "
            f"this steering-lens reads formats up to {FORMAT_VERSION}. Fix: upgrade steering-lens "
            "(pip install -U steering-lens)."
        )
    vectors = header.get("vectors")
    if not isinstance(vectors, list) or not vectors:
        raise VectorFileError(
            f"'{source}' lists no vectors in its steering-lens metadata (vectors={vectors!r:.60}). Fix: save the "
            "vector again."
        )
    return header


def _from_record(source: Path, i: int, rec: dict[str, Any], tensor: torch.Tensor) -> SteeringVector:
    def damaged(detail: str) -> VectorFileError:
        return VectorFileError(
            f"'{source}' is inconsistent: vector {i} {detail}; allowed: a file written by steering-lens and not "
            "edited since. Fix: save the vector again."
        )

    for name, kind in (("hook_name", str), ("weight_mode", str), ("method", str), ("shape", list), ("dtype", str)):
        if not isinstance(rec.get(name), kind):
            raise damaged(f"has {name}={rec.get(name)!r}")
    if list(tensor.shape) != rec["shape"] or str(tensor.dtype).removeprefix("torch.") != rec["dtype"]:
        raise damaged(
            f"is recorded as {rec['dtype']} {rec['shape']} but its tensor is "
            f"{str(tensor.dtype).removeprefix('torch.')} {list(tensor.shape)}"
        )
    layer, hook = _parse_hook_name(rec["hook_name"])
    if ("layer" in rec and rec["layer"] != layer) or ("hook" in rec and rec["hook"] != hook):
        raise damaged(f"has layer={rec.get('layer')!r}, hook={rec.get('hook')!r} that do not match {rec['hook_name']!r}")
    if "d_model" in rec and rec["d_model"] != int(tensor.shape[-1]):
        raise damaged(f"has d_model={rec['d_model']!r} but its tensor is {int(tensor.shape[-1])} wide")
    return SteeringVector(
        tensor=tensor,
        hook_name=rec["hook_name"],
        model_name=rec.get("model_name"),
        method=rec["method"],
        prompts=rec.get("prompts") or {},
        tokens=rec.get("tokens") or {},
        pad=rec.get("pad"),
        weight_mode=rec["weight_mode"],
        meta=rec.get("meta") or {},
    )


# ---------------------------------------------------------------------------- public API
def save_vector(vector: SteeringVector, path: PathLike) -> Path:
    """Write one vector to a ``.safetensors`` file (what :meth:`SteeringVector.save` calls).

    Example:
        >>> import os, tempfile, torch
        >>> v = SteeringVector(torch.ones(2, 64), hook_name="blocks.0.hook_resid_pre")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     save_vector(v, os.path.join(folder, "v.safetensors")).name
        'v.safetensors'
    """
    return _write([_check_vector(vector, "the vector")], [_SINGLE_KEY], "vector", path)


def load_vector(path: PathLike, *, device: Union[str, torch.device] = "cpu") -> SteeringVector:
    """Read the vector of a file written by :func:`save_vector` (what :meth:`SteeringVector.load` calls).

    A set file written by :func:`save_vectors` is accepted when it holds exactly one vector.

    Example:
        >>> import os, tempfile, torch
        >>> v = SteeringVector(torch.ones(64), hook_name="blocks.0.hook_resid_pre")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     w = load_vector(save_vector(v, os.path.join(folder, "v.safetensors")))
        >>> torch.equal(w.tensor, v.tensor)
        True
    """
    vectors = _read(path, device)
    if len(vectors) != 1:
        raise VectorFileError(
            f"'{path}' holds a set of {len(vectors)} vectors ({', '.join(v.hook_name for v in vectors)}); "
            "allowed here: a file with one vector. Fix: read it with steering.persist.load_vectors(path)."
        )
    return vectors[0]


def save_vectors(vectors: Union[SteeringVector, Sequence[SteeringVector]], path: PathLike) -> Path:
    """Write a set of vectors, one per hook point, to one ``.safetensors`` file.

    A vector spread over several layers is a list of :class:`SteeringVector`, one per
    hook; each tensor is stored under its hook name, with its metadata as JSON in the
    header. The write is atomic.

    Args:
        vectors: The vectors (or a single one). Hook names must be distinct.
        path: Destination file, e.g. ``"honesty.safetensors"``; its folder must exist.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        InvalidArgumentError: an empty list, two vectors at the same hook, an item that
            is not a vector, or metadata that is not JSON data.

    Example:
        >>> import os, tempfile, torch
        >>> a = SteeringVector(torch.ones(64), hook_name="blocks.1.hook_resid_pre")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     save_vectors([a, 2 * a], os.path.join(folder, "twice.safetensors"))
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: vectors 0 and 1 are both at hook 'blocks.1.hook_resid_pre'; allowed: one vector per hook point in a set. Fix: combine them first (e.g. a + b), or save them to separate files.
    """
    if isinstance(vectors, SteeringVector):
        vectors = [vectors]
    if isinstance(vectors, (str, bytes)) or not isinstance(vectors, Sequence):
        raise InvalidArgumentError(
            f"vectors is a {type(vectors).__name__}; allowed: a SteeringVector or a list of them. "
            "Fix: pass [vec1, vec2, ...]."
        )
    vectors = [_check_vector(v, f"vectors[{i}]") for i, v in enumerate(vectors)]
    if not vectors:
        raise InvalidArgumentError("vectors is empty; allowed: at least one SteeringVector. Fix: pass [vec].")
    seen: dict[str, int] = {}
    for i, vec in enumerate(vectors):
        if vec.hook_name in seen:
            raise InvalidArgumentError(
                f"vectors {seen[vec.hook_name]} and {i} are both at hook {vec.hook_name!r}; allowed: one vector per "
                "hook point in a set. Fix: combine them first (e.g. a + b), or save them to separate files."
            )
        seen[vec.hook_name] = i
    return _write(vectors, [v.hook_name for v in vectors], "set", path)


def load_vectors(path: PathLike, *, device: Union[str, torch.device] = "cpu") -> list[SteeringVector]:
    """Read every vector of a file written by :func:`save_vectors` (or :meth:`SteeringVector.save`).

    Nothing is unpickled: tensors come from ``safetensors`` and metadata from JSON.

    Args:
        path: The ``.safetensors`` file.
        device: Where to put the tensors (default CPU).

    Returns:
        The vectors in the order they were saved, dtype and metadata as saved.

    Raises:
        VectorFileError: the file is missing, is not a safetensors file, has no
            steering-lens metadata, or was written in a newer format.

    Example:
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     load_vectors(os.path.join(folder, "missing.safetensors"))
        Traceback (most recent call last):
        ...
        steering.persist.VectorFileError: no vector file at '...missing.safetensors' (the path does not exist); allowed: a file written by steering-lens. Fix: check the path and the working directory (os.getcwd()).
    """
    return _read(path, device)

