"""Layer × coefficient sweeps and per-layer effect sizes.

:func:`sweep` builds the ActAdd vector of a prompt pair at every requested layer (one
forward pass for all layers), then measures each layer × coefficient on a set of
prompts. Coefficients ride as batch rows: each layer costs one batched forward pass
(for next-token metrics) or one batched ``generate`` (for sampled metrics), whatever
the number of coefficients. The unsteered baseline (``coeff = 0``) is measured once and
shared by every layer.

Metrics (pass names or :class:`Metric` objects):

* ``"logprob"`` — log of the total next-token probability of ``targets`` after each
  prompt (no sampling).
* ``"logit_diff"`` — mean logit of ``targets`` minus mean logit of ``against`` after
  each prompt (no sampling).
* ``"topic"`` — fraction of sampled completions containing one of ``topic_words``.
* ``"sentiment"`` — mean VADER compound score of sampled completions (−1 … +1).
* ``"kl"`` — off-target KL (nats) on ``kl_prompts``, steered positions masked (see
  :func:`steering.off_target_kl`); its "prompt" is each KL prompt.

:func:`effect_sizes` turns the table into one Cohen's d per layer × coefficient ×
metric, with bootstrap confidence intervals over prompts.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> model = tiny_model()
    >>> table = st.sweep(model, "love", "hate", ["I think that", "we will go to"], layers=[0, 1],
    ...                  coeffs=[0, 4], metrics=[st.Metric("logprob", targets=["l"])])
    >>> sorted(table.columns)
    ['coeff', 'hook', 'layer', 'metric', 'prompt', 'value']
    >>> len(table)  # 2 layers × 2 coeffs × 2 prompts × 1 metric
    8
"""

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .errors import InvalidArgumentError
from .extract import _hook_names, actadd_layers, tokenize_prompt
from .metrics import NEUTRAL_TEXTS, _check_texts, _coeff_list, _forward_logprobs, _progress, kl_divergence, steered_positions

__all__ = ["Metric", "sweep", "effect_sizes", "WEDDING_WORDS", "topic_fraction"]

#: The paper's wedding-topic words (Turner et al., topic-steering experiment).
WEDDING_WORDS = ["wedding", "weddings", "wed", "marry", "married", "marriage", "bride", "groom", "honeymoon"]

_KINDS = ("logprob", "logit_diff", "topic", "sentiment", "kl")
_SAMPLED = ("topic", "sentiment")


@dataclass
class Metric:
    """One metric of a :func:`sweep`, with its settings.

    Args:
        kind: ``"logprob"``, ``"logit_diff"``, ``"topic"``, ``"sentiment"`` or ``"kl"``.
        targets: Token strings whose next-token probability ``logprob`` / ``logit_diff`` read
            (multi-token strings use their first token).
        against: Tokens subtracted by ``logit_diff``.
        words: Topic words for ``topic`` (default :data:`WEDDING_WORDS`).
        prompts: Unrelated prompts for ``kl`` (default :data:`steering.NEUTRAL_TEXTS`).
        name: Label in the table (default: ``kind``).

    Example:
        >>> Metric("topic").words[:3]
        ['wedding', 'weddings', 'wed']
    """

    kind: str
    targets: Optional[list] = None
    against: Optional[list] = None
    words: Optional[list] = None
    prompts: Optional[list] = None
    name: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InvalidArgumentError(
                f"metric kind {self.kind!r}; allowed: {', '.join(map(repr, _KINDS))}. Fix: pass e.g. Metric('logprob', "
                "targets=[' wedding'])."
            )
        if self.kind in ("logprob", "logit_diff") and not self.targets:
            raise InvalidArgumentError(
                f"metric {self.kind!r} needs targets=[...] (token strings such as ' wedding'). "
                f"Fix: Metric({self.kind!r}, targets=[' wedding'])."
            )
        if self.kind == "logit_diff" and not self.against:
            raise InvalidArgumentError("metric 'logit_diff' needs against=[...] tokens. Fix: add against=[' the'].")
        if self.kind == "topic" and self.words is None:
            self.words = list(WEDDING_WORDS)
        if self.name is None:
            self.name = self.kind


def topic_fraction(texts: Sequence[str], words: Sequence[str]) -> float:
    """Fraction of texts containing any of ``words`` as a whole word (case-insensitive).

    Example:
        >>> topic_fraction(["We got married!", "A sunny day", "weddingcake"], ["married", "wedding"])
        0.3333333333333333
    """
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    return sum(bool(pattern.search(t)) for t in texts) / max(len(texts), 1)


def _as_metrics(metrics: Any, targets: Any, kl_prompts: Any, topic_words: Any) -> list[Metric]:
    if isinstance(metrics, (str, Metric)):
        metrics = [metrics]
    if not isinstance(metrics, (list, tuple)) or not metrics:
        raise InvalidArgumentError(f"metrics={metrics!r}; allowed: a non-empty list of names {list(_KINDS)} or Metric objects.")
    out = []
    for m in metrics:
        if isinstance(m, str):
            m = Metric(m, targets=list(targets) if targets else None, prompts=kl_prompts,
                       words=list(topic_words) if topic_words else None)
        if not isinstance(m, Metric):
            raise InvalidArgumentError(f"metric {m!r}; allowed: a name in {list(_KINDS)} or a Metric.")
        out.append(m)
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"metric names {names} repeat; give each Metric a distinct name=.")
    return out


def _token_ids(model: Any, strings: Sequence[Any]) -> list[int]:
    from .lens import _target_ids

    return [tid for _, tid in _target_ids(model, list(strings))]


def _next_token_values(metric: Metric, logp_last: torch.Tensor, ids: dict) -> float:
    if metric.kind == "logprob":
        return float(torch.logsumexp(logp_last[ids[metric.name]], dim=0))
    pos, neg = ids[metric.name]
    return float(logp_last[pos].mean() - logp_last[neg].mean())  # log-softmax shift cancels in the difference


def sweep(
    model: Any,
    pos: str,
    neg: str,
    prompts: Sequence[str],
    *,
    layers: Any = "all",
    coeffs: Any = (0, 2, 4, 8),
    metrics: Any = ("logprob",),
    targets: Optional[Sequence[str]] = None,
    kl_prompts: Optional[Sequence[str]] = None,
    topic_words: Optional[Sequence[str]] = None,
    hook: str = "resid_pre",
    pad: str = "space",
    n: int = 8,
    max_new_tokens: int = 30,
    seed: Optional[int] = 0,
    batch_size: int = 32,
    reuse: bool = True,
    progress: Optional[bool] = None,
) -> Any:
    """Measure an ActAdd prompt pair at every layer × coefficient on a set of prompts.

    Args:
        model: The bridge.
        pos: p+ (e.g. ``" weddings"``).
        neg: p− (e.g. ``""``).
        prompts: Prompts the metrics are measured on (effect sizes treat them as the sample).
        layers: Layers to sweep (``"all"``, an int or a list).
        coeffs: Coefficients; 0 (the unsteered baseline) is added if missing.
        metrics: Metric names or :class:`Metric` objects (see the module notes).
        targets: Default ``targets`` for named ``"logprob"`` / ``"logit_diff"`` metrics.
        kl_prompts: Default unrelated prompts of a named ``"kl"`` metric.
        topic_words: Default words of a named ``"topic"`` metric (default: wedding words).
        hook: Hook kind of the vectors (default ``"resid_pre"``).
        pad: Padding rule of the prompt pair, see :func:`steering.actadd`.
        n: Completions per prompt for sampled metrics.
        max_new_tokens: Tokens per completion for sampled metrics.
        seed: Sampling seed.
        batch_size: Rows per forward / generate batch.
        reuse: For next-token metrics at ``resid_pre``, run the unsteered layers below each
            steered layer once and resume there (checked against a full pass first; falls
            back to full passes if the check fails). ``False`` always runs full passes.
        progress: Show a progress bar (default: yes for long sweeps).

    Returns:
        A tidy ``pandas.DataFrame``, one row per layer × coefficient × prompt × metric,
        columns ``layer``, ``hook``, ``coeff``, ``prompt``, ``metric``, ``value``. Feed it to
        :func:`effect_sizes` (and those to :func:`steering.effect_heatmap` /
        :func:`steering.frontier_figure`).

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> model = tiny_model()
        >>> t = st.sweep(model, "love", "hate", ["I think that"], layers=[1], coeffs=[0, 2, 4],
        ...              metrics=["kl"], kl_prompts=["a quiet day in town"])
        >>> t.groupby("coeff")["value"].mean().round(6).tolist()[0]
        0.0
    """
    import pandas as pd

    prompts = _check_texts("prompts", prompts)
    coeff_values = _coeff_list(coeffs)
    if 0.0 not in coeff_values:
        coeff_values = [0.0] + coeff_values
    steered_coeffs = [c for c in coeff_values if c != 0.0]
    chosen = _as_metrics(metrics, targets, kl_prompts, topic_words)
    names, _ = _hook_names(model, layers, hook)
    vectors = actadd_layers(model, pos, neg, layers=[int(nm.split(".")[1]) for nm in names], hook=hook, pad=pad)

    forward = [m for m in chosen if m.kind in ("logprob", "logit_diff")]
    kls = [m for m in chosen if m.kind == "kl"]
    sampled = [m for m in chosen if m.kind in _SAMPLED]
    ids = {}
    for m in forward:
        ids[m.name] = _token_ids(model, m.targets) if m.kind == "logprob" else (
            _token_ids(model, m.targets), _token_ids(model, m.against))
    sentiment = None
    if any(m.kind == "sentiment" for m in sampled):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        sentiment = SentimentIntensityAnalyzer()

    prompt_ids = [tokenize_prompt(model, p) for p in prompts]
    kl_sets = {m.name: _check_texts("kl prompts", m.prompts or NEUTRAL_TEXTS) for m in kls}
    kl_ids = {name: [tokenize_prompt(model, p) for p in texts] for name, texts in kl_sets.items()}

    n_rows_layer = len(steered_coeffs) * (len(prompts) * bool(forward) + sum(len(v) for v in kl_ids.values()))
    work = len(vectors) * n_rows_layer + len(prompts) + sum(len(v) for v in kl_ids.values())
    rows: list[dict] = []

    def value_rows(layer: int, hook_name: str, coeff: float, per_metric: dict) -> None:
        for name, values in per_metric.items():
            labels = kl_sets[name] if name in kl_sets else prompts
            for prompt, value in zip(labels, values):
                rows.append({"layer": layer, "hook": hook_name, "coeff": coeff, "prompt": prompt, "metric": name,
                             "value": value})

    def sampled_values(completions: list[str]) -> dict:
        out = {}
        for m in sampled:
            per_prompt = [completions[i * n : (i + 1) * n] for i in range(len(prompts))]
            if m.kind == "topic":
                out[m.name] = [topic_fraction(c, m.words) for c in per_prompt]
            else:
                out[m.name] = [float(np.mean([sentiment.polarity_scores(t)["compound"] for t in c])) for c in per_prompt]
        return out

    from .generation import generate

    with _progress(work, "sweep", progress if progress is not None else (work >= 64 or bool(sampled))) as bar:
        # the unsteered baseline, shared by every layer
        resume = _resumable(model, prompt_ids, vectors, hook) if forward and reuse else None
        if resume is not None:
            base_prompt = [torch.log_softmax(row, -1).unsqueeze(0) for row in resume.base_logits.cpu()]
            if bar is not None:
                bar.update(len(prompt_ids))
        else:
            base_prompt = (_forward_logprobs(model, prompt_ids, None, None, {}, batch_size, bar, last_only=True)
                           if forward else [])
        base_kl = {name: _forward_logprobs(model, seqs, None, None, {}, batch_size, bar) for name, seqs in kl_ids.items()}
        baseline: dict = {m.name: [_next_token_values(m, lp[-1], ids) for lp in base_prompt] for m in forward}
        for m in kls:
            baseline[m.name] = [0.0] * len(kl_ids[m.name])
        if sampled:
            baseline.update(sampled_values(generate(model, prompts, None, n=n, max_new_tokens=max_new_tokens,
                                                    seed=seed, batch_size=batch_size, progress=False)))
        for vec in vectors:
            value_rows(vec.layer, vec.hook_name, 0.0, baseline)
            if not steered_coeffs:
                continue
            per_coeff: dict = {c: {} for c in steered_coeffs}
            if forward:
                if resume is not None:  # below the steered layer nothing changes: resume there
                    logps = _resumed_logprobs(resume, vec, steered_coeffs, batch_size, bar)
                else:
                    seqs = [s for _ in steered_coeffs for s in prompt_ids]
                    rc = [c for c in steered_coeffs for _ in prompt_ids]
                    logps = _forward_logprobs(model, seqs, vec, rc, {}, batch_size, bar, last_only=True)
                for ci, c in enumerate(steered_coeffs):
                    chunk = logps[ci * len(prompts) : (ci + 1) * len(prompts)]
                    for m in forward:
                        per_coeff[c][m.name] = [_next_token_values(m, lp[-1], ids) for lp in chunk]
            for m in kls:
                seqs_k = kl_ids[m.name]
                logps = _forward_logprobs(model, [s for _ in steered_coeffs for s in seqs_k], vec,
                                          [c for c in steered_coeffs for _ in seqs_k], {}, batch_size, bar)
                for ci, c in enumerate(steered_coeffs):
                    values = []
                    for i, s in enumerate(seqs_k):
                        start = steered_positions(vec, int(s.numel()))
                        lp = logps[ci * len(seqs_k) + i]
                        values.append(float(kl_divergence(base_kl[m.name][i][start:], lp[start:]).mean())
                                      if start < s.numel() else math.nan)
                    per_coeff[c][m.name] = values
            if sampled:
                texts = generate(model, prompts, vec, steered_coeffs, n=n, max_new_tokens=max_new_tokens, seed=seed,
                                 batch_size=batch_size, progress=False)
                block = len(prompts) * n
                for ci, c in enumerate(steered_coeffs):
                    per_coeff[c].update(sampled_values(texts[ci * block : (ci + 1) * block]))
            for c in steered_coeffs:
                value_rows(vec.layer, vec.hook_name, c, per_coeff[c])
    table = pd.DataFrame(rows, columns=["layer", "hook", "coeff", "prompt", "metric", "value"])
    return table.sort_values(["metric", "layer", "coeff"], kind="stable").reset_index(drop=True)


def _resumable(model: Any, prompt_ids: list, vectors: list, hook: str) -> Any:
    """A :class:`~steering.fast.ResumableForward` of the prompts when the fast path can serve the sweep."""
    from .fast import ResumableForward
    from .generation import _fast_target, left_pad

    if hook != "resid_pre" or not vectors:
        return None
    plain = _fast_target(model, vectors[0])
    if plain is None:
        return None
    tok = model.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    tokens, mask = left_pad(prompt_ids, pad_id)
    device = next(plain.parameters()).device
    try:
        resume = ResumableForward(plain, tokens.to(device), mask.to(device))
    except Exception:  # noqa: BLE001 - an architecture we cannot resume: full passes instead
        return None
    layers = sorted({v.layer for v in vectors})
    return resume if resume.check(layers[0]) and resume.check(layers[-1]) else None


def _resumed_logprobs(resume: Any, vec: Any, coeffs: list, batch_size: int, bar: Any) -> list:
    """Last-position log-probs of ``coeffs × prompts`` rows (coefficient-major), resumed at the vector's layer."""
    from .errors import warn_user

    mask = resume.mask.cpu()
    n_rows, seq = mask.shape
    first = torch.argmax(mask, dim=1)
    lengths = mask.sum(dim=1)
    tensor = vec.tensor.float()
    n_vec = tensor.shape[0]
    if bool((lengths < n_vec).any()):
        warn_user(
            f"a prompt has {int(lengths.min())} tokens (BOS included), fewer than the vector's {n_vec} positions: only "
            f"its first {int(lengths.min())} positions are added (short_prompt='truncate')."
        )
    template = torch.zeros(n_rows, seq, tensor.shape[1])
    for i in range(n_rows):
        k = int(min(n_vec, lengths[i]))
        template[i, int(first[i]) : int(first[i]) + k] = tensor[:k]
    per_group = max(1, batch_size // max(n_rows, 1))
    out: list = []
    for g in range(0, len(coeffs), per_group):
        group = coeffs[g : g + per_group]
        add = torch.cat([c * template for c in group]).to(resume.base_logits.device)
        logits = resume.last_logits(vec.layer, times=len(group), add=add)
        out += [row.unsqueeze(0) for row in torch.log_softmax(logits, -1).cpu()]
        if bar is not None:
            bar.update(len(group) * n_rows)
    return out


def _cohens_d(steered: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Cohen's d along the last axis (pooled SD); 0 when both are constant and equal, NaN when constant and unequal."""
    diff = steered.mean(-1) - base.mean(-1)
    n1, n2 = steered.shape[-1], base.shape[-1]
    var = ((n1 - 1) * steered.var(-1, ddof=1) + (n2 - 1) * base.var(-1, ddof=1)) / max(n1 + n2 - 2, 1)
    sd = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sd > 0, diff / np.where(sd > 0, sd, 1.0), np.where(diff == 0, 0.0, np.nan))
    return d


def effect_sizes(table: Any, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> Any:
    """Per layer × coefficient × metric: Cohen's d of steered vs unsteered values across prompts.

    ``d = (mean_steered − mean_unsteered) / pooled SD``, with the unsteered values taken
    from the same layer's ``coeff = 0`` rows. The confidence interval is a percentile
    bootstrap that resamples prompts (paired: a resampled prompt brings both its values).
    With fewer than 2 prompts d is undefined (NaN).

    Args:
        table: The table from :func:`sweep` (columns ``layer``, ``coeff``, ``prompt``,
            ``metric``, ``value``).
        n_boot: Bootstrap resamples.
        ci: Confidence level.
        seed: Bootstrap seed.

    Returns:
        A tidy ``pandas.DataFrame``, one row per layer × coefficient × metric (coefficient 0
        included, d = 0), columns ``layer``, ``coeff``, ``metric``, ``n``, ``mean_steered``,
        ``mean_unsteered``, ``effect``, ``ci_low``, ``ci_high``.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"layer": 0, "hook": "h", "metric": "m", "prompt": ["a", "b", "a", "b"],
        ...                   "coeff": [0, 0, 1, 1], "value": [0.0, 2.0, 2.0, 4.0]})
        >>> row = effect_sizes(t, n_boot=200).iloc[1]
        >>> round(float(row["effect"]), 6)  # (3 − 1) / sqrt(2)
        1.414214
    """
    import pandas as pd

    needed = {"layer", "coeff", "prompt", "metric", "value"}
    missing = needed - set(getattr(table, "columns", []))
    if missing:
        raise InvalidArgumentError(
            f"effect_sizes needs a table with columns {sorted(needed)}; missing {sorted(missing)}. "
            "Fix: pass the output of st.sweep(...)."
        )
    if not (isinstance(n_boot, int) and n_boot >= 1) or not (0 < ci < 1):
        raise InvalidArgumentError(f"n_boot={n_boot!r}, ci={ci!r}; allowed: an int ≥ 1 and a level in (0, 1).")
    rng = np.random.default_rng(seed)
    rows = []
    for (layer, metric), group in table.groupby(["layer", "metric"], sort=True):
        base = group[group["coeff"] == 0].set_index("prompt")["value"]
        if base.empty:
            raise InvalidArgumentError(
                f"layer {layer}, metric {metric!r} has no coeff = 0 rows; allowed: tables with the unsteered baseline. "
                "Fix: include 0 in coeffs (st.sweep adds it)."
            )
        for coeff, part in group.groupby("coeff", sort=True):
            values = part.set_index("prompt")["value"]
            common = [p for p in values.index if p in base.index]
            s = values.loc[common].to_numpy(dtype=float)
            b = base.loc[common].to_numpy(dtype=float)
            k = len(common)
            d = float(_cohens_d(s, b)) if k >= 2 else math.nan
            lo = hi = math.nan
            if k >= 2:
                idx = rng.integers(0, k, size=(n_boot, k))
                boot = _cohens_d(s[idx], b[idx])
                boot = boot[np.isfinite(boot)]
                if boot.size:
                    lo, hi = (float(x) for x in np.quantile(boot, [(1 - ci) / 2, 1 - (1 - ci) / 2]))
            rows.append({"layer": layer, "coeff": float(coeff), "metric": metric, "n": k,
                         "mean_steered": float(s.mean()) if k else math.nan,
                         "mean_unsteered": float(b.mean()) if k else math.nan,
                         "effect": d, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)
