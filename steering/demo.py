"""The main job: a real steering demo on a built-in model (``steer demo``).

It loads the model (fetching it on first use), builds two paper-style ActAdd vectors —
Love − Hate (sentiment) and " weddings" − "" (topic) — prints unsteered and steered
completions side by side with a simple measurement for each (mean VADER sentiment;
fraction of completions that mention a wedding word), and writes one self-contained
HTML page with the completions and a Plotly figure per vector (the addition's norm
per position against the residual norm it is added to).

Example:
    >>> from steering.demo import DEMO_SETTINGS
    >>> sorted(DEMO_SETTINGS["gemma3-270m"])
    ['sentiment', 'topic']
"""

import html
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional

__all__ = ["run_demo", "DEMO_SETTINGS", "WEDDING_WORDS", "wedding_fraction", "mean_sentiment"]

#: The paper's wedding-word list (Turner et al., topic-steering experiment).
WEDDING_WORDS = ("wedding", "weddings", "wed", "marry", "married", "marriage", "bride", "groom", "honeymoon")
_WEDDING_RE = re.compile(r"\b(" + "|".join(WEDDING_WORDS) + r")\b", re.IGNORECASE)

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


def wedding_fraction(texts: list[str]) -> float:
    """Fraction of ``texts`` containing at least one wedding word (whole words, any case).

    Example:
        >>> wedding_fraction(["the bride smiled", "nothing here", "We married", "wedded"])
        0.5
    """
    return sum(bool(_WEDDING_RE.search(t)) for t in texts) / max(len(texts), 1)


def mean_sentiment(texts: list[str]) -> float:
    """Mean VADER compound sentiment (−1 … +1) of ``texts``.

    Example:
        >>> mean_sentiment(["I love this, wonderful!"]) > 0.5 > mean_sentiment(["I hate this, awful."])
        True
    """
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return sum(analyzer.polarity_scores(t)["compound"] for t in texts) / max(len(texts), 1)


def _html_table(unsteered: list[str], steered: list[str], coeff: float) -> str:
    rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>"
        for i, (a, b) in enumerate(zip(unsteered, steered), 1)
    )
    return (
        f"<table><tr><th>#</th><th>unsteered</th><th>steered (c = {coeff:g})</th></tr>{rows}</table>"
    )


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

    Example:
        >>> result = run_demo("smollm2-135m", out=None, n=2, max_new_tokens=8)  # doctest: +SKIP
    """
    from .analysis import norm_profile
    from .cli import side_by_side
    from .extract import actadd
    from .generation import generate
    from .models import load_model
    from .plots import norm_figure

    start = time.perf_counter()
    print(f"== steering-lens demo on {model_name} ==", flush=True)
    model = load_model(model_name, device=device)
    n_layers = int(model.cfg.n_layers)
    settings = DEMO_SETTINGS.get(model_name, DEMO_SETTINGS["gemma3-270m"])
    n_measure = max(n_measure, n)
    results: dict[str, Any] = {}
    sections = []
    first_figure = True
    for kind, cfg in settings.items():
        layer = min(cfg["layer"], n_layers - 1)
        vec = actadd(model, cfg["pos"], cfg["neg"], layer=layer)
        common = dict(max_new_tokens=max_new_tokens, n=n_measure, seed=seed, progress=True)
        unsteered = generate(model, cfg["prompt"], None, **common)
        steered = generate(model, cfg["prompt"], vec, coeff=cfg["coeff"], **common)
        if kind == "sentiment":
            metric_name = "mean VADER compound sentiment"
            before, after = mean_sentiment(unsteered), mean_sentiment(steered)
            fmt = "{:+.3f}"
        else:
            metric_name = "completions with a wedding word"
            before, after = wedding_fraction(unsteered), wedding_fraction(steered)
            fmt = "{:.0%}"
        title = f"{cfg['pos']!r} − {cfg['neg']!r} at layer {layer}, c = {cfg['coeff']:g}"
        print(f"\n-- {kind}: {title} — prompt {cfg['prompt']!r}")
        print(side_by_side(unsteered[:n], steered[:n], ("unsteered", f"steered (c = {cfg['coeff']:g})")))
        print(
            f"{metric_name} over {n_measure} samples × {max_new_tokens} tokens (seed {seed}): "
            f"unsteered {fmt.format(before)} → steered {fmt.format(after)}",
            flush=True,
        )
        fig = norm_figure(norm_profile(model, vec, cfg["prompt"], coeff=cfg["coeff"]))
        fig_html = fig.to_html(full_html=False, include_plotlyjs=True if first_figure else False)
        first_figure = False
        sections.append(
            f"<h2>{html.escape(kind.title())}: {html.escape(title)}</h2>"
            f"<p>Prompt: <code>{html.escape(cfg['prompt'])}</code>. {html.escape(metric_name)} over {n_measure} "
            f"samples × {max_new_tokens} tokens: unsteered <b>{fmt.format(before)}</b>, steered "
            f"<b>{fmt.format(after)}</b>.</p>"
            f"{_html_table(unsteered[:n], steered[:n], cfg['coeff'])}{fig_html}"
        )
        results[kind] = {
            "settings": {**cfg, "layer": layer},
            "unsteered": unsteered,
            "steered": steered,
            "metric": metric_name,
            "unsteered_value": before,
            "steered_value": after,
        }
    if out:
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>steering-lens demo</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1em}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
            "vertical-align:top;text-align:left}</style></head><body>"
            f"<h1>steering-lens demo — {html.escape(model_name)}</h1>"
            "<p>ActAdd (Turner et al., arXiv 2308.10248): the per-position difference of the residual "
            "activations of a prompt pair, times c, is added to the first positions of the user's prompt. "
            "Sampling: temperature 1, top-p 0.3. The figures compare the norm of the addition with the "
            "norm of the residual stream it is added to.</p>"
            + "".join(sections)
            + "</body></html>"
        )
        target = Path(out)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(target)
        print(f"\nwrote {target.resolve()} ({target.stat().st_size / 1e6:.1f} MB)")
    print(f"done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return results
