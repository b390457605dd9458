"""steer(): the addition is exactly c·v at the right positions, and no hook leaks.

Every "by hand" reference below uses a plain TransformerLens hook (``model.hooks``) that
adds ``coeff * vec.tensor`` to the residual itself, independent of steering-lens' hooks
(the shared helpers are in tests/conftest.py). st.generate is tested in tests/test_generation.py.
"""

import warnings

import pytest
import torch

import steering as st
from conftest import PROMPTS, Boom, everywhere_adder, front_adder, logits_by_hand, tokens_of
from steering.engine import forward_logprobs
from steering.tokens import tokenize_prompt
from steering.tokens import left_pad


# ---------------------------------------------------------------- by-hand references
def logits_steered(model, tokens, vector, coeff, **kw):
    with torch.no_grad(), st.steer(model, vector, coeff, **kw):
        return model(tokens)


def logits(model, tokens, **kw):
    with torch.no_grad():
        return model(tokens, **kw)


def padded_batch(model, prompts):
    seqs = [tokenize_prompt(model, p) for p in prompts]
    tokens, mask = left_pad(seqs, model.tokenizer.pad_token_id)
    return seqs, tokens, mask


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


# ---------------------------------------------------------------- (4) positions="all"
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


# ---------------------------------------------------------------- (5) prompts shorter than the vector
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


# ---------------------------------------------------------------- (6) hooks never leak
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


# ---------------------------------------------------------------- (7) warnings
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




# ---------------------------------------------------------------- issue 17 (category 8): one block, entered once at a time
def test_entering_an_active_steer_block_again_is_refused(tiny, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    tokens = tokens_of(tiny, PROMPTS[0])
    block = st.steer(tiny, vec, 3.0)
    with block:
        once = tiny(tokens)
        with pytest.raises(st.errors.InvalidArgumentError, match=r"this steer\(\.\.\.\) block is already active.*"
                                                                 r"would add its vectors twice.*Fix:"):
            with block:
                pass
        torch.testing.assert_close(tiny(tokens), once)  # the failed re-entry changed nothing
    no_hooks(tiny)


def test_a_steer_block_can_be_reused_after_it_was_left(tiny, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    tokens = tokens_of(tiny, PROMPTS[0])
    block = st.steer(tiny, vec, 3.0)
    with block:
        first = tiny(tokens)
    no_hooks(tiny)
    with block:
        again = tiny(tokens)
    no_hooks(tiny)
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, tiny(tokens))


def test_steer_checks_its_arguments_when_called(tiny, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with pytest.raises(st.errors.InvalidCoefficientError):
        st.steer(tiny, vec, float("nan"))  # no `with` needed: refused at the call
    no_hooks(tiny)


@pytest.mark.parametrize("twice", ["steer", "generate"])
def test_the_same_vector_object_twice_is_refused(tiny, twice, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    match = r"vector\[1\] is vector\[0\], the same SteeringVector \(at blocks\.1\.hook_resid_pre\) passed twice.*coeff=2"
    with pytest.raises(st.errors.InvalidArgumentError, match=match):
        if twice == "steer":
            with st.steer(tiny, [vec, vec], 2.0):
                pass
        else:
            st.generate(tiny, "hello", [vec, vec], 2.0, max_new_tokens=2)
    no_hooks(tiny)
    with st.steer(tiny, [vec, vec.clone()], 1.0):  # two additions, asked for explicitly
        two = tiny(tokens_of(tiny, PROMPTS[0]))
    with st.steer(tiny, vec, 2.0):
        torch.testing.assert_close(tiny(tokens_of(tiny, PROMPTS[0])), two, atol=1e-4, rtol=1e-4)
    no_hooks(tiny)


# ---------------------------------------------------------------- issue 17 (category 4): additions that dwarf the residual
def _scale_warnings(caught):
    return [w for w in caught if issubclass(w.category, st.SteeringWarning) and "drowned" in str(w.message)]


def test_an_addition_a_thousand_times_the_residual_warns_once_naming_layer_ratio_and_fix(tiny, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    tokens = tokens_of(tiny, PROMPTS[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with st.steer(tiny, vec, 1e5):
            tiny(tokens)
            tiny(tokens)  # the check runs at the first steered pass only
    (warning,) = _scale_warnings(caught)
    text = str(warning.message)
    assert "blocks.1.hook_resid_pre (layer 1, coeff=100000)" in text and "× its own norm" in text
    assert "Fix: use a smaller coeff" in text
    no_hooks(tiny)


def test_the_papers_coefficients_do_not_warn(any_tiny):
    vec = st.actadd(any_tiny, "I talk about weddings constantly", "I do not talk about weddings constantly", layer=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        st.generate(any_tiny, PROMPTS, vec, [1.0, 20.0, -20.0], max_new_tokens=3, do_sample=False)
        with st.steer(any_tiny, vec, 20.0):
            any_tiny(tokens_of(any_tiny, PROMPTS[0]))
    assert not _scale_warnings(caught)


@pytest.mark.parametrize("backend", ["bridge", "twin"])
def test_one_warning_per_call_across_batches(tiny, backend):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        st.generate(tiny, PROMPTS, vec, 1e5, max_new_tokens=2, batch_size=1, do_sample=False, backend=backend)
    assert len(_scale_warnings(caught)) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seqs = [tokenize_prompt(tiny, p) for p in PROMPTS]
        forward_logprobs(tiny, seqs, vec, [1.0, 1.0, 1e5], batch_size=1, backend=backend)  # the last batch
    assert len(_scale_warnings(caught)) == 1
