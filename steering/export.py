"""Files of several vectors: steering-lens sets (``.safetensors``) and llama.cpp control-vector GGUFs.

:func:`save_vectors` / :func:`load_vectors` write and read a set of vectors, one per hook point,
in steering-lens's own format (:mod:`steering.persist`; one vector alone:
:meth:`SteeringVector.save` / :meth:`SteeringVector.load`). :func:`export_gguf` /
:func:`import_gguf` translate to and from llama.cpp's control-vector GGUF, described below.

llama.cpp applies a *control vector* with ``--control-vector FILE`` or
``--control-vector-scaled FILE:SCALE`` (older builds: ``FILE SCALE``), optionally limited
to some layers with ``--control-vector-layer-range START END``. The file is a GGUF
with ``general.architecture = "controlvector"``, the string ``controlvector.model_hint``,
the integer ``controlvector.layer_count`` (the number of direction tensors) and one 1-D
float32 tensor per layer, named ``direction.{N}``. repeng (``ControlVector.export_gguf``
in ``repeng/extract.py``) and EasySteer (``StatisticalControlVector.export_gguf`` in
``easysteer/steer/utils.py``) write the same layout; this module writes it with the
``gguf`` package's ``GGUFWriter`` and reads it with ``GGUFReader``.

Where ``direction.N`` is added (checked in llama.cpp's source):

* ``common/common.cpp``, ``common_control_vector_load_one``: the tensor ``direction.N``
  is parsed into layer index ``N``; ``N == 0`` is rejected ("invalid (zero) direction
  tensor layer index"), tensors must be F32 and 1-D, and the data of ``direction.N``
  is stored at offset ``n_embd * (N - 1)`` ("layer 1 at [0]"), multiplied by the
  file's scale; several files (and repeated layers) are summed. No metadata key is
  read: ``model_hint`` and ``layer_count`` are informative only.
* ``src/llama-adapter.cpp``, ``llama_adapter_cvec::apply``: for ``il = 1 .. n_layer-1``
  the data at offset ``n_embd * (il - 1)`` goes to ``tensors[il]`` ("there's never a
  tensor for layer 0"), so ``direction.N`` lands in ``tensors[N]``; indices
  ``>= n_layer`` are ignored. ``tensor_for(il)`` returns it only inside the layer
  range (default ``1 .. n_layer``, set in ``common_init_from_params``).
* ``llm_graph_context::build_cvec`` (``src/llama-graph.cpp``) calls
  ``apply_to(ctx, cur, il)``, which does ``cur = ggml_add(cur, tensors[il])``; every
  model graph calls it at the very end of block ``il``, after the feed-forward
  residual add and before ``cb(cur, "l_out", il)`` (``src/models/llama.cpp``,
  ``src/models/gpt2.cpp``). So **``direction.N`` is added to the output of block N
  (0-based), at every position** of the prompt and of the generated tokens.
* repeng agrees: ``ControlModel`` wraps decoder layer ``i`` and adds
  ``directions[i]`` to that layer's output (``ControlModule.forward`` in
  ``repeng/control.py``), and ``read_representations`` reads
  ``hidden_states[i + 1]``, the output of layer ``i`` (``repeng/extract.py``);
  ``export_gguf`` names it ``direction.{i}``. Its default layers skip layer 0.
* llama.cpp's own ``cvector-generator`` (``tools/cvector-generator``) *measures* the
  difference at ``l_out`` of block ``il`` and names it ``direction.{il+1}``
  (``mean.hpp`` / ``pca.hpp``), so its vectors are applied one block after the point
  they were measured at. This module keeps the *application* point exact.

The mapping to TransformerLens hook names (the output of block ``l`` is
``blocks.{l}.hook_resid_post``, the same value as ``blocks.{l+1}.hook_resid_pre``):

=====================================  ==================  ==========================
steering-lens hook                     GGUF tensor          llama.cpp adds it to
=====================================  ==================  ==========================
``blocks.{l}.hook_resid_post``         ``direction.{l}``    output of block ``l``
``blocks.{l}.hook_resid_pre``          ``direction.{l-1}``  output of block ``l-1``
=====================================  ==================  ==========================

So ``blocks.0.hook_resid_post``, ``blocks.0.hook_resid_pre`` (the embeddings) and
``blocks.1.hook_resid_pre`` cannot be exported: llama.cpp has no slot for them.
Other hook points (``attn_out``, ``mlp_out``, ``resid_mid`` …) have no counterpart.

Differences from :func:`steering.steer` to keep in mind: llama.cpp adds the vector at
*every* position (like ``positions="all"``), not only at the front of the prompt like
ActAdd, scaled by the ``SCALE`` of ``--control-vector-scaled`` (1.0 for
``--control-vector``), so a per-position ActAdd vector must first become one direction
(``vec.direction("sum")``) and usually needs a smaller coefficient. Vectors taken in
compatibility mode are refused: llama.cpp runs the original weights (``weight_mode="hf"``).

Example:
    >>> import os, tempfile
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model(n_layers=4)
    >>> vec = st.actadd(model, "Love", "Hate", layer=2).direction("sum")
    >>> vec.hook_name, gguf_tensor_name(vec.hook_name)
    ('blocks.2.hook_resid_pre', 'direction.1')
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = export_gguf(vec, os.path.join(folder, "love.gguf"))
    ...     back = import_gguf(path)
    >>> back[0].hook_name, back[0].method, bool((back[0].tensor == vec.tensor).all())
    ('blocks.2.hook_resid_pre', 'gguf', True)
"""

import os
import re
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from . import __version__
from .errors import InvalidArgumentError, InvalidVectorError, SteeringError, VectorFileError, VectorMismatchError
from .files import atomic_write, file_access_error
from .hooks import block_output_hook, residual_index
from .persist import input_path, output_path, read_file, write_file
from .vectors import SteeringVector, file_entry

__all__ = ["save_vectors", "load_vectors", "export_gguf", "import_gguf", "gguf_tensor_name"]

_ARCH = "controlvector"
_DIRECTION = re.compile(r"direction\.(\d+)")
# extra keys of our own (llama.cpp reads no metadata, so they are ignored there)
_KEY_VERSION = "steering_lens.version"
_KEY_MODEL = "steering_lens.model_name"
_KEY_HOOK = "steering_lens.hook_name.{}"


def gguf_tensor_name(hook_name: str) -> str:
    """The llama.cpp control-vector tensor that adds at the same residual point as ``hook_name``.

    ``blocks.{l}.hook_resid_post`` (output of block ``l``) is ``direction.{l}``;
    ``blocks.{l}.hook_resid_pre`` (output of block ``l-1``) is ``direction.{l-1}``.
    See the module docstring for the llama.cpp source this follows.

    Raises:
        InvalidArgumentError: the hook is not a residual hook, or it is a point llama.cpp
            cannot steer (the embeddings and the output of block 0).

    Example:
        >>> gguf_tensor_name("blocks.6.hook_resid_pre"), gguf_tensor_name("blocks.6.hook_resid_post")
        ('direction.5', 'direction.6')
        >>> gguf_tensor_name("blocks.1.hook_resid_pre")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: hook 'blocks.1.hook_resid_pre' is the output of block 0, which llama.cpp never steers (it rejects direction.0 and has no slot for the embeddings); allowed: blocks.{l}.hook_resid_post with l >= 1 or blocks.{l}.hook_resid_pre with l >= 2. Fix: take the vector at a later layer.
    """
    if not isinstance(hook_name, str):
        raise InvalidArgumentError(
            f"hook_name={hook_name!r} is a {type(hook_name).__name__}; allowed: a str such as "
            "'blocks.6.hook_resid_pre'."
        )
    index = residual_index(hook_name)
    if index is None:
        raise InvalidArgumentError(
            f"hook {hook_name!r} is not a residual-stream hook; allowed: blocks.{{l}}.hook_resid_pre or "
            "blocks.{l}.hook_resid_post (llama.cpp adds control vectors to the residual stream at the end of a "
            "block only). Fix: rebuild the vector with hook='resid_pre' or hook='resid_post'."
        )
    if index < 1:
        where = "the embeddings" if index < 0 else "the output of block 0"
        raise InvalidArgumentError(
            f"hook {hook_name!r} is {where}, which llama.cpp never steers (it rejects direction.0 and has no slot "
            "for the embeddings); allowed: blocks.{l}.hook_resid_post with l >= 1 or blocks.{l}.hook_resid_pre "
            "with l >= 2. Fix: take the vector at a later layer."
        )
    return f"direction.{index}"


def _as_list(vectors: Any) -> list[SteeringVector]:
    if isinstance(vectors, SteeringVector):
        return [vectors]
    if isinstance(vectors, (str, bytes)) or not isinstance(vectors, Sequence):
        raise InvalidArgumentError(
            f"vectors is a {type(vectors).__name__}; allowed: a SteeringVector or a list of them (one per layer). "
            "Fix: pass [vec1, vec2, ...]."
        )
    out = []
    for i, vec in enumerate(vectors):
        if not isinstance(vec, SteeringVector):
            raise InvalidArgumentError(
                f"vectors[{i}] is a {type(vec).__name__}; allowed: a SteeringVector. Fix: wrap the tensor in "
                "SteeringVector(tensor, hook_name=...)."
            )
        out.append(vec)
    if not out:
        raise InvalidArgumentError("vectors is empty; allowed: at least one SteeringVector. Fix: pass [vec].")
    return out


def export_gguf(
    vectors: Union[SteeringVector, Sequence[SteeringVector]],
    path: Union[str, os.PathLike],
    *,
    model_hint: Optional[str] = None,
) -> Path:
    """Write vectors as a llama.cpp control-vector GGUF (``--control-vector FILE``).

    Each vector becomes the float32 tensor ``direction.N`` that llama.cpp adds at the
    same residual point (:func:`gguf_tensor_name`): ``blocks.{l}.hook_resid_post`` →
    ``direction.{l}``, ``blocks.{l}.hook_resid_pre`` → ``direction.{l-1}``. llama.cpp
    adds it at every position, times the ``SCALE`` of ``--control-vector-scaled``; to
    bake a coefficient in, export ``coeff * vec``. The write is atomic.

    Args:
        vectors: One :class:`SteeringVector` or a list (one per layer). Each must be a
            single ``[d_model]`` direction at a residual hook, all of the same model
            and width, taken with ``weight_mode="hf"``.
        path: Destination file, e.g. ``"happy.gguf"``; its folder must exist.
        model_hint: The ``controlvector.model_hint`` string (informative: llama.cpp
            does not read it; repeng writes the HF ``model_type``, llama.cpp's
            cvector-generator the GGUF architecture, e.g. ``"llama"``). Default: the
            vectors' ``model_name``, or ``"unknown"``.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        InvalidVectorError: a per-position ``[pos, d_model]`` vector (use ``vec.direction("sum")``).
        InvalidArgumentError: a non-residual hook, a point llama.cpp cannot steer, two
            vectors at the same residual point, or a compatibility-mode vector.
        VectorMismatchError: vectors of different widths or models.
        FileAccessError: the operating system refused the write (permission, no space left,
            read-only file system, name too long, not a regular file); an older file is kept.

    Example:
        >>> import os, tempfile, torch
        >>> v = SteeringVector(torch.ones(5, 64), hook_name="blocks.3.hook_resid_pre", model_name="m")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     export_gguf(v, os.path.join(folder, "v.gguf"))
        Traceback (most recent call last):
        ...
        steering.errors.InvalidVectorError: vectors[0] at blocks.3.hook_resid_pre is a per-position ActAdd vector of shape (5, 64); allowed: a single [d_model] direction, since llama.cpp adds one direction per layer at every position. Fix: export vec.direction('sum') (the net addition over the front positions) or vec.direction('mean').
    """
    vecs = _as_list(vectors)
    if model_hint is not None and not isinstance(model_hint, str):
        raise InvalidArgumentError(
            f"model_hint={model_hint!r} is a {type(model_hint).__name__}; allowed: a str or None. "
            "Fix: pass e.g. model_hint='llama'."
        )
    first = vecs[0]
    names = sorted({v.model_name for v in vecs if v.model_name is not None})
    if len(names) > 1:
        raise VectorMismatchError(
            f"the vectors come from different models: {', '.join(repr(n) for n in names)}; allowed: one model per "
            "control-vector file. Fix: export the vectors of each model to their own file."
        )
    by_index: dict[int, int] = {}
    for i, vec in enumerate(vecs):
        if not vec.is_direction:
            raise InvalidVectorError(
                f"vectors[{i}] at {vec.hook_name} is a per-position ActAdd vector of shape {tuple(vec.tensor.shape)}; "
                "allowed: a single [d_model] direction, since llama.cpp adds one direction per layer at every "
                "position. Fix: export vec.direction('sum') (the net addition over the front positions) or "
                "vec.direction('mean')."
            )
        if vec.d_model != first.d_model:
            raise VectorMismatchError(
                f"vectors[{i}] at {vec.hook_name} has d_model={vec.d_model} but vectors[0] has d_model={first.d_model}; "
                "allowed: one residual width per control-vector file. Fix: export the vectors of each model to "
                "their own file."
            )
        if vec.weight_mode != "hf":
            raise InvalidArgumentError(
                f"vectors[{i}] at {vec.hook_name} was taken with weight_mode={vec.weight_mode!r}; allowed: 'hf', since "
                "llama.cpp runs the original weights and enable_compatibility_mode changes the residual values. "
                "Fix: rebuild the vector on a model without compatibility mode."
            )
        name = gguf_tensor_name(vec.hook_name)  # checks the hook llama.cpp can steer
        index = residual_index(vec.hook_name)
        if index in by_index:
            j = by_index[index]
            raise InvalidArgumentError(
                f"vectors[{j}] ({vecs[j].hook_name}) and vectors[{i}] ({vec.hook_name}) both map to {name} (the "
                "same residual point: the output of block "
                f"{index}); allowed: one vector per layer. Fix: sum them into one vector at one hook (e.g. "
                "a + dataclasses.replace(b, hook_name=a.hook_name)), or export them to separate files."
            )
        by_index[index] = i
        vec.check_finite()

    model_name = names[0] if names else None
    hint = model_hint if model_hint is not None else (model_name or "unknown")
    target = output_path(path)

    def write(tmp: str) -> None:
        import gguf

        writer = gguf.GGUFWriter(tmp, _ARCH)  # writes general.architecture = "controlvector"
        try:
            writer.add_string(f"{_ARCH}.model_hint", hint)
            writer.add_uint32(f"{_ARCH}.layer_count", len(by_index))
            writer.add_string(_KEY_VERSION, __version__)
            if model_name is not None:
                writer.add_string(_KEY_MODEL, model_name)
            for index in sorted(by_index):
                vec = vecs[by_index[index]]
                writer.add_string(_KEY_HOOK.format(index), vec.hook_name)
                data = vec.tensor.detach().to(device="cpu", dtype=torch.float32).numpy().copy()
                writer.add_tensor(f"direction.{index}", data)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()

    return atomic_write(target, write)


def _string_field(reader: Any, key: str) -> Optional[str]:
    field = reader.get_field(key)
    if field is None or not field.data:
        return None
    try:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    except (TypeError, ValueError, IndexError):
        return None


def _directions(reader: Any, bad: Callable[[str], VectorFileError]) -> dict[int, torch.Tensor]:
    """The ``direction.N`` tensors of a GGUF reader by ``N``, checked as llama.cpp's loader checks them."""
    import gguf

    found: dict[int, torch.Tensor] = {}
    for tensor in reader.tensors:
        match = _DIRECTION.fullmatch(tensor.name)
        if match is None:
            raise bad(f"holds a tensor named {tensor.name!r}, which llama.cpp cannot parse as direction.N")
        index = int(match.group(1))
        if index == 0:
            raise bad("holds direction.0, which llama.cpp rejects (there is no control slot for layer 0)")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            raise bad(f"holds {tensor.name} of type {tensor.tensor_type.name}, which llama.cpp rejects (it needs F32)")
        if len(tensor.shape) != 1:
            raise bad(f"holds {tensor.name} with shape {[int(n) for n in tensor.shape]}, which llama.cpp rejects (it needs 1-D)")
        if index in found:
            raise bad(f"holds {tensor.name} twice")
        found[index] = torch.from_numpy(np.array(tensor.data, dtype=np.float32).reshape(-1))
        if not bool(torch.isfinite(found[index]).all()):
            raise bad(f"holds {tensor.name} with NaN or Inf values (the file is damaged)")
    if not found:
        raise bad("holds no direction.N tensor")
    return found


def import_gguf(path: Union[str, os.PathLike], *, model_name: Optional[str] = None) -> list[SteeringVector]:
    """Read a llama.cpp control-vector GGUF (from llama.cpp, repeng, EasySteer or :func:`export_gguf`).

    ``direction.N`` becomes a float32 direction at ``blocks.{N}.hook_resid_post`` (the
    output of block ``N``, where llama.cpp adds it); a file written by
    :func:`export_gguf` gives back the exact hook names it was written from (e.g.
    ``blocks.{N+1}.hook_resid_pre``, the same residual point). The file's checks follow
    llama.cpp's loader: only ``direction.N`` tensors, ``N >= 1``, 1-D F32, one width.

    Args:
        path: The ``.gguf`` file.
        model_name: The ``model_name`` to give the vectors, e.g. ``model.cfg.model_name``.
            Default: the name :func:`export_gguf` recorded, else ``None`` (the vector then
            fits any model of its width; ``controlvector.model_hint`` is kept in ``meta``).

    Returns:
        One vector per ``direction.N``, in increasing ``N``; ``method="gguf"``.

    Raises:
        steering.errors.VectorFileError: the file is missing, not a GGUF file (garbage, truncated),
            not a control vector, or holds tensors llama.cpp would reject (or NaN/Inf).
        steering.errors.FileAccessError: the path is a named pipe, socket or device (refused
            without opening it), or the operating system refused the read (permission …).

    Example:
        >>> import os, tempfile, torch
        >>> v = SteeringVector(torch.ones(64), hook_name="blocks.1.hook_resid_post")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     back = import_gguf(export_gguf(v, os.path.join(folder, "v.gguf")), model_name="tiny-llama")
        >>> back[0].hook_name, back[0].model_name, back[0].meta["gguf_tensor"]
        ('blocks.1.hook_resid_post', 'tiny-llama', 'direction.1')
    """
    if model_name is not None and not isinstance(model_name, str):
        raise InvalidArgumentError(
            f"model_name={model_name!r} is a {type(model_name).__name__}; allowed: a str or None. "
            "Fix: pass model.cfg.model_name."
        )
    import gguf

    source = input_path(path, "control-vector file")

    def bad(detail: str) -> VectorFileError:
        return VectorFileError(
            f"'{source}' {detail}; allowed: a llama.cpp control-vector GGUF (tensors direction.N, N >= 1, 1-D float32, "
            "all of one width). Fix: check the path; write such files with steering.export.export_gguf."
        )

    try:
        reader = gguf.GGUFReader(str(source))
        arch = _string_field(reader, "general.architecture")
        if arch is not None and arch != _ARCH:
            raise bad(f"is a GGUF of architecture {arch!r}, not a control vector ({_ARCH!r}) - is it a model file?")
        found = _directions(reader, bad)
    except SteeringError:
        raise
    except OSError as err:  # opening or mapping the file
        raise file_access_error(err, source, "read", "control-vector file") from err
    except Exception as err:  # the reader raises ValueError / struct / index errors on a damaged or foreign file
        raise bad(f"is not a readable GGUF file, or is truncated ({type(err).__name__}: {err})") from err
    hint = _string_field(reader, f"{_ARCH}.model_hint")
    recorded_model = _string_field(reader, _KEY_MODEL)
    widths = sorted({int(t.numel()) for t in found.values()})
    if len(widths) > 1:
        raise bad(f"holds directions of different widths {widths}, which llama.cpp rejects")
    out = []
    for index in sorted(found):
        hook_name = block_output_hook(index)
        recorded = _string_field(reader, _KEY_HOOK.format(index))
        if recorded is not None and residual_index(recorded) == index:
            hook_name = recorded  # the equivalent name the vector was exported from
        out.append(
            SteeringVector(
                tensor=found[index],
                hook_name=hook_name,
                model_name=model_name if model_name is not None else recorded_model,
                method="gguf",
                meta={"gguf_path": str(source), "gguf_tensor": f"direction.{index}", "model_hint": hint},
            )
        )
    del reader  # release the memory map
    return out


def save_vectors(vectors: Union[SteeringVector, Sequence[SteeringVector]], path: Union[str, os.PathLike]) -> Path:
    """Write a set of vectors, one per hook point, to one ``.safetensors`` file (atomically).

    A vector spread over several layers is a list of :class:`SteeringVector`, one per hook;
    each tensor is stored under its hook name, with its metadata as JSON in the header
    (layout: :mod:`steering.persist`).

    Args:
        vectors: The vectors (or a single one). Hook names must be distinct.
        path: Destination file, e.g. ``"honesty.safetensors"``; its folder must exist.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        InvalidArgumentError: an empty list, two vectors at the same hook, an item that
            is not a vector, or metadata that is not JSON data (NaN / Inf included).
        FileAccessError: the operating system refused the write (see :func:`steering.persist.write_file`).

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
    entries = [file_entry(v, getattr(v, "hook_name", ""), f"vectors[{i}]") for i, v in enumerate(vectors)]
    if not entries:
        raise InvalidArgumentError("vectors is empty; allowed: at least one SteeringVector. Fix: pass [vec].")
    seen: dict[str, int] = {}
    for i, (key, _, _) in enumerate(entries):
        if key in seen:
            raise InvalidArgumentError(
                f"vectors {seen[key]} and {i} are both at hook {key!r}; allowed: one vector per "
                "hook point in a set. Fix: combine them first (e.g. a + b), or save them to separate files."
            )
        seen[key] = i
    return write_file(entries, "set", path)


def load_vectors(path: Union[str, os.PathLike], *, device: Union[str, torch.device] = "cpu") -> list[SteeringVector]:
    """Read every vector of a file written by :func:`save_vectors` (or :meth:`SteeringVector.save`).

    Nothing is unpickled: tensors come from ``safetensors`` and metadata from JSON.

    Args:
        path: The ``.safetensors`` file.
        device: Where to put the tensors (default CPU).

    Returns:
        The vectors in the order they were saved, dtype and metadata as saved.

    Raises:
        VectorFileError: the file is missing, is not a safetensors file, has no
            steering-lens metadata, has a metadata field of the wrong type, or was written in a newer format.
        FileAccessError: the path is not a regular file or may not be read.

    Example:
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     load_vectors(os.path.join(folder, "missing.safetensors"))
        Traceback (most recent call last):
        ...
        steering.errors.VectorFileError: no vector file at '...missing.safetensors' (the path does not exist); allowed: a file written by steering-lens. Fix: check the path and the working directory (os.getcwd()).
    """
    return [SteeringVector(tensor=tensor, **fields) for tensor, fields in read_file(path, device)]
