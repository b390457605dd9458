"""The precomputed grid behind an explorable page: layers × coefficients × prompts × samples, in batched runs.

:func:`explore_grid` builds the ActAdd vector of a prompt pair at every layer (one forward pass),
then, per layer, generates the completions of every non-zero coefficient as rows of ONE
:func:`steering.generate` call (per-row coefficients; see :mod:`steering.generation`), and
measures every coefficient with one batched pass each for the target effect, the off-target KL
and the effect lens (:mod:`steering.explorer.measures`). The unsteered completions (``coeff = 0``)
are generated once and shared by every layer: at ``coeff = 0`` nothing is added.

The result is a plain, JSON-ready ``dict`` — the page's data island (see ``docs/explore.md`` for
every field):

* ``records`` — one per layer × coefficient × prompt × sample (× decoding), with ``layer``,
  ``coeff``, ``prompt``, ``prompt_index``, ``sample``, ``decoding`` (``"sampled"`` / ``"greedy"``),
  ``completion`` and the metrics ``effect`` (Δ log-prob of the targets as the next token after
  the prompt), ``kl`` (off-target KL of the setting), ``sentiment`` (VADER compound) and, with
  topic words, ``topic`` (1 if the completion mentions one);
* ``cells`` — one per layer × coefficient: mean ``effect``, ``kl``, the effect lens
  (``promoted`` / ``suppressed``: ``[token, Δ log-prob]``) and ``topic`` share;
* ``lens`` — one per layer: the logit lens of the vector (:func:`steering.logit_lens`);
* ``settings``, ``layers``, ``coeffs``, ``prompts``, ``decodings``, ``samples``, ``seconds``.

Records reproduce :func:`steering.generate`: a greedy record at a non-zero coefficient equals
``st.generate(model, prompts, vec, coeff=c, do_sample=False, ...)``, a sampled one the matching
row of ``st.generate(model, prompts, vec, coeff=[non-zero coefficients], n=samples, seed=seed)``.

Example:
    >>> import steering as st
    >>> from steering.testing import tiny_model
    >>> data = explore_grid(tiny_model(), "love", "hate", ["I think that"], layers=[0, 1], coeffs=[0, 4],
    ...                     n=2, max_new_tokens=3, kl_prompts=["a quiet day in town"], targets=["l"])
    >>> len(data["records"])  # 2 layers × 2 coefficients × 1 prompt × 2 samples
    8
    >>> sorted(data["records"][0])
    ['coeff', 'completion', 'decoding', 'effect', 'kl', 'layer', 'prompt', 'prompt_index', 'sample', 'sentiment']
"""

import time
from typing import Any, Literal, Optional, Sequence

from .._progress import progress_bar
from ..backends import check_backend
from ..errors import InvalidArgumentError
from ..extract import actadd_layers
from ..generation import generate
from ..hooks import hook_names, layer_of
from ..lens import logit_lens
from ..report.standard import default_targets
from ..settings import Backend
from ..texts import DEFAULT_REPORT_PROMPTS, NEUTRAL_TEXTS, sentiment_scores, topic_fraction
from ..validate import coeff_list, count, flag, text_list
from ..validate import seed as check_seed
from ..validate import top_k as check_top_k
from .measures import last_logprobs, reference, rounded, side_effects, single_token_targets, target_effects

__all__ = ["explore_grid", "Decoding", "DECODINGS", "DEFAULT_COEFFS", "FORMAT", "grid_options"]

Decoding = Literal["sampled", "greedy", "both"]
DECODINGS = ("sampled", "greedy", "both")

#: The coefficients of ``steer explore`` and :func:`explore_grid` unless given.
DEFAULT_COEFFS = (0, 2, 4, 8, 12, 16)

#: The ``format`` field of the data island; ``version`` changes when a field's meaning does.
FORMAT = {"format": "steering-lens explorable", "version": 1}

#: Unrelated texts of the KL and the effect lens unless given (three: one batched pass per layer stays cheap).
DEFAULT_KL_TEXTS = tuple(NEUTRAL_TEXTS[:3])


def grid_options(model: Any, pos: str, prompts: Any, coeffs: Any, options: dict) -> dict:
    """Every option of :func:`explore_grid`, checked before any work, in its normal form.

    Example:
        >>> from steering.testing import tiny_model
        >>> o = grid_options(tiny_model(), "love", None, [4, 0, 4, 2], dict(n=2, max_new_tokens=5, seed=0,
        ...                  decoding="greedy", targets=["l"], topic_words=None, kl_prompts=None, k=8,
        ...                  batch_size=64, progress=None, backend="auto"))
        >>> o["coeffs"], o["decodings"], o["n"]  # sorted, 0 added, repeats dropped; greedy: one sample
        ([0.0, 2.0, 4.0], ['greedy'], 1)
    """
    decoding = options["decoding"]
    if decoding not in DECODINGS:
        raise InvalidArgumentError(f"decoding={decoding!r}; allowed: {', '.join(map(repr, DECODINGS))}. "
                                   "Fix: pass decoding='sampled' (seeded samples) or 'greedy'.")
    n = count("n", options["n"], example=2)
    decodings = ["sampled", "greedy"] if decoding == "both" else [decoding]
    targets = options["targets"]
    targets = text_list("targets", targets, example="[' wedding']") if targets is not None else default_targets(pos)
    words = options["topic_words"]
    kl = options["kl_prompts"]
    return dict(
        prompts=text_list("prompts", DEFAULT_REPORT_PROMPTS if prompts is None else prompts,
                          allowed="a non-empty list of non-empty strings", example="['I went up to my friend and said']"),
        coeffs=sorted(set(coeff_list(coeffs)) | {0.0}),
        n=1 if decodings == ["greedy"] else n,
        decodings=decodings,
        max_new_tokens=count("max_new_tokens", options["max_new_tokens"], example=24),
        seed=check_seed(options["seed"]),
        target_texts=targets,
        target_ids=single_token_targets(model, targets),
        topic_words=None if words is None else text_list("topic_words", words, example="['wedding', 'bride']"),
        kl_prompts=text_list("kl_prompts", DEFAULT_KL_TEXTS if kl is None else kl,
                             allowed="a non-empty list of non-empty strings", example="st.texts.NEUTRAL_TEXTS[:3]"),
        k=check_top_k(options["k"], int(model.cfg.d_vocab), "k"),
        batch_size=count("batch_size", options["batch_size"], example=64),
        progress=flag("progress", options["progress"], optional=True),
        backend=check_backend(options["backend"]),
    )


def _completions(model: Any, o: dict, vector: Any, coeffs: list, decoding: str) -> list[str]:
    """Coefficient-, then prompt-, then sample-major completions (one generate call for all coefficients)."""
    greedy = decoding == "greedy"
    return generate(model, o["prompts"], vector, coeffs if vector is not None else 1.0,
                    n=1 if greedy else o["n"], do_sample=not greedy, max_new_tokens=o["max_new_tokens"],
                    seed=o["seed"], batch_size=o["batch_size"], progress=False, backend=o["backend"])


def _records(o: dict, layer: int, coeff: float, texts: list[str], decoding: str, effects: list, kl: float) -> list:
    """The records of one layer × coefficient × decoding: ``texts`` are prompt-major, ``samples`` per prompt."""
    per = len(texts) // len(o["prompts"])
    moods = sentiment_scores(texts)
    out = []
    for j, (text, mood) in enumerate(zip(texts, moods)):
        i = j // per
        record = {"layer": layer, "coeff": coeff, "prompt": o["prompts"][i], "prompt_index": i, "sample": j % per,
                  "decoding": decoding, "completion": text, "effect": rounded(effects[i]), "kl": rounded(kl, 5),
                  "sentiment": rounded(mood, 3)}
        if o["topic_words"]:
            record["topic"] = topic_fraction([text], o["topic_words"])
        out.append(record)
    return out


def _cell(layer: int, coeff: float, effects: list, side: dict, records: list) -> dict:
    topics = [r["topic"] for r in records if "topic" in r]
    return {"layer": layer, "coeff": coeff, "effect": rounded(sum(effects) / len(effects)), "kl": rounded(side["kl"], 5),
            "topic": rounded(sum(topics) / len(topics), 3) if topics else None,
            "promoted": [[t, rounded(s, 3)] for t, s in side["promoted"]],
            "suppressed": [[t, rounded(s, 3)] for t, s in side["suppressed"]]}


def _lens(model: Any, vectors: list, k: int) -> list[dict]:
    """The logit lens of every layer's vector: ``[{layer, promoted, suppressed}]``."""
    table = logit_lens(model, vectors, k=k).table
    out = []
    for vec in vectors:
        rows = table[table["layer"] == vec.layer]
        out.append({"layer": int(vec.layer), **{d: [[t, rounded(s, 3)] for t, s in
                                                      zip(rows[rows["direction"] == d]["token"],
                                                          rows[rows["direction"] == d]["score"])]
                                                   for d in ("promoted", "suppressed")}})
    return out


def _layer(model: Any, o: dict, vec: Any, ref: Any, base: dict) -> tuple[list, list]:
    """Records and cells of one layer: one generate per decoding, one pass per measure."""
    layer, steered = int(vec.layer), [c for c in o["coeffs"] if c != 0.0]
    common = dict(batch_size=o["batch_size"], backend=o["backend"])
    effects = target_effects(model, vec, o["prompts"], o["target_ids"], o["coeffs"], base=base["last"], **common)
    side = side_effects(model, vec, ref, o["coeffs"], k=o["k"], **common)
    records, cells = [], []
    texts = {d: _completions(model, o, vec, steered, d) if steered else [] for d in o["decodings"]}
    for c in o["coeffs"]:
        block: list = []
        for d in o["decodings"]:
            if c == 0.0:
                chosen = base[d]
            else:
                rows, si = len(texts[d]) // len(steered), steered.index(c)
                chosen = texts[d][si * rows : (si + 1) * rows]
            block += _records(o, layer, c, chosen, d, effects[c], side[c]["kl"])
        records += block
        cells.append(_cell(layer, c, effects[c], side[c], block))
    return records, cells


def explore_grid(
    model: Any,
    pos: str,
    neg: str,
    prompts: Optional[Sequence[str]] = None,
    *,
    layers: Any = "all",
    coeffs: Any = DEFAULT_COEFFS,
    n: int = 2,
    max_new_tokens: int = 24,
    seed: Optional[int] = 0,
    decoding: Decoding = "sampled",
    targets: Optional[Sequence[str]] = None,
    topic_words: Optional[Sequence[str]] = None,
    kl_prompts: Optional[Sequence[str]] = None,
    k: int = 8,
    hook: str = "resid_pre",
    pad: str = "space",
    batch_size: int = 64,
    progress: Optional[bool] = None,
    backend: Backend = "auto",
) -> dict:
    """Precompute an ActAdd pair's completions and measures at every layer × coefficient.

    Args:
        model: The bridge.
        pos: p+ (e.g. ``" weddings"``).
        neg: p− (e.g. ``""``).
        prompts: Prompts to complete (default :data:`steering.texts.DEFAULT_REPORT_PROMPTS`).
        layers: Layers (``"all"``, an int or a list).
        coeffs: Coefficients; sorted, repeats dropped, ``0`` (the unsteered baseline) added.
        n: Samples per prompt for sampled decoding (greedy decoding has one).
        max_new_tokens: Tokens per completion.
        seed: Sampling seed (every layer's call uses it, so layers differ only by their steering).
        decoding: ``"sampled"`` (the paper's top-p 0.3), ``"greedy"`` or ``"both"``.
        targets: Target tokens of the ``effect`` metric (default: p+'s word, see
            :func:`steering.report.standard.default_targets`; one-token variants are used).
        topic_words: Words that make a completion on-topic (the ``topic`` metric); ``None``: no topic metric.
        kl_prompts: Unrelated texts of the KL and the effect lens (default: three neutral sentences).
        k: Tokens per direction in the lenses.
        hook: Hook kind of the vectors (default ``"resid_pre"``).
        pad: Padding rule of the pair, see :func:`steering.actadd`.
        batch_size: Rows per generate / forward batch.
        progress: Show a progress bar over the layers (default: in a terminal or notebook).
        backend: ``"auto"``, ``"bridge"`` or ``"twin"``.

    Returns:
        The data dict described in the module notes (JSON-ready).

    Raises:
        InvalidArgumentError: an option is out of range (checked before any work).
        LayerOutOfRangeError: a layer is outside the model.
        PromptTooShortError: a KL text is not longer than the vector.

    Example:
        >>> import steering as st
        >>> from steering.testing import tiny_model
        >>> data = explore_grid(tiny_model(), "love", "hate", ["I think that"], layers=[1], coeffs=[4],
        ...                     decoding="greedy", max_new_tokens=3, targets=["l"], kl_prompts=["a quiet day"])
        >>> data["coeffs"], [r["coeff"] for r in data["records"]], data["decodings"]
        ([0.0, 4.0], [0.0, 4.0], ['greedy'])
    """
    start = time.perf_counter()
    o = grid_options(model, pos, prompts, coeffs, dict(
        n=n, max_new_tokens=max_new_tokens, seed=seed, decoding=decoding, targets=targets, topic_words=topic_words,
        kl_prompts=kl_prompts, k=k, batch_size=batch_size, progress=progress, backend=backend))
    names, _ = hook_names(model, layers, hook)
    vectors = actadd_layers(model, pos, neg, layers=[layer_of(name) for name in names], hook=hook, pad=pad)
    common = dict(batch_size=o["batch_size"], backend=o["backend"])
    ref = reference(model, o["kl_prompts"], **common)
    base: dict = {d: _completions(model, o, None, [], d) for d in o["decodings"]}
    base["last"] = last_logprobs(model, o["prompts"], **common)
    records, cells = [], []
    show = o["progress"] if o["progress"] is not None else True
    with progress_bar(total=len(vectors), desc="explorable grid", unit="layer", disable=not show, leave=False) as bar:
        for vec in vectors:
            layer_records, layer_cells = _layer(model, o, vec, ref, base)
            records += layer_records
            cells += layer_cells
            bar.update(1)
    return {
        **FORMAT,
        "settings": {"model": getattr(model.cfg, "model_name", None), "pos": pos, "neg": neg, "hook": hook,
                     "pad": pad if isinstance(pad, str) else f"id:{pad}", "seed": o["seed"],
                     "max_new_tokens": o["max_new_tokens"], "targets": o["target_texts"],
                     "topic_words": o["topic_words"], "kl_prompts": o["kl_prompts"], "k": o["k"]},
        "layers": [int(v.layer) for v in vectors], "coeffs": o["coeffs"], "prompts": o["prompts"],
        "decodings": o["decodings"],
        "samples": {d: 1 if d == "greedy" else o["n"] for d in o["decodings"]},
        "records": records, "cells": cells, "lens": _lens(model, vectors, o["k"]),
        "seconds": round(time.perf_counter() - start, 1),
    }
