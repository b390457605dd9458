"""SteeringVector: a typed steering tensor plus the metadata needed to use it correctly.

An ActAdd vector is per position (``Float[Tensor, "pos d_model"]``): the paper adds
``c · (h+ − h−)`` to the first ``pos`` residual positions of the prompt. A single
direction (``Float[Tensor, "d_model"]``) is also representable, e.g. for adding at
every position. Vectors know the hook point they belong to and the model they came
from, so applying one to the wrong model fails loudly.

Example:
    >>> import torch
    >>> from steering import SteeringVector
    >>> v = SteeringVector(torch.ones(3, 4), hook_name="blocks.1.hook_resid_pre", model_name="m")
    >>> (2 * v - v).tensor.shape
    torch.Size([3, 4])
    >>> v.norm().tolist()
    [2.0, 2.0, 2.0]
"""

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from .errors import InvalidArgumentError, InvalidVectorError, VectorFileError, VectorMismatchError
from .display import vector_html, vector_repr
from .hooks import parse_hook_name
from .persist import FIELDS, FLOAT_DTYPES, SINGLE_KEY, read_file, write_file
from .validate import as_real

__all__ = ["SteeringVector", "WeightMode", "file_entry", "vector_list"]

#: ``"hf"`` (the bridge's unprocessed weights) or ``"compat"`` (``enable_compatibility_mode``).
WeightMode = Literal["hf", "compat"]

_Scalar = Union[int, float]


@dataclass(eq=False)
class SteeringVector:
    """A steering tensor tied to one hook point of one model.

    Attributes:
        tensor: ``[pos, d_model]`` (per-position ActAdd vector, added at the front of the
            prompt) or ``[d_model]`` (a single direction).
        hook_name: Full hook-point name, e.g. ``"blocks.6.hook_resid_pre"``.
        model_name: Name of the model the vector was taken from (``model.cfg.model_name``).
        method: How the vector was made (``"actadd"``, ``"manual"``, ``"sum"`` …).
        prompts: The prompts it came from, e.g. ``{"pos": "Love", "neg": "Hate"}``.
        tokens: The string tokens of each prompt after padding (for display).
        pad: The padding rule used to align the prompts (``"space"`` for the paper's rule).
        weight_mode: ``"hf"`` (the bridge's unprocessed weights) or ``"compat"`` (weights
            processed by ``enable_compatibility_mode``); a vector is only valid in its mode.
        meta: Free-form extra metadata.

    Example:
        >>> import torch
        >>> v = SteeringVector(torch.zeros(4), hook_name="blocks.0.hook_resid_pre")
        >>> v.layer, v.hook, v.is_direction, v.d_model
        (0, 'resid_pre', True, 4)
    """

    tensor: Union[Float[Tensor, "pos d_model"], Float[Tensor, " d_model"]]
    hook_name: str
    model_name: Optional[str] = None
    method: str = "manual"
    prompts: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, list[str]] = field(default_factory=dict)
    pad: Optional[str] = None
    weight_mode: WeightMode = "hf"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.tensor
        if not isinstance(t, Tensor):
            raise InvalidVectorError(f"tensor must be a torch.Tensor, got {type(t).__name__}. Fix: wrap it with torch.as_tensor(...).")
        if t.is_meta or t.layout != torch.strided:
            raise InvalidVectorError(
                f"tensor is {'on the meta device (a shape without values)' if t.is_meta else f'a {t.layout} tensor'}; "
                "allowed: a dense tensor holding values, e.g. on cpu. Fix: take it from a model whose weights are "
                "loaded (load_model(..., device='cpu')) and pass a real tensor, e.g. tensor.to('cpu') / .to_dense().")
        if t.ndim not in (1, 2) or t.numel() == 0:
            raise InvalidVectorError(f"tensor has shape {tuple(t.shape)}; allowed: [d_model] (a direction) or [pos, "
                                     "d_model] (per-position ActAdd), non-empty. Fix: reshape it, e.g. with einops.rearrange.")
        if not t.is_floating_point():
            raise InvalidVectorError(f"tensor has dtype {t.dtype}; allowed: a floating dtype. Fix: call .float() on it.")
        if not isinstance(self.hook_name, str) or not self.hook_name:
            raise InvalidArgumentError(
                f"hook_name={self.hook_name!r:.60}; allowed: a full hook-point name (a non-empty str). "
                "Fix: pass e.g. hook_name=st.hook_name(model, 6, 'resid_pre') ('blocks.6.hook_resid_pre')."
            )
        self.check_finite()
        if self.weight_mode not in ("hf", "compat"):
            raise InvalidArgumentError(f"weight_mode={self.weight_mode!r}; allowed: 'hf' or 'compat'.")
    # ------------------------------------------------------------------ properties
    @property
    def layer(self) -> Optional[int]:
        """The block index in ``hook_name`` (``None`` for non-block hooks)."""
        return parse_hook_name(self.hook_name)[0]

    @property
    def hook(self) -> str:
        """The short hook kind, e.g. ``"resid_pre"``."""
        return parse_hook_name(self.hook_name)[1]

    @property
    def d_model(self) -> int:
        """Width of the residual stream the vector lives in."""
        return int(self.tensor.shape[-1])

    @property
    def n_pos(self) -> Optional[int]:
        """Number of positions of a per-position vector (``None`` for a direction)."""
        return int(self.tensor.shape[0]) if self.tensor.ndim == 2 else None

    @property
    def is_direction(self) -> bool:
        """True when the vector is a single ``[d_model]`` direction."""
        return self.tensor.ndim == 1

    @property
    def device(self) -> torch.device:
        """Device of the tensor."""
        return self.tensor.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the tensor."""
        return self.tensor.dtype

    # ------------------------------------------------------------------ checks
    def check_finite(self) -> "SteeringVector":
        """Raise :class:`InvalidVectorError` when the tensor holds NaN or Inf; return self.

        Example:
            >>> import torch
            >>> SteeringVector(torch.tensor([1.0, float("nan")]), hook_name="blocks.0.hook_resid_pre")
            Traceback (most recent call last):
            ...
            steering.errors.InvalidVectorError: the vector at blocks.0.hook_resid_pre holds 1 NaN and 0 Inf value(s) (first at index (1,)); allowed: finite values only. Fix: rebuild it; NaN usually comes from a model run in half precision that overflowed, or from normalising a zero vector.
        """
        bad = ~torch.isfinite(self.tensor)
        if bool(bad.any()):
            n_nan = int(torch.isnan(self.tensor).sum())
            n_inf = int(torch.isinf(self.tensor).sum())
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise InvalidVectorError(
                f"the vector at {self.hook_name} holds {n_nan} NaN and {n_inf} Inf value(s) (first at index "
                f"{first}); allowed: finite values only. Fix: rebuild it; NaN usually comes from a model run "
                "in half precision that overflowed, or from normalising a zero vector."
            )
        return self

    def check_compatible(self, model: Any) -> None:
        """Raise :class:`VectorMismatchError` unless the vector fits ``model``.

        Checks ``d_model``, the model name (when both are known), the hook point and the
        weight-processing mode. This is what refuses a vector loaded from a file
        (:meth:`load`) that was made on another model; :meth:`retarget` is the deliberate
        override.

        Example:
            >>> import torch
            >>> from steering.testing import tiny_model
            >>> m = tiny_model()
            >>> SteeringVector(torch.zeros(64), hook_name="blocks.0.hook_resid_pre").check_compatible(m)
        """
        d_model = int(model.cfg.d_model)
        if self.d_model != d_model:
            raise VectorMismatchError(f"the vector has d_model={self.d_model} but model {model.cfg.model_name!r} has "
                                      f"d_model={d_model}; allowed: vectors taken from this model. Fix: rebuild the vector on this model.")
        model_name = getattr(model.cfg, "model_name", None)
        if self.model_name is not None and model_name is not None and self.model_name != model_name:
            raise VectorMismatchError(
                f"the vector comes from model {self.model_name!r} but is applied to {model_name!r}; "
                "allowed: the model it was taken from. Fix: rebuild it on this model, or, if the two are the "
                "same weights under another name, set vec.model_name = model.cfg.model_name."
            )
        if self.hook_name not in model.hook_dict:
            raise VectorMismatchError(f"the vector's hook {self.hook_name!r} is not a hook point of model {model_name!r}; "
                                      "allowed: a name in model.hook_dict. Fix: rebuild the vector on this model.")
        mode = "compat" if getattr(model, "compatibility_mode", False) else "hf"
        if mode != self.weight_mode:
            raise VectorMismatchError(
                f"the vector was taken with weight_mode={self.weight_mode!r} but the model runs in {mode!r} "
                "(enable_compatibility_mode rewrites the weights and the residual values); allowed: the same "
                "mode. Fix: rebuild the vector on the model as it is now."
            )

    # ------------------------------------------------------------------ algebra
    def _combine_check(self, other: "SteeringVector", verb: str) -> None:
        if not isinstance(other, SteeringVector):
            raise InvalidArgumentError(
                f"cannot {verb} a SteeringVector and a {type(other).__name__}; allowed: another SteeringVector "
                "(or a number for *, /). Fix: wrap the tensor in SteeringVector(...)."
            )
        for attr in ("hook_name", "d_model", "weight_mode"):
            a, b = getattr(self, attr), getattr(other, attr)
            if a != b:
                raise VectorMismatchError(
                    f"cannot {verb} vectors with different {attr}: {a!r} vs {b!r}; allowed: vectors at the "
                    "same hook point of the same model. Fix: rebuild one of them at the other's hook."
                )
        if self.model_name and other.model_name and self.model_name != other.model_name:
            raise VectorMismatchError(f"cannot {verb} vectors from different models: {self.model_name!r} vs "
                                      f"{other.model_name!r}.")
        if self.is_direction != other.is_direction:
            raise VectorMismatchError(
                f"cannot {verb} a per-position vector {tuple(self.tensor.shape if not self.is_direction else other.tensor.shape)} "
                "and a single direction; allowed: two of the same kind. Fix: turn the per-position one into a "
                "direction with .direction('sum'), or broadcast the direction yourself."
            )

    def _binary(self, other: "SteeringVector", sign: float, verb: str) -> "SteeringVector":
        self._combine_check(other, verb)
        a, b = self.tensor, other.tensor.to(self.tensor)
        if not self.is_direction and a.shape[0] != b.shape[0]:
            # The paper composes ActAdd vectors of different lengths at the front:
            # the shorter one is zero beyond its end.
            n = max(a.shape[0], b.shape[0])
            a = torch.nn.functional.pad(a, (0, 0, 0, n - a.shape[0]))
            b = torch.nn.functional.pad(b, (0, 0, 0, n - b.shape[0]))
        return replace(
            self,
            tensor=a + sign * b,
            method=f"({self.method} {'+' if sign > 0 else '-'} {other.method})",
            prompts={"left": self.prompts, "right": other.prompts, "op": verb},
            tokens={},
            model_name=self.model_name or other.model_name,
        )

    def __add__(self, other: "SteeringVector") -> "SteeringVector":
        return self._binary(other, 1.0, "add")

    def __radd__(self, other: Any) -> "SteeringVector":
        if isinstance(other, (int, float)) and not isinstance(other, bool) and other == 0:
            return self  # lets sum(vectors) start from 0
        return self._binary(other, 1.0, "add")

    def __sub__(self, other: "SteeringVector") -> "SteeringVector":
        return self._binary(other, -1.0, "subtract")

    def __mul__(self, scalar: _Scalar) -> "SteeringVector":
        value = as_real(scalar)
        if value is None or not math.isfinite(value):
            raise InvalidArgumentError(
                f"cannot multiply a SteeringVector by {scalar!r}; allowed: a finite int or float. "
                "Fix: pass a number (per-element scaling: build a new vector from vec.tensor)."
            )
        return replace(self, tensor=self.tensor * value)

    __rmul__ = __mul__

    def __truediv__(self, scalar: _Scalar) -> "SteeringVector":
        value = as_real(scalar)
        if value is not None and (value == 0 or not math.isfinite(value)):
            raise InvalidArgumentError(f"cannot divide a SteeringVector by {scalar!r}; allowed: a finite non-zero number.")
        return self * (1.0 / value if value is not None else scalar)

    def __neg__(self) -> "SteeringVector":
        return replace(self, tensor=-self.tensor)

    # ------------------------------------------------------------------ measures
    def norm(self) -> Union[Float[Tensor, " pos"], Float[Tensor, ""]]:
        """L2 norm: one per position for a per-position vector, a scalar for a direction.

        Example:
            >>> import torch
            >>> SteeringVector(torch.tensor([3.0, 4.0]), hook_name="blocks.0.hook_resid_pre").norm().item()
            5.0
        """
        return torch.linalg.vector_norm(self.tensor.float(), dim=-1)

    def direction(self, reduce: str = "sum") -> "SteeringVector":
        """Collapse a per-position vector into one ``[d_model]`` direction.

        Args:
            reduce: ``"sum"`` (the net addition over the front positions), ``"mean"``, or
                ``"last"`` (the final position).

        Example:
            >>> import torch
            >>> v = SteeringVector(torch.ones(3, 2), hook_name="blocks.0.hook_resid_pre")
            >>> v.direction("sum").tensor.tolist()
            [3.0, 3.0]
        """
        if self.is_direction:
            return self
        if reduce in ("sum", "mean"):
            tensor = einops.reduce(self.tensor, "pos d_model -> d_model", reduce)
        elif reduce == "last":
            tensor = self.tensor[-1]
        else:
            raise InvalidArgumentError(f"reduce={reduce!r}; allowed: 'sum', 'mean', 'last'. Fix: pass one of those.")
        return replace(self, tensor=tensor, meta={**self.meta, "reduced_from": f"{reduce} of {self.n_pos} positions"})

    def cosine_similarity(self, other: "SteeringVector", reduce: str = "sum") -> float:
        """Cosine similarity with another vector at the same hook.

        Per-position vectors are first collapsed with :meth:`direction` (``reduce``),
        so vectors of different lengths can be compared.

        Example:
            >>> import torch
            >>> a = SteeringVector(torch.tensor([1.0, 0.0]), hook_name="blocks.0.hook_resid_pre")
            >>> b = SteeringVector(torch.tensor([1.0, 1.0]), hook_name="blocks.0.hook_resid_pre")
            >>> round(a.cosine_similarity(b), 4)
            0.7071
        """
        if not isinstance(other, SteeringVector):
            raise InvalidArgumentError(f"cosine_similarity needs another SteeringVector, got {type(other).__name__}.")
        if self.d_model != other.d_model:
            raise VectorMismatchError(f"cannot compare vectors with d_model {self.d_model} and {other.d_model}; "
                                      "allowed: equal widths.")
        a = self.direction(reduce).tensor.float()
        b = other.direction(reduce).tensor.float().to(a.device)
        return float(torch.nn.functional.cosine_similarity(a, b, dim=0))

    # ------------------------------------------------------------------ moves
    def to(self, *args: Any, **kwargs: Any) -> "SteeringVector":
        """Move/cast the tensor like ``Tensor.to`` (device and/or dtype); metadata is kept.

        Example:
            >>> import torch
            >>> v = SteeringVector(torch.zeros(2), hook_name="blocks.0.hook_resid_pre")
            >>> v.to(torch.bfloat16).dtype
            torch.bfloat16
        """
        return replace(self, tensor=self.tensor.to(*args, **kwargs))

    def clone(self) -> "SteeringVector":
        """A copy with its own tensor storage."""
        return replace(self, tensor=self.tensor.clone(), prompts=dict(self.prompts),
                       tokens={k: list(v) for k, v in self.tokens.items()}, meta=dict(self.meta))

    # ------------------------------------------------------------------ persistence
    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the vector and its metadata to one ``.safetensors`` file, atomically.

        The tensor keeps its dtype (bfloat16 included); the metadata (hook, model name,
        method, prompts, tokens, padding, weight mode, ``meta``) is stored as JSON in the
        file header, so it must be JSON data (tuples come back as lists). The file is
        written under a temporary name and moved into place, so a failure leaves no
        partial file. See :mod:`steering.persist` for the layout.

        Args:
            path: Destination file, e.g. ``"love.safetensors"``; its folder must exist.

        Returns:
            The path written, as a :class:`pathlib.Path`.

        Example:
            >>> import os, tempfile, torch
            >>> v = SteeringVector(torch.ones(3, 64, dtype=torch.bfloat16), hook_name="blocks.1.hook_resid_pre", model_name="m")
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     w = SteeringVector.load(v.save(os.path.join(folder, "v.safetensors")))
            >>> torch.equal(w.tensor, v.tensor), w.dtype, w.hook_name, w.model_name
            (True, torch.bfloat16, 'blocks.1.hook_resid_pre', 'm')
        """
        return write_file([file_entry(self, SINGLE_KEY, "the vector")], "vector", path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], *, device: Union[str, torch.device] = "cpu") -> "SteeringVector":
        """Read a vector written by :meth:`save` (safetensors + JSON only: nothing is unpickled).

        The loaded vector remembers the model it was taken from; applying it to another
        model is refused by :meth:`check_compatible`. Use :meth:`retarget` to override
        that deliberately.

        Args:
            path: The ``.safetensors`` file.
            device: Where to put the tensor (default CPU).

        Raises:
            steering.errors.VectorFileError: the file is missing, not a safetensors file,
                has no steering-lens metadata, or was written in a newer format.

        Example:
            >>> import os, tempfile, torch
            >>> from steering.testing import tiny_model
            >>> v = SteeringVector(torch.ones(64), hook_name="blocks.1.hook_resid_post", model_name="tiny-gpt2")
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     w = SteeringVector.load(v.save(os.path.join(folder, "v.safetensors")))
            >>> w.check_compatible(tiny_model("llama"))
            Traceback (most recent call last):
            ...
            steering.errors.VectorMismatchError: the vector comes from model 'tiny-gpt2' but is applied to 'tiny-llama'; ...
        """
        found = [cls(tensor=tensor, **fields) for tensor, fields in read_file(path, device)]
        if len(found) != 1:
            raise VectorFileError(
                f"'{path}' holds a set of {len(found)} vectors ({', '.join(v.hook_name for v in found)}); "
                "allowed here: a file with one vector. Fix: read it with steering.load_vectors(path)."
            )
        return found[0]

    def retarget(self, model: Any) -> "SteeringVector":
        """A copy declared to belong to ``model``: the explicit override of :meth:`check_compatible`.

        :meth:`check_compatible` refuses a vector whose recorded model name or weight mode
        differs from the model's. When you know it is valid there anyway (the same weights under
        another name, a fine-tune that kept the residual basis, a transfer experiment), this sets
        ``model_name`` and ``weight_mode`` to the model's, recording the old ones in
        ``meta["retargeted_from"]``. A different ``d_model`` or a missing hook point is still
        refused. The tensor values are not changed.

        Args:
            model: The ``TransformerBridge`` the vector should be applied to.

        Returns:
            A new vector (own tensor storage); ``self`` is unchanged.

        Raises:
            VectorMismatchError: the widths differ, or the hook point is not one of the model's.

        Example:
            >>> import torch
            >>> from steering.testing import tiny_model
            >>> model = tiny_model("llama")
            >>> v = SteeringVector(torch.ones(64), hook_name="blocks.1.hook_resid_pre", model_name="other")
            >>> w = v.retarget(model)
            >>> w.model_name, w.meta["retargeted_from"]
            ('tiny-llama', {'model_name': 'other', 'weight_mode': 'hf'})
            >>> w.check_compatible(model)  # accepted now
        """
        d_model = int(model.cfg.d_model)
        model_name = getattr(model.cfg, "model_name", None)
        if self.d_model != d_model:
            raise VectorMismatchError(
                f"cannot retarget the vector at {self.hook_name} (d_model={self.d_model}) to model {model_name!r}, "
                f"whose d_model={d_model}; allowed: a model with the same residual width. Fix: rebuild the vector "
                "on this model."
            )
        if self.hook_name not in model.hook_dict:
            raise VectorMismatchError(
                f"cannot retarget the vector: its hook {self.hook_name!r} is not a hook point of model {model_name!r} "
                f"({int(model.cfg.n_layers)} layers); allowed: a name in model.hook_dict. Fix: rebuild the vector on "
                "this model at a layer it has."
            )
        mode = "compat" if getattr(model, "compatibility_mode", False) else "hf"
        out = self.clone()
        out.meta["retargeted_from"] = {"model_name": self.model_name, "weight_mode": self.weight_mode}
        return replace(out, model_name=model_name, weight_mode=mode)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        return vector_repr(self)

    def _repr_html_(self) -> str:
        return vector_html(self)


def file_entry(vec: Any, key: str, where: str) -> tuple[str, Tensor, dict[str, Any]]:
    """One ``(key, tensor, fields)`` entry of a vector file (:mod:`steering.persist`), after checking
    that ``vec`` is a finite float :class:`SteeringVector` (``where`` names it in errors).

    Example:
        >>> file_entry(3, "vector", "vectors[0]")
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: vectors[0] is a int; allowed: a SteeringVector. Fix: wrap the tensor in SteeringVector(tensor, hook_name=...).
    """
    if not isinstance(vec, SteeringVector):
        raise InvalidArgumentError(
            f"{where} is a {type(vec).__name__}; allowed: a SteeringVector. Fix: wrap the tensor in "
            "SteeringVector(tensor, hook_name=...)."
        )
    if vec.dtype not in FLOAT_DTYPES.values():
        raise InvalidArgumentError(f"{where} has dtype {vec.dtype}; allowed: {', '.join(FLOAT_DTYPES)}. Fix: cast it "
                                   "with vec.to(torch.float32).")
    vec.check_finite()
    return key, vec.tensor, {name: getattr(vec, name) for name in FIELDS}


def vector_list(value: Any, name: str = "vector", *, allow_empty: bool = False) -> list[SteeringVector]:
    """One :class:`SteeringVector` or a list of them, as a list (the argument check of every steering call).

    Example:
        >>> vector_list([1])
        Traceback (most recent call last):
        ...
        steering.errors.InvalidArgumentError: vector=[1] is not a SteeringVector; allowed: a SteeringVector or a list of them. Fix: build one with st.actadd(model, pos, neg, layer).
    """
    if isinstance(value, SteeringVector):
        return [value]
    items: Sequence[Any] = value if isinstance(value, (list, tuple)) else []
    if (not items and not (allow_empty and isinstance(value, (list, tuple)))) or not all(
        isinstance(v, SteeringVector) for v in items
    ):
        raise InvalidArgumentError(
            f"{name}={value!r:.200} is not a SteeringVector; allowed: a SteeringVector or a list of them. "
            "Fix: build one with st.actadd(model, pos, neg, layer)."
        )
    return list(items)
