"""Compare extraction methods (ActAdd, mean-diff, PCA) on the built-in models.

Writes, under ``--out`` (default ``outputs/methods``):
- ``cosine_<model>.csv`` / figure: per layer, cosine similarity between the mean-diff and PCA
  directions and the ActAdd Love − Hate vector's summed direction;
- ``effects_<model>.csv``: mean VADER sentiment of completions for each method (and unsteered);
- ``ablation_<model>.csv``: |mean VADER| of sentiment-laden completions with the mean-diff
  direction ablated at every layer vs not;
- ``methods.html``: the figures.

Run: ``python experiments/methods_compare.py [--models gemma3-270m smollm2-135m] [--n 8]``.
"""

import argparse
import json
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

import steering as st
from steering.directions import mean_diff, pca_direction
from steering.extract import actadd_layers
from steering.texts import mean_sentiment

POS = [
    "I love this.", "What a wonderful day.", "You are kind and generous.", "This is fantastic news!",
    "I feel happy and grateful.", "She was delighted by the gift.", "The movie was brilliant.",
    "We had a lovely time.",
]
NEG = [
    "I hate this.", "What a terrible day.", "You are cruel and selfish.", "This is awful news!",
    "I feel sad and bitter.", "She was disgusted by the gift.", "The movie was dreadful.",
    "We had a horrible time.",
]
NEGATIVE_PROMPTS = ["I hate you because", "I think you are", "Today I feel"]
LADEN_PROMPTS = ["I love you so much because", "This is the worst thing that", "What a beautiful, happy"]


def run(model_name: str, n: int, out: Path, layer: int, coeffs: dict) -> dict:
    model = st.load_model(model_name, device="cpu")
    layers = list(range(model.cfg.n_layers))
    act = actadd_layers(model, "Love", "Hate", layers)
    md = mean_diff(model, POS, NEG, layers, token="mean")
    pca = pca_direction(model, POS, NEG, layers, token="mean")
    rows = []
    for l, a, m, p in zip(layers, act, md, pca):
        rows.append({"model": model_name, "layer": l, "pair": "mean_diff vs actadd(sum)", "cosine": m.cosine_similarity(a)})
        rows.append({"model": model_name, "layer": l, "pair": "pca vs actadd(sum)", "cosine": p.cosine_similarity(a)})
        rows.append({"model": model_name, "layer": l, "pair": "pca vs mean_diff", "cosine": p.cosine_similarity(m)})
    cos = pd.DataFrame(rows)
    cos.to_csv(out / f"cosine_{model_name}.csv", index=False)

    kw = dict(max_new_tokens=30, n=n, seed=0)
    effects = [{"method": "unsteered", "layer": None, "coeff": 0.0,
                "vader": mean_sentiment(st.generate(model, NEGATIVE_PROMPTS, None, **kw))}]
    for method, vec, positions in [("actadd", act[layer], "front"), ("mean_diff", md[layer], "all"),
                                   ("pca", pca[layer], "all")]:
        for c in coeffs[method]:
            texts = st.generate(model, NEGATIVE_PROMPTS, vec, coeff=c, positions=positions, **kw)
            effects.append({"method": method, "layer": layer, "coeff": c, "vader": mean_sentiment(texts),
                            "example": texts[0][:80]})
            print(model_name, method, c, round(effects[-1]["vader"], 3), flush=True)
    eff = pd.DataFrame(effects)
    eff.to_csv(out / f"effects_{model_name}.csv", index=False)

    base = st.generate(model, LADEN_PROMPTS, None, **kw)
    ablated = st.generate(model, LADEN_PROMPTS, md, coeff=1.0, op="ablate", positions="all", **kw)
    abl = pd.DataFrame([
        {"condition": "unsteered", "mean_vader": mean_sentiment(base), "abs_mean_vader": abs(mean_sentiment(base))},
        {"condition": "mean_diff ablated (all layers)", "mean_vader": mean_sentiment(ablated),
         "abs_mean_vader": abs(mean_sentiment(ablated))},
    ])
    abl.to_csv(out / f"ablation_{model_name}.csv", index=False)
    print(abl, flush=True)
    return {"cosine": cos, "effects": eff, "ablation": abl}


def write_figure(out: Path) -> Path:
    """One page with the per-layer cosine figure of every model whose CSV is in ``out``."""
    figs = []
    for csv in sorted(out.glob("cosine_*.csv")):
        table = pd.read_csv(csv)
        name = csv.stem.removeprefix("cosine_")
        fig = go.Figure()
        for pair, g in table.groupby("pair"):
            fig.add_scatter(x=g["layer"], y=g["cosine"], mode="lines+markers", name=pair)
        fig.update_layout(title=f"{name}: cosine similarity of sentiment directions per layer",
                          xaxis_title="layer", yaxis_title="cosine", yaxis_range=[-1, 1], template="plotly_white")
        figs.append(fig)
    html = "".join(f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs))
    page = out / "methods.html"
    page.write_text(f"<html><head><meta charset='utf-8'></head><body>{html}</body></html>", encoding="utf-8")
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["gemma3-270m", "smollm2-135m"])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--out", default="outputs/methods")
    parser.add_argument("--figure-only", action="store_true", help="rebuild methods.html from the CSVs in --out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.figure_only:
        print(write_figure(out))
        return
    settings = {
        "gemma3-270m": {"layer": 6, "coeffs": {"actadd": [5.0], "mean_diff": [2.0, 4.0, 8.0], "pca": [2.0, 4.0, 8.0]}},
        "smollm2-135m": {"layer": 2, "coeffs": {"actadd": [8.0], "mean_diff": [2.0, 4.0, 8.0], "pca": [2.0, 4.0, 8.0]}},
    }
    summary = {}
    for name in args.models:
        res = run(name, args.n, out, **settings[name])
        summary[name] = {"effects": res["effects"].drop(columns=["example"], errors="ignore").to_dict("records"),
                         "ablation": res["ablation"].to_dict("records")}
    write_figure(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
