"""The ``steer`` command line (steering.cli): parsing, every command's output and exit codes, the fast
``--help``, and the demo (on tiny models; the real-model runs are in tests/test_real_models.py)."""

import io
import json
import os
import subprocess
import sys
import threading
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
        "all", [0.0, 2.0, 4.0, 8.0, 16.0], 2, 24, "steering-report.html", None, None)
    assert parser.parse_args(["report", "--pos", "a", "--neg", "", "--layers", "2,4-5"]).layers == [2, 4, 5]
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
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--pos", "a", "--neg", "b", "--layers", "1-x"])
    assert exit_info.value.code == 2
    assert "steer report: error: argument --layers: --layers '1-x' is not a list" in capsys.readouterr().err
    assert main(["fetch", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("steer: error: UnknownModelError:") and err.count("\n") == 1


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


def test_report_mechanisms_flag_adds_the_why_sections(tiny_loader, capsys, tmp_path):
    out = tmp_path / "why.html"
    args = ["report", "--model", "tiny", "--pos", "love", "--neg", "hate", "--layers", "0-1", "--coeffs", "2,4",
            "--prompt", "I think that", "--prompt", "we will go to", "--n", "1", "--max-new-tokens", "3"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.SteeringWarning)
        assert main(args + ["--mechanisms", "--out", str(out)]) == 0
        assert main(args + ["--out", str(tmp_path / "plain.html")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "mechanisms " in lines[1] and "mechanisms " not in lines[3]
    assert "Why it steers" in out.read_text(encoding="utf-8")
    assert "Why it steers" not in (tmp_path / "plain.html").read_text(encoding="utf-8")


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


# ---------------------------------------------------------------------------------------------
# Issue 17: options checked before any work; exit codes and one-line errors; closed pipes; any
# stdout encoding; steer verify


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model fails the test: what it guards must be refused before any model loads."""
    def load(*args, **kwargs):
        pytest.fail("a model was loaded before the options were checked")

    monkeypatch.setattr(commands, "load_model", load)
    monkeypatch.setattr(demo_module, "load_model", load)


BAD_OPTIONS = [
    (["demo", "--n", "0"], "argument --n: 0 is out of range; allowed: an integer ≥ 1"),
    (["demo", "--n", "-2"], "argument --n: -2 is out of range"),
    (["demo", "--max-new-tokens", "0"], "argument --max-new-tokens: 0 is out of range"),
    (["demo", "--device", "gpu"], "argument --device: 'gpu' is not a device"),
    (GENERATE + ["--n", "0"], "argument --n: 0 is out of range"),
    (GENERATE + ["--max-new-tokens", "-1"], "argument --max-new-tokens: -1 is out of range"),
    (GENERATE + ["--layer", "-1"], "argument --layer: -1 is out of range; allowed: an integer ≥ 0"),
    (GENERATE + ["--layer", "1.5"], "argument --layer: '1.5' is not an integer"),
    (GENERATE + ["--coeff", "nan"], "argument --coeff: nan is not a finite number"),
    (GENERATE + ["--coeff", "inf"], "argument --coeff: inf is not a finite number"),
    (GENERATE + ["--coeff", "1e999"], "argument --coeff: 1e999 is not a finite number"),
    (GENERATE + ["--top-p", "0"], "argument --top-p: 0.0 is out of range; allowed: a number in (0, 1]"),
    (GENERATE + ["--top-p", "1.5"], "argument --top-p: 1.5 is out of range"),
    (GENERATE + ["--temperature", "0"], "argument --temperature: 0.0 is out of range; allowed: a finite number > 0"),
    (GENERATE + ["--temperature", "nan"], "argument --temperature: nan is not a finite number"),
    (GENERATE + ["--freq-penalty=-inf"], "argument --freq-penalty: -inf is not a finite number"),
    (GENERATE + ["--seed", "-1"], "argument --seed: -1 is out of range; allowed: an integer in 0..9223372036854775807"),
    (GENERATE + ["--seed", str(2**63)], "argument --seed: 9223372036854775808 is out of range"),
    (GENERATE + ["--prompt", ""], "argument --prompt: '' is empty"),
    (["report", "--pos", "a", "--neg", "", "--n", "0"], "argument --n: 0 is out of range"),
    (["report", "--pos", "a", "--neg", "", "--max-new-tokens", "0"], "argument --max-new-tokens: 0 is out of range"),
    (["report", "--pos", "a", "--neg", "", "--layers", "-1"], "argument --layers: --layers '-1' holds -1"),
    (["report", "--pos", "a", "--neg", "", "--coeffs", "1,nan"], "argument --coeffs: --coeffs '1,nan' holds a value"),
    (["report", "--pos", "a", "--neg", "", "--seed", "-5"], "argument --seed: -5 is out of range"),
]


@pytest.mark.parametrize("argv, message", BAD_OPTIONS, ids=lambda x: " ".join(x[-2:]) if isinstance(x, list) else None)
def test_bad_option_values_are_usage_errors(argv, message, no_model_load, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: steer ") and message in err, err


def test_out_path_checked_before_any_model_load(no_model_load, capsys, tmp_path):
    missing = tmp_path / "no" / "such" / "page.html"
    for command in (["demo"], ["report", "--pos", "a", "--neg", ""]):
        start = time.perf_counter()
        assert main(command + ["--out", str(missing)]) == 2
        assert time.perf_counter() - start < 5
        err = capsys.readouterr().err
        assert err.startswith("steer: error: InvalidArgumentError: ") and err.count("\n") == 1
        assert str(missing.parent) in err and "does not exist" in err
        assert main(command + ["--out", str(tmp_path)]) == 2  # a folder, not a file
        assert "is a folder" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / ("x" * 300 + ".html"))]) == 1  # the system refuses: status 1
    err = capsys.readouterr().err
    assert err.startswith("steer: error: FileAccessError: ") and "too long" in err and err.count("\n") == 1
    with pytest.raises(st.errors.InvalidArgumentError, match="does not exist"):
        run_demo("tiny", out=str(missing))
    with pytest.raises(st.errors.InvalidArgumentError, match="n=0"):
        run_demo("tiny", out=None, n=0)
    assert not missing.parent.exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write to any folder")
def test_out_in_read_only_folder_is_refused_first(no_model_load, capsys, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["demo", "--out", str(folder / "page.html")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("steer: error: FileAccessError: ") and err.count("\n") == 1
    finally:
        folder.chmod(0o700)


def test_concurrent_demo_pages_do_not_clash(tmp_path):
    """Two runs writing the same --out at once: each write is whole (unique temp names), nothing left over."""
    out = tmp_path / "demo.html"
    sections = {name: [f"<p>{name * 2_000_000}</p>"] for name in "ab"}
    barrier, errors = threading.Barrier(2), []

    def write(name):
        barrier.wait()
        try:
            for _ in range(3):
                demo_module._write_page(str(out), name, sections[name])
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=write, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    page = out.read_text(encoding="utf-8")
    whole = [page.count(f"<p>{name * 2_000_000}</p></body></html>") for name in "ab"]
    assert sorted(whole) == [0, 1] and page.count("<html>") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["demo.html"]


ERRORS = [
    (st.errors.InvalidArgumentError("n=0; allowed: n ≥ 1.\nFix: pass n=4."), 2),
    (st.errors.InvalidCoefficientError("coeff=nan"), 2),
    (st.errors.LayerOutOfRangeError("layer 99 is out of range: 0..29"), 2),
    (st.errors.UnknownModelError("no model 'x'"), 2),
    (st.errors.UnknownHookError("no hook 'x'"), 2),
    (st.errors.EmptyPromptError("prompt is empty"), 2),
    (st.errors.ContextLengthError("too long"), 2),
    (st.errors.ModelFetchError("download failed"), 1),
    (st.errors.CacheDamagedError("file changed; fix: steer fetch x --force"), 1),
    (st.errors.FileAccessError("cannot write 'x': permission denied", path="x", cause="permission denied"), 1),
    (st.errors.NonFiniteError("logits became NaN"), 1),
    (st.SteeringError("something"), 1),
    (PermissionError(13, "Permission denied"), 1),
    (RuntimeError("CUDA out of memory\nmore detail"), 1),
]


@pytest.mark.parametrize("error, status", ERRORS, ids=lambda x: type(x).__name__ if isinstance(x, Exception) else None)
def test_errors_exit_status_and_one_line(error, status, monkeypatch, capsys):
    def fail(args):
        raise error

    monkeypatch.setitem(commands.COMMANDS, "models", fail)
    assert main(["models"]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"steer: error: {type(error).__name__}: ") and "Traceback" not in err
    bug = "(this is a bug in steering-lens; rerun with --debug and report it)"
    assert (bug in err) == (not isinstance(error, (st.SteeringError, OSError)))
    if isinstance(error, RuntimeError):
        assert "CUDA out of memory more detail" in err


@pytest.mark.parametrize("argv", [["--debug", "models"], ["models", "--debug"]])
def test_debug_prints_the_traceback(argv, monkeypatch, capsys):
    def fail(args):
        raise st.errors.NonFiniteError("logits became NaN")

    monkeypatch.setitem(commands.COMMANDS, "models", fail)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in fail" in err
    assert err.splitlines()[-1] == "steer: error: NonFiniteError: logits became NaN"


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out and "--debug" in out
    for code in ("0 ", "1 ", "2 ", "130", "141"):
        assert f"\n  {code}" in out


def test_broken_pipe_in_process_is_quiet(monkeypatch, capsys):
    def closed(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(commands.COMMANDS, "models", closed)
    assert main(["models"]) == 141
    assert capsys.readouterr().err == ""


def _closed_pipe_run(args, timeout=60):
    """Run ``python -m steering.cli ARGS`` with stdout a pipe whose reader has already gone."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout block-buffered
    proc = subprocess.Popen([sys.executable, "-m", "steering.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=timeout), err


@pytest.mark.parametrize("args", [["--version"], ["models"]])
def test_closed_stdout_pipe_exits_quietly(args):
    status, err = _closed_pipe_run(args)
    assert (status, err) == (141, "")


def test_ascii_stdout_help_and_models():
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    for args in (["--help"], ["models"]):
        proc = subprocess.run([sys.executable, "-m", "steering.cli", *args], capture_output=True, env=env, timeout=60)
        assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()[-2000:]
        proc.stdout.decode("ascii")  # plain ASCII
        if args == ["--help"]:
            assert b"layer x coefficient sweep" in proc.stdout
        else:
            assert b"18 layers x 640" in proc.stdout


def test_ascii_stdout_generate_text_and_json(tiny_loader, monkeypatch):
    argv = GENERATE + ["--prompt", "x − y ü", "--greedy"]
    for extra in ([], ["--json"]):
        stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
        monkeypatch.setattr(sys, "stdout", stream)
        assert main(argv + extra) == 0
        stream.flush()
        text = stream.buffer.getvalue().decode("ascii")
        if extra:
            assert json.loads(text)["settings"]["prompts"][-1] == "x − y ü"  # \\u escapes: lossless
        else:
            assert "prompt: 'x - y \\xfc'" in text


def test_verify(monkeypatch, capsys):
    rows = [{"name": "gemma3-270m", "status": "ok", "problems": [], "path": "/c/gemma"},
            {"name": "smollm2-135m", "status": "not cached", "problems": [], "path": "/c/smol"}]
    asked = []
    monkeypatch.setattr(commands, "verify_model", lambda name=None, progress=True: asked.append((name, progress)) or rows)
    assert main(["verify"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "gemma3-270m    ok          /c/gemma", "smollm2-135m   not cached  /c/smol"]
    rows[0] = {**rows[0], "status": "damaged", "problems": ["model.gguf: checksum differs"]}
    assert main(["verify", "gemma3-270m"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "gemma3-270m    damaged     /c/gemma", "    model.gguf: checksum differs", "smollm2-135m   not cached  /c/smol",
        "fix: steer fetch gemma3-270m --force"]
    assert main(["verify", "--json"]) == 1
    printed = capsys.readouterr()
    assert json.loads(printed.out) == rows and printed.err == "fix: steer fetch gemma3-270m --force\n"
    assert asked == [(None, True), ("gemma3-270m", True), (None, False)]

    def unknown(name=None, progress=True):
        raise st.errors.UnknownModelError(f"{name!r} is not a built-in model")

    monkeypatch.setattr(commands, "verify_model", unknown)
    assert main(["verify", "nope"]) == 2
    assert capsys.readouterr().err == "steer: error: UnknownModelError: 'nope' is not a built-in model\n"


# ---------------------------------------------------------------------------------------------
# steer explore (issue 20): the explorable page


EXPLORE = ["explore", "--model", "tiny", "--pos", "love", "--neg", "hate", "--layers", "0,1", "--coeffs", "0,4",
           "--prompt", "I think that", "--prompt", "we will go", "--max-new-tokens", "3", "--target", "l",
           "--kl-prompt", "a quiet day in town"]


def test_explore_parser_defaults():
    args = build_parser().parse_args(["explore", "--pos", " weddings", "--neg", ""])
    assert (args.layers, args.coeffs, args.n, args.max_new_tokens, args.decoding, args.out, args.prompt) == (
        "all", [0.0, 2.0, 4.0, 8.0, 12.0, 16.0], 2, 24, "sampled", "explorable.html", None)
    assert build_parser().parse_args(["explore", "--pos", "a", "--neg", "", "--greedy"]).decoding == "greedy"


def test_explore_writes_the_page(tiny_loader, capsys, tmp_path):
    from steering.explorer import read_explorable

    out = tmp_path / "page.html"
    assert main(EXPLORE + ["--greedy", "--out", str(out), "--topic-word", "love"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and tiny_loader == [("tiny", None)]
    data = read_explorable(out)
    assert data["layers"] == [0, 1] and data["coeffs"] == [0.0, 4.0] and data["decodings"] == ["greedy"]
    assert len(data["records"]) == 2 * 2 * 2  # layers × coeffs × prompts × 1 greedy sample
    assert {"layer", "coeff", "prompt", "sample", "completion", "effect", "kl", "topic"} <= set(data["records"][0])
    assert out.read_text(encoding="utf-8").count('<input type="range"') == 2


EXPLORE_BAD = [
    (EXPLORE + ["--n", "0"], "argument --n: 0 is out of range"),
    (EXPLORE + ["--layers", "-1"], "argument --layers: --layers '-1' holds -1"),
    (EXPLORE + ["--coeffs", "1,inf"], "argument --coeffs: --coeffs '1,inf' holds a value"),
    (EXPLORE + ["--decoding", "beam"], "argument --decoding: invalid choice: 'beam'"),
    (EXPLORE + ["--prompt", ""], "argument --prompt: '' is empty"),
    (EXPLORE + ["--top-k", "0"], "argument --top-k: 0 is out of range"),
    (EXPLORE + ["--seed", "-1"], "argument --seed: -1 is out of range"),
    (EXPLORE + ["--max-new-tokens", "0"], "argument --max-new-tokens: 0 is out of range"),
]


@pytest.mark.parametrize("argv, message", EXPLORE_BAD, ids=lambda x: " ".join(x[-2:]) if isinstance(x, list) else None)
def test_explore_bad_options_are_usage_errors(argv, message, no_model_load, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: steer ") and message in err, err


def test_explore_out_and_targets_checked_before_any_model_load(no_model_load, capsys, tmp_path):
    missing = tmp_path / "no" / "such" / "page.html"
    assert main(EXPLORE + ["--out", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("steer: error: InvalidArgumentError: ") and "does not exist" in err
    assert main(EXPLORE + ["--out", str(tmp_path)]) == 2 and "is a folder" in capsys.readouterr().err
    argv = [a for a in EXPLORE if a not in ("--target", "l")]
    argv[argv.index("--pos") + 1] = " "
    assert main(argv + ["--out", str(tmp_path / "p.html")]) == 2
    assert "has no word to use as the effect's target" in capsys.readouterr().err
