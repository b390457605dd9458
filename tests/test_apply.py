"""steer() and generate(): the addition is exactly c·v at the right positions, and nothing leaks.

Every "by hand" reference below uses a plain TransformerLens hook (``model.hooks``) that
adds ``coeff * vec.tensor`` to the residual itself, independent of steering-lens' hooks.
"""

import importlib
import subprocess
import sys
import warnings

import pytest
import torch

import steering as st
from steering.tokens import tokenize_prompt
from steering.tokens import left_pad

generation = importlib.import_module("steering.generation")  # the module (st.generate is the function)
sampling = importlib.import_module("steering.sampling")

PROMPTS = ["I went up to my friend and said", "Hello there, you", "abcdefghijk"]  # 32, 17, 12 tokens (BOS included)


# ---------------------------------------------------------------- by-hand references
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


def logits_steered(model, tokens, vector, coeff, **kw):
    with torch.no_grad(), st.steer(model, vector, coeff, **kw):
        return model(tokens)


def logits(model, tokens, **kw):
    with torch.no_grad():
        return model(tokens, **kw)


def tokens_of(model, prompt):
    return tokenize_prompt(model, prompt).unsqueeze(0)


def padded_batch(model, prompts):
    seqs = [tokenize_prompt(model, p) for p in prompts]
    tokens, mask = left_pad(seqs, model.tokenizer.pad_token_id)
    return seqs, tokens, mask


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


@pytest.fixture
def love(any_tiny):
    # 12 positions: as long as the shortest prompt, whose last token is steered directly (on the tiny
    # GPT-2, additions at earlier positions barely move the greedy continuation)
    return any_tiny, st.actadd(any_tiny, "I love you!", "I hate you", layer=1)


# ---------------------------------------------------------------- (1) exactly c·v, front
@pytest.mark.parametrize("hook", ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"])
@pytest.mark.parametrize("layer", [0, 1])
def test_steering_equals_adding_by_hand(any_tiny, hook, layer, no_hooks):
    model = any_tiny
    vec = st.actadd(model, "Love you", "Hate", layer=layer, hook=hook)
    tokens = tokens_of(model, PROMPTS[0])
    steered = logits_steered(model, tokens, vec, 4.0)
    expected = logits_by_hand(model, tokens, [(vec.hook_name, front_adder(vec.tensor, 4.0))])
    torch.testing.assert_close(steered, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(steered, logits(model, tokens), atol=1e-3)  # it did something
    no_hooks(model)


def test_negative_coefficient_and_several_vectors_at_once(any_tiny):
    model = any_tiny
    a = st.actadd(model, "Love", "Hate", layer=0)
    b = st.actadd(model, "happy day", "sad", layer=1, hook="mlp_out")
    tokens = tokens_of(model, PROMPTS[0])
    steered = logits_steered(model, tokens, [a, b], -3.0)
    expected = logits_by_hand(
        model, tokens, [(a.hook_name, front_adder(a.tensor, -3.0)), (b.hook_name, front_adder(b.tensor, -3.0))]
    )
    torch.testing.assert_close(steered, expected, atol=1e-5, rtol=1e-5)


def test_float64_vector_steers_a_float32_model_like_its_float32_copy(tiny):
    vec = st.actadd(tiny, "Love you", "Hate", layer=1)
    tokens = tokens_of(tiny, PROMPTS[1])
    torch.testing.assert_close(
        logits_steered(tiny, tokens, vec.to(torch.float64), 3.0), logits_steered(tiny, tokens, vec, 3.0),
        atol=1e-6, rtol=1e-6,
    )


def test_hf_model_and_run_with_cache_are_steered_too(love):
    model, vec = love
    tokens = tokens_of(model, PROMPTS[0])
    expected = logits_steered(model, tokens, vec, 4.0)
    with torch.no_grad(), st.steer(model, vec, 4.0):
        hf_logits = model.original_model(tokens).logits
        cached_logits, cache = model.run_with_cache(tokens, names_filter=["ln_final.hook_normalized"])
    torch.testing.assert_close(hf_logits, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached_logits, expected, atol=1e-5, rtol=1e-5)


def test_nested_blocks_keep_the_outer_vector(love, no_hooks):
    model, vec = love
    other = st.actadd(model, "calm", "anger", layer=0)
    tokens = tokens_of(model, PROMPTS[0])
    outer_only = logits_steered(model, tokens, vec, 2.0)
    with torch.no_grad(), st.steer(model, vec, 2.0):
        with st.steer(model, other, 5.0):
            both = model(tokens)
        after_inner = model(tokens)
    torch.testing.assert_close(after_inner, outer_only, atol=0, rtol=0)
    expected_both = logits_by_hand(
        model, tokens, [(vec.hook_name, front_adder(vec.tensor, 2.0)), (other.hook_name, front_adder(other.tensor, 5.0))]
    )
    torch.testing.assert_close(both, expected_both, atol=1e-5, rtol=1e-5)
    no_hooks(model)


# ---------------------------------------------------------------- (2) coefficient 0
def test_coefficient_zero_is_bitwise_identical(any_tiny):
    model = any_tiny
    vec = st.actadd(model, "Love you", "Hate", layer=1)
    tokens = tokens_of(model, PROMPTS[0])
    assert torch.equal(logits_steered(model, tokens, vec, 0.0), logits(model, tokens))
    assert torch.equal(logits_steered(model, tokens, vec.direction(), 0.0), logits(model, tokens))
    kw = dict(max_new_tokens=6, n=2, seed=3)
    assert st.generate(model, PROMPTS, vec, coeff=0.0, **kw) == st.generate(model, PROMPTS, None, **kw)


def test_integer_coefficient_is_accepted(tiny):
    """Coefficients are "any finite number" (check_coeff(5) == 5.0); an int must work like the float."""
    vec = st.actadd(tiny, "Love you", "Hate", layer=1)
    tokens = tokens_of(tiny, PROMPTS[0])
    torch.testing.assert_close(logits_steered(tiny, tokens, vec, 5), logits_steered(tiny, tokens, vec, 5.0))
    kw = dict(max_new_tokens=4, do_sample=False)
    assert st.generate(tiny, PROMPTS[0], vec, 5, **kw) == st.generate(tiny, PROMPTS[0], vec, 5.0, **kw)


# ---------------------------------------------------------------- (3) left-padded batches
def test_front_alignment_in_a_left_padded_batch_matches_prompts_one_by_one(love):
    model, vec = love
    seqs, tokens, mask = padded_batch(model, PROMPTS)
    assert bool((mask == 0).any())  # really padded
    with torch.no_grad(), st.steer(model, vec, 4.0):
        batched = model(tokens, attention_mask=mask)
    unsteered = logits(model, tokens, attention_mask=mask)
    for i, seq in enumerate(seqs):
        n = seq.numel()
        single = logits_steered(model, seq.unsqueeze(0), vec, 4.0)[0]
        torch.testing.assert_close(batched[i, -n:], single, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(batched[i, -n:], unsteered[i, -n:], atol=1e-3)


# ---------------------------------------------------------------- (4) generation
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
    penalised = st.generate(any_tiny, PROMPTS, None, freq_penalty=1e3, **kw)
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


# ---------------------------------------------------------------- (5) positions="all"
def test_direction_is_added_at_every_position(any_tiny):
    model = any_tiny
    d = st.actadd(model, "Love you", "Hate", layer=1).direction("mean")
    tokens = tokens_of(model, PROMPTS[0])
    steered = logits_steered(model, tokens, d, 3.0)  # a direction defaults to "all"
    assert torch.equal(steered, logits_steered(model, tokens, d, 3.0, positions="all"))
    expected = logits_by_hand(model, tokens, [(d.hook_name, everywhere_adder(d.tensor, 3.0))])
    torch.testing.assert_close(steered, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(steered, logits(model, tokens), atol=1e-3)


def test_direction_in_a_left_padded_batch_skips_padding(love):
    model, vec = love
    d = vec.direction("sum")
    seqs, tokens, mask = padded_batch(model, PROMPTS)
    with torch.no_grad(), st.steer(model, d, 2.0):
        batched = model(tokens, attention_mask=mask)
    for i, seq in enumerate(seqs):
        n = seq.numel()
        single = logits_steered(model, seq.unsqueeze(0), d, 2.0)[0]
        torch.testing.assert_close(batched[i, -n:], single, atol=1e-4, rtol=1e-4)


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


def test_per_position_vector_with_all_is_refused(love, no_hooks):
    model, vec = love
    with pytest.raises(
        st.errors.InvalidArgumentError,
        match=r"positions='all' adds one direction everywhere, but the vector at blocks\.1\.hook_resid_pre has 12 "
        r"positions; allowed: a \[d_model\] direction\. Fix: use vec\.direction\('sum'\)",
    ):
        with st.steer(model, vec, 1.0, positions="all"):
            pytest.fail("the block must not run")
    no_hooks(model)


def test_direction_with_front_is_refused(love, no_hooks):
    model, vec = love
    with pytest.raises(st.errors.InvalidArgumentError, match=r"positions='front' needs a per-position .*Fix: pass positions='all'"):
        with st.steer(model, vec.direction(), 1.0, positions="front"):
            pytest.fail("the block must not run")
    no_hooks(model)


# ---------------------------------------------------------------- (6) prompts shorter than the vector
def test_short_prompt_truncates_with_a_warning(any_tiny, no_hooks):
    model = any_tiny
    vec = st.actadd(model, "I love you so much", "", layer=1)  # 19 positions
    tokens = tokens_of(model, "Hi you")  # 7 tokens
    with pytest.warns(st.SteeringWarning, match=r"a prompt has 7 tokens \(BOS included\), fewer than the vector's 19 "
                      r"positions: only its first 7 positions are added.*short_prompt='error'"):
        steered = logits_steered(model, tokens, vec, 4.0)
    expected = logits_by_hand(model, tokens, [(vec.hook_name, front_adder(vec.tensor, 4.0, n=7))])
    torch.testing.assert_close(steered, expected, atol=1e-5, rtol=1e-5)
    no_hooks(model)


def test_short_row_in_a_left_padded_batch_is_truncated_per_row(tiny):
    vec = st.actadd(tiny, "I love you so much", "", layer=1)  # 19 positions
    prompts = ["Hi you", PROMPTS[0]]  # 7 and 32 tokens
    seqs, tokens, mask = padded_batch(tiny, prompts)
    with pytest.warns(st.SteeringWarning, match="7 tokens"):
        with torch.no_grad(), st.steer(tiny, vec, 4.0):
            batched = tiny(tokens, attention_mask=mask)
    for i, seq in enumerate(seqs):
        n = seq.numel()
        expected = logits_by_hand(tiny, seq.unsqueeze(0), [(vec.hook_name, front_adder(vec.tensor, 4.0, n=n))])[0]
        torch.testing.assert_close(batched[i, -n:], expected, atol=1e-4, rtol=1e-4)


def test_short_prompt_error_raises(any_tiny, no_hooks):
    model = any_tiny
    vec = st.actadd(model, "I love you so much", "", layer=1)
    with pytest.raises(st.errors.PromptTooShortError, match=r"a prompt has 7 tokens \(BOS included\) but the vector "
                       r"blocks\.1\.hook_resid_pre has 19 positions.*Fix: lengthen the prompt"):
        logits_steered(model, tokens_of(model, "Hi you"), vec, 4.0, short_prompt="error")
    no_hooks(model)
    # long enough: no error, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits_steered(model, tokens_of(model, PROMPTS[0]), vec, 4.0, short_prompt="error")


def test_short_prompt_in_generation(tiny):
    vec = st.actadd(tiny, "I love you so much", "", layer=1)
    kw = dict(max_new_tokens=5, do_sample=False)
    with pytest.warns(st.SteeringWarning, match="7 tokens"):
        cached = st.generate(tiny, ["Hi you", PROMPTS[0]], vec, 10.0, **kw)
    with pytest.warns(st.SteeringWarning):
        assert cached == st.generate(tiny, ["Hi you", PROMPTS[0]], vec, 10.0, use_cache=False, **kw)
    expected = greedy_by_hand(tiny, "Hi you", [(vec.hook_name, front_adder(vec.tensor, 10.0, n=7))], 5)
    assert cached[0] == expected


# ---------------------------------------------------------------- (7) hooks never leak
class Boom(Exception):
    pass


def test_hooks_are_removed_after_an_exception_in_the_block(love, no_hooks):
    model, vec = love
    tokens = tokens_of(model, PROMPTS[0])
    before = logits(model, tokens)
    with pytest.raises(Boom):
        with st.steer(model, vec, 5.0):
            assert st.active_hooks(model) > 0
            model(tokens)
            raise Boom
    no_hooks(model)
    assert torch.equal(logits(model, tokens), before)


def test_hooks_are_removed_after_keyboard_interrupt_in_the_block(love, no_hooks):
    model, vec = love
    tokens = tokens_of(model, PROMPTS[0])
    before = logits(model, tokens)
    with pytest.raises(KeyboardInterrupt):
        with st.steer(model, vec, 5.0):
            model(tokens)
            raise KeyboardInterrupt
    no_hooks(model)
    assert torch.equal(logits(model, tokens), before)


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


def test_users_permanent_hook_survives_a_steer_block(love, no_hooks):
    model, vec = love
    tokens = tokens_of(model, PROMPTS[0])
    calls = []

    def user_hook(resid, hook):
        calls.append(hook.name)

    model.add_hook(vec.hook_name, user_hook, is_permanent=True)  # same hook point as the vector
    try:
        assert st.active_hooks(model) == 1
        with st.steer(model, vec, 3.0):
            model(tokens)
        with pytest.raises(Boom):
            with st.steer(model, vec, 3.0):
                raise Boom
        st.generate(model, PROMPTS[1], vec, 3.0, max_new_tokens=2)
        assert st.active_hooks(model) == 1
        n = len(calls)
        model(tokens)
        assert len(calls) == n + 1  # still attached and firing
    finally:
        model.reset_hooks(including_permanent=True)
    no_hooks(model)


# ---------------------------------------------------------------- (8) seeds
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


def test_short_prompt_warning_points_at_the_callers_line(tiny):
    vec = st.actadd(tiny, "lovely", "hate", layer=1)
    with pytest.warns(st.SteeringWarning) as record:
        st.generate(tiny, "ab", vec, coeff=2.0, max_new_tokens=2)
    assert record[0].filename == __file__
    with pytest.warns(st.SteeringWarning) as record:
        with st.steer(tiny, vec, coeff=2.0):
            tiny(tiny.to_tokens("ab"))
    assert record[0].filename == __file__


# ---------------------------------------------------------------- per-row coefficients
@pytest.mark.parametrize("op", ["add", "ablate"])
def test_per_row_coefficients_equal_one_call_per_coefficient(love, op, no_hooks):
    model, vec = love
    if op == "ablate":
        vec = vec.direction("sum")
    coeffs = [0.0, 2.0, -5.0, 20.0]
    tokens = tokens_of(model, PROMPTS[0]).repeat(len(coeffs), 1)
    batched = logits_steered(model, tokens, vec, coeffs, op=op)
    for i, c in enumerate(coeffs):
        single = logits_steered(model, tokens[:1], vec, c, op=op)
        torch.testing.assert_close(batched[i:i + 1], single, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batched[0], batched[3], atol=1e-3)  # the rows really differ
    no_hooks(model)


def test_per_row_coefficients_must_match_the_batch(love, no_hooks):
    model, vec = love
    tokens = tokens_of(model, PROMPTS[0]).repeat(3, 1)
    with pytest.raises(st.errors.InvalidCoefficientError, match="2 per-row coefficients .* has 3 rows"):
        logits_steered(model, tokens, vec, [1.0, 2.0])
    with pytest.raises(st.errors.InvalidCoefficientError, match="empty sequence"):
        logits_steered(model, tokens, vec, [])
    with pytest.raises(st.errors.InvalidCoefficientError, match="nan"):
        logits_steered(model, tokens, vec, [1.0, float("nan"), 2.0])
    no_hooks(model)


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
