"""The standard one-page analysis of a prompt pair (behind ``steer report``).

:func:`analysis_report` runs, for ``p+ − p−`` on one model: a layer × coefficient sweep
(target log-prob and off-target KL, no sampling), per-layer effect sizes, the effect vs
KL frontier, vector norms against residual norms, the plain logit lens per layer (with
target ranks), the effect lens (log-prob shift) at the best setting, and a token-level
view of steered vs unsteered completions — then writes it all as one self-contained
HTML page. With ``mechanisms=True`` it adds "Why it steers" (:mod:`steering.mechanisms` at the
best setting): the propagation profile, the attribution of the target logit to components,
the patching map and the effect of each vector position, with a paragraph read off the tables.

Example:
    >>> import pathlib, tempfile
    >>> from steering.testing import tiny_model
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.html"
    >>> info = analysis_report(tiny_model(), "love", "hate", out=out, layers=[0, 1], coeffs=[0, 4],
    ...                        prompts=["I think that", "we will go"], kl_prompts=["a quiet day in town"], max_new_tokens=4)
    >>> info["figures"], out.exists()
    (7, True)
"""

import dataclasses
import math
import time
from typing import Any, Optional, Sequence

from ..errors import InvalidArgumentError
from ..extract import actadd_layers
from ..generation import generate
from ..lens import lens_profile, logit_lens
from ..mechanisms import attribute, delta_profile, patch_effect, position_effects
from ..metrics import logprob_shift, off_target_kl, token_shift
from ..norms import norm_diagnostics
from ..plots import (attribution_figure, effect_heatmap, frontier_figure, lens_rank_figure, norm_layers_figure,
                     patching_figure, position_effects_figure, propagation_figure, token_scores_figure,
                     token_view_figure)
from ..stats import effect_sizes
from ..sweeps import Metric, sweep
from ..texts import DEFAULT_REPORT_PROMPTS, NEUTRAL_TEXTS
from ..tokens import single_token_texts
from ..validate import flag
from .page import ReportSection, write_report

__all__ = ["analysis_report", "default_targets"]


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


@dataclasses.dataclass
class _Findings:
    """Everything the report shows, computed by the stages of :func:`analysis_report`."""

    pos: str
    neg: str
    prompts: list
    targets: list
    kl_prompts: list
    coeffs: list
    effects: Any = None
    swept_layers: list = dataclasses.field(default_factory=list)
    best: Any = None
    best_layer: int = 0
    best_coeff: float = 0.0
    norms: Any = None
    profile: Any = None
    lens: Any = None
    shift: Any = None
    kl_table: Any = None
    view: Any = None
    why: dict = dataclasses.field(default_factory=dict)
    seconds: dict = dataclasses.field(default_factory=dict)


def _run_sweep(model: Any, found: _Findings, layers: Any, progress: Optional[bool]) -> None:
    """The layer × coefficient sweep, its effect sizes and the best setting."""
    t = time.perf_counter()
    table = sweep(model, found.pos, found.neg, found.prompts, layers=layers, coeffs=list(found.coeffs),
                  metrics=[Metric("logprob", targets=found.targets, name="target logprob"),
                           Metric("kl", prompts=found.kl_prompts)],
                  progress=progress)
    found.effects = effect_sizes(table)
    found.seconds["sweep"] = time.perf_counter() - t
    effects = found.effects
    steered = effects[(effects["coeff"] != 0) & (effects["metric"] == "target logprob")].dropna(subset=["effect"])
    if steered.empty:
        raise InvalidArgumentError("the sweep produced no effect sizes (need ≥ 2 prompts and a non-zero coefficient).")
    found.best = steered.loc[steered["effect"].idxmax()]
    found.best_layer, found.best_coeff = int(found.best["layer"]), float(found.best["coeff"])
    found.swept_layers = sorted(table["layer"].unique().tolist())


def _run_lenses(model: Any, found: _Findings) -> Any:
    """Vectors per swept layer, their norms and lenses, and the KL at the best layer; returns its vector."""
    t = time.perf_counter()
    vectors = actadd_layers(model, found.pos, found.neg, layers=found.swept_layers)
    vec = {v.layer: v for v in vectors}[found.best_layer]
    found.norms = norm_diagnostics(model, vectors, found.kl_prompts, warn=False)
    found.profile = lens_profile(model, vectors, found.targets)
    found.lens = logit_lens(model, vec, k=10, position="sum")
    found.shift = logprob_shift(model, vec, found.kl_prompts, coeff=found.best_coeff, k=10)
    found.kl_table = off_target_kl(model, vec, found.kl_prompts, coeffs=list(found.coeffs))
    found.seconds["lenses"] = time.perf_counter() - t
    return vec


def _run_completions(model: Any, found: _Findings, vec: Any, n: int, max_new_tokens: int, seed: int) -> None:
    """Unsteered and steered completions of the first prompt, scored token by token."""
    t = time.perf_counter()
    prompt, coeff = found.prompts[0], found.best_coeff
    plain = generate(model, prompt, None, n=n, max_new_tokens=max_new_tokens, seed=seed)
    steered = generate(model, prompt, vec, coeff, n=n, max_new_tokens=max_new_tokens, seed=seed)
    texts = [prompt + c for c in plain + steered]
    labels = [f"unsteered #{i}" for i in range(len(plain))] + [f"steered c={coeff:g} #{i}" for i in range(len(steered))]
    conditions = ["unsteered"] * len(plain) + ["steered"] * len(steered)
    found.view = token_shift(model, vec, texts, coeff=coeff, labels=labels, conditions=conditions)
    found.seconds["completions"] = time.perf_counter() - t


def _run_mechanisms(model: Any, found: _Findings, vec: Any, progress: Optional[bool]) -> None:
    """The mechanisms of :mod:`steering.mechanisms` at the best setting, on the first target token."""
    t = time.perf_counter()
    coeff, target, prompts = found.best_coeff, found.targets[0], found.prompts[:4]
    found.why = {
        "profile": delta_profile(model, vec, prompts, coeff=coeff, progress=progress),
        "attribution": attribute(model, vec, prompts, target=target, coeff=coeff, progress=progress),
        "patching": patch_effect(model, vec, prompts[0], target=target, coeff=coeff, progress=progress),
        "positions": position_effects(model, vec, prompts, target=target, coeff=coeff, n_boot=500, progress=progress),
    }
    found.seconds["mechanisms"] = time.perf_counter() - t


def _attribution_text(table: Any) -> str:
    """Which layer and which component carry most of the target logit's change."""
    per_layer = table[table["layer"] >= 0].groupby("layer")["contribution"].sum()
    change = f"The logit of {table.attrs['target']} changes by {table.attrs['logit_change']:+.2f}"
    if not len(per_layer) or not per_layer.abs().max() > 0:
        return change + "; no component's direct contribution changes."
    layer = int(per_layer.abs().idxmax())
    top = table.loc[table["contribution"].abs().idxmax()]
    return (f"{change} (norm gap {table.attrs['norm_gap']:+.2f}); layer {layer} carries most of it "
            f"({per_layer[layer]:+.2f} of the direct contributions), the largest single component is "
            f"{top['component']} ({top['contribution']:+.2f}).")


def _propagation_text(profile: Any) -> str:
    """How much of the addition stays in the steered cells, and how the later positions change."""
    last = profile[profile["depth"] == profile["depth"].max()].set_index("position_class")
    text = ""
    if "steered" in last.index:
        row = last.loc["steered"]
        text += (f"At the last hook point the steered cells still hold {row['retained']:.0%} of the addition along "
                 f"its direction (cosine {row['cos_injected']:.2f}). ")
    if "later" in last.index and math.isfinite(float(last.loc["later", "cos_injected"])):
        row = last.loc["later"]
        text += (f"Later positions change by ‖Δ‖ = {row['delta_norm']:.3g} (residual norm {row['resid_norm']:.3g}) "
                 f"at cosine {row['cos_injected']:.2f} with the vector: ")
        text += ("they mostly receive the vector itself. " if abs(row["cos_injected"]) > 0.5
                 else "they compute a new direction after reading the steered cells through attention. ")
    return text


def _patching_text(patch: Any, positions: Any) -> str:
    """Where the last position takes over in the patching map, and which vector position matters most."""
    last = patch[patch["position"] == patch["position"].max()]
    handoff = last[last["recovered"] >= 0.5]
    text = (f"Patching on {patch['prompt'].iloc[0]!r}: the last position restores at least half of the effect "
            f"from layer {int(handoff['layer'].min())} on. ") if len(handoff) else ""
    alone = positions[positions["variant"] == "alone"]
    full = positions[positions["variant"] == "full"]
    if len(alone) and len(full):
        best = alone.loc[alone["effect"].abs().idxmax()]
        text += (f"The full vector moves the target by {full['effect'].iloc[0]:+.2f} "
                 f"[{full['ci_low'].iloc[0]:.2f}, {full['ci_high'].iloc[0]:.2f}]; position {int(best['position'])} "
                 f"({best['token']!r}) alone gives {best['effect']:+.2f} [{best['ci_low']:.2f}, {best['ci_high']:.2f}].")
    return text


def _why_sections(found: _Findings) -> list[ReportSection]:
    """Why it steers: propagation, attribution, patching and position effects at the best setting."""
    why, layer, coeff = found.why, found.best_layer, found.best_coeff
    summary = (f"At the best setting (layer {layer}, c = {coeff:g}), target {found.targets[0]!r}, on "
               f"{min(len(found.prompts), 4)} prompts. " + _attribution_text(why["attribution"]) + " "
               + _propagation_text(why["profile"]) + _patching_text(why["patching"], why["positions"]))
    return [
        ReportSection("Why it steers: propagation", summary + "\n\nThe figure: the size of the steered − unsteered "
                      "residual at every hook point after the steered one, per position class.",
                      figure=propagation_figure(why["profile"])),
        ReportSection("Why it steers: attribution", "Change of each component's direct contribution to the target "
                      "logit at the last prompt position (with the norm gap they add up to the logit's change).",
                      figure=attribution_figure(why["attribution"])),
        ReportSection("Why it steers: patching", "Share of the effect restored by writing the steered residual of "
                      "one cell (layer × position) into the unsteered run.", figure=patching_figure(why["patching"])),
        ReportSection("Why it steers: vector positions", "The effect of the full vector, with each position knocked "
                      "out, each position alone and the positions summed to one direction added everywhere "
                      "(bootstrap 95% intervals over prompts).", figure=position_effects_figure(why["positions"])),
    ]


def _flagged_text(norms: Any) -> str:
    """The sentence under the norm figure: which positions exceed 2× the typical residual norm."""
    flagged = norms[norms["flagged"]]
    if not len(flagged):
        return "No position exceeds 2× the typical residual norm of its layer."
    return (
        "Flagged (vector norm > 2× the layer's typical residual norm — a massive activation dominates): "
        + ", ".join(f"layer {r.layer} pos {r.position} {r.vector_token!r} ({r.vector_norm:.0f} vs {r.typical_resid_norm:.0f})"
                    for r in flagged.head(12).itertuples())
    )


def _sweep_sections(found: _Findings) -> list[ReportSection]:
    """Effect sizes, the effect vs KL frontier and the norms."""
    return [
        ReportSection(
            "Effect size per layer × coefficient",
            f"Cohen's d of the log-probability of {found.targets} as the next token after {len(found.prompts)} prompts, "
            f"steered vs unsteered (bootstrap 95% CIs in the hover). Best: layer {found.best_layer}, "
            f"c = {found.best_coeff:g}, d = {float(found.best['effect']):.2f}.",
            figure=effect_heatmap(found.effects, metric="target logprob"),
        ),
        ReportSection(
            "Effect vs off-target KL",
            f"Each point is a layer × coefficient: effect size against the mean KL(unsteered ‖ steered) of next-token "
            f"distributions on {len(found.kl_prompts)} unrelated prompts (steered positions masked). The line marks the "
            "Pareto front: settings no other setting beats on both.",
            figure=frontier_figure(found.effects, "target logprob", cost_metric="kl"),
        ),
        ReportSection(
            "Vector norm vs residual norm per layer",
            "Solid: the norm of the ActAdd difference at each position; dashed: the median residual norm there on "
            "unrelated text. " + _flagged_text(found.norms),
            figure=norm_layers_figure(found.norms),
        ),
    ]


def _lens_sections(found: _Findings, n_completions: int) -> list[ReportSection]:
    """The logit lens per layer and at the best layer, the effect lens, the token view and the KL table."""
    layer, coeff = found.best_layer, found.best_coeff
    kl_summary = found.kl_table.groupby("coeff")["kl"].agg(["mean", "std"]).reset_index()
    return [
        ReportSection(
            "Plain logit lens: where can it be trusted?",
            "Rank (1 = best of the whole vocabulary) of each target token in the logit lens of the vector (summed over "
            "positions), per layer. Ranks in the thousands mean the lens reads noise at that layer, even where the "
            "vector steers well; the effect lens below asks the model instead.",
            figure=lens_rank_figure(found.profile),
            table=found.profile.drop(columns=["target_id"]),
            max_rows=min(len(found.profile), 60),
        ),
        ReportSection(f"Logit lens of the vector at layer {layer}", figure=token_scores_figure(found.lens.table)),
        ReportSection(
            f"Effect lens at layer {layer}, c = {coeff:g}",
            "Mean change of each token's next-token log-probability (nats) over the non-steered positions of the "
            "unrelated prompts.",
            figure=token_scores_figure(found.shift.table),
        ),
        ReportSection(
            "Completions, token by token",
            f"Prompt {found.prompts[0]!r}: unsteered and steered (layer {layer}, c = {coeff:g}) completions; colour = "
            "how much more likely the steered model finds each token (nats).",
            figure=token_view_figure(found.view, max_rows=2 * n_completions),
        ),
        ReportSection("Off-target KL by coefficient at the best layer", table=kl_summary),
    ]


def _meta(found: _Findings, model_name: str) -> dict:
    """The page's settings block."""
    layers = found.swept_layers
    return {
        "model": model_name,
        "p+ / p−": f"{found.pos!r} / {found.neg!r}",
        "layers": f"{layers[0]}–{layers[-1]} ({len(layers)})",
        "coefficients": ", ".join(f"{c:g}" for c in sorted(set([0.0] + [float(c) for c in found.coeffs]))),
        "prompts": "; ".join(found.prompts),
        "targets": ", ".join(map(repr, found.targets)),
        "seconds": ", ".join(f"{k} {v:.0f}" for k, v in found.seconds.items()),
    }


def analysis_report(
    model: Any, pos: str, neg: str,
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
    mechanisms: bool = False,
) -> dict:
    """Run the standard analysis of ``pos − neg`` and write the one-page HTML report.

    Args:
        model: The bridge.
        pos: p+.
        neg: p−.
        out: HTML file to write.
        layers: Layers to sweep (``"all"``, an int or a list).
        coeffs: Coefficients to sweep (0 is added).
        prompts: Prompts the effect is measured on (default
            :data:`steering.texts.DEFAULT_REPORT_PROMPTS`).
        targets: Target tokens of the effect metric (default :func:`default_targets` of p+).
        kl_prompts: Unrelated prompts for the KL (default the first 4 of
            :data:`steering.NEUTRAL_TEXTS`).
        n_completions: Steered and unsteered completions in the token view.
        max_new_tokens: Their length.
        model_name: Shown in the settings block.
        seed: Sampling seed.
        progress: Progress bars.
        mechanisms: Add the "Why it steers" sections (:mod:`steering.mechanisms` at the best
            setting: propagation, attribution, patching, position effects). Costs a few forward
            passes per layer and prompt.

    Returns:
        A dict: ``path`` (the page), ``figures`` (how many), ``best`` (layer, coeff, effect),
        ``seconds`` per stage, ``effects`` (the effect table).

    Example:
        >>> import pathlib, tempfile
        >>> from steering.testing import tiny_model
        >>> info = analysis_report(tiny_model(), "love", "hate", out=pathlib.Path(tempfile.mkdtemp()) / "r.html",
        ...                        layers=[1], coeffs=[4], prompts=["I think that", "we will go"], max_new_tokens=2)
        >>> sorted(info), info["best"]["layer"]
        (['best', 'effects', 'figures', 'path', 'seconds'], 1)
    """
    mechanisms = flag("mechanisms", mechanisms)
    found = _Findings(
        pos=pos, neg=neg, prompts=list(prompts or DEFAULT_REPORT_PROMPTS),
        targets=list(targets) if targets else single_token_texts(model, default_targets(pos)),
        kl_prompts=list(kl_prompts or NEUTRAL_TEXTS[:4]), coeffs=list(coeffs),
    )
    _run_sweep(model, found, layers, progress)
    vec = _run_lenses(model, found)
    _run_completions(model, found, vec, n_completions, max_new_tokens, seed)
    if mechanisms:
        _run_mechanisms(model, found, vec, progress)
    sections = _sweep_sections(found) + _lens_sections(found, n_completions) + (_why_sections(found) if found.why else [])
    meta = _meta(found, model_name or getattr(model.cfg, "model_name", "?"))
    path = write_report(out, sections, title=f"steering-lens report: {pos!r} − {neg!r}", meta=meta)
    best_info = {"layer": found.best_layer, "coeff": found.best_coeff, "effect": float(found.best["effect"])}
    if not math.isfinite(best_info["effect"]):
        best_info["effect"] = float("nan")
    return {"path": path, "figures": sum(s.figure is not None for s in sections), "best": best_info,
            "seconds": found.seconds, "effects": found.effects}
