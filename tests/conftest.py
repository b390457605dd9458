"""Shared fixtures: tiny random models (no download, ~0.1 s each) and a hook-leak check.

The tiny models are session-scoped and shared, so tests must leave them as they found
them: no hook left attached, no weights or config changed. A test that needs to change
a model builds its own with ``steering.testing.tiny_model``.
"""

import threading

import jaxtyping
import pytest
import torch

import steering as st
from steering.testing import tiny_model
from steering.tokens import tokenize_prompt


@pytest.fixture(scope="session")
def tiny():
    """Tiny Llama-style bridge (RMSNorm, rotary, gated MLP): 2 layers × 64, n_ctx 256."""
    return tiny_model("llama")


@pytest.fixture(scope="session")
def tiny_gpt2():
    """Tiny GPT-2-style bridge (LayerNorm, learned positions): 2 layers × 64, n_ctx 256."""
    return tiny_model("gpt2")


@pytest.fixture(params=["llama", "gpt2"])
def any_tiny(request, tiny, tiny_gpt2):
    """Each tiny architecture in turn."""
    return tiny if request.param == "llama" else tiny_gpt2


def assert_no_hooks(model) -> None:
    """Fail unless nothing steering-lens (or anyone) attached is left on ``model``."""
    count = st.active_hooks(model)
    assert count == 0, f"{count} hook(s) left attached to {model.cfg.model_name}"


@pytest.fixture
def untyped(monkeypatch):
    """Switch the test run's runtime type checks off, as for a user: the package's own refusals then speak.

    (Under the checks, a ``Literal`` annotation such as ``op: Operator`` rejects a bad value with a
    ``TypeCheckError`` before the function body runs.)
    """
    monkeypatch.setattr(jaxtyping.config, "jaxtyping_disable", True)


@pytest.fixture
def no_hooks():
    """The leak check as a fixture: ``no_hooks(model)`` asserts ``st.active_hooks(model) == 0``."""
    return assert_no_hooks


@pytest.fixture(autouse=True)
def _one_thread_for_tiny_models(request):
    """Run tiny-model tests on one CPU thread (restored afterwards; ``slow`` real-model tests keep all).

    Tiny tensors gain nothing from intra-op threads, and on a busy machine the thread pool's
    hand-offs make a 4 ms forward pass take ~0.4 s.
    """
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _shared_models_stay_clean(request):
    """After every test, the shared tiny models must have no hook attached."""
    yield
    for name in ("tiny", "tiny_gpt2"):
        if name in request.fixturenames:
            model = request.getfixturevalue(name)
            leaked = st.active_hooks(model)
            if leaked:
                model.reset_hooks(including_permanent=True)  # do not let one leak fail every later test
                pytest.fail(f"{leaked} hook(s) leaked on the shared {name} model")


# ---------------------------------------------------------------- the real built-in models (slow tests)
@pytest.fixture(scope="session")
def gemma():
    """Gemma-3-270M, loaded once per test run and shared by every real-model test file."""
    return st.load_model("gemma3-270m", device="cpu")


@pytest.fixture(scope="session")
def smollm():
    """SmolLM2-135M-Instruct, loaded once per test run."""
    return st.load_model("smollm2-135m", device="cpu")


# ---------------------------------------------------------------- shared by the measure tests
# (test_metrics, test_lens, test_sweeps, test_norms: import the helpers with ``from conftest import ...``)
TEXTS = ["the cat sat on the mat", "numbers 1 2 3 4 5 6", "a quiet day in the town"]


def logprobs(model, text, vector=None, coeff=0.0, **kw):
    tokens = tokenize_prompt(model, text).unsqueeze(0)
    with torch.no_grad():
        if vector is None:
            logits = model(tokens)
        else:
            with st.steer(model, vector, coeff, **kw):
                logits = model(tokens)
    return torch.log_softmax(logits[0].float(), dim=-1), tokens[0]


@pytest.fixture
def vec(any_tiny):
    """Each tiny model in turn, with its "love" − "hate" ActAdd vector at layer 1."""
    return any_tiny, st.actadd(any_tiny, "love", "hate", layer=1)  # 5 positions (BOS + 4)


# ---------------------------------------------------------------- shared by the steering and generation tests
# (test_apply, test_generation). Every "by hand" reference uses a plain TransformerLens hook (``model.hooks``)
# that adds ``coeff * vec.tensor`` to the residual itself, independent of steering-lens' hooks.
PROMPTS = ["I went up to my friend and said", "Hello there, you", "abcdefghijk"]  # 32, 17, 12 tokens (BOS included)


def front_adder(tensor, coeff, n=None):
    """A TransformerLens hook adding ``coeff * tensor[j]`` at position j, for j < n (default: every row of ``tensor``)."""

    def hook(resid, hook):
        k = min(tensor.shape[0], resid.shape[1], n if n is not None else resid.shape[1])
        out = resid.clone()
        out[:, :k] += coeff * tensor[:k].to(resid.dtype)
        return out

    return hook


def everywhere_adder(direction, coeff):
    def hook(resid, hook):
        return resid + coeff * direction.to(resid.dtype)

    return hook


def logits_by_hand(model, tokens, fwd_hooks):
    with torch.no_grad(), model.hooks(fwd_hooks=fwd_hooks):
        return model(tokens)


def tokens_of(model, prompt):
    return tokenize_prompt(model, prompt).unsqueeze(0)


@pytest.fixture
def love(any_tiny):
    # 12 positions: as long as the shortest prompt, whose last token is steered directly (on the tiny
    # GPT-2, additions at earlier positions barely move the greedy continuation)
    return any_tiny, st.actadd(any_tiny, "I love you!", "I hate you", layer=1)


class Boom(Exception):
    pass


# ---------------------------------------------------------------- shared by the extraction tests
#: Bad layer specs and the start of each refusal (a 2-layer tiny model): every function taking a layer spec.
BAD_LAYER_SPECS = [
    ([], r"layer=\[\] is empty; allowed: an int, a non-empty list of ints in 0\.\.1, or 'all'\. Fix:"),
    ([0, 0], r"layer=\[0, 0\] names block 0 twice \(0 and 0\); allowed: distinct layers.*Fix: drop the repeat"),
    ([1, -1], r"layer=\[1, -1\] names block 1 twice \(1 and -1\)"),
    ("every", r"layer='every' is not a layer spec; allowed: an int in 0\.\.1.*or 'all'\. Fix:"),
    ([0, 5], r"layer=5 is out of range for this model \(2 layers\); allowed: 0\.\.1"),
    (2, r"layer=2 is out of range for this model \(2 layers\)"),
]


class CountRuns:
    """Wraps ``model.run_with_cache`` to record the keyword arguments of each call."""

    def __init__(self, model, monkeypatch):
        self.calls = []
        original = model.run_with_cache

        def wrapped(*args, **kwargs):
            self.calls.append(kwargs)
            return original(*args, **kwargs)

        monkeypatch.setattr(model, "run_with_cache", wrapped)


def within(seconds, fn):
    """Run ``fn()`` in a thread; fail if it blocks longer than ``seconds``. Returns {"value": …} or {"error": …}."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call blocked for more than {seconds} s"
    return box
