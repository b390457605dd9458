"""Fuzz suite: the public API under generated arguments, valid and hostile.

The promise checked (docs/guarantees.md): whatever a caller passes, a public function either
returns or raises a :class:`steering.SteeringError` (subclass). Never another exception type,
never a hang (each case runs under a wall-clock alarm), never a hook left attached, never a
change to the shared model's weights.

Each argument is drawn from a mix of values the function accepts and hostile values of every
kind (wrong types, bools where numbers go, strings of numbers, NaN/Inf, huge ints, tensors,
empty and odd text). The runs are derandomised, so CI sees the same cases every time; the
total is printed by ``test_case_count`` (≥ 2,000). Runtime type checks (jaxtyping under
pytest) are switched off inside the cases, as for a user, so the package's own refusals speak.
"""

import atexit
import functools
import math
import os
import shutil
import signal
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import jaxtyping
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

import steering as st
from steering.testing import tiny_model

#: Examples per fuzzed function (× the number of functions below = the suite's case count).
EXAMPLES = 260
#: Seconds one case may take before it counts as a hang.
CASE_TIMEOUT = 20

_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

RUN = {"cases": 0, "ok": 0, "refused": 0}


class Hang(BaseException):
    """Raised by the alarm when one case runs past CASE_TIMEOUT (a BaseException, so no library catches it)."""


@contextmanager
def _alarm(seconds: int):
    def on_alarm(signum, frame):  # noqa: ARG001
        raise Hang(f"case ran past {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@functools.lru_cache(maxsize=None)
def _model():
    """A private tiny model (the shared fixtures must not see the fuzzer's attempts) and its weights."""
    model = tiny_model("llama", seed=3)
    return model, {name: p.detach().clone() for name, p in model.named_parameters()}


@functools.lru_cache(maxsize=None)
def _folder() -> Path:
    """One scratch folder for the file cases (emptied before each case; removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="steer-fuzz-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.lru_cache(maxsize=None)
def _vectors():
    """Valid vectors of several kinds, and invalid ones."""
    fuzz_model = _model()[0]
    good = st.actadd(fuzz_model, "Love", "Hate", layer=1)
    flat = st.SteeringVector(torch.randn(64), hook_name="blocks.0.hook_resid_pre")
    post = st.SteeringVector(torch.randn(64) * 3, hook_name="blocks.1.hook_resid_post")
    wide = st.SteeringVector(torch.randn(3, 32), hook_name="blocks.0.hook_resid_pre")
    deep = st.SteeringVector(torch.randn(64), hook_name="blocks.7.hook_resid_pre")
    nan = torch.full((64,), float("nan"))
    return {
        "good": [good, flat, post, [good, post]],
        "bad": [wide, deep, nan, torch.randn(64), [good, good], [], [wide], "vector", 3, None],
    }


def _check(call) -> None:
    """Run one case: it returns or raises a SteeringError; nothing else, no hang, no leak."""
    model, weights = _model()
    RUN["cases"] += 1
    jax_was = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _alarm(CASE_TIMEOUT):
                call()
        RUN["ok"] += 1
    except st.SteeringError as err:
        RUN["refused"] += 1
        RUN.setdefault("why", []).append(f"{type(err).__name__}: {err!s:.150}")
    except Hang as err:
        pytest.fail(f"hang: {err}", pytrace=False)
    except Exception as err:  # noqa: BLE001 - the point of the suite
        pytest.fail(f"{type(err).__name__} (not a SteeringError): {err!s:.400}", pytrace=False)
    finally:
        jaxtyping.config.update("jaxtyping_disable", jax_was)
        assert st.active_hooks(model) == 0, "a hook was left attached"
    for name, p in model.named_parameters():
        if not torch.equal(p.detach(), weights[name]):
            raise AssertionError(f"the case changed the model's weight {name}")


# ---------------------------------------------------------------------------------------- value pools
_HOSTILE_SCALARS = [
    None, True, False, 0, -1, -5, 2**70, -(2**70), 10**400, 0.0, -0.0, 2.7, -3.5, 1e308, -1e308, 1e-320,
    math.nan, math.inf, -math.inf, "", "5", "2.5", "abc", "nan", b"5", [1], (2,), {"a": 1}, object(),
    torch.tensor(1.7), torch.tensor(2), torch.tensor([1, 2]), torch.tensor(True),
]
_HOSTILE_TEXTS = [None, "", " ", "\x00", "é漢字🙂", "a" * 400, 123, 4.5, True, b"bytes", ["a", 5], [], [""], [None],
                  ("a", "b"), {"a": "b"}, torch.tensor(1)]


def hostile() -> hst.SearchStrategy:
    """Any hostile scalar, plus random ints, floats (with NaN/Inf) and text."""
    return hst.one_of(
        hst.sampled_from(_HOSTILE_SCALARS),
        hst.integers(-(2**80), 2**80),
        hst.floats(allow_nan=True, allow_infinity=True),
        hst.text(max_size=6),
    )


class Hostile:
    """An argument's hostile pool, when it is not the scalar one (vectors, prompts)."""

    def __init__(self, valid, strategy):
        self.valid, self.strategy = list(valid), strategy


def draw_args(data, spec: dict) -> dict:
    """Arguments from ``spec`` (name -> valid values, or a :class:`Hostile`): at most two hostile.

    With every argument hostile at a fixed rate, almost every case would stop at the first check;
    this way about a third of the cases run the whole function on valid input, and the others
    probe one or two arguments at a time.
    """
    names = sorted(spec)
    bad = data.draw(hst.lists(hst.sampled_from(names), max_size=2))
    out = {}
    for name in names:
        pool = spec[name]
        valid = pool.valid if isinstance(pool, Hostile) else list(pool)
        if name in bad:
            out[name] = data.draw(pool.strategy if isinstance(pool, Hostile) else hostile())
        else:
            out[name] = data.draw(hst.sampled_from(valid))
    return out


def vector_arg(good=None, extra=()) -> Hostile:
    vectors = _vectors()
    return Hostile(list(good or vectors["good"]) + list(extra), hst.sampled_from(vectors["bad"]))


def text_arg(valid=("I hate you because", "Hello", ["The cat", "My friend said"], "a b c")) -> Hostile:
    return Hostile(valid, hst.one_of(hst.sampled_from(_HOSTILE_TEXTS), hst.text(max_size=12)))


# ---------------------------------------------------------------------------------------- the cases
@_SETTINGS
@given(data=hst.data())
def test_generate(data):
    model = _model()[0]
    args = draw_args(data, {
        "prompts": text_arg(),
        "vector": vector_arg(extra=[None]),
        "coeff": (1.0, 4, -2.5, 0),
        "max_new_tokens": (1, 3, 5),
        "n": (1, 2),
        "seed": (0, 7, None),
        "do_sample": (True, False),
        "temperature": (1.0, 0.5),
        "top_p": (0.3, 1.0),
        "top_k": (None, 5),
        "freq_penalty": (0.0, 1.0),
        "positions": (None, "front", "all", "prompt", "generated"),
        "op": ("add", "ablate"),
        "use_cache": (True, False),
        "batch_size": (64, 1),
        "backend": ("auto", "bridge", "twin"),
    })
    prompts, vec = args.pop("prompts"), args.pop("vector")
    _check(lambda: st.generate(model, prompts, vec, progress=False, **args))


@_SETTINGS
@given(data=hst.data())
def test_steer_forward(data):
    model = _model()[0]
    op = data.draw(hst.sampled_from(["add", "ablate", "clamp"]))
    args = draw_args(data, {
        "vector": vector_arg(),
        "coeff": (1.0, 3, -1.0),
        "positions": (None, "front", "all", "prompt"),
        "op": (op,),
        "value": (0.5, 2) if op == "clamp" else (None,),
        "short_prompt": ("truncate", "error"),
    })
    vec = args.pop("vector")
    tokens = model.to_tokens(data.draw(hst.sampled_from(["I hate you", "Hi", "a b c d e f"])))

    def run():
        with st.steer(model, vec, **args):
            model(tokens)

    _check(run)


@_SETTINGS
@given(data=hst.data())
def test_extraction(data):
    model = _model()[0]
    how = data.draw(hst.sampled_from(["actadd", "actadd_layers", "mean_diff", "pca_direction"]))
    single = how.startswith("actadd")
    texts = ("Love", "Hate", " weddings", "") if single else ("I love it", ["so good", "great"], ["bad", "awful"])
    spec = {"pos": text_arg(texts), "neg": text_arg(texts), "layer": (0, 1, [0, 1], -1) + (("all",) if how != "actadd" else ()),
            "hook": ("resid_pre", "resid_post", "resid_mid")}
    spec.update({"pad": ("space", "eos", 0)} if single else {"token": ("last", "mean", -1, 0), "batch_size": (32, 1)})
    args = draw_args(data, spec)
    pos, neg, layer = args.pop("pos"), args.pop("neg"), args.pop("layer")
    _check(lambda: getattr(st, how)(model, pos, neg, layer, **args))


@_SETTINGS
@given(data=hst.data())
def test_metrics(data):
    model = _model()[0]
    how = data.draw(hst.sampled_from(["off_target_kl", "perplexity_ratio", "logprob_shift", "token_shift"]))
    spec = {"vector": vector_arg(good=_vectors()["good"][:3]), "texts": text_arg((["The cat sat", "Hello there"], ["Hi"])),
            "positions": (None, "front", "all"), "batch_size": (8, 1), "backend": ("auto", "bridge")}
    spec.update({"coeffs": ((0, 2), [1.0])} if how == "off_target_kl" else {"coeff": (1.0, 4, -2)})
    if how == "logprob_shift":
        spec["k"] = (5, 1)
    args = draw_args(data, spec)
    vec, prompts = args.pop("vector"), args.pop("texts")
    _check(lambda: getattr(st, how)(model, vec, prompts, **args))


@_SETTINGS
@given(data=hst.data())
def test_lens_and_norms(data):
    model = _model()[0]
    how = data.draw(hst.sampled_from(["logit_lens", "lens_profile", "norm_profile", "norm_diagnostics"]))
    if how == "logit_lens":
        args = draw_args(data, {"vector": vector_arg(), "k": (10, 1, 3), "position": ("sum", 0, -1)})
        call = lambda: st.logit_lens(model, args.pop("vector"), **args)  # noqa: E731
    elif how == "lens_profile":
        args = draw_args(data, {"vectors": vector_arg(good=[_vectors()["good"][:3]]),
                                "targets": text_arg(([" love"], [" the", " a"])), "top": (5, 1)})
        call = lambda: st.lens_profile(model, args.pop("vectors"), args.pop("targets"), **args)  # noqa: E731
    elif how == "norm_profile":
        args = draw_args(data, {"vector": vector_arg(good=_vectors()["good"][:3]), "prompt": text_arg(("Hello", "I hate you")),
                                "coeff": (1.0, 4)})
        call = lambda: st.norm_profile(model, args.pop("vector"), args.pop("prompt"), **args)  # noqa: E731
    else:
        args = draw_args(data, {"vectors": vector_arg(), "prompts": text_arg((None, ["Hello"])),
                                "threshold": (2.0, 10), "warn": (True, False)})
        call = lambda: st.norm_diagnostics(model, args.pop("vectors"), args.pop("prompts"), **args)  # noqa: E731
    _check(call)


@_SETTINGS
@given(data=hst.data())
def test_vectors_and_algebra(data):
    model, good = _model()[0], _vectors()["good"]
    how = data.draw(hst.sampled_from(["construct", "hook_name", "mean_vectors", "cosine_matrix", "arith"]))
    if how == "construct":
        tensors = Hostile([torch.randn(64), torch.randn(2, 64)],
                          hst.sampled_from([torch.zeros(0, 64), torch.randn(2, 2, 64), torch.ones(64, dtype=torch.int64),
                                            torch.randn(64, dtype=torch.complex64), torch.empty(64, device="meta"),
                                            [0.0] * 64, "tensor", None, torch.full((64,), math.inf)]))
        args = draw_args(data, {"tensor": tensors, "hook_name": ("blocks.0.hook_resid_pre", "blocks.1.hook_resid_post")})
        call = lambda: st.SteeringVector(args.pop("tensor"), **args)  # noqa: E731
    elif how == "hook_name":
        args = draw_args(data, {"layer": (0, 1, -1), "hook": ("resid_pre", "mlp_out")})
        call = lambda: st.hook_name(model, **args)  # noqa: E731
    elif how == "mean_vectors":
        args = draw_args(data, {"vectors": Hostile([good[:2], [good[1], good[2]]], hst.sampled_from([[], None, "v", [good[1], 3]]))})
        call = lambda: st.algebra.mean_vectors(**args)  # noqa: E731
    elif how == "cosine_matrix":
        args = draw_args(data, {"vectors": Hostile([good[:2], good[:3]], hst.sampled_from([[], "x", None, [3]])),
                                "reduce": ("sum", "mean", "last")})
        call = lambda: st.algebra.cosine_matrix(**args)  # noqa: E731
    else:
        other = data.draw(hst.one_of(hst.sampled_from(good[:3] + [2.0, torch.tensor(2.0)]), hostile()))
        op = data.draw(hst.sampled_from(["add", "sub", "mul", "neg"]))
        v = good[1]
        call = {"add": lambda: v + other, "sub": lambda: v - other, "mul": lambda: v * other, "neg": lambda: -v}[op]
    _check(call)


@_SETTINGS
@given(data=hst.data())
def test_files(data):
    vectors = _vectors()
    how = data.draw(hst.sampled_from(["save", "load", "export", "import"]))
    folder = _folder()
    for old in folder.iterdir():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    os.mkfifo(folder / "fifo.safetensors")
    hostile_paths = ["", None, 123, folder, folder / "no" / "x", folder / ("x" * 300), folder / "fifo.safetensors"]
    if how in ("load", "import"):  # never a device as a write target: a regression would replace it (as root)
        (folder / "garbage.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 4)
        hostile_paths += ["/proc/self/status", "/dev/null", folder / "garbage.gguf", folder / "missing.safetensors"]
        valid = [st.save_vectors(vectors["good"][0], folder / "real.safetensors")] if how == "load" else \
            [st.export_gguf(vectors["good"][2], folder / "real.gguf")]
    else:
        valid = [folder / "v.safetensors"] if how == "save" else [folder / "v.gguf"]
    args = draw_args(data, {"path": Hostile(valid, hst.sampled_from(hostile_paths)),
                            "vectors": Hostile(vectors["good"], hst.sampled_from([[], None, "v", [vectors["good"][0], 3]]))})
    path, vec = args["path"], args["vectors"]
    call = {"save": lambda: st.save_vectors(vec, path), "export": lambda: st.export_gguf(vec, path),
            "load": lambda: st.load_vectors(path), "import": lambda: st.import_gguf(path)}[how]
    _check(call)
    left = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
    assert not left, f"temporary files left behind: {left}"


@_SETTINGS
@given(data=hst.data())
def test_sweep(data):
    model = _model()[0]
    args = draw_args(data, {
        "pos": text_arg(("Love", " weddings")),
        "neg": text_arg(("Hate", "")),
        "prompts": text_arg((["I hate you"], ["Hi", "The cat"])),
        "layers": ([1], [0, 1], "all"),
        "coeffs": ((0, 4), [2.0]),
        "metrics": (("logprob",), ("kl",), ["logprob", "kl"]),
        "targets": ([" love"], [" the", " a"]),
        "n": (1, 2),
        "max_new_tokens": (2, 3),
        "batch_size": (32, 2),
        "reuse": (True, False),
    })
    pos, neg, prompts = args.pop("pos"), args.pop("neg"), args.pop("prompts")
    _check(lambda: st.sweep(model, pos, neg, prompts, progress=False, **args))


def test_case_count():
    """Runs last in this file: the suite really ran its ≥ 2,000 cases (8 functions × EXAMPLES)."""
    print(f"fuzz cases run: {RUN['cases']} ({RUN['ok']} returned, {RUN['refused']} refused with a SteeringError)")
    if RUN["cases"] == 0:
        pytest.skip("the fuzz cases did not run in this session (selected with -k?)")
    assert RUN["cases"] >= 2000, RUN
    assert RUN["ok"] >= RUN["cases"] // 5, f"too few cases reach the end of the function: {RUN}"
