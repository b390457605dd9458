"""Translate steering vectors into TransformerLens 4's declarative intervention specs (vLLM, Inspect).

TransformerLens 4 can drive a model with vLLM (``RemoteBridge.boot_vllm``) or an
inspect_ai provider (``RemoteBridge.boot_inspect``). Neither accepts Python hook
functions; both accept *declarative affine interventions*, one spec per hook point:
``{"op": "add", "value": <vector>, "pos": <positions>}`` adds ``value`` at those
sequence positions (every position without ``pos``). That is exactly front-aligned
ActAdd: :func:`vllm_interventions` builds the specs from a :class:`SteeringVector` and
a coefficient, e.g. to pass as ``bridge.run_with_hooks(tokens, intervene=specs)``-style
arguments (see ``docs/scaling.md``).

Backend limits (read from TransformerLens 4.3's sources):

* ``backend="vllm"`` — ``value`` must be one ``[d_model]`` vector per hook, even with
  ``pos`` (the compiled path keeps ``(max_tokens, d_model)`` affine buffers and writes
  the same row at each listed position). ``pos`` needs
  ``boot_vllm(enable_position_interventions=True)``. So a per-position ActAdd vector
  translates only when one position carries it (the usual case: ``" weddings" − " "``
  differs at one position after BOS); otherwise a clear error offers the options.
* ``backend="inspect"`` — ``value`` may be per-position ``(len(pos), d_model)``: any
  ActAdd vector translates exactly.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "a", "b", layer=1)         # BOS + one differing position
    >>> spec = st.vllm_interventions(vec, 4.0)
    >>> list(spec), spec["blocks.1.hook_resid_pre"]["op"], spec["blocks.1.hook_resid_pre"]["pos"]
    (['blocks.1.hook_resid_pre'], 'add', [1])
"""

from typing import Any, Literal, Sequence, Union

import torch

from .errors import InvalidArgumentError
from .validate import coeff as check_coeff
from .validate import flag
from .vectors import SteeringVector

__all__ = ["vllm_interventions", "RemoteBackend"]

#: The remote drivers of TransformerLens 4 whose intervention specs this module writes.
RemoteBackend = Literal["vllm", "inspect"]
_BACKENDS = ("vllm", "inspect")


def vllm_interventions(
    vector: Union[SteeringVector, Sequence[SteeringVector]],
    coeff: Any = 1.0,
    *,
    backend: RemoteBackend = "vllm",
    as_list: bool = True,
) -> dict:
    """Intervention specs that add ``coeff · vector`` the way :func:`steering.steer` does.

    A per-position (ActAdd) vector becomes an ``add`` at positions ``0 … n−1`` counted
    from the prompt's first token (BOS), i.e. front alignment; all-zero positions (BOS)
    are left out. A ``[d_model]`` direction becomes an ``add`` at every position (no
    ``pos``), like ``positions="all"``. Several vectors give one spec per hook.

    Args:
        vector: A :class:`SteeringVector` or a list (distinct hooks).
        coeff: The coefficient (folded into ``value``).
        backend: ``"vllm"`` (one ``[d_model]`` value per hook) or ``"inspect"``
            (per-position values allowed).
        as_list: Return values as nested Python lists (JSON-serialisable, what the
            drivers ship to workers); ``False`` keeps float32 CPU tensors.

    Returns:
        ``{hook_name: {"op": "add", "value": ..., "pos": [...]}}`` (no ``"pos"`` key for
        directions).

    Raises:
        InvalidArgumentError: an unknown backend, two vectors at one hook, or (vLLM) a
            vector whose non-zero positions differ — the message lists the options.
        InvalidCoefficientError: ``coeff`` is not a finite number.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "ab", "", layer=0)   # two differing positions
        >>> spec = st.vllm_interventions(vec, 2.0, backend="inspect")["blocks.0.hook_resid_pre"]
        >>> spec["pos"], len(spec["value"]), len(spec["value"][0])
        ([1, 2], 2, 64)
        >>> d = st.vllm_interventions(vec.direction(), 2.0)["blocks.0.hook_resid_pre"]
        >>> sorted(d), len(d["value"])
        (['op', 'value'], 64)
    """
    if backend not in _BACKENDS:
        raise InvalidArgumentError(f"backend={backend!r}; allowed: 'vllm', 'inspect'. Fix: pass backend='vllm'.")
    c = check_coeff(coeff)
    as_list = flag("as_list", as_list)
    vectors = [vector] if isinstance(vector, SteeringVector) else list(vector) if isinstance(vector, (list, tuple)) else []
    if not vectors or not all(isinstance(v, SteeringVector) for v in vectors):
        raise InvalidArgumentError(
            f"vector={vector!r}; allowed: a SteeringVector or a list of them. Fix: st.actadd(model, pos, neg, layer)."
        )
    out: dict = {}
    for vec in vectors:
        vec.check_finite()
        if vec.hook_name in out:
            raise InvalidArgumentError(
                f"two vectors at {vec.hook_name}; allowed: one spec per hook point. Fix: add them first (v1 + v2)."
            )
        t = vec.tensor.detach().to("cpu", torch.float32) * c
        if vec.is_direction:
            spec: dict = {"op": "add", "value": t}
        else:
            nonzero = [i for i in range(t.shape[0]) if bool(t[i].abs().max() > 0)]
            if not nonzero:
                continue  # an all-zero vector (or c = 0) adds nothing
            if backend == "vllm":
                first = t[nonzero[0]]
                if any(not torch.equal(t[i], first) for i in nonzero[1:]):
                    raise InvalidArgumentError(
                        f"the vector at {vec.hook_name} differs at {len(nonzero)} positions {nonzero}, but the vLLM "
                        "driver adds one [d_model] value per hook (the same row at every listed position); allowed: "
                        "a vector non-zero at one position, or a direction. Fix: use backend='inspect' (per-position "
                        "values), a single-token prompt pair, or vec.direction('sum') with positions='all' semantics."
                    )
                spec = {"op": "add", "value": first, "pos": nonzero}
            else:
                spec = {"op": "add", "value": t[nonzero], "pos": nonzero}
        if as_list:
            spec["value"] = spec["value"].tolist()
        out[vec.hook_name] = spec
    return out
