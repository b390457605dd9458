"""Activation patching: which (layer, position) cells of the residual stream carry the steering effect.

For every cell, the steered run's residual at ``blocks.{layer}.hook_resid_post`` is patched into the
unsteered run (``mode="denoise"``), or the unsteered one into the steered run (``mode="noise"``),
and the change of the target's log-probability at the last position is read off. The patch runs of
one layer go as rows of one batch, resumed above the patched layer on the twin backend
(:class:`steering._fast.ResumableForward`) where it serves the vector, else as full passes on the
bridge with a patching hook.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> vec = st.actadd(model, "love", "hate", layer=1)
    >>> t = patch_effect(model, vec, "I am here today", target="a", coeff=4.0)
    >>> last = t[(t.layer == 1) & (t.position == t.position.max())]
    >>> round(float(last.recovered.iloc[0]), 4)           # the last layer's output at the last position: all of it
    1.0
"""

from typing import Any, Literal, Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .. import _fast
from .._progress import progress_bar
from ..apply import attached
from ..backends import hf_module, model_lock, resolve
from ..errors import InvalidArgumentError, warn_user
from ..hooks import LayerSpec, hook_names, layer_of, n_layers
from ..lens import lens_readout
from ..placement import Positions
from ..settings import Backend
from ..validate import count
from ..vectors import SteeringVector
from .runs import Prompt, cached_pair, check_common, final_logits, metric_value, prepared, readout, steering_on, \
    token_strings

__all__ = ["patch_effect", "PatchMode", "patched_metric_naive"]

#: ``"denoise"``: steered cell into the unsteered run (how much of the effect it restores);
#: ``"noise"``: unsteered cell into the steered run (how much of the effect it removes).
PatchMode = Literal["denoise", "noise"]
_MODES = ("denoise", "noise")


class _Patcher:
    """Runs batches of single-cell patches of one prompt and reads the target measure at the last position."""

    def __init__(self, model: Any, vector: SteeringVector, coeff: float, prompt: Prompt, mode: str,
                 weights: Tensor, pair: bool, backend: Backend) -> None:
        self.model, self.vector, self.coeff, self.prompt, self.mode = model, vector, coeff, prompt, mode
        self.weights, self.pair = weights, pair
        self.resume = self._resumable(backend)

    def _resumable(self, backend: Backend) -> Optional[Any]:
        """A resumable pass of the run being patched (unsteered for denoise, steered for noise) on the twin."""
        target = resolve(self.model, [self.vector], backend)
        if target.kind != "twin":
            return None
        ids = self.prompt.tokens.to(target.device)
        mask = torch.ones_like(ids)
        try:
            if self.mode == "denoise":
                resume = _fast.ResumableForward(target.module, ids, mask)
            else:
                lengths = torch.tensor([self.prompt.prompt_len])
                with attached(target, self.vector, self.coeff, positions=self.prompt.rule.positions,
                              prompt_lengths=lengths):
                    resume = _fast.ResumableForward(target.module, ids, mask)
        except Exception:  # noqa: BLE001 - an architecture the twin cannot resume: full passes instead
            return None
        return resume if resume.check(n_layers(self.model) - 1) else None

    def measure(self, layer: int, cells: Int[Tensor, " rows"], source: Float[Tensor, "seq d_model"],
                delta: Float[Tensor, "seq d_model"]) -> Float[Tensor, " rows"]:
        """The target measure with ``source[p]`` written at ``(layer, p)`` for each ``p`` in ``cells`` (one row each)."""
        last = self.prompt.seq - 1
        if layer == n_layers(self.model) - 1:  # the last block's output: only the last position reaches the logits
            logits = final_logits(self.model, lens_readout(self.model, source[last].unsqueeze(0)))[0]
            return metric_value(logits, self.weights, self.pair).expand(cells.numel()).clone()
        if self.resume is not None:
            sign = 1.0 if self.mode == "denoise" else -1.0
            add = torch.zeros(cells.numel(), self.prompt.seq, delta.shape[-1])
            add[torch.arange(cells.numel()), cells] = sign * delta[cells]
            logits = self.resume.last_logits(layer + 1, times=cells.numel(), add=add.to(self.resume.base_logits.device))
            return metric_value(logits.cpu(), self.weights, self.pair)
        return self._bridge(layer, cells, source)

    def _bridge(self, layer: int, cells: Int[Tensor, " rows"], source: Float[Tensor, "seq d_model"]) -> Tensor:
        """Full passes on the bridge, one row per cell, a hook writing each row's cell."""
        rows = int(cells.numel())
        values = source[cells]

        def patch(resid: Tensor, hook: Any = None) -> Tensor:
            resid = resid.clone()
            resid[torch.arange(rows), cells.to(resid.device)] = values.to(resid.device, resid.dtype)
            return resid

        ids = self.prompt.tokens.expand(rows, -1).to(self.model.cfg.device)
        name = f"blocks.{layer}.hook_resid_post"
        with torch.no_grad(), self.model.hooks(fwd_hooks=[(name, patch)]):
            if self.mode == "noise":
                with steering_on(self.model, self.vector, self.coeff, self.prompt, rows=rows):
                    logits = hf_module(self.model)(input_ids=ids, logits_to_keep=1).logits[:, -1]
            else:
                logits = hf_module(self.model)(input_ids=ids, logits_to_keep=1).logits[:, -1]
        return metric_value(logits.float().cpu(), self.weights, self.pair)


def _check_mode(mode: Any) -> str:
    if mode not in _MODES:
        raise InvalidArgumentError(
            f"mode={mode!r}; allowed: 'denoise' (steered cell into the unsteered run) or 'noise' (unsteered cell "
            "into the steered run). Fix: pass mode='denoise'."
        )
    return mode


def _prompt_rows(patcher: _Patcher, names: list[str], base: Any, steered: Any, tokens: list[str],
                 batch_size: int, bar: Any) -> list[dict]:
    """Rows of one prompt: every (layer, position) cell; cells the steering leaves unchanged are not run (0)."""
    p = patcher.prompt
    last = p.seq - 1
    m_u = float(metric_value(base.logits[last], patcher.weights, patcher.pair))
    m_s = float(metric_value(steered.logits[last], patcher.weights, patcher.pair))
    total = m_s - m_u
    rows = []
    for name in names:
        layer = layer_of(name)
        delta = steered.cache[name] - base.cache[name]  # [seq, d_model]
        source = steered.cache[name] if patcher.mode == "denoise" else base.cache[name]
        changed = (delta != 0).any(-1)
        if layer == n_layers(patcher.model) - 1:
            changed = changed & (torch.arange(p.seq) == last)  # earlier positions never reach the last logits
        effect = torch.zeros(p.seq, dtype=torch.float64)
        cells = changed.nonzero().flatten()
        for start in range(0, int(cells.numel()), batch_size):
            chunk = cells[start:start + batch_size]
            measured = patcher.measure(layer, chunk, source, delta).double()
            effect[chunk] = measured - m_u if patcher.mode == "denoise" else m_s - measured
        for pos in range(p.seq):
            rec = float(effect[pos]) / total + 0.0 if abs(total) > 1e-6 else float("nan")  # + 0.0: no -0.0
            rows.append({"prompt": p.text, "layer": layer, "hook": name, "position": pos, "token": tokens[pos],
                         "recovered": rec, "effect": float(effect[pos]), "total": total, "mode": patcher.mode,
                         "ran": bool(changed[pos])})
        bar.update(1)
    return rows


def patch_effect(
    model: Any,
    vector: SteeringVector,
    prompts: Any,
    target: Any,
    coeff: Any = 4.0,
    layers: Optional[LayerSpec] = None,
    *,
    mode: PatchMode = "denoise",
    positions: Optional[Positions] = None,
    batch_size: int = 32,
    backend: Backend = "auto",
    progress: Optional[bool] = None,
) -> Any:
    """Activation patching of the steering effect, per (layer, position) of ``blocks.{layer}.hook_resid_post``.

    The measure ``m`` is the target's log-probability at the last prompt position (or, for a pair
    ``(a, b)``, the logit difference ``a − b``); ``total = m_steered − m_unsteered``.

    * ``mode="denoise"`` (default): the steered run's residual at one cell is written into the
      unsteered run; ``recovered = (m_patched − m_unsteered) / total``, the share of the effect that
      one cell carries on its own.
    * ``mode="noise"``: the unsteered residual is written into the steered run;
      ``recovered = (m_steered − m_patched) / total``, the share of the effect lost without it.

    Exact ends: the last block's output at the last position gives 1 (it *is* the readout), and a
    cell the steering has not changed (every layer before the steered one, positions before the
    first steered one) gives exactly 0 — such cells are not run (``ran`` is False). All cells of a
    layer run as rows of one batch; on the twin backend the runs resume above the patched layer
    (nothing below it changes), else full passes on the bridge.

    Args:
        model: The bridge.
        vector: The steering vector.
        prompts: A prompt or a list (one block of rows per prompt).
        target: A token (string or id) or a pair ``(" good", " bad")``.
        coeff: The coefficient.
        layers: Layers to patch (a layer spec as :func:`steering.hook_name` takes; default: all).
        mode: ``"denoise"`` or ``"noise"`` (above).
        positions: Position rule (default: the vector's).
        batch_size: Patch rows per forward pass.
        backend: ``"auto"``, ``"bridge"`` or ``"twin"`` (:mod:`steering.backends`).
        progress: Show a progress bar (default: above 64 prompt × layer blocks).

    Returns:
        A tidy ``pandas.DataFrame``, one row per prompt × layer × position, columns ``prompt``,
        ``layer``, ``hook``, ``position``, ``token``, ``recovered``, ``effect`` (the numerator),
        ``total``, ``mode``, ``ran``. ``recovered`` is NaN when the steering does not move the
        measure (|total| ≤ 1e-6), with a warning.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> vec = st.actadd(model, "love", "hate", layer=1)
        >>> t = patch_effect(model, vec, ["I am here today"], target=("a", "b"), coeff=4.0)
        >>> float(t.loc[t.layer == 0, "recovered"].abs().max())             # before the steered layer
        0.0
    """
    import pandas as pd

    vector, texts, coeff = check_common(model, vector, prompts, coeff)
    mode = _check_mode(mode)
    batch_size = count("batch_size", batch_size, caller="patch_effect", example=32)
    label, weights, pair = readout(model, target)
    names, _ = hook_names(model, "all" if layers is None else layers, "resid_post")
    rows: list[dict] = []
    total = len(texts) * len(names)
    show = progress if progress is not None else total > 64
    with model_lock(model), progress_bar(total=total, desc="patch_effect", unit="layer", disable=not show,
                                         leave=False) as bar:
        for text in texts:
            prompt = prepared(model, vector, text, coeff, positions)
            base, steered = cached_pair(model, vector, coeff, prompt, names)
            patcher = _Patcher(model, vector, coeff, prompt, mode, weights, pair, backend)
            rows += _prompt_rows(patcher, names, base, steered, token_strings(model, prompt.tokens), batch_size, bar)
    table = pd.DataFrame(rows)
    if table["recovered"].isna().any():
        warn_user("patch_effect: the steering does not move the target measure on some prompts (|total| ≤ 1e-6), "
                  "so their recovered share is NaN; pick a target the vector moves, or a larger coeff.")
    table.attrs.update(target=label, coeff=coeff, mode=mode, vector_hook=vector.hook_name)
    return table


def patched_metric_naive(model: Any, vector: SteeringVector, prompt: Prompt, coeff: float, layer: int, pos: int,
                         source: Float[Tensor, " d_model"], weights: Tensor, pair: bool, mode: PatchMode) -> float:
    """One patch, one full forward pass on the bridge (the reference the batched runs are checked against)."""

    def patch(resid: Tensor, hook: Any = None) -> Tensor:
        resid = resid.clone()
        resid[:, pos] = source.to(resid.device, resid.dtype)
        return resid

    ids = prompt.tokens.to(model.cfg.device)
    with torch.no_grad(), model.hooks(fwd_hooks=[(f"blocks.{layer}.hook_resid_post", patch)]):
        if mode == "noise":
            with steering_on(model, vector, coeff, prompt):
                logits = hf_module(model)(input_ids=ids, logits_to_keep=1).logits[0, -1]
        else:
            logits = hf_module(model)(input_ids=ids, logits_to_keep=1).logits[0, -1]
    return float(metric_value(logits.float().cpu(), weights, pair))
