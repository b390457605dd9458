"""The standard one-page analysis of a prompt pair (behind ``steer report``).

:func:`analysis_report` runs, for ``p+ − p−`` on one model: a layer × coefficient sweep
(target log-prob and off-target KL, no sampling), per-layer effect sizes, the effect vs
KL frontier, vector norms against residual norms, the plain logit lens per layer (with
target ranks), the effect lens (log-prob shift) at the best setting, and a token-level
view of steered vs unsteered completions — then writes it all as one self-contained
HTML page.

Example:
    >>> import pathlib, tempfile
    >>> from steering.testing import tiny_model
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.html"
    >>> info = analysis_report(tiny_model(), "love", "hate", out=out, layers=[0, 1], coeffs=[0, 4],
    ...                        prompts=["I think that", "we will go"], kl_prompts=["a quiet day in town"], max_new_tokens=4)
    >>> info["figures"], out.exists()
    (7, True)
"""

import math
import time
from typing import Any, Optional, Sequence

from .errors import InvalidArgumentError

__all__ = ["analysis_report", "DEFAULT_REPORT_PROMPTS", "default_targets"]

#: Neutral prompt openings the report measures steering on.
DEFAULT_REPORT_PROMPTS = [
    "I went up to my friend and said",
    "Yesterday my neighbour told me that",
    "The best part of the day was",
    "She looked at the letter and",
]


def default_targets(pos: str) -> list[str]:
    """Target tokens for a p+ prompt: its words with and without a leading space.

    Example:
        >>> default_targets(" weddings")
        [' weddings', 'weddings']
        >>> default_targets("Love")
        [' Love', 'Love', ' love', 'love']
    """
    word = pos.strip().split()[0] if pos.strip() else ""
    if not word:
        raise InvalidArgumentError(f"pos={pos!r} has no word to use as a target; pass targets=[...] explicitly.")
    out = []
    for w in (word, word.lower()):
        for t in (" " + w, w):
            if t not in out:
                out.append(t)
    return out


def analysis_report(
    model: Any,
    pos: str,
    neg: str,
    *,
    out: Any = "steering-report.html",
    layers: Any = "all",
    coeffs: Any = (0, 2, 4, 8, 16),
    prompts: Optional[Sequence[str]] = None,
    targets: Optional[Sequence[str]] = None,
    kl_prompts: Optional[Sequence[str]] = None,
    n_completions: int = 2,
    max_new_tokens: int = 24,
    model_name: Optional[str] = None,
    seed: int = 0,
    progress: Optional[bool] = None,
) -> dict:
    """Run the standard analysis of ``pos − neg`` and write the one-page HTML report.

    Args:
        model: The bridge.
        pos: p+.
        neg: p−.
        out: HTML file to write.
        layers: Layers to sweep (``"all"``, an int or a list).
        coeffs: Coefficients to sweep (0 is added).
        prompts: Prompts the effect is measured on (default :data:`DEFAULT_REPORT_PROMPTS`).
        targets: Target tokens of the effect metric (default :func:`default_targets` of p+).
        kl_prompts: Unrelated prompts for the KL (default the first 4 of
            :data:`steering.NEUTRAL_TEXTS`).
        n_completions: Steered and unsteered completions in the token view.
        max_new_tokens: Their length.
        model_name: Shown in the settings block.
        seed: Sampling seed.
        progress: Progress bars.

    Returns:
        A dict: ``path`` (the page), ``figures`` (how many), ``best`` (layer, coeff, effect),
        ``seconds`` per stage, ``effects`` (the effect table).
    """
    from .extract import actadd_layers
    from .generation import generate
    from .lens import lens_profile, logit_lens
    from .metrics import NEUTRAL_TEXTS, logprob_shift, off_target_kl, token_shift
    from .plots import (effect_heatmap, frontier_figure, lens_rank_figure, norm_layers_figure, token_scores_figure,
                        token_view_figure)
    from .analysis import norm_diagnostics
    from .report import ReportSection, write_report
    from .sweeps import Metric, effect_sizes, sweep

    prompts = list(prompts or DEFAULT_REPORT_PROMPTS)
    if not targets:  # p+'s word, keeping only the variants that are one token
        candidates = default_targets(pos)
        single = [t for t in candidates if len(model.tokenizer.encode(t, add_special_tokens=False)) == 1]
        targets = single or candidates[:1]
    targets = list(targets)
    kl_prompts = list(kl_prompts or NEUTRAL_TEXTS[:4])
    seconds: dict = {}
    t = time.perf_counter()
    table = sweep(model, pos, neg, prompts, layers=layers, coeffs=list(coeffs),
                  metrics=[Metric("logprob", targets=targets, name="target logprob"), Metric("kl", prompts=kl_prompts)],
                  progress=progress)
    effects = effect_sizes(table)
    seconds["sweep"] = time.perf_counter() - t

    steered = effects[(effects["coeff"] != 0) & (effects["metric"] == "target logprob")].dropna(subset=["effect"])
    if steered.empty:
        raise InvalidArgumentError("the sweep produced no effect sizes (need ≥ 2 prompts and a non-zero coefficient).")
    best = steered.loc[steered["effect"].idxmax()]
    best_layer, best_coeff = int(best["layer"]), float(best["coeff"])

    t = time.perf_counter()
    swept_layers = sorted(table["layer"].unique().tolist())
    vectors = actadd_layers(model, pos, neg, layers=swept_layers)
    by_layer = {v.layer: v for v in vectors}
    vec = by_layer[best_layer]
    norms = norm_diagnostics(model, vectors, kl_prompts, warn=False)
    profile = lens_profile(model, vectors, targets)
    lens = logit_lens(model, vec, k=10, position="sum")
    shift = logprob_shift(model, vec, kl_prompts, coeff=best_coeff, k=10)
    kl_table = off_target_kl(model, vec, kl_prompts, coeffs=list(coeffs))
    seconds["lenses"] = time.perf_counter() - t

    t = time.perf_counter()
    prompt = prompts[0]
    plain = generate(model, prompt, None, n=n_completions, max_new_tokens=max_new_tokens, seed=seed)
    steered_texts = generate(model, prompt, vec, best_coeff, n=n_completions, max_new_tokens=max_new_tokens, seed=seed)
    texts = [prompt + c for c in plain + steered_texts]
    labels = [f"unsteered #{i}" for i in range(len(plain))] + [f"steered c={best_coeff:g} #{i}" for i in range(len(steered_texts))]
    conditions = ["unsteered"] * len(plain) + ["steered"] * len(steered_texts)
    view = token_shift(model, vec, texts, coeff=best_coeff, labels=labels, conditions=conditions)
    seconds["completions"] = time.perf_counter() - t

    flagged = norms[norms["flagged"]]
    flagged_text = (
        "Flagged (vector norm > 2× the layer's typical residual norm — a massive activation dominates): "
        + ", ".join(f"layer {r.layer} pos {r.position} {r.vector_token!r} ({r.vector_norm:.0f} vs {r.typical_resid_norm:.0f})"
                    for r in flagged.head(12).itertuples())
        if len(flagged) else "No position exceeds 2× the typical residual norm of its layer."
    )
    kl_summary = kl_table.groupby("coeff")["kl"].agg(["mean", "std"]).reset_index()
    sections = [
        ReportSection(
            "Effect size per layer × coefficient",
            f"Cohen's d of the log-probability of {targets} as the next token after {len(prompts)} prompts, steered vs "
            f"unsteered (bootstrap 95% CIs in the hover). Best: layer {best_layer}, c = {best_coeff:g}, "
            f"d = {float(best['effect']):.2f}.",
            figure=effect_heatmap(effects, metric="target logprob"),
        ),
        ReportSection(
            "Effect vs off-target KL",
            f"Each point is a layer × coefficient: effect size against the mean KL(unsteered ‖ steered) of next-token "
            f"distributions on {len(kl_prompts)} unrelated prompts (steered positions masked). The line marks the "
            "Pareto front: settings no other setting beats on both.",
            figure=frontier_figure(effects, "target logprob", cost_metric="kl"),
        ),
        ReportSection(
            "Vector norm vs residual norm per layer",
            "Solid: the norm of the ActAdd difference at each position; dashed: the median residual norm there on "
            "unrelated text. " + flagged_text,
            figure=norm_layers_figure(norms),
        ),
        ReportSection(
            "Plain logit lens: where can it be trusted?",
            "Rank (1 = best of the whole vocabulary) of each target token in the logit lens of the vector (summed over "
            "positions), per layer. Ranks in the thousands mean the lens reads noise at that layer, even where the "
            "vector steers well; the effect lens below asks the model instead.",
            figure=lens_rank_figure(profile),
            table=profile.drop(columns=["target_id"]),
            max_rows=min(len(profile), 60),
        ),
        ReportSection(f"Logit lens of the vector at layer {best_layer}", figure=token_scores_figure(lens.table)),
        ReportSection(
            f"Effect lens at layer {best_layer}, c = {best_coeff:g}",
            "Mean change of each token's next-token log-probability (nats) over the non-steered positions of the "
            "unrelated prompts.",
            figure=token_scores_figure(shift.table),
        ),
        ReportSection(
            "Completions, token by token",
            f"Prompt {prompt!r}: unsteered and steered (layer {best_layer}, c = {best_coeff:g}) completions; colour = "
            "how much more likely the steered model finds each token (nats).",
            figure=token_view_figure(view, max_rows=2 * n_completions),
        ),
        ReportSection("Off-target KL by coefficient at the best layer", table=kl_summary),
    ]
    meta = {
        "model": model_name or getattr(model.cfg, "model_name", "?"),
        "p+ / p−": f"{pos!r} / {neg!r}",
        "layers": f"{swept_layers[0]}–{swept_layers[-1]} ({len(swept_layers)})",
        "coefficients": ", ".join(f"{c:g}" for c in sorted(set([0.0] + [float(c) for c in coeffs]))),
        "prompts": "; ".join(prompts),
        "targets": ", ".join(map(repr, targets)),
        "seconds": ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()),
    }
    path = write_report(out, sections, title=f"steering-lens report: {pos!r} − {neg!r}", meta=meta)
    n_figures = sum(s.figure is not None for s in sections)
    best_info = {"layer": best_layer, "coeff": best_coeff, "effect": float(best["effect"])}
    if not math.isfinite(best_info["effect"]):
        best_info["effect"] = float("nan")
    return {"path": path, "figures": n_figures, "best": best_info, "seconds": seconds, "effects": effects}
