"""The replication pipeline runs end to end (smoke: tiny random model, tiny samples; no thresholds),
and its data files hold what docs/replication.md says they hold."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import steering as st

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "experiments" / "data"


def _rows(name):
    with open(DATA / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_corpus_bins_and_cloze_items():
    corpus = _rows("wedding_corpus.csv")
    assert len(corpus) >= 300 and len({r["text"] for r in corpus}) == len(corpus)
    words = re.compile(r"\b(" + "|".join(st.texts.WEDDING_WORDS) + r")\b", re.IGNORECASE)
    bins = {}
    for r in corpus:
        bins.setdefault(r["bin"], []).append(len(words.findall(r["text"])))
    assert set(bins) == {"unrelated", "low", "medium", "high"}
    assert max(bins["unrelated"]) == 0
    means = [sum(v) / len(v) for v in (bins["unrelated"], bins["low"], bins["medium"], bins["high"])]
    assert means == sorted(means) and means[-1] > means[1]  # density rises bin by bin
    cloze = _rows("cloze.csv")
    assert len(cloze) >= 150 and all(r["answer"].startswith(" ") for r in cloze)


def test_replication_smoke_run(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "replicate.py"), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"topic", "topic_long", "perplexity", "logprob_shift", "off_target", "sentiment", "controls", "steerability"} <= set(summary[0])
    for stem in ("topic_by_layer", "topic_by_layer_long", "topic_by_coeff", "perplexity", "cloze", "sentiment", "controls", "steerability"):
        assert (tmp_path / f"{stem}_tiny-llama.csv").exists(), stem
    assert (tmp_path / "replication.html").stat().st_size > 100_000  # plotly.js embedded
    table = (tmp_path / "summary.md").read_text()
    for n in range(1, 8):  # one or more lines of the summary table per experiment
        assert re.search(rf"^\| {n}\. ", table, re.MULTILINE), n
    assert "tiny-llama" in table.splitlines()[0]


def test_published_results_match_the_replication_page():
    """experiments/results/ holds a full run for both models, and docs/replication.md quotes it."""
    results = ROOT / "experiments" / "results"
    page = (ROOT / "docs" / "replication.md").read_text(encoding="utf-8")
    for model, label in (("gemma3-270m", "Gemma"), ("smollm2-135m", "SmolLM2")):
        summary = json.loads((results / f"summary_{model}.json").read_text())
        assert set(summary["seconds"]) == {"topic", "topic_long", "perplexity", "shift", "off_target", "sentiment", "controls",
                                           "steerability"}, model
        assert summary["scale"]["layer_samples"] * summary["scale"]["topic_prompts"] >= 64
        assert summary["scale"]["layer_tokens"] >= 40 and summary["scale"]["coeff_tokens"] >= 40
        layer = summary["topic_layer"]
        assert f"{label} layer {layer}" in page, (model, layer)
        best = summary["topic"]["best_layer"]["mean"]
        assert f"{100 * best:.0f}%" in page, (model, best)
        unsteered = summary["off_target"]["cloze"][0]
        assert f"{100 * unsteered['mean']:.0f}%" in page, model
    table = (results / "summary.md").read_text()
    assert "gemma3-270m" in table and "smollm2-135m" in table
