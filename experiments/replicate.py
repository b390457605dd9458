"""Replicate the ActAdd paper's experiments (Turner et al., "Steering Language Models With Activation
Engineering") on the built-in models, with bootstrap 95% confidence intervals.

    python experiments/replicate.py                      # both models, about an hour on 2 CPU cores
    python experiments/replicate.py --models gemma3-270m # one model
    python experiments/replicate.py --smoke              # seconds: tiny random model, tiny samples (CI)

Writes tidy CSV tables, ``summary.json`` and ``replication.html`` (all figures) under ``--out``
(default ``outputs/replication``). docs/replication.md reports the numbers and the sample sizes.

Experiments (numbers as in the issue):
1. topic steering by generation — wedding-word fraction vs layer (every layer) and vs coefficient,
   for " weddings" − " " and "I talk about weddings constantly" − "I do not talk about weddings constantly";
2. perplexity ratio by topic relevance on experiments/data/wedding_corpus.csv, ActAdd vs prompting;
3. per-token log-prob shift (the effect lens);
4. off-target capability — KL on unrelated text and factual cloze P@1 / P@10 (experiments/data/cloze.csv);
5. sentiment — Love − Hate and the reverse: mean VADER compound and fraction positive, steered vs
   unsteered vs prompting;
6. controls — a norm-matched random vector, space vs EOS padding, front vs all-position addition;
7. per-input steerability — slope of the metric vs coefficient per prompt; fraction anti-steerable.
"""

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

import steering as st
import steering.plots as plots
from steering.engine import forward_logprobs
from steering.report import ReportSection, write_report
from steering.stats import group_mean_ci as summarise  # mean, bootstrap 95% CI and n per group
from steering.stats import mean_ci as bootstrap_ci  # mean and bootstrap 95% CI of a list
from steering.texts import NEUTRAL_TEXTS, WEDDING_WORDS, sentiment_scores, topic_fraction
from steering.tokens import tokenize_prompt

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"  # the published (committed) copy of the latest full run
TOPIC_PROMPTS = [
    "I went up to my friend and said",
    "Yesterday my neighbour told me that",
    "The best part of the day was",
    "She looked at the letter and",
]
NEGATIVE_PROMPTS = ["I hate you because", "I think you are", "Today I feel", "The food at this place was",
                    "My boss told me that", "The worst thing about people is", "When I woke up I felt",
                    "Honestly, this movie"]
POSITIVE_PROMPTS = ["I love you because", "I think you are wonderful and", "Today I feel so happy that",
                    "The food at this place was delicious and", "My best friend told me that",
                    "The best thing about people is", "When I woke up I felt great because",
                    "Honestly, this movie was a delight"]
PAIR_SHORT = (" weddings", "")
PAIR_LONG = ("I talk about weddings constantly", "I do not talk about weddings constantly")

#: Points chosen by sweep (docs/analysis.md, docs/replication.md): topic layer/coeff and sentiment layer/coeff.
SETTINGS = {
    "gemma3-270m": {"topic_layer": 10, "topic_coeff": 10.0, "sent_layer": 6, "sent_coeff": 5.0},
    "smollm2-135m": {"topic_layer": 1, "topic_coeff": 10.0, "sent_layer": 2, "sent_coeff": 8.0},
    "tiny": {"topic_layer": 1, "topic_coeff": 4.0, "sent_layer": 1, "sent_coeff": 4.0},
}


class Runner:
    def __init__(self, model: Any, name: str, scale: dict, out: Path) -> None:
        self.model, self.name, self.scale, self.out = model, name, scale, out
        self.cfg = SETTINGS["tiny" if name.startswith("tiny") else name]
        self.summary: dict = {"model": name, "settings": self.cfg, "scale": scale}
        #: topic-vector layer: the layer sweep's best when ``topic`` ran first, else SETTINGS
        self.topic_layer: int = self.cfg["topic_layer"]

    def gen(self, prompts: list, vec: Any, coeffs: Any, n: int, tokens: int, **kw: Any) -> list[str]:
        return st.generate(self.model, prompts, vec, coeffs, n=n, max_new_tokens=tokens, seed=0,
                           batch_size=self.scale["batch"], progress=False, **kw)

    def save(self, df: pd.DataFrame, stem: str) -> pd.DataFrame:
        df.insert(0, "model", self.name)
        df.to_csv(self.out / f"{stem}_{self.name}.csv", index=False)
        return df

    # -------------------------------------------------------------- 1. topic steering by generation
    def topic(self) -> None:
        s, m = self.scale, self.model
        prompts = TOPIC_PROMPTS[: s["topic_prompts"]]
        n_layer, n_coeff = s["layer_samples"], s["coeff_samples"]
        short = st.actadd_layers(m, *PAIR_SHORT, layers="all")
        rows = []
        base = self.gen(prompts, None, 0.0, n_layer, s["layer_tokens"])
        rows += [{"layer": -1, "hit": topic_fraction([t], WEDDING_WORDS)} for t in base]
        for vec in short:
            texts = self.gen(prompts, vec, self.cfg["topic_coeff"], n_layer, s["layer_tokens"])
            rows += [{"layer": vec.layer, "hit": topic_fraction([t], WEDDING_WORDS)} for t in texts]
        by_layer = self.save(summarise(rows, "hit", ["layer"]), "topic_by_layer")
        steered = by_layer[by_layer.layer >= 0]
        # the layer for everything after this: the sweep's best (ties: the earliest layer)
        layer = self.topic_layer = int(steered.sort_values(["mean", "layer"], ascending=[False, True]).iloc[0]["layer"])
        coeffs = s["coeffs"]
        rows = []
        for label, pair in (("' weddings' − ''", PAIR_SHORT), ("talk about weddings", PAIR_LONG)):
            vec = st.actadd(m, *pair, layer=layer)
            texts = self.gen(prompts, vec, [0.0] + coeffs, n_coeff, s["coeff_tokens"])
            block = len(prompts) * n_coeff
            for ci, c in enumerate([0.0] + coeffs):
                rows += [{"pair": label, "coeff": c, "hit": topic_fraction([t], WEDDING_WORDS)}
                         for t in texts[ci * block : (ci + 1) * block]]
        by_coeff = self.save(summarise(rows, "hit", ["pair", "coeff"]), "topic_by_coeff")
        best = steered[steered.layer == layer].iloc[0]
        self.summary["topic_layer"] = layer
        self.summary["topic"] = {
            "unsteered": by_layer[by_layer.layer == -1][["mean", "ci_low", "ci_high", "n"]].iloc[0].to_dict(),
            "best_layer": {k: best[k] for k in ("layer", "mean", "ci_low", "ci_high", "n")},
            "at_chosen": by_coeff.to_dict("records"),
        }

    def topic_long(self) -> None:
        """Experiment 1 for the sentence pair: wedding fraction vs layer (every layer), same c and samples."""
        s, m = self.scale, self.model
        prompts = TOPIC_PROMPTS[: s["topic_prompts"]]
        rows = []
        for vec in st.actadd_layers(m, *PAIR_LONG, layers="all"):
            texts = self.gen(prompts, vec, self.cfg["topic_coeff"], s["layer_samples"], s["layer_tokens"])
            rows += [{"layer": vec.layer, "hit": topic_fraction([t], WEDDING_WORDS)} for t in texts]
        by_layer = self.save(summarise(rows, "hit", ["layer"]), "topic_by_layer_long")
        best = by_layer.sort_values(["mean", "layer"], ascending=[False, True]).iloc[0]
        self.summary["topic_long"] = {"best_layer": {k: best[k] for k in ("layer", "mean", "ci_low", "ci_high", "n")}}

    # -------------------------------------------------------------- 2. perplexity by relevance
    def perplexity(self) -> None:
        corpus = _read_csv(HERE / "data" / "wedding_corpus.csv")
        per_bin = self.scale["ppl_per_bin"]
        texts: dict = {}
        for row in corpus:
            texts.setdefault(row["bin"], [])
            if len(texts[row["bin"]]) < per_bin:
                texts[row["bin"]].append(row["text"])
        vec = st.actadd(self.model, *PAIR_SHORT, layer=self.topic_layer)
        table = st.perplexity_ratio(self.model, vec, texts, coeff=self.scale["ppl_coeffs"], prompt=PAIR_SHORT[0],
                                    batch_size=self.scale["batch"] // 2)
        rows = table.to_dict("records")
        for r in rows:
            r["setting"] = "prompting" if r["method"] == "prompting" else f"actadd c={r['coeff']:g}"
        summ = self.save(summarise(rows, "ppl_ratio", ["setting", "group"]), "perplexity")
        self.save(table.copy(), "perplexity_items")
        self.summary["perplexity"] = summ.to_dict("records")

    # -------------------------------------------------------------- 3. log-prob shift
    def shift(self) -> None:
        vec = st.actadd(self.model, *PAIR_SHORT, layer=self.topic_layer)
        res = st.logprob_shift(self.model, vec, NEUTRAL_TEXTS, coeff=self.cfg["topic_coeff"], k=15)
        self.save(res.table.copy(), "logprob_shift")
        self.summary["logprob_shift"] = {"promoted": res.promoted[:10], "suppressed": res.suppressed[:10]}

    # -------------------------------------------------------------- 4. off-target capability
    def off_target(self) -> None:
        m, c = self.model, self.cfg["topic_coeff"]
        vec = st.actadd(m, *PAIR_SHORT, layer=self.topic_layer)
        kl = st.off_target_kl(m, vec, NEUTRAL_TEXTS, coeffs=[0.0, c / 4, c / 2, c])
        self.save(kl.copy(), "kl")
        items = _read_csv(HERE / "data" / "cloze.csv")[: self.scale["cloze"]]
        tok = m.tokenizer
        keep = [(r["prompt"], tok.encode(r["answer"], add_special_tokens=False)) for r in items]
        single = [(p, ids[0]) for p, ids in keep if len(ids) == 1]
        # (a character-level test tokenizer has no one-token answers: score their first token instead)
        keep = single if single else [(p, ids[0]) for p, ids in keep if ids]
        seqs = [tokenize_prompt(m, p) for p, _ in keep]
        rows = []
        for label, vector, coeff in (("unsteered", None, None), (f"actadd c={c:g}", vec, c)):
            logps = forward_logprobs(m, seqs, vector, None if vector is None else [coeff] * len(seqs),
                                     batch_size=self.scale["batch"], readout="last")
            for (prompt, answer), lp in zip(keep, logps):
                rank = int((lp[-1] > lp[-1, answer]).sum()) + 1
                rows.append({"setting": label, "prompt": prompt, "p_at_1": float(rank == 1), "p_at_10": float(rank <= 10)})
        p1 = summarise(rows, "p_at_1", ["setting"]).assign(metric="P@1")
        p10 = summarise(rows, "p_at_10", ["setting"]).assign(metric="P@10")
        cloze = self.save(pd.concat([p1, p10]), "cloze")
        self.summary["off_target"] = {"kl": kl.groupby("coeff")["kl"].mean().to_dict(), "cloze_items": len(keep),
                                      "cloze": cloze.to_dict("records")}

    # -------------------------------------------------------------- 5. sentiment
    def sentiment(self) -> None:
        s, m = self.scale, self.model
        n, tokens = s["sent_samples"], s["sent_tokens"]
        rows = []
        for direction, pos, neg, prompts in (("Love − Hate on negative prompts", "Love", "Hate", NEGATIVE_PROMPTS),
                                             ("Hate − Love on positive prompts", "Hate", "Love", POSITIVE_PROMPTS)):
            prompts = prompts[: s["sent_prompts"]]
            vec = st.actadd(m, pos, neg, layer=self.cfg["sent_layer"])
            texts = self.gen(prompts, vec, [0.0, self.cfg["sent_coeff"]], n, tokens)
            half = len(texts) // 2
            prompted = self.gen([f"{pos} {p}" for p in prompts], None, 0.0, n, tokens)
            for setting, group in (("unsteered", texts[:half]), (f"actadd c={self.cfg['sent_coeff']:g}", texts[half:]),
                                   (f"prompting ('{pos} ' prepended)", prompted)):
                for score in sentiment_scores(group):
                    rows.append({"direction": direction, "setting": setting, "vader": score,
                                 "positive": float(score > 0.05)})
        v = summarise(rows, "vader", ["direction", "setting"]).assign(metric="mean VADER")
        p = summarise(rows, "positive", ["direction", "setting"]).assign(metric="fraction positive")
        out = self.save(pd.concat([v, p]), "sentiment")
        self.summary["sentiment"] = out.to_dict("records")

    # -------------------------------------------------------------- 6. controls
    def controls(self) -> None:
        s, m = self.scale, self.model
        layer, c = self.topic_layer, self.cfg["topic_coeff"]
        prompts = TOPIC_PROMPTS[: s["topic_prompts"]]
        real = st.actadd(m, *PAIR_SHORT, layer=layer)
        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(real.tensor.shape, generator=gen)
        noise = noise / noise.norm(dim=-1, keepdim=True).clamp_min(1e-12) * real.norm().unsqueeze(-1)
        random_vec = dataclasses.replace(real, tensor=noise.to(real.tensor.dtype), method="random",
                                         meta={**real.meta, "control": "norm-matched random"})
        eos = st.actadd(m, *PAIR_SHORT, layer=layer, pad="eos")
        variants = [("ActAdd (space padding, front)", real, {}), ("norm-matched random vector", random_vec, {}),
                    ("EOS padding", eos, {}), ("all positions (summed direction)", real.direction("sum"), {"positions": "all"})]
        rows, kl_rows = [], []
        for label, vec, kw in variants:
            texts = self.gen(prompts, vec, c, s["coeff_samples"], s["coeff_tokens"], **kw)
            rows += [{"variant": label, "hit": topic_fraction([t], WEDDING_WORDS)} for t in texts]
            kl = st.off_target_kl(m, vec, NEUTRAL_TEXTS, coeffs=[c], **kw)
            kl_rows += [{"variant": label, "kl": v} for v in kl["kl"]]
        topic = summarise(rows, "hit", ["variant"]).assign(metric="wedding fraction")
        kls = summarise(kl_rows, "kl", ["variant"]).assign(metric="KL (nats)")
        out = self.save(pd.concat([topic, kls]), "controls")
        self.summary["controls"] = out.to_dict("records")

    # -------------------------------------------------------------- 7. per-input steerability
    def steerability(self) -> None:
        s, m = self.scale, self.model
        corpus = _read_csv(HERE / "data" / "wedding_corpus.csv")
        starts = [" ".join(r["text"].split()[:6]) for r in corpus if r["bin"] == "unrelated"][: s["steer_prompts"]]
        coeffs = s["steer_coeffs"]
        table = st.sweep(m, *PAIR_SHORT, starts, layers=[self.topic_layer], coeffs=coeffs,
                         metrics=[st.Metric("logprob", targets=[" wedding", " weddings", " bride", " married"])],
                         progress=False)
        slopes = []
        for prompt, part in table.groupby("prompt"):
            x, y = part["coeff"].to_numpy(float), part["value"].to_numpy(float)
            slope = float(np.polyfit(x, y, 1)[0])
            slopes.append({"prompt": prompt, "slope": slope, "anti": float(slope < 0)})
        df = self.save(pd.DataFrame(slopes), "steerability")
        mean, lo, hi = bootstrap_ci(df["anti"].tolist())
        sm, slo, shi = bootstrap_ci(df["slope"].tolist())
        self.summary["steerability"] = {"prompts": len(df), "anti_fraction": [mean, lo, hi], "mean_slope": [sm, slo, shi],
                                        "slope_quartiles": df["slope"].quantile([0.25, 0.5, 0.75]).tolist()}


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


SCALES = {
    "full": {"topic_prompts": 4, "layer_samples": 16, "layer_tokens": 40, "coeff_samples": 16, "coeff_tokens": 40,
             "coeffs": [2.0, 5.0, 10.0, 20.0], "ppl_per_bin": 100, "ppl_coeffs": [1.0, 4.0], "cloze": 400,
             "sent_prompts": 8, "sent_samples": 16, "sent_tokens": 30, "steer_prompts": 60,
             "steer_coeffs": [0.0, 1.0, 2.0, 4.0, 8.0], "batch": 64},
    "smoke": {"topic_prompts": 2, "layer_samples": 2, "layer_tokens": 4, "coeff_samples": 2, "coeff_tokens": 4,
              "coeffs": [4.0], "ppl_per_bin": 3, "ppl_coeffs": [4.0], "cloze": 10, "sent_prompts": 2,
              "sent_samples": 2, "sent_tokens": 4, "steer_prompts": 4, "steer_coeffs": [0.0, 2.0, 4.0], "batch": 16},
}
EXPERIMENTS = ("topic", "topic_long", "perplexity", "shift", "off_target", "sentiment", "controls", "steerability")


def result_figures(out: Any, models: Sequence[str]) -> list:
    """``(title, plotly figure)`` for every experiment, built from the tidy CSVs in ``out``.

    Used for ``replication.html`` and by ``notebooks/06_replication.ipynb`` (which reads the
    committed copies in ``experiments/results/``).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    out = Path(out)

    def frames(stem: str) -> pd.DataFrame:
        parts = [pd.read_csv(out / f"{stem}_{m}.csv") for m in models if (out / f"{stem}_{m}.csv").exists()]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def err(part: pd.DataFrame) -> dict:
        return {"type": "data", "symmetric": False, "array": part["ci_high"] - part["mean"],
                "arrayminus": part["mean"] - part["ci_low"]}

    def panels(df: pd.DataFrame, x: str, color: str, title: str, y_title: str, kind: str = "bar") -> Any:
        names = [m for m in models if m in set(df["model"])]
        fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
        palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3"]
        keys = list(dict.fromkeys(df[color]))
        for col, name in enumerate(names, start=1):
            for key, part in df[df.model == name].groupby(color, sort=False):
                trace = dict(x=part[x], y=part["mean"], name=str(key), error_y=err(part), legendgroup=str(key),
                             showlegend=col == 1, marker_color=palette[keys.index(key) % len(palette)])
                fig.add_trace(go.Bar(**trace) if kind == "bar" else go.Scatter(mode="lines+markers", **trace),
                              row=1, col=col)
        fig.update_layout(title=title, barmode="group", template="plotly_white", yaxis_title=y_title)
        return fig

    figs = []
    df = frames("topic_by_layer")
    if len(df):
        steered = df[df.layer >= 0].assign(series="' weddings' − ''")
        long = frames("topic_by_layer_long")
        if len(long):
            steered = pd.concat([steered, long.assign(series="talk about weddings")], ignore_index=True)
        figs.append(("1. Topic steering vs layer", panels(steered, "layer", "series",
                     "Fraction of completions with a wedding word vs injection layer (95% CI)", "fraction", "line")))
    df = frames("topic_by_coeff")
    if len(df):
        figs.append(("1. Topic steering vs coefficient", panels(df, "coeff", "pair",
                     "Fraction with a wedding word vs coefficient, at the chosen layer (95% CI)", "fraction", "line")))
    df = frames("perplexity")
    if len(df):
        figs.append(("2. Perplexity ratio by relevance", panels(df, "group", "setting",
                     "Steered / unsteered perplexity by wedding-word density (< 1: text more likely)", "ratio")))
    df = frames("logprob_shift")
    for name in models:
        part = df[df.model == name] if len(df) else df
        if len(part):
            figs.append((f"3. Log-prob shift ({name})", plots.token_scores_figure(part, title=f"Log-prob shift, {name}")))
    df = frames("kl")
    if len(df):
        kl = summarise(df.to_dict("records"), "kl", ["model", "coeff"])  # mean and bootstrap CI per point
        figs.append(("4. Off-target KL", panels(kl.assign(series="KL"), "coeff", "series",
                     "KL(unsteered ‖ steered) on unrelated text vs coefficient", "nats", "line")))
    df = frames("cloze")
    if len(df):
        figs.append(("4. Factual cloze", panels(df, "metric", "setting", "Factual cloze accuracy", "accuracy")))
    df = frames("sentiment")
    if len(df):
        v = df[df.metric == "mean VADER"].assign(setting=lambda d: d.setting.str.replace(r" \(.*\)", "", regex=True))
        figs.append(("5. Sentiment", panels(v, "direction", "setting", "Mean VADER compound score (95% CI)", "VADER")))
    df = frames("controls")
    if len(df):
        for metric, part in df.groupby("metric", sort=False):
            figs.append((f"6. Controls: {metric}", panels(part, "metric", "variant", f"Controls: {metric}", metric)))
    df = frames("steerability")
    if len(df):
        fig = go.Figure()
        for name, part in df.groupby("model", sort=False):
            fig.add_histogram(x=part["slope"], name=name, nbinsx=30, opacity=0.7)
        fig.update_layout(title="Per-prompt slope of the target log-prob vs coefficient (< 0: anti-steerable)",
                          barmode="overlay", template="plotly_white", xaxis_title="slope")
        figs.append(("7. Per-input steerability", fig))
    return figs


def _fmt(row: Any, pct: bool = False) -> str:
    f = (lambda v: f"{100 * v:.0f}%") if pct else (lambda v: f"{v:.3f}")
    return f"{f(row['mean'])} [{f(row['ci_low'])}, {f(row['ci_high'])}]"


def markdown_summary(out: Path, models: Sequence[str]) -> str:
    """The summary table (one line per measurement, one column per model) from the CSVs in ``out``."""
    cells: dict = {}

    def put(key: str, model: str, text: str) -> None:
        cells.setdefault(key, {})[model] = text

    for name in models:
        def read(stem: str) -> Any:
            path = out / f"{stem}_{name}.csv"
            return pd.read_csv(path) if path.exists() else None

        summary_path = out / f"summary_{name}.json"
        summ = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        cfg = summ.get("settings", {})
        layer = summ.get("topic_layer", cfg.get("topic_layer"))
        df = read("topic_by_layer")
        if df is not None:
            base = df[df.layer == -1].iloc[0]
            put("1. topic: unsteered wedding fraction", name, _fmt(base, True) + f" (n = {int(base.n)})")
            steered = df[df.layer >= 0]
            best = steered[steered.layer == layer].iloc[0] if layer in set(steered.layer) else steered.iloc[0]
            c = cfg.get("topic_coeff", float("nan"))
            put("1. topic: best layer at the sweep's c (chosen for 2–4, 6, 7)", name, f"c = {c:g}, " + f"layer {int(best.layer)}: {_fmt(best, True)}")
            works = steered[steered["mean"] >= 0.5].layer.astype(int).tolist()
            put("1. topic: layers with ≥ 50% on topic at the sweep's c", name, ", ".join(map(str, works)) or "none")
        df = read("topic_by_layer_long")
        if df is not None:
            best = df.sort_values(["mean", "layer"], ascending=[False, True]).iloc[0]
            works = df[df["mean"] >= 0.5].layer.astype(int).tolist()
            put("1. topic, talk-about-weddings pair: best layer at the sweep's c", name,
                f"layer {int(best.layer)}: {_fmt(best, True)}; ≥ 50% at layers " + (", ".join(map(str, works)) or "none"))
        df = read("topic_by_coeff")
        if df is not None:
            for pair, part in df.groupby("pair", sort=False):
                put(f"1. topic vs c, {pair}, at the chosen layer", name, f"layer {layer}: " +
                    "; ".join(f"c={r.coeff:g}: {100 * r['mean']:.0f}%" for _, r in part.iterrows()))
        df = read("perplexity")
        if df is not None:
            for group in ("high", "unrelated"):
                part = df[df.group == group]
                put(f"2. perplexity ratio, {group} bin", name,
                    "; ".join(f"{r.setting}: {_fmt(r)}" for _, r in part.iterrows()))
        df = read("logprob_shift")
        if df is not None and "direction" in df:
            top = df[df.direction == "promoted"].head(8)
            put("3. log-prob shift: most promoted tokens", name, ", ".join(repr(t) for t in top.token))
        df = read("kl")
        if df is not None:
            put("4. KL on neutral text (nats) by c", name,
                "; ".join(f"c={c:g}: {v:.3f}" for c, v in df.groupby("coeff")["kl"].mean().items()))
        df = read("cloze")
        if df is not None:
            for metric, part in df.groupby("metric", sort=False):
                put(f"4. cloze {metric}", name, "; ".join(f"{r.setting}: {_fmt(r, True)}" for _, r in part.iterrows()))
        df = read("sentiment")
        if df is not None:
            for (direction, metric), part in df.groupby(["direction", "metric"], sort=False):
                put(f"5. {direction}: {metric}", name,
                    "; ".join(f"{r.setting}: {_fmt(r, metric != 'mean VADER')}" for _, r in part.iterrows()))
        df = read("controls")
        if df is not None:
            for metric, part in df.groupby("metric", sort=False):
                put(f"6. controls: {metric}", name,
                    "; ".join(f"{r.variant}: {_fmt(r, metric == 'wedding fraction')}" for _, r in part.iterrows()))
        df = read("steerability")
        if df is not None:
            m, lo, hi = bootstrap_ci(df["anti"].tolist())
            sm, slo, shi = bootstrap_ci(df["slope"].tolist())
            put("7. anti-steerable fraction (slope < 0)", name, f"{100 * m:.0f}% [{100 * lo:.0f}%, {100 * hi:.0f}%] of {len(df)}")
            put("7. mean slope of target log-prob per unit c", name, f"{sm:.3f} [{slo:.3f}, {shi:.3f}]")
        if summ.get("seconds"):
            put("run time (s)", name, ", ".join(f"{k} {v:.0f}" for k, v in summ["seconds"].items()))
    lines = ["| measurement | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for key, by_model in cells.items():
        lines.append(f"| {key} | " + " | ".join(by_model.get(m, "—") for m in models) + " |")
    return "\n".join(lines)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description="Replicate the ActAdd paper's experiments.")
    parser.add_argument("--models", nargs="+", default=["gemma3-270m", "smollm2-135m"])
    parser.add_argument("--out", default="outputs/replication")
    parser.add_argument("--only", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    parser.add_argument("--smoke", action="store_true", help="tiny random model, tiny samples (CI)")
    parser.add_argument("--publish", action="store_true",
                        help="copy the summary tables into experiments/results/ (committed; docs and notebook 06 read them)")
    parser.add_argument("--summarise", action="store_true",
                        help="only print the markdown summary table of the CSVs already in --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.summarise:
        print(markdown_summary(out, ["tiny-llama"] if args.smoke else args.models))
        return 0
    if args.publish and args.smoke:
        parser.error("--publish copies full-size results; it cannot be combined with --smoke")
    out.mkdir(parents=True, exist_ok=True)
    scale = SCALES["smoke" if args.smoke else "full"]
    models = ["tiny"] if args.smoke else args.models
    summaries = []
    for name in models:
        if name == "tiny":
            from steering.testing import tiny_model

            model, label = tiny_model(), "tiny-llama"
        else:
            model, label = st.load_model(name, device="cpu"), name
        runner = Runner(model, label, scale, out)
        timings = {}
        for exp in args.only:
            t = time.perf_counter()
            getattr(runner, exp)()
            timings[exp] = round(time.perf_counter() - t, 1)
            print(f"{label}: {exp} done in {timings[exp]} s", flush=True)
        runner.summary["seconds"] = timings
        summaries.append(runner.summary)
        (out / f"summary_{label}.json").write_text(json.dumps(runner.summary, indent=2, default=str), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summaries, indent=2, default=str), encoding="utf-8")
    sections = [ReportSection(title, figure=fig) for title, fig in result_figures(out, [s["model"] for s in summaries])]
    write_report(out / "replication.html", sections, title="ActAdd replication", meta={"models": ", ".join(models)})
    print(json.dumps(summaries, indent=2, default=str))
    table = markdown_summary(out, [s["model"] for s in summaries])
    (out / "summary.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    if args.publish:
        publish(out, RESULTS)
    return 0


def publish(out: Path, dest: Path) -> None:
    """Copy the per-model summary tables (not the per-item tables) and summaries into ``dest``."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(out.iterdir()):
        if path.suffix in (".csv", ".json", ".md") and "_items_" not in path.name and path.name != "summary.json":
            shutil.copy2(path, dest / path.name)
    print(f"published {dest}")


if __name__ == "__main__":
    raise SystemExit(main())
