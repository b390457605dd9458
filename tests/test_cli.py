"""The ``steer`` command line (steering.cli): parsing, every command's output and exit codes, the fast
``--help``, and the demo (on tiny models; the real-model runs are in tests/test_real_models.py)."""

import json
import subprocess
import sys
import time
import warnings

import pytest

import steering as st
from steering.cli import DEFAULT_MODEL, build_parser, main
from steering.cli import commands
from steering.cli import demo as demo_module
from steering.cli.commands import parse_list
from steering.cli.demo import DEMO_SETTINGS, run_demo
from steering.cli.format import side_by_side
from steering.testing import tiny_model


# ---------------------------------------------------------------------------------------------
# Parsing; the light entry point


def test_parser_defaults():
    parser = build_parser()
    gen = parser.parse_args(["generate", "--pos", "Love", "--neg", "", "--layer", "6", "--coeff", "5",
                             "--prompt", "a", "--prompt", "b"])
    assert (gen.command, gen.model, gen.prompt, gen.n, gen.top_p, gen.positions) == (
        "generate", DEFAULT_MODEL, ["a", "b"], 4, 0.3, None)
    rep = parser.parse_args(["report", "--pos", " weddings", "--neg", ""])
    assert (rep.layers, rep.coeffs, rep.n, rep.max_new_tokens, rep.out, rep.prompt, rep.target) == (
        "all", "0,2,4,8,16", 2, 24, "steering-report.html", None, None)
    dem = parser.parse_args(["demo"])
    assert (dem.model, dem.out, dem.n, dem.max_new_tokens) == (DEFAULT_MODEL, "steering-demo.html", 4, 40)
    assert parser.parse_args(["models", "--json"]).json
    assert parser.parse_args(["fetch", "x", "--force"]).force


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--pos", "a"])
    assert exit_info.value.code == 2
    assert "the following arguments are required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"steering-lens {st.__version__}"


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, steering.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformer_lens', 'transformers', 'pandas', 'plotly', "
            "'steering.cli.commands') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "usage: steer" in proc.stdout and "HEAVY []" in proc.stdout
    assert elapsed < 5  # ~0.05 s; generous for a loaded machine


def test_python_dash_m(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "steering.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"steering-lens {st.__version__}"


# ---------------------------------------------------------------------------------------------
# Output formatting and list options


def test_side_by_side_wraps_and_numbers():
    text = side_by_side(["one two three four five six", "x"], ["a", "b  c\n d"], ("L", "R"), width=27)
    assert text.splitlines() == [
        "# | L          | R",
        "--+------------+-----------",
        "1 | one two    | a",
        "  | three four |",
        "  | five six   |",
        "  |            |",
        "2 | x          | b c d",
    ]


def test_parse_list():
    assert parse_list("0-3", int, "layers") == [0, 1, 2, 3]
    assert parse_list("2, 4,6", int, "layers") == [2, 4, 6]
    assert parse_list("-1", int, "layers") == [-1]
    assert parse_list("0,0.5,8", float, "coeffs") == [0.0, 0.5, 8.0]
    assert parse_list("all", int, "layers") == "all"
    with pytest.raises(st.SteeringError, match=r"--layers 'x' is not a list; allowed: e.g. '0,2,4', '0-17' or 'all'\."):
        parse_list("x", int, "layers")
    with pytest.raises(st.SteeringError, match=r"--coeffs 'a' is not a list; allowed: e.g. '0,2,4'\.$"):
        parse_list("a", float, "coeffs")
    with pytest.raises(st.SteeringError, match=r"--coeffs ',' is empty\."):
        parse_list(",", float, "coeffs")


# ---------------------------------------------------------------------------------------------
# Commands and exit codes


def test_steering_error_exits_2(capsys):
    assert main(["report", "--pos", "a", "--neg", "b", "--layers", "1-x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("steer: error: SteeringError: --layers '1-x' is not a list")
    assert main(["fetch", "no-such-model"]) == 2
    assert "steer: error: UnknownModelError:" in capsys.readouterr().err


def test_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(commands.COMMANDS, "models", interrupted)
    assert main(["models"]) == 130
    assert capsys.readouterr().err == "steer: interrupted\n"


def test_models(monkeypatch, capsys, tmp_path):
    rows = [{"name": "tiny", "cached": True, "download_mb": 12, "description": "a tiny model"}]
    monkeypatch.setattr(commands, "model_info", lambda: rows)
    monkeypatch.setattr(commands, "cache_dir", lambda: tmp_path)
    assert main(["models"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "name           cached   download  description",
        "tiny           yes         12 MB  a tiny model",
        "",
        f"cache: {tmp_path} (set STEERING_CACHE to move it)",
    ]
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rows


def test_fetch(monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr(commands, "fetch_model", lambda name, force: calls.append((name, force)) or tmp_path)
    assert main(["fetch", "gemma3-270m", "--force"]) == 0
    assert calls == [("gemma3-270m", True)] and capsys.readouterr().out == f"{tmp_path}\n"


@pytest.fixture
def tiny_loader(monkeypatch):
    """Every command's load_model returns a fresh tiny model; records the (name, device) asked for."""
    asked = []

    def load(name, device=None):
        asked.append((name, device))
        return tiny_model()

    monkeypatch.setattr(commands, "load_model", load)
    monkeypatch.setattr(demo_module, "load_model", load)
    return asked


GENERATE = ["generate", "--model", "tiny", "--pos", "love", "--neg", "hate", "--layer", "1", "--coeff", "3",
            "--prompt", "I think that", "--prompt", "we will go", "--n", "2", "--max-new-tokens", "3"]


def test_generate_side_by_side(tiny_loader, capsys):
    assert main(GENERATE + ["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert tiny_loader == [("tiny", "cpu")]
    assert out.startswith("SteeringVector(")
    assert "prompt: 'I think that'\n# | unsteered" in out and "prompt: 'we will go'" in out
    assert "| steered (c = 3)" in out


def test_generate_json(tiny_loader, capsys):
    assert main(GENERATE + ["--json", "--greedy"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["unsteered"]) == len(result["steered"]) == 4
    settings = result["settings"]
    assert settings["model"] == "tiny" and settings["coeff"] == 3.0 and settings["positions"] == "front"
    assert settings["do_sample"] is False and settings["hook"] == "blocks.1.hook_resid_pre"
    assert len(settings["vector_norms"]) == len(settings["vector_tokens"]["pos"])


def test_report(tiny_loader, capsys, tmp_path):
    out = tmp_path / "report.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.SteeringWarning)
        code = main(["report", "--model", "tiny", "--pos", "love", "--neg", "hate", "--layers", "0-1",
                     "--coeffs", "2,4", "--prompt", "I think that", "--prompt", "we will go to", "--n", "1",
                     "--max-new-tokens", "3", "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("best: layer ") and ", c = " in lines[0] and "effect size d = " in lines[0]
    assert lines[1].startswith(f"wrote {out} (7 figures; sweep ") and lines[1].endswith(" s)")
    assert out.exists()


# ---------------------------------------------------------------------------------------------
# The demo (tiny models stand in for the built-in ones)


def test_demo_settings():
    assert set(DEMO_SETTINGS) == {"gemma3-270m", "smollm2-135m"}
    for settings in DEMO_SETTINGS.values():
        assert settings["sentiment"]["pos"] == "Love" and settings["topic"]["pos"] == " weddings"


def test_run_demo(tiny_loader, capsys, tmp_path):
    out = tmp_path / "demo.html"
    result = run_demo("tiny", out=str(out), n=2, max_new_tokens=3, n_measure=3)
    printed = capsys.readouterr()
    assert set(result) == {"sentiment", "topic"}
    assert result["sentiment"]["settings"]["layer"] == 1  # Gemma's layer 6, clipped to the tiny model's 2 layers
    assert result["sentiment"]["metric"] == "mean VADER compound sentiment"
    assert result["topic"]["metric"] == "completions with a wedding word"
    assert len(result["topic"]["steered"]) == 3
    assert -1 <= result["sentiment"]["steered_value"] <= 1 and 0 <= result["topic"]["steered_value"] <= 1
    assert printed.out.startswith("== steering-lens demo on tiny ==")
    assert "-- sentiment: 'Love' − 'Hate' at layer 1, c = 5 — prompt 'I hate you because'" in printed.out
    assert "completions with a wedding word over 3 samples × 3 tokens (seed 0): unsteered " in printed.out
    assert f"wrote {out.resolve()} (" in printed.out and "done in" in printed.err
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.count("<h2>") == 2
    assert "<h1>steering-lens demo — tiny</h1>" in page
    assert [p.name for p in tmp_path.iterdir()] == ["demo.html"]


def test_demo_command_and_no_page(tiny_loader, capsys, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(commands, "run_demo", lambda **kwargs: seen.update(kwargs))
    assert main(["demo", "--model", "m", "--out", "x.html", "--n", "3", "--max-new-tokens", "5"]) == 0
    assert seen == {"model_name": "m", "out": "x.html", "n": 3, "max_new_tokens": 5, "device": None}
    result = run_demo("tiny", out=None, n=1, max_new_tokens=2, n_measure=1)
    assert "wrote" not in capsys.readouterr().out and set(result) == {"sentiment", "topic"}
