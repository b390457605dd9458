"""The benchmark script runs (smoke mode: tiny random model, one repetition; no thresholds)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke_run(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "STEERING_LINEAR": "chunked"}  # so the rows with torch's matmuls for context run too
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--smoke", "--json", str(out)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    methods = {r["method"] for r in data["generation"]}
    assert {"plain HF (unsteered)", "steering-lens ActAdd (front)"} <= methods
    assert all(r["tokens_per_s"] > 0 for r in data["generation"])
    assert "steering-lens ActAdd, torch's matmuls (STEERING_LINEAR=torch)" in methods
    assert data["linear_kernel"] == "chunked" and len(data["coeff0_equal_batch1"]) == 8
    assert set(data["per_row"]) >= {"speedup_vs_loop", "time_vs_unsteered", "speedup_vs_loop_torch_matmuls"}
    assert data["sweep"]["speedup"] > 0 and data["startup"]["steer_help_s"] > 0
    assert "| generation | 1 |" in res.stdout
