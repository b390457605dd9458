"""The vector file format: ``.safetensors`` tensors plus JSON metadata, written atomically.

This module knows the layout, not the vector class: :func:`write_file` takes tensors and their
metadata fields, :func:`read_file` gives them back checked. :class:`steering.SteeringVector`
(``save`` / ``load``) and :func:`steering.vectors.save_vectors` /
:func:`steering.vectors.load_vectors` are built on it. One file holds one vector or a set of
vectors, one per hook point. The tensors are stored by ``safetensors`` and everything else as
JSON in the file's header metadata, so loading never unpickles anything.

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

Example:
    >>> import os, tempfile, torch
    >>> fields = {"hook_name": "blocks.1.hook_resid_post", "model_name": None, "method": "manual", "prompts": {},
    ...           "tokens": {}, "pad": None, "weight_mode": "hf", "meta": {}}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_file([("vector", torch.ones(64), fields)], "vector", os.path.join(folder, "v.safetensors"))
    ...     [(tuple(t.shape), f["hook_name"]) for t, f in read_file(path)]
    [((64,), 'blocks.1.hook_resid_post')]
"""

import json
import os
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor

from . import __version__
from .errors import InvalidArgumentError, SteeringError, VectorFileError
from .files import atomic_write
from .hooks import parse_hook_name

__all__ = ["write_file", "read_file", "output_path", "input_path", "check_json", "FORMAT_VERSION", "FLOAT_DTYPES",
           "SINGLE_KEY", "VectorFileError"]

#: Version of the file layout this module writes; files with a larger number are refused.
FORMAT_VERSION = 1
_METADATA_KEY = "steering_lens"
#: The tensor key of a file holding one vector.
SINGLE_KEY = "vector"
#: The dtypes a vector file may hold, by name.
FLOAT_DTYPES = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}

PathLike = Union[str, os.PathLike]


# ---------------------------------------------------------------------------- paths and atomic writes
def _check_path_type(path: Any) -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"path={path!r} is a {type(path).__name__}; allowed: a str or os.PathLike file path. "
            "Fix: pass e.g. 'vector.safetensors'."
        )
    return Path(os.fspath(path)).expanduser()


def output_path(path: Any) -> Path:
    """A file path that can be written: a str/PathLike, not a folder, in an existing folder.

    Example:
        >>> output_path("/no/such/folder/v.safetensors")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: cannot write '/no/such/folder/v.safetensors': the folder '/no/such/folder' does not exist; allowed: a path in an existing folder. Fix: create it first with os.makedirs('/no/such/folder', exist_ok=True).
    """
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


def input_path(path: Any, what: str = "vector file") -> Path:
    """An existing file to read (else :class:`~steering.errors.VectorFileError` naming ``what``).

    Example:
        >>> input_path("/no/such/file.gguf", "control-vector file")
        Traceback (most recent call last):
        ...
        steering.errors.VectorFileError: no control-vector file at '/no/such/file.gguf' (the path does not exist); allowed: a file written by steering-lens. Fix: check the path and the working directory (os.getcwd()).
    """
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


# ---------------------------------------------------------------------------- metadata
def check_json(value: Any, where: str) -> Any:
    """Return ``value`` as plain JSON data (tuples become lists), or raise naming the bad part.

    Example:
        >>> check_json({"a": (1, 2.5)}, "meta")
        {'a': [1, 2.5]}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [check_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(
                    f"{where} has the key {key!r} ({type(key).__name__}); allowed: str keys only (the metadata "
                    f"is stored as JSON). Fix: use str({key!r}) as the key."
                )
            out[key] = check_json(item, f"{where}[{key!r}]")
        return out
    raise InvalidArgumentError(
        f"{where} holds a {type(value).__name__} ({value!r:.60}); allowed: JSON values (str, int, float, bool, "
        "None, lists and dicts with str keys), since the metadata is stored as JSON. Fix: convert it, e.g. "
        "with .item() / .tolist() / float(...), or leave it out before saving."
    )


#: The metadata fields of a vector, in file order (the constructor arguments besides the tensor).
FIELDS = ("hook_name", "model_name", "method", "prompts", "tokens", "pad", "weight_mode", "meta")


def _record(tensor: Tensor, fields: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    layer, hook = parse_hook_name(fields["hook_name"])
    record = {"key": key, "hook_name": fields["hook_name"], "layer": layer, "hook": hook}
    for name in FIELDS[1:]:
        record[name] = check_json(fields[name], f"{where}.{name}")
    record["d_model"] = int(tensor.shape[-1])
    record["weight_mode"] = fields["weight_mode"]
    record.update(shape=list(tensor.shape), dtype=str(tensor.dtype).removeprefix("torch."))
    return {k: record[k] for k in ("key", "hook_name", "layer", "hook", "model_name", "d_model", "method", "prompts",
                                   "tokens", "pad", "weight_mode", "meta", "shape", "dtype")}


def write_file(entries: list[tuple[str, Tensor, dict[str, Any]]], kind: str, path: Any) -> Path:
    """Write ``(key, tensor, fields)`` entries as one vector file (``kind``: ``"vector"`` or ``"set"``), atomically.

    ``fields`` holds the vector's metadata (:data:`FIELDS`); each must be JSON data. The tensors
    are stored as contiguous CPU copies.

    Raises:
        InvalidArgumentError: the path cannot be written, or metadata is not JSON data.

    Example:
        >>> write_file([], "set", "/no/such/folder/x.safetensors")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: cannot write '/no/such/folder/x.safetensors': the folder '/no/such/folder' does not exist; allowed: a path in an existing folder. Fix: create it first with os.makedirs('/no/such/folder', exist_ok=True).
    """
    from safetensors.torch import save_file

    target = output_path(path)
    records = []
    for i, (key, tensor, fields) in enumerate(entries):
        records.append(_record(tensor, fields, key, f"vector {i} ({fields['hook_name']})"))
    header = {"format": FORMAT_VERSION, "steering_version": __version__, "kind": kind, "vectors": records}
    metadata = {_METADATA_KEY: json.dumps(header, ensure_ascii=False)}
    # own, contiguous CPU copies: safetensors refuses tensors that share storage
    tensors = {key: tensor.detach().to("cpu").contiguous().clone() for key, tensor, _ in entries}
    return atomic_write(target, lambda tmp: save_file(tensors, tmp, metadata=metadata))


# ---------------------------------------------------------------------------- reading
def read_file(path: Any, device: Union[str, torch.device] = "cpu") -> list[tuple[Tensor, dict[str, Any]]]:
    """Every ``(tensor, fields)`` of a vector file, checked against its header, in file order.

    Raises:
        VectorFileError: the file is missing, not a safetensors file, has no steering-lens
            metadata, is inconsistent, or was written in a newer format.

    Example:
        >>> read_file("/no/such/v.safetensors")
        Traceback (most recent call last):
        ...
        steering.errors.VectorFileError: no vector file at '/no/such/v.safetensors' (the path does not exist); allowed: a file written by steering-lens. Fix: check the path and the working directory (os.getcwd()).
    """
    from safetensors import safe_open

    source = input_path(path)
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
            "by SteeringVector.save or steering.save_vectors. Fix: check that the path points at such a "
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


def _from_record(source: Path, i: int, rec: dict[str, Any], tensor: torch.Tensor) -> tuple[Tensor, dict[str, Any]]:
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
    layer, hook = parse_hook_name(rec["hook_name"])
    if ("layer" in rec and rec["layer"] != layer) or ("hook" in rec and rec["hook"] != hook):
        raise damaged(f"has layer={rec.get('layer')!r}, hook={rec.get('hook')!r} that do not match {rec['hook_name']!r}")
    if "d_model" in rec and rec["d_model"] != int(tensor.shape[-1]):
        raise damaged(f"has d_model={rec['d_model']!r} but its tensor is {int(tensor.shape[-1])} wide")
    return tensor, {
        "hook_name": rec["hook_name"],
        "model_name": rec.get("model_name"),
        "method": rec["method"],
        "prompts": rec.get("prompts") or {},
        "tokens": rec.get("tokens") or {},
        "pad": rec.get("pad"),
        "weight_mode": rec["weight_mode"],
        "meta": rec.get("meta") or {},
    }
