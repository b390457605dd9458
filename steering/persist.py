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

import errno
import json
import math
import os
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor

from . import __version__
from .errors import FileAccessError, InvalidArgumentError, SteeringError, VectorFileError
from .files import as_path, atomic_write, check_readable_file, check_writable_target, file_access_error
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


# ---------------------------------------------------------------------------- paths
def output_path(path: Any) -> Path:
    """A vector-file path that can be written (:func:`steering.files.check_writable_target`): a str/PathLike,
    not a folder, in an existing, writable folder, with a name the file system accepts.

    Example:
        >>> output_path("/no/such/folder/v.safetensors")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: cannot write '/no/such/folder/v.safetensors': the folder '/no/such/folder' does not exist; allowed: a path in an existing folder. Fix: create it first with os.makedirs('/no/such/folder', exist_ok=True).
    """
    return check_writable_target(path, "vector file")


def input_path(path: Any, what: str = "vector file") -> Path:
    """An existing regular file to read (:func:`steering.files.check_readable_file`), checked before opening it.

    Raises:
        VectorFileError: the path does not exist or is a folder (the message names ``what``).
        FileAccessError: it is not a regular file (a named pipe, socket, device) or may not be read.

    Example:
        >>> input_path("/no/such/file.gguf", "control-vector file")
        Traceback (most recent call last):
        ...
        steering.errors.VectorFileError: no control-vector file at '/no/such/file.gguf' (the path does not exist); allowed: a file written by steering-lens. Fix: check the path and the working directory (os.getcwd()).
    """
    source = as_path(path, what)
    try:
        return check_readable_file(source, what)
    except FileAccessError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise
        raise VectorFileError(
            f"no {what} at '{source}' (the path does not exist); allowed: a file written by steering-lens. "
            "Fix: check the path and the working directory (os.getcwd())."
        ) from err
    except InvalidArgumentError as err:  # a folder
        raise VectorFileError(
            f"'{source}' is a folder, not a {what}; allowed: a file. Fix: pass the file inside it."
        ) from err


# ---------------------------------------------------------------------------- metadata
def check_json(value: Any, where: str) -> Any:
    """Return ``value`` as plain JSON data (tuples become lists), or raise naming the bad part.

    Example:
        >>> check_json({"a": (1, 2.5)}, "meta")
        {'a': [1, 2.5]}
        >>> check_json({"accuracy": float("nan")}, "meta")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: meta['accuracy'] is nan, not a finite number; allowed: finite numbers (the metadata is stored as standard JSON, which has no NaN or Infinity). Fix: store None, or a string such as 'nan', instead.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(
                f"{where} is {value!r}, not a finite number; allowed: finite numbers (the metadata is stored as "
                "standard JSON, which has no NaN or Infinity). Fix: store None, or a string such as 'nan', instead."
            )
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
_RECORD_ORDER = ("key", "hook_name", "layer", "hook", "model_name", "d_model", "method", "prompts", "tokens", "pad",
                 "weight_mode", "meta", "shape", "dtype")
#: Fields every record must hold; the others default (None / {}) when absent.
_REQUIRED = ("key", "hook_name", "method", "weight_mode", "shape", "dtype")


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


#: Each record field: (test, what is allowed). The tests accept exactly what write_file writes.
_SCHEMA: dict[str, tuple[Any, str]] = {
    "key": (lambda v: isinstance(v, str) and v != "", "a non-empty str (the tensor's key)"),
    "hook_name": (lambda v: isinstance(v, str) and v.strip() == v != "",
                  "a hook name such as 'blocks.6.hook_resid_pre'"),
    "layer": (lambda v: v is None or _is_int(v, 0), "an int >= 0, or null for a hook outside the blocks"),
    "hook": (lambda v: isinstance(v, str), "a str such as 'resid_pre'"),
    "model_name": (lambda v: v is None or isinstance(v, str), "a str or null"),
    "d_model": (lambda v: _is_int(v, 1), "an int >= 1"),
    "method": (lambda v: isinstance(v, str), "a str such as 'actadd'"),
    "prompts": (lambda v: isinstance(v, dict), "a JSON object such as {\"pos\": \"Love\", \"neg\": \"Hate\"}"),
    "tokens": (lambda v: isinstance(v, dict) and all(
        isinstance(t, list) and all(isinstance(x, str) for x in t) for t in v.values()),
        "a JSON object of lists of str, such as {\"pos\": [\"<s>\", \"Love\"]}"),
    "pad": (lambda v: v is None or isinstance(v, str), "a str such as 'space', or null"),
    "weight_mode": (lambda v: v in ("hf", "compat"), "'hf' or 'compat'"),
    "meta": (lambda v: isinstance(v, dict), "a JSON object"),
    "shape": (lambda v: isinstance(v, list) and all(_is_int(n, 0) for n in v), "a list of ints >= 0"),
    "dtype": (lambda v: isinstance(v, str) and v in FLOAT_DTYPES, f"one of {', '.join(map(repr, FLOAT_DTYPES))}"),
}


def _schema_problem(rec: dict[str, Any]) -> "tuple[str, str, str] | None":
    """``(field, value in words, allowed)`` of the first field of ``rec`` that breaks :data:`_SCHEMA`, else None."""
    for name, (test, allowed) in _SCHEMA.items():
        if name not in rec:
            if name in _REQUIRED:
                return name, "missing", allowed
            continue
        value = rec[name]
        if not test(value):
            return name, f"{name}={json.dumps(value, allow_nan=True, default=repr)[:80]} (a {type(value).__name__})", allowed
    return None


def _record(tensor: Tensor, fields: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    hook_name = fields["hook_name"]
    layer, hook = parse_hook_name(hook_name) if isinstance(hook_name, str) else (None, "")
    record = {"key": key, "hook_name": hook_name, "layer": layer, "hook": hook}
    for name in FIELDS[1:]:
        record[name] = check_json(fields[name], f"{where}.{name}")
    record["d_model"] = int(tensor.shape[-1])
    record.update(shape=list(tensor.shape), dtype=str(tensor.dtype).removeprefix("torch."))
    problem = _schema_problem(record)
    if problem is not None:
        name, value, allowed = problem
        raise InvalidArgumentError(
            f"{where} cannot be saved: {value}; allowed: {allowed}. Fix: set the vector's {name} to an allowed "
            "value (e.g. with dataclasses.replace) before saving."
        )
    return {k: record[k] for k in _RECORD_ORDER}


def write_file(entries: list[tuple[str, Tensor, dict[str, Any]]], kind: str, path: Any) -> Path:
    """Write ``(key, tensor, fields)`` entries as one vector file (``kind``: ``"vector"`` or ``"set"``), atomically.

    ``fields`` holds the vector's metadata (:data:`FIELDS`); each must be JSON data of the type a
    vector file allows (NaN and Infinity are refused: the header is standard JSON). The tensors
    are stored as contiguous CPU copies. The path is checked before anything is written.

    Raises:
        InvalidArgumentError: the path cannot be written (a folder, a missing folder), or metadata is
            not JSON data of the allowed type.
        FileAccessError: the operating system refused (permission, no space left, read-only file
            system, name too long); an older file of that name is left as it was.

    Example:
        >>> write_file([], "set", "/no/such/folder/x.safetensors")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: cannot write '/no/such/folder/x.safetensors': the folder '/no/such/folder' does not exist; allowed: a path in an existing folder. Fix: create it first with os.makedirs('/no/such/folder', exist_ok=True).
    """
    from safetensors.torch import save

    target = output_path(path)
    records = []
    for i, (key, tensor, fields) in enumerate(entries):
        records.append(_record(tensor, fields, key, f"vector {i} ({fields['hook_name']})"))
    header = {"format": FORMAT_VERSION, "steering_version": __version__, "kind": kind, "vectors": records}
    metadata = {_METADATA_KEY: json.dumps(header, ensure_ascii=False, allow_nan=False)}
    # own, contiguous CPU copies: safetensors refuses tensors that share storage
    tensors = {key: tensor.detach().to("cpu").contiguous().clone() for key, tensor, _ in entries}
    data = save(tensors, metadata=metadata)  # bytes: the write below is Python's, so OS errors surface as OSError
    return atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))


# ---------------------------------------------------------------------------- reading
def read_file(path: Any, device: Union[str, torch.device] = "cpu") -> list[tuple[Tensor, dict[str, Any]]]:
    """Every ``(tensor, fields)`` of a vector file, checked against its header, in file order.

    Each record of the header is checked field by field (type and allowed values) before any
    tensor is used, so a hand-edited file is refused here, not later.

    Raises:
        VectorFileError: the file is missing, not a safetensors file, has no steering-lens
            metadata, has a field of the wrong type, is inconsistent, or was written in a newer format.
        FileAccessError: the path is not a regular file (a named pipe, socket, device) or may not
            be read (permission denied …).

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
                if rec["key"] not in keys:
                    raise VectorFileError(
                        f"'{source}' is damaged: record {i} names tensor {rec['key']!r}, which the file does not hold "
                        f"(it holds {sorted(keys)}); allowed: a file written by steering-lens. Fix: save the vector "
                        "again."
                    )
                tensors[rec["key"]] = handle.get_tensor(rec["key"])
    except SteeringError:
        raise
    except OSError as err:
        raise file_access_error(err, source, "read", "vector file") from err
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
    for i, rec in enumerate(vectors):
        problem = (None, f"a {type(rec).__name__}", "a JSON object") if not isinstance(rec, dict) else _schema_problem(rec)
        if problem is not None:
            name, value, allowed = problem
            field = f"field {name!r}" if name else "record"
            raise VectorFileError(
                f"'{source}' has a bad {field} in vector {i}: {value}; allowed: {allowed}. Fix: save the vector "
                "again with steering-lens (the header was edited by hand or written by another program), or "
                f"correct {name or 'the record'} in the header."
            )
    return header


def _from_record(source: Path, i: int, rec: dict[str, Any], tensor: torch.Tensor) -> tuple[Tensor, dict[str, Any]]:
    """The checked fields of record ``i`` (already of the right types, see :func:`_parse_header`)."""
    def damaged(detail: str) -> VectorFileError:
        return VectorFileError(
            f"'{source}' is inconsistent: vector {i} {detail}; allowed: a file written by steering-lens and not "
            "edited since. Fix: save the vector again."
        )

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
        "prompts": rec.get("prompts", {}),
        "tokens": rec.get("tokens", {}),
        "pad": rec.get("pad"),
        "weight_mode": rec["weight_mode"],
        "meta": rec.get("meta", {}),
    }
