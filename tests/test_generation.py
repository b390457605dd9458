"""st.generate (steering.generation): batched, cached, seeded generation equals decoding by hand, and nothing leaks.

Every "by hand" reference uses a plain TransformerLens hook (``model.hooks``) that adds ``coeff * vec.tensor`` to
the residual itself, independent of steering-lens' hooks (the helpers are in tests/conftest.py).
"""

import importlib
import subprocess
import sys

import pytest
import torch

import steering as st
from conftest import PROMPTS, Boom, everywhere_adder, front_adder, logits_by_hand, tokens_of

sampling = importlib.import_module("steering.sampling")


def greedy_by_hand(model, prompt, fwd_hooks, max_new_tokens):
    """Greedy decoding with a full forward pass per step (no KV cache, no HF generate)."""
    tok = model.tokenizer
    tokens = tokens_of(model, prompt)
    new = []
    for _ in range(max_new_tokens):
        nxt = int(logits_by_hand(model, tokens, fwd_hooks)[0, -1].argmax())
        if nxt == tok.eos_token_id:
            break
        new.append(nxt)
        tokens = torch.cat([tokens, torch.tensor([[nxt]])], dim=1)
    return tok.decode(new, skip_special_tokens=True)


# ------------------------------------------------ batching, KV cache, decoding by hand
def test_kv_cache_generation_equals_no_cache_generation(love, no_hooks):
    model, vec = love
    kw = dict(max_new_tokens=8, do_sample=False)
    for vector, coeff in ((None, 1.0), (vec, 20.0)):
        cached = st.generate(model, PROMPTS, vector, coeff, use_cache=True, **kw)
        uncached = st.generate(model, PROMPTS, vector, coeff, use_cache=False, **kw)
        assert cached == uncached, (vector is not None, cached, uncached)
    unsteered = st.generate(model, PROMPTS, None, **kw)
    assert st.generate(model, PROMPTS, vec, 20.0, **kw) != unsteered  # steering changed the text
    no_hooks(model)


def test_batched_steered_generation_equals_generation_prompt_by_prompt(love):
    model, vec = love
    kw = dict(max_new_tokens=8, do_sample=False)
    batched = st.generate(model, PROMPTS, vec, 20.0, **kw)
    one_by_one = [st.generate(model, p, vec, 20.0, **kw)[0] for p in PROMPTS]
    assert batched == one_by_one
    small_batches = st.generate(model, PROMPTS, vec, 20.0, batch_size=2, **kw)
    assert small_batches == batched


def test_steered_greedy_generation_equals_decoding_by_hand(love):
    """Front steering acts on the prompt only: generated tokens get nothing added."""
    model, vec = love
    for prompt in PROMPTS:
        text = st.generate(model, prompt, vec, 20.0, max_new_tokens=6, do_sample=False)[0]
        # the prompt is longer than the vector, so the by-hand hook always adds the whole vector at the front
        expected = greedy_by_hand(model, prompt, [(vec.hook_name, front_adder(vec.tensor, 20.0))], 6)
        assert text == expected


def test_generation_returns_prompt_major_completions(tiny):
    out = st.generate(tiny, ["ab", "xyz"], None, max_new_tokens=4, n=3, do_sample=False)
    ab, xyz = (st.generate(tiny, p, None, max_new_tokens=4, do_sample=False)[0] for p in ("ab", "xyz"))
    assert ab != xyz
    assert out == [ab, ab, ab, xyz, xyz, xyz]
    sampled = st.generate(tiny, ["ab", "xyz"], None, max_new_tokens=4, n=3, seed=0)
    assert len(sampled) == 6 and all(isinstance(t, str) for t in sampled)


def test_frequency_penalty_stops_repeats(any_tiny):
    kw = dict(max_new_tokens=8, do_sample=False)
    plain = st.generate(any_tiny, PROMPTS, None, **kw)
    assert any(len(set(t)) < len(t) for t in plain)  # the tiny models repeat themselves
    penalised = st.generate(any_tiny, PROMPTS, None, freq_penalty=100, **kw)  # the largest accepted
    for text in penalised:  # one character per token: a huge penalty forbids any repeat
        assert len(set(text)) == len(text), text


def test_stop_at_eos_false_keeps_generating_after_eos(tiny, monkeypatch):
    eos = tiny.tokenizer.eos_token_id

    def eos_first(self, input_ids, scores):  # stands in for the progress-bar processor: EOS is the first new token
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == 1:
            scores = torch.full_like(scores, -1e9)
            scores[:, eos] = 0.0
        return scores

    monkeypatch.setattr(sampling.StepBar, "__call__", eos_first)
    kw = dict(max_new_tokens=8, do_sample=False)
    assert st.generate(tiny, PROMPTS, None, **kw) == ["", "", ""]  # stopped at the forced EOS
    continued = st.generate(tiny, PROMPTS, None, stop_at_eos=False, **kw)
    assert all(len(text) > 0 for text in continued), continued


def test_st_generate_is_the_function_after_importing_the_submodule(tmp_path):
    """``from steering.tokens import left_pad`` (as the docs suggest) must not turn st.generate into a module."""
    code = (
        "import steering as st\n"
        "from steering.tokens import left_pad\n"
        "print(type(st.generate).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "function"


# -------------------------------------------------------- directions (positions="all")
def test_direction_generation_adds_at_generated_tokens_too(love):
    model, vec = love
    d = vec.direction("mean")
    kw = dict(max_new_tokens=6, do_sample=False)
    cached = st.generate(model, PROMPTS, d, 15.0, use_cache=True, **kw)
    assert cached == st.generate(model, PROMPTS, d, 15.0, use_cache=False, **kw)
    assert cached != st.generate(model, PROMPTS, None, **kw)
    for prompt, text in zip(PROMPTS, cached):
        expected = greedy_by_hand(model, prompt, [(d.hook_name, everywhere_adder(d.tensor, 15.0))], 6)
        assert text == expected


# ----------------------------------------------------- prompts shorter than the vector
def test_short_prompt_in_generation(tiny):
    vec = st.actadd(tiny, "I love you so much", "", layer=1)
    kw = dict(max_new_tokens=5, do_sample=False)
    with pytest.warns(st.SteeringWarning, match="7 tokens"):
        cached = st.generate(tiny, ["Hi you", PROMPTS[0]], vec, 10.0, **kw)
    with pytest.warns(st.SteeringWarning):
        assert cached == st.generate(tiny, ["Hi you", PROMPTS[0]], vec, 10.0, use_cache=False, **kw)
    expected = greedy_by_hand(tiny, "Hi you", [(vec.hook_name, front_adder(vec.tensor, 10.0, n=7))], 5)
    assert cached[0] == expected


# -------------------------------------------------------------------- hooks never leak
def test_hooks_are_removed_after_an_error_raised_by_the_steering_hook(tiny, no_hooks):
    vec = st.actadd(tiny, "I love you so much", "", layer=1)
    with pytest.raises(st.errors.PromptTooShortError):
        st.generate(tiny, ["Hi you", PROMPTS[0]], vec, 5.0, max_new_tokens=4, short_prompt="error")
    no_hooks(tiny)


def test_hooks_are_removed_when_a_logits_processor_raises_mid_generation(love, monkeypatch, no_hooks):
    model, vec = love
    calls = []

    def exploding_step(self, input_ids, scores):
        calls.append(input_ids.shape[1])
        assert st.active_hooks(model) > 0  # steering is on while generating
        if len(calls) == 3:
            raise Boom("mid-generation")
        return scores

    monkeypatch.setattr(sampling.StepBar, "__call__", exploding_step)
    rng = torch.get_rng_state()
    with pytest.raises(Boom):
        st.generate(model, PROMPTS, vec, 5.0, max_new_tokens=8, seed=1)
    assert len(calls) == 3
    no_hooks(model)
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("fast", ["1", "0"])
@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_hooks_are_removed_when_hf_generate_raises(love, monkeypatch, error, fast, no_hooks):
    from steering._fast import twin_for as plain_model

    model, vec = love
    monkeypatch.setenv("STEERING_FAST", fast)
    hf = plain_model(model) if fast == "1" else model.original_model  # the model generate runs on
    seen = []

    def failing_generate(input_ids, attention_mask, **kwargs):
        seen.append(st.active_hooks(model))
        hf(input_ids=input_ids, attention_mask=attention_mask)  # the steering hook fires, then:
        raise error()

    monkeypatch.setattr(hf, "generate", failing_generate)
    with pytest.raises(error):
        st.generate(model, PROMPTS, vec, 5.0, max_new_tokens=4)
    assert seen and seen[0] > 0
    no_hooks(model)


# ------------------------------------------------------------------------------- seeds
def test_same_seed_same_samples_different_seed_different_samples(any_tiny):
    kw = dict(max_new_tokens=10, n=3, top_p=None)
    a = st.generate(any_tiny, PROMPTS[:2], None, seed=1, **kw)
    assert a == st.generate(any_tiny, PROMPTS[:2], None, seed=1, **kw)
    assert a != st.generate(any_tiny, PROMPTS[:2], None, seed=2, **kw)
    assert len(set(a[:3])) > 1  # the n samples of one prompt differ from each other


def test_same_seed_same_steered_samples(love):
    model, vec = love
    kw = dict(max_new_tokens=8, n=2, seed=7)
    assert st.generate(model, PROMPTS, vec, 5.0, **kw) == st.generate(model, PROMPTS, vec, 5.0, **kw)


@pytest.mark.parametrize("seed", [0, None])
def test_generate_leaves_the_global_rng_untouched(tiny, seed):
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    st.generate(tiny, PROMPTS, None, max_new_tokens=5, n=2, seed=seed)
    assert torch.equal(torch.get_rng_state(), state)


def test_no_seed_gives_fresh_samples_on_each_call(tiny):
    """seed=None means "no seeding": two calls in a row must not repeat each other."""
    kw = dict(max_new_tokens=10, n=2, top_p=None, seed=None)
    assert st.generate(tiny, PROMPTS, None, **kw) != st.generate(tiny, PROMPTS, None, **kw)


# ---------------------------------------------------------------- per-row coefficients
def test_generate_with_a_coefficient_list_equals_separate_calls(love, no_hooks):
    model, vec = love
    kw = dict(max_new_tokens=6, do_sample=False, n=2)
    coeffs = [0.0, 5.0, 20.0]
    together = st.generate(model, PROMPTS[1:], vec, coeffs, batch_size=5, **kw)
    separate = [t for c in coeffs for t in st.generate(model, PROMPTS[1:], vec, c, **kw)]
    assert together == separate
    assert len(together) == 3 * 2 * 2
    assert together[:4] != together[8:]  # c = 20 changed the text
    no_hooks(model)


# ----------------------------------------------------------------- repeated row blocks
def test_repeat_block_finds_the_smallest_repeated_block():
    from steering.generation import repeat_block

    a, b, c = torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([1, 2, 3])
    assert repeat_block([a, b, a, b, a, b]) == 2
    assert repeat_block([a, a, a, a]) == 1
    assert repeat_block([a, b, c, a, b]) is None  # 5 rows: no divisor repeats
    assert repeat_block([a, b, a, c]) is None
    assert repeat_block([a]) is None


# ---------------------------------------------------------------- issue 17 (category 8): every option checked before work
import numpy as np  # noqa: E402

BAD_OPTIONS = [
    ("top_k", -5), ("top_k", 0), ("top_k", "5"), ("top_k", 2.7), ("top_k", True), ("top_k", torch.tensor(3.0)),
    ("top_k", 10**6),
    ("top_p", True), ("top_p", "0.5"), ("top_p", 0), ("top_p", 1.5), ("top_p", float("nan")),
    ("do_sample", "no"), ("do_sample", 1), ("do_sample", None),
    ("seed", 2**70), ("seed", 1.0), ("seed", "0"), ("seed", True),
    ("freq_penalty", 1e308), ("freq_penalty", -1e308), ("freq_penalty", 101), ("freq_penalty", float("inf")),
    ("freq_penalty", True),
    ("temperature", 0), ("temperature", -1.0), ("temperature", float("nan")), ("temperature", float("inf")),
    ("temperature", True), ("temperature", "1"),
    ("max_new_tokens", 0), ("max_new_tokens", -3), ("max_new_tokens", 2.0), ("max_new_tokens", True),
    ("max_new_tokens", torch.tensor(2.5)),
    ("n", 0), ("n", -1), ("n", True), ("n", 2.0),
    ("batch_size", 0), ("batch_size", -2), ("batch_size", 1.5), ("batch_size", False),
    ("stop_at_eos", "yes"), ("use_cache", 0), ("progress", "no"),
]


@pytest.mark.parametrize("name, bad", BAD_OPTIONS, ids=[f"{n}={b!r}" for n, b in BAD_OPTIONS])
def test_bad_options_are_refused_before_any_work_naming_the_value(tiny, name, bad, untyped, no_hooks, monkeypatch):
    vec = st.actadd(tiny, "love", "hate", layer=1)

    def no_forward(*args, **kwargs):
        raise AssertionError("the model ran before the options were checked")

    monkeypatch.setattr(importlib.import_module("steering.generation"), "resolve", no_forward)
    with pytest.raises(st.errors.InvalidArgumentError) as info:
        st.generate(tiny, "hello", vec, 2.0, **{"max_new_tokens": 2, name: bad})
    text = str(info.value)
    assert text.startswith(f"{name}={bad!r}"[:30]), text
    assert "allowed:" in text and "Fix:" in text, text
    no_hooks(tiny)


def test_numpy_and_integer_tensor_options_are_numbers(tiny, untyped):
    kw = dict(max_new_tokens=np.int64(3), n=torch.tensor(2), top_k=np.int32(5), seed=np.int64(1),
              temperature=np.float32(0.8), top_p=torch.tensor(0.5), batch_size=np.int64(4))
    plain = dict(max_new_tokens=3, n=2, top_k=5, seed=1, temperature=float(np.float32(0.8)), top_p=0.5, batch_size=4)
    assert st.generate(tiny, "hello", None, **kw) == st.generate(tiny, "hello", None, **plain)


def test_a_call_too_large_to_finish_is_refused_up_front(tiny, no_hooks):
    from steering.generation import MAX_ROWS

    with pytest.raises(st.errors.InvalidArgumentError, match=r"n=1180591620717411303424 completions per prompt × 2 "
                                                             r"prompt\(s\) × 1 coefficient\(s\).*allowed: at most 1,000,000"):
        st.generate(tiny, ["a", "b"], None, n=2**70)
    with pytest.raises(st.errors.InvalidArgumentError, match=r"allowed: at most 1,000,000 per call"):
        st.generate(tiny, "a", None, [0.0, 1.0], n=MAX_ROWS // 2 + 1)
    no_hooks(tiny)


# -------------------------------------------------------- chat prompts, positions="response"
def test_response_steering_is_exact_under_cache_padding_and_batching(tiny, monkeypatch, no_hooks):
    from steering.chat import TINY_TEMPLATE, chat_prompt, response_start

    monkeypatch.setattr(tiny.tokenizer, "chat_template", TINY_TEMPLATE, raising=False)
    d = st.actadd(tiny, "I love you!", "I hate you", layer=1).direction("mean")
    kw = dict(max_new_tokens=6, do_sample=False, chat=True, positions="response")
    cached = st.generate(tiny, PROMPTS, d, 2.0, **kw)
    assert cached == st.generate(tiny, PROMPTS, d, 2.0, use_cache=False, **kw)
    assert cached == st.generate(tiny, PROMPTS, d, 2.0, backend="bridge", **kw)
    assert cached == [st.generate(tiny, p, d, 2.0, **kw)[0] for p in PROMPTS]
    assert cached != st.generate(tiny, PROMPTS, d, 2.0, **{**kw, "positions": "all"})  # the user turn is not steered
    for prompt, text in zip(PROMPTS, cached):
        start = response_start(tiny, prompt)

        def from_start(resid, hook, start=start):
            out = resid.clone()
            out[:, start:] += 2.0 * d.tensor.to(resid.dtype)
            return out

        assert text == greedy_by_hand(tiny, chat_prompt(tiny, prompt), [(d.hook_name, from_start)], 6)
    no_hooks(tiny)


def test_response_positions_need_chat(tiny):
    d = st.actadd(tiny, "a", "b", layer=1).direction("mean")
    with pytest.raises(st.SteeringError, match=r"positions='response' steers from the assistant turn.*Fix: pass chat=True"):
        st.generate(tiny, "hi", d, 2.0, positions="response", max_new_tokens=2)
