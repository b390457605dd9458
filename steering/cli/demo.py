"""The main job: a real steering demo on a built-in model (``steer demo``).

It loads the model (fetching it on first use), builds two paper-style ActAdd vectors —
Love − Hate (sentiment) and " weddings" − "" (topic) — prints unsteered and steered
completions side by side with a simple measurement for each (mean VADER sentiment;
fraction of completions that mention a wedding word, both from :mod:`steering.texts`), and
writes one self-contained HTML page with the completions and a Plotly figure per vector (the
addition's norm per position against the residual norm it is added to).

Example:
    >>> from steering.cli.demo import DEMO_SETTINGS
    >>> sorted(DEMO_SETTINGS["gemma3-270m"])
    ['sentiment', 'topic']
"""

import html
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..errors import InvalidArgumentError
from ..extract import actadd
from ..files import check_writable_target, write_text_atomic
from ..generation import generate
from ..models import load_model
from ..norms import norm_profile
from ..plots import norm_figure
from ..texts import mean_sentiment, topic_fraction
from .format import side_by_side

__all__ = ["run_demo", "DEMO_SETTINGS"]

#: Layer / coefficient per model and experiment, chosen by a small sweep (measurements in docs/index.md).
DEMO_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "gemma3-270m": {
        "sentiment": {"pos": "Love", "neg": "Hate", "layer": 6, "coeff": 5.0, "prompt": "I hate you because"},
        "topic": {"pos": " weddings", "neg": "", "layer": 10, "coeff": 10.0, "prompt": "I went up to my friend and said"},
    },
    "smollm2-135m": {
        "sentiment": {"pos": "Love", "neg": "Hate", "layer": 2, "coeff": 8.0, "prompt": "I hate you because"},
        "topic": {"pos": " weddings", "neg": "", "layer": 1, "coeff": 10.0, "prompt": "I went up to my friend and said"},
    },
}

_PAGE_START = (
    "<!doctype html><html><head><meta charset='utf-8'><title>steering-lens demo</title>"
    "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "vertical-align:top;text-align:left}</style></head><body>"
)

_PAGE_INTRO = (
    "<p>ActAdd (Turner et al., arXiv 2308.10248): the per-position difference of the residual "
    "activations of a prompt pair, times c, is added to the first positions of the user's prompt. "
    "Sampling: temperature 1, top-p 0.3. The figures compare the norm of the addition with the "
    "norm of the residual stream it is added to.</p>"
)


def _measure(kind: str, unsteered: list[str], steered: list[str]) -> tuple[str, float, float, str]:
    """``(metric name, unsteered value, steered value, format)`` of one experiment."""
    if kind == "sentiment":
        return "mean VADER compound sentiment", mean_sentiment(unsteered), mean_sentiment(steered), "{:+.3f}"
    return "completions with a wedding word", topic_fraction(unsteered), topic_fraction(steered), "{:.0%}"


def _html_table(unsteered: list[str], steered: list[str], coeff: float) -> str:
    rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>"
        for i, (a, b) in enumerate(zip(unsteered, steered), 1)
    )
    return (
        f"<table><tr><th>#</th><th>unsteered</th><th>steered (c = {coeff:g})</th></tr>{rows}</table>"
    )


def _run_experiment(model: Any, kind: str, cfg: dict, *, n: int, n_measure: int, max_new_tokens: int, seed: int,
                    include_plotlyjs: bool) -> tuple[dict, str]:
    """Steer one experiment: print its completions and measurement; return its result and page section."""
    layer = min(cfg["layer"], int(model.cfg.n_layers) - 1)
    vec = actadd(model, cfg["pos"], cfg["neg"], layer=layer)
    common = dict(max_new_tokens=max_new_tokens, n=n_measure, seed=seed, progress=True)
    unsteered = generate(model, cfg["prompt"], None, **common)
    steered = generate(model, cfg["prompt"], vec, coeff=cfg["coeff"], **common)
    metric_name, before, after, fmt = _measure(kind, unsteered, steered)
    title = f"{cfg['pos']!r} − {cfg['neg']!r} at layer {layer}, c = {cfg['coeff']:g}"
    print(f"\n-- {kind}: {title} — prompt {cfg['prompt']!r}")
    print(side_by_side(unsteered[:n], steered[:n], ("unsteered", f"steered (c = {cfg['coeff']:g})")))
    print(
        f"{metric_name} over {n_measure} samples × {max_new_tokens} tokens (seed {seed}): "
        f"unsteered {fmt.format(before)} → steered {fmt.format(after)}",
        flush=True,
    )
    fig = norm_figure(norm_profile(model, vec, cfg["prompt"], coeff=cfg["coeff"]))
    fig_html = fig.to_html(full_html=False, include_plotlyjs=include_plotlyjs)
    section = (
        f"<h2>{html.escape(kind.title())}: {html.escape(title)}</h2>"
        f"<p>Prompt: <code>{html.escape(cfg['prompt'])}</code>. {html.escape(metric_name)} over {n_measure} "
        f"samples × {max_new_tokens} tokens: unsteered <b>{fmt.format(before)}</b>, steered "
        f"<b>{fmt.format(after)}</b>.</p>"
        f"{_html_table(unsteered[:n], steered[:n], cfg['coeff'])}{fig_html}"
    )
    result = {
        "settings": {**cfg, "layer": layer},
        "unsteered": unsteered,
        "steered": steered,
        "metric": metric_name,
        "unsteered_value": before,
        "steered_value": after,
    }
    return result, section


def _check_counts(**counts: Any) -> None:
    """Refuse a count that is not an integer ≥ 1 (before the model loads)."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{name}={value!r}; allowed: an integer ≥ 1. Fix: pass e.g. {name}=4.")


def _write_page(out: str, model_name: str, sections: list[str]) -> None:
    """Write the demo page atomically and say where it went."""
    page = (
        _PAGE_START
        + f"<h1>steering-lens demo — {html.escape(model_name)}</h1>"
        + _PAGE_INTRO
        + "".join(sections)
        + "</body></html>"
    )
    target = write_text_atomic(Path(out), page)
    print(f"\nwrote {target.resolve()} ({target.stat().st_size / 1e6:.1f} MB)")


def run_demo(
    model_name: str = "gemma3-270m",
    out: Optional[str] = "steering-demo.html",
    n: int = 4,
    max_new_tokens: int = 40,
    n_measure: int = 16,
    device: Optional[str] = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the demo: print completions side by side and write the HTML page.

    Args:
        model_name: A built-in model (settings per model in :data:`DEMO_SETTINGS`;
            other models use Gemma's settings, clipped to their layer count).
        out: Path of the HTML page (``None``: write nothing).
        n: Completions shown per setting.
        max_new_tokens: Tokens per completion.
        n_measure: Completions per setting for the printed measurement (≥ n).
        device: Torch device (default: CUDA if available).
        seed: Sampling seed.

    Returns:
        ``{"sentiment": {...}, "topic": {...}}`` with the texts and measurements.

    Raises:
        InvalidArgumentError: A count is not an integer ≥ 1, or ``out``'s folder is missing
            (checked before the model loads, like every check here).
        FileAccessError: ``out``'s folder may not be written.

    Example:
        >>> result = run_demo("smollm2-135m", out=None, n=2, max_new_tokens=8)  # doctest: +SKIP
        >>> sorted(result)  # doctest: +SKIP
        ['sentiment', 'topic']
    """
    start = time.perf_counter()
    _check_counts(n=n, max_new_tokens=max_new_tokens, n_measure=n_measure)
    if out:
        check_writable_target(out, what="demo page")
    print(f"== steering-lens demo on {model_name} ==", flush=True)
    model = load_model(model_name, device=device)
    settings = DEMO_SETTINGS.get(model_name, DEMO_SETTINGS["gemma3-270m"])
    n_measure = max(n_measure, n)
    results: dict[str, Any] = {}
    sections = []
    for i, (kind, cfg) in enumerate(settings.items()):
        results[kind], section = _run_experiment(model, kind, cfg, n=n, n_measure=n_measure,
                                                 max_new_tokens=max_new_tokens, seed=seed, include_plotlyjs=i == 0)
        sections.append(section)
    if out:
        _write_page(out, model_name, sections)
    print(f"done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return results
