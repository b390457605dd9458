"""The benchmark script runs (smoke mode: tiny random model, one repetition; no thresholds)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke_run(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--smoke", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    methods = {r["method"] for r in data["generation"]}
    assert {"plain HF (unsteered)", "steering-lens ActAdd (front)"} <= methods
    assert all(r["tokens_per_s"] > 0 for r in data["generation"])
    assert set(data["per_row"]) >= {"speedup_vs_loop", "time_vs_unsteered"}
    assert data["sweep"]["speedup"] > 0 and data["startup"]["steer_help_s"] > 0
    assert "| generation | 1 |" in res.stdout
