"""Layer × coefficient sweeps: one tidy table of measurements per prompt pair.

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

:func:`steering.stats.effect_sizes` turns the table into one Cohen's d per layer ×
coefficient × metric, with bootstrap confidence intervals over prompts.

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
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Optional, Sequence

import numpy as np
import torch

from . import _fast
from ._progress import progress_bar
from .backends import check_backend, model_lock, resolve
from .chat import chat_texts
from .engine import forward_logprobs
from .errors import InvalidArgumentError, warn_user
from .extract import actadd_layers
from .generation import generate
from .hooks import hook_names, layer_of
from .lens import target_ids
from .metrics import kl_divergence
from .nulls import random_vectors, swapped_vector
from .placement import Span, addition, masked_prefix, placement, truncation_message
from .settings import Backend
from .texts import NEUTRAL_TEXTS, WEDDING_WORDS, sentiment_scores, topic_fraction
from .tokens import fill_id, left_pad, tokenize_prompt
from .validate import coeff_list, count, flag, text_list
from .validate import seed as check_seed
from .vectors import SteeringVector

__all__ = ["Metric", "MetricKind", "sweep"]

MetricKind = Literal["logprob", "logit_diff", "topic", "sentiment", "kl"]
_KINDS = ("logprob", "logit_diff", "topic", "sentiment", "kl")
_SAMPLED = ("topic", "sentiment")
_COLUMNS = ["layer", "hook", "coeff", "prompt", "metric", "value"]
_NULL_COLUMNS = ["null_kind", "null_index"]


@dataclass
class Metric:
    """One metric of a :func:`sweep`, with its settings.

    Args:
        kind: ``"logprob"``, ``"logit_diff"``, ``"topic"``, ``"sentiment"`` or ``"kl"``.
        targets: Token strings whose next-token probability ``logprob`` / ``logit_diff`` read
            (multi-token strings use their first token).
        against: Tokens subtracted by ``logit_diff``.
        words: Topic words for ``topic`` (default :data:`steering.texts.WEDDING_WORDS`).
        prompts: Unrelated prompts for ``kl`` (default :data:`steering.texts.NEUTRAL_TEXTS`).
        name: Label in the table (default: ``kind``).

    Example:
        >>> Metric("topic").words[:3]
        ['wedding', 'weddings', 'wed']
    """

    kind: str  # a MetricKind; checked in __post_init__ with a message naming the allowed kinds
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


def _listed(name: str, value: Any) -> Optional[list]:
    """``None``, or a list/tuple given for ``targets`` / ``topic_words``, as a list (anything else is refused)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise InvalidArgumentError(f"{name}={value!r:.60}; allowed: a list of token strings (or ids), or None. "
                                   f"Fix: wrap a single one in a list, e.g. {name}=[' wedding'].")
    return list(value) or None


def _as_metrics(metrics: Any, targets: Any, kl_prompts: Any, topic_words: Any) -> list[Metric]:
    targets, topic_words = _listed("targets", targets), _listed("topic_words", topic_words)
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


@dataclass
class _Sweep:
    """The prepared inputs of one sweep and the rows it has written so far."""

    model: Any
    prompts: list[str]
    steered: list[float]  # the non-zero coefficients
    forward: list[Metric]
    kls: list[Metric]
    sampled: list[Metric]
    ids: dict  # metric name -> target token ids (logprob) or (targets, against) (logit_diff)
    prompt_ids: list
    kl_sets: dict  # metric name -> its KL prompts
    kl_ids: dict  # metric name -> their token ids
    options: dict  # n, max_new_tokens, seed, batch_size, backend
    rows: list = field(default_factory=list)

    def add(self, vec: SteeringVector, coeff: float, per_metric: dict) -> None:
        null = {"null_kind": vec.meta.get("null", "real"), "null_index": vec.meta.get("null_index", 0)}
        for name, values in per_metric.items():
            labels = self.kl_sets[name] if name in self.kl_sets else self.prompts
            for prompt, value in zip(labels, values):
                self.rows.append({"layer": vec.layer, "hook": vec.hook_name, "coeff": coeff, "prompt": prompt,
                                  "metric": name, "value": value, **null})

    def next_token_values(self, metric: Metric, logps: list) -> list[float]:
        if metric.kind == "logprob":
            return [float(torch.logsumexp(lp[-1][self.ids[metric.name]], dim=0)) for lp in logps]
        pos, neg = self.ids[metric.name]  # the log-softmax shift cancels in the difference
        return [float(lp[-1][pos].mean() - lp[-1][neg].mean()) for lp in logps]

    def sampled_values(self, completions: list[str]) -> dict:
        n, out = self.options["n"], {}
        per_prompt = [completions[i * n : (i + 1) * n] for i in range(len(self.prompts))]
        for m in self.sampled:
            if m.kind == "topic":
                out[m.name] = [topic_fraction(c, m.words) for c in per_prompt]
            else:
                out[m.name] = [float(np.mean(sentiment_scores(c))) for c in per_prompt]
        return out

    def generate(self, vector: Optional[SteeringVector], coeffs: Any) -> list[str]:
        o = self.options
        return generate(self.model, self.prompts, vector, coeffs, n=o["n"], max_new_tokens=o["max_new_tokens"],
                        seed=o["seed"], batch_size=o["batch_size"], progress=False, backend=o["backend"])


def _prepare(model: Any, prompts: Any, coeffs: Any, chosen: list[Metric], options: dict) -> _Sweep:
    prompts = text_list("prompts", prompts, allowed="a non-empty list of non-empty strings",
                        example="st.texts.NEUTRAL_TEXTS")
    values = coeff_list(coeffs)
    forward = [m for m in chosen if m.kind in ("logprob", "logit_diff")]
    ids = {}
    for m in forward:
        found = [tid for _, tid in target_ids(model, list(m.targets))]
        ids[m.name] = found if m.kind == "logprob" else (found, [tid for _, tid in target_ids(model, list(m.against))])
    kls = [m for m in chosen if m.kind == "kl"]
    kl_sets = {m.name: text_list("kl prompts", m.prompts or NEUTRAL_TEXTS, allowed="a non-empty list of non-empty "
                                 "strings", example="st.texts.NEUTRAL_TEXTS") for m in kls}
    return _Sweep(model, prompts, [c for c in values if c != 0.0], forward, kls,
                  [m for m in chosen if m.kind in _SAMPLED], ids, [tokenize_prompt(model, p) for p in prompts],
                  kl_sets, {name: [tokenize_prompt(model, p) for p in texts] for name, texts in kl_sets.items()},
                  options)


def _baseline(s: _Sweep, resume: Any, bar: Any) -> tuple[dict, dict]:
    """Unsteered values of every metric (shared by every layer) and the KL prompts' unsteered log-probs."""
    o = s.options
    if resume is not None:
        base_prompt = [torch.log_softmax(row, -1).unsqueeze(0) for row in resume.base_logits.cpu()]
        if bar is not None:
            bar.update(len(s.prompt_ids))
    else:
        base_prompt = (forward_logprobs(s.model, s.prompt_ids, batch_size=o["batch_size"], readout="last",
                                        backend=o["backend"], bar=bar) if s.forward else [])
    base_kl = {name: forward_logprobs(s.model, seqs, batch_size=o["batch_size"], backend=o["backend"], bar=bar)
               for name, seqs in s.kl_ids.items()}
    baseline: dict = {m.name: s.next_token_values(m, base_prompt) for m in s.forward}
    for m in s.kls:
        baseline[m.name] = [0.0] * len(s.kl_ids[m.name])
    if s.sampled:
        baseline.update(s.sampled_values(s.generate(None, 1.0)))
    return baseline, base_kl


def _forward_values(s: _Sweep, vecs: list, resume: Any, bar: Any) -> list:
    """Next-token metric values of every vector (same layer and shape) × steered coefficient: ``[{coeff: {...}}]``."""
    o, n_prompts, n_coeffs = s.options, len(s.prompts), len(s.steered)
    if resume is not None:  # below the steered layer nothing changes: resume there, every vector in one batch
        logps = _resumed_logprobs(resume, vecs, s.steered, o["batch_size"], bar)
    else:
        seqs = [p for _ in s.steered for p in s.prompt_ids]
        rows = [c for c in s.steered for _ in s.prompt_ids]
        logps = [lp for vec in vecs for lp in forward_logprobs(s.model, seqs, vec, rows, batch_size=o["batch_size"],
                                                                readout="last", backend=o["backend"], bar=bar)]
    out = []
    for k in range(len(vecs)):
        per_coeff: dict = {c: {} for c in s.steered}
        for ci, c in enumerate(s.steered):
            start = (k * n_coeffs + ci) * n_prompts
            for m in s.forward:
                per_coeff[c][m.name] = s.next_token_values(m, logps[start : start + n_prompts])
        out.append(per_coeff)
    return out


def _layer_values(s: _Sweep, vec: SteeringVector, base_kl: dict, bar: Any, forward: Optional[dict]) -> dict:
    """Every steered coefficient's metric values of one vector: ``{coeff: {metric: [values]}}``.

    ``forward`` holds its next-token metric values (from :func:`_forward_values`), completed here with
    the KL and sampled metrics.
    """
    o, n_prompts = s.options, len(s.prompts)
    per_coeff: dict = forward if forward is not None else {c: {} for c in s.steered}
    for m in s.kls:
        seqs_k = s.kl_ids[m.name]
        logps = forward_logprobs(s.model, [q for _ in s.steered for q in seqs_k], vec,
                                 [c for c in s.steered for _ in seqs_k], batch_size=o["batch_size"],
                                 backend=o["backend"], bar=bar)
        for ci, c in enumerate(s.steered):
            values = []
            for i, seq in enumerate(seqs_k):
                start = masked_prefix(vec, int(seq.numel()))
                lp = logps[ci * len(seqs_k) + i]
                values.append(float(kl_divergence(base_kl[m.name][i][start:], lp[start:]).mean())
                              if start < seq.numel() else math.nan)
            per_coeff[c][m.name] = values
    if s.sampled:
        texts = s.generate(vec, s.steered)
        block = n_prompts * o["n"]
        for ci, c in enumerate(s.steered):
            per_coeff[c].update(s.sampled_values(texts[ci * block : (ci + 1) * block]))
    return per_coeff


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
    backend: Backend = "auto",
    nulls: int = 0,
    chat: bool = False,
    system: Optional[str] = None,
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
        reuse: For next-token metrics at ``resid_pre`` on the twin backend, run the unsteered
            layers below each steered layer once and resume there (checked against a full pass
            first; falls back to full passes if the check fails). ``False`` always runs full passes.
        progress: Show a progress bar (default: yes for long sweeps).
        backend: ``"auto"``, ``"bridge"`` or ``"twin"`` (see :mod:`steering.backends`).
        nulls: Control vectors per layer (default 0: none, the table is as without the argument).
            ``N > 0`` adds ``N`` norm-matched random vectors and the label-swapped vector ``−v``
            (:mod:`steering.nulls`), measured at every steered coefficient in the same batched
            passes; :func:`steering.effect_sizes` then ranks the real effect among them.
        chat: Put the prompt pair (as :func:`steering.actadd` does with ``chat=True``), the prompts and
            the KL prompts in the model's chat template (each a user turn ending with the generation
            prompt); the table's ``prompt`` column then holds the formatted texts.
        system: A system prompt for ``chat=True``.

    Returns:
        A tidy ``pandas.DataFrame``, one row per layer × coefficient × prompt × metric,
        columns ``layer``, ``hook``, ``coeff``, ``prompt``, ``metric``, ``value``. Feed it to
        :func:`steering.effect_sizes` (and those to :mod:`steering.plots`). With ``nulls``, also
        the rows of every control vector (steered coefficients only) and two columns:
        ``null_kind`` (``"real"``, ``"random"`` or ``"shuffled"``) and ``null_index``.

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

    chosen = _as_metrics(metrics, targets, kl_prompts, topic_words)
    options = dict(n=count("n", n), max_new_tokens=count("max_new_tokens", max_new_tokens), seed=check_seed(seed),
                   batch_size=count("batch_size", batch_size, example=32), backend=check_backend(backend))
    reuse, progress = flag("reuse", reuse), flag("progress", progress, optional=True)
    n_nulls = count("nulls", nulls, 0, example=20)
    if system is not None and not flag("chat", chat):
        raise InvalidArgumentError(f"system={system!r} with chat=False; allowed: system= only with chat=True. "
                                   "Fix: pass chat=True, or drop system=.")
    if flag("chat", chat):
        prompts = chat_texts(model, prompts, system, name="prompts")[0]
        chosen = [replace(m, prompts=chat_texts(model, m.prompts or NEUTRAL_TEXTS, system,
                                                            name="kl prompts")[0]) if m.kind == "kl" else m
                  for m in chosen]
    s = _prepare(model, prompts, coeffs, chosen, options)
    names, _ = hook_names(model, layers, hook)
    vectors = actadd_layers(model, pos, neg, layers=[layer_of(nm) for nm in names], hook=hook, pad=pad, chat=chat,
                            system=system)
    n_kl = sum(len(v) for v in s.kl_ids.values())
    per_layer = (n_nulls + 2) if n_nulls else 1
    work = per_layer * len(vectors) * len(s.steered) * (len(s.prompts) * bool(s.forward) + n_kl) + len(s.prompts) + n_kl
    show = progress if progress is not None else (work >= 64 or bool(s.sampled))
    with model_lock(model), progress_bar(total=work, desc="sweep", unit="row", disable=not show, leave=False) as bar:
        resume = _resumable(model, s.prompt_ids, vectors, hook, backend) if s.forward and reuse else None
        baseline, base_kl = _baseline(s, resume, bar)
        for vec in vectors:
            s.add(vec, 0.0, baseline)
            if not s.steered:
                continue
            batch = [vec] + (random_vectors(vec, n_nulls, seed=options["seed"]) + [swapped_vector(vec)] if n_nulls else [])
            forward = _forward_values(s, batch, resume, bar) if s.forward else [None] * len(batch)
            for v, values in zip(batch, forward):
                per_coeff = _layer_values(s, v, base_kl, bar, values)
                for c in s.steered:
                    s.add(v, c, per_coeff[c])
    table = pd.DataFrame(s.rows, columns=_COLUMNS + (_NULL_COLUMNS if n_nulls else []))
    return table.sort_values(["metric", "layer", "coeff"], kind="stable").reset_index(drop=True)


def _resumable(model: Any, prompt_ids: list, vectors: list, hook: str, backend: Backend) -> Any:
    """A :class:`steering._fast.ResumableForward` of the prompts when the twin backend serves the sweep."""
    if hook != "resid_pre" or not vectors:
        return None
    target = resolve(model, vectors[:1], backend)
    if target.kind != "twin":
        return None
    tokens, mask = left_pad(prompt_ids, fill_id(model))
    try:
        resume = _fast.ResumableForward(target.module, tokens.to(target.device), mask.to(target.device))
    except Exception:  # noqa: BLE001 - an architecture we cannot resume: full passes instead
        return None
    layers = sorted({v.layer for v in vectors})
    return resume if resume.check(layers[0]) and resume.check(layers[-1]) else None


def _resumed_logprobs(resume: Any, vecs: list, coeffs: list, batch_size: int, bar: Any) -> list:
    """Last-position log-probs of ``vectors × coeffs × prompts`` rows (vector-, then coefficient-major).

    The vectors share one layer and shape; the run resumes at that layer. The addition comes from the
    same placement rule as the hooks (front alignment from each row's first real token, truncated to
    the prompt), evaluated on the left-padded prompt pass.
    """
    vec = vecs[0]
    mask = resume.mask.cpu()
    n_rows = int(mask.shape[0])
    lengths = mask.sum(dim=1)
    n_vec = int(vec.tensor.shape[0])
    if bool((lengths < n_vec).any()):
        warn_user(truncation_message(int(lengths.min()), n_vec, hint=False))
    where, index = placement("front", n_vec, Span.from_mask(mask), lengths)
    specs = [(v.tensor.float(), c) for v in vecs for c in coeffs]
    per_group = max(1, batch_size // max(n_rows, 1))
    out: list = []
    for g in range(0, len(specs), per_group):
        group = specs[g : g + per_group]
        rows = torch.ones(n_rows, dtype=torch.float32)
        add = torch.cat([addition(t, where, index, rows * c) for t, c in group])
        logits = resume.last_logits(vec.layer, times=len(group), add=add.to(resume.base_logits.device))
        out += [row.unsqueeze(0) for row in torch.log_softmax(logits, -1).cpu()]
        if bar is not None:
            bar.update(len(group) * n_rows)
    return out
