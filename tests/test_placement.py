"""The placement rule (steering.placement) and the three places that use it agree.

Property tests on random settings (prompt lengths, left padding, vector lengths, positions,
coefficients): what the hooks actually add, what the resumed sweep adds, and what the
metrics mask are all what ``placement`` says.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

import steering as st
from steering.apply import attached
from steering.backends import resolve
from steering.errors import InvalidArgumentError
from steering.placement import Rule, Span, addition, apply_rule, make_rule, masked_prefix, past_span, placement
from steering.tokens import fill_id, left_pad
from steering.vectors import SteeringVector

LETTERS = "abcdefghij"
# short prompts are truncated with a SteeringWarning (tested in test_apply.py); here only the values matter
pytestmark = pytest.mark.filterwarnings("ignore::steering.errors.SteeringWarning")
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _vector(model, n_pos, seed=0, layer=1):
    g = torch.Generator().manual_seed(seed)
    tensor = torch.randn(n_pos, model.cfg.d_model, generator=g)
    return SteeringVector(tensor, hook_name=f"blocks.{layer}.hook_resid_pre", model_name=model.cfg.model_name)


def _added(model, vec, coeff, tokens, mask, positions=None):
    """What the bridge's hooks add at the vector's hook point for a (left-padded) batch."""
    seen = []

    def capture(x, hook):
        seen.append(x.detach().clone())

    target = resolve(model, [vec], "bridge")
    point = model.hook_dict[vec.hook_name]
    with torch.no_grad():
        with model.hooks(fwd_hooks=[(vec.hook_name, capture)]):
            target.module(input_ids=tokens, attention_mask=mask)
        with attached(target, vec, coeff, positions=positions):
            handle = point.add_hook(capture, dir="fwd")  # after ours: sees the steered residual
            try:
                target.module(input_ids=tokens, attention_mask=mask)
            finally:
                handle.hook.remove()
                point.fwd_hooks.remove(handle)
    return seen[1] - seen[0]


@FAST
@given(lengths=hs.lists(hs.integers(1, 8), min_size=1, max_size=4), n_pos=hs.integers(1, 6),
       coeff=hs.floats(0.5, 4.0))
def test_hooks_add_exactly_where_placement_says(tiny, lengths, n_pos, coeff):
    vec = _vector(tiny, n_pos)
    seqs = [torch.tensor([1] + [4 + i for i in range(n)]) for n in lengths]  # BOS + n letters
    tokens, mask = left_pad(seqs, fill_id(tiny))
    delta = _added(tiny, vec, coeff, tokens, mask)
    where, index = placement("front", n_pos, Span.from_mask(mask), mask.sum(dim=1))
    expected = addition(coeff * vec.tensor, where, index)
    torch.testing.assert_close(delta, expected, atol=1e-4, rtol=1e-4)
    assert st.active_hooks(tiny) == 0


@FAST
@given(length=hs.integers(2, 9), n_pos=hs.integers(1, 8), direction=hs.booleans())
def test_metrics_mask_what_the_hooks_steer(tiny, length, n_pos, direction):
    vec = _vector(tiny, n_pos)
    if direction:
        vec = vec.direction("sum")
    tokens = torch.tensor([[1] + [4 + i for i in range(length - 1)]])
    delta = _added(tiny, vec, 2.0, tokens, torch.ones_like(tokens))
    steered = delta[0].abs().amax(dim=-1) > 0  # [pos]
    masked = masked_prefix(vec, length)
    if direction:  # steered everywhere: nothing left unsteered to compare, nothing masked
        assert bool(steered.all()) and masked == 0
    else:  # exactly the leading `masked` positions are steered
        assert steered.tolist() == [i < masked for i in range(length)]


@FAST
@given(lengths=hs.lists(hs.integers(1, 7), min_size=2, max_size=4), n_pos=hs.integers(1, 5))
def test_resumed_sweep_equals_full_passes(tiny, lengths, n_pos):
    """The sweep's resumed forward (placement evaluated on the left-padded prompt pass) matches hooked passes."""
    prompts = [LETTERS[:n] for n in lengths]
    pos = "klmnopq"[: n_pos - 1] if n_pos > 1 else ""
    kwargs = dict(layers=[1], coeffs=[0, 3.0], metrics=[st.Metric("logprob", targets=["a", "b"])], progress=False)
    resumed = st.sweep(tiny, pos or "k", "", prompts, reuse=True, **kwargs)
    full = st.sweep(tiny, pos or "k", "", prompts, reuse=False, **kwargs)
    torch.testing.assert_close(torch.tensor(resumed["value"].values), torch.tensor(full["value"].values),
                               atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("positions, expect", [
    ("front", [[0, 1, 1, 0, 0]]),
    ("all", [[0, 1, 1, 1, 1]]),
    ("prompt", [[0, 1, 1, 1, 0]]),
    ("generated", [[0, 0, 0, 0, 1]]),
])
def test_placement_rules_on_a_padded_row(positions, expect):
    span = Span.from_mask(torch.tensor([[0, 1, 1, 1, 1]]))
    mask, index = placement(positions, 2 if positions == "front" else None, span, torch.tensor([3]))
    assert mask.int().tolist() == expect
    assert index.tolist() == [[-1, 0, 1, 2, 3]]


def test_decode_steps_past_the_span_are_skipped():
    step = Span(2, 1, 6, torch.tensor([0, 2]), None)  # one new token at absolute position 6
    assert past_span("front", 4, step, None)  # the padded row is at index 4 >= 4
    assert not past_span("front", 5, step, None)
    assert past_span("prompt", None, step, torch.tensor([3, 4]))
    assert not past_span("all", None, step, None)


def test_apply_rule_per_row_coefficients():
    resid = torch.zeros(2, 1, 2)
    mask, index = placement("all", None, Span.whole(2, 1))
    out = apply_rule(resid, Rule("all"), torch.tensor([1.0, 2.0]), mask, index, torch.tensor([0.0, 3.0]))
    assert out[:, 0].tolist() == [[0.0, 0.0], [3.0, 6.0]]


def test_make_rule_defaults_and_refusals(tiny):
    vec = _vector(tiny, 3)
    assert make_rule(vec).positions == "front"
    assert make_rule(vec.direction()).positions == "all"
    with pytest.raises(InvalidArgumentError, match=r"positions='all' adds one direction everywhere"):
        make_rule(vec, "all")
    with pytest.raises(InvalidArgumentError, match=r"op='clamp' needs value="):
        make_rule(vec.direction(), op="clamp")


def test_masked_prefix_rule(tiny):
    v = st.actadd(tiny, "love", "hate", layer=1)  # BOS + 4 positions
    assert masked_prefix(v, 12) == 5
    assert masked_prefix(v, 3) == 3
    assert masked_prefix(v.direction(), 12) == 0
    assert masked_prefix(v.direction(), 12, op="ablate") == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(coeff=1e308), r"coeff=1e\+308 adds a vector of norm .* allowed: additions up to 1e\+15"),
    (dict(coeff=1e16), r"coeff=1e\+16 adds a vector of norm"),
    (dict(coeff=1e20, op="ablate", direction=True), r"coeff=1e\+20 scales the removed projection"),
    (dict(op="clamp", value=1e308, direction=True), r"value=1e\+308 sets a projection of size 1e\+308"),
])
def test_additions_that_can_only_overflow_are_refused(tiny, kwargs, match, no_hooks):
    """Huge but finite settings used to return '' for every prompt (greedy) or a raw RuntimeError (sampled)."""
    vec = _vector(tiny, 3)
    vec = vec.direction() if kwargs.pop("direction", False) else vec
    coeff = kwargs.pop("coeff", 1.0)
    for call in (lambda: st.generate(tiny, "hello", vec, coeff, max_new_tokens=3, **kwargs),
                 lambda: st.generate(tiny, "hello", vec, coeff, max_new_tokens=3, do_sample=False, **kwargs)):
        with pytest.raises(st.errors.InvalidCoefficientError, match=match):
            call()
    no_hooks(tiny)


def test_a_huge_vector_is_refused_like_a_huge_coefficient(tiny):
    vec = _vector(tiny, 3) * 1e30
    with pytest.raises(st.errors.InvalidCoefficientError, match=r"coeff=1 adds a vector of norm"):
        st.generate(tiny, "hello", vec, 1.0, max_new_tokens=2)


# ---------------------------------------------------------------- issue 17 (category 4): additions that dwarf the residual
import warnings  # noqa: E402

from steering.placement import MAX_SCALE_RATIO, ScaleCheck, scale_message, scale_ratio  # noqa: E402


def _drowned(caught):
    return [w for w in caught if issubclass(w.category, st.SteeringWarning) and "drowned" in str(w.message)]


def test_scale_ratio_is_the_largest_addition_over_residual_at_steered_cells():
    resid = torch.tensor([[[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]])
    steered = resid + torch.tensor([[[0.0, 5.0], [100.0, 0.0], [0.0, 1.0]]])
    assert scale_ratio(resid, steered, torch.tensor([[True, False, True]])) == 1.0  # the 100× cell is not steered
    assert scale_ratio(resid, steered, torch.tensor([[True, True, True]])) == 100.0
    assert scale_ratio(resid, steered, torch.zeros(1, 3, dtype=torch.bool)) == 0.0


def test_scale_check_warns_once_above_the_documented_ratio():
    check = ScaleCheck()
    resid, mask = torch.ones(1, 2, 4), torch.ones(1, 2, dtype=torch.bool)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check("blocks.0.hook_resid_pre", resid, resid * (1 + MAX_SCALE_RATIO * 0.99), mask, 5.0)  # just below
        assert not _drowned(caught) and not check.warned
        for _ in range(3):
            check("blocks.0.hook_resid_pre", resid, resid * (2 + MAX_SCALE_RATIO), mask, 5.0)
    (warning,) = _drowned(caught)
    assert "blocks.0.hook_resid_pre (layer 0, coeff=5)" in str(warning.message)
    assert str(warning.message) == scale_message("blocks.0.hook_resid_pre", 1 + MAX_SCALE_RATIO, 5.0)


@pytest.mark.parametrize("op, kwargs", [("add", dict(coeff=1e5)), ("clamp", dict(value=1e7))])
def test_oversized_steering_warns_on_every_operator_and_backend(tiny, op, kwargs, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    vec = vec.direction() if op != "add" else vec
    for backend in ("bridge", "twin"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            st.generate(tiny, "hello there", vec, op=op, max_new_tokens=2, do_sample=False, backend=backend, **kwargs)
        assert len(_drowned(caught)) == 1, backend
    no_hooks(tiny)


@pytest.mark.slow
def test_the_papers_settings_stay_under_the_warning_on_a_real_model(smollm):
    for pos, neg in (("Love", "Hate"), ("Anger", "Calm")):
        for layer in (0, 3, 6, 15):
            vec = st.actadd(smollm, pos, neg, layer=layer)
            ratio = float(st.norm_profile(smollm, vec, "I hate you because", coeff=20.0)["ratio"].max())
            assert ratio < MAX_SCALE_RATIO / 3, (pos, neg, layer, ratio)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with st.steer(smollm, vec, 20.0):
                    smollm(smollm.to_tokens("I hate you because"))
            assert not _drowned(caught)


@pytest.mark.parametrize("kwargs", [dict(positions=torch.tensor([1, 2])), dict(op=torch.tensor([1, 2])),
                                    dict(short_prompt=["error"]), dict(positions=0)], ids=repr)
def test_option_values_that_are_not_strings_are_refused_by_name(tiny, kwargs, untyped, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    name = next(iter(kwargs))
    with pytest.raises(InvalidArgumentError, match=rf"{name}=.*allowed: '"):
        with st.steer(tiny, vec, 1.0, **kwargs):
            pass
    with pytest.raises(InvalidArgumentError, match=rf"{name}=.*allowed: '"):
        st.generate(tiny, "hello", vec, 1.0, max_new_tokens=2, **kwargs)
    no_hooks(tiny)


# ------------------------------------------------------------------ "response": from the assistant turn on
def test_response_rule_on_a_padded_row():
    span = Span.from_mask(torch.tensor([[0, 1, 1, 1, 1]]))
    mask, _ = placement("response", None, span, torch.tensor([3]), torch.tensor([1]))
    assert mask.int().tolist() == [[0, 0, 1, 1, 1]]  # index >= 1: the header's tokens and the generated one
    without, _ = placement("response", None, span, torch.tensor([3]))  # no start known: what is generated
    assert without.int().tolist() == [[0, 0, 0, 0, 1]]
    step = Span(1, 1, 5, torch.tensor([1]), None)  # a decode step
    assert not past_span("response", None, step, torch.tensor([3]))


@FAST
@given(lengths=hs.lists(hs.integers(1, 8), min_size=1, max_size=4), data=hs.data())
def test_response_hooks_add_exactly_from_each_rows_start(tiny, lengths, data):
    starts = torch.tensor([data.draw(hs.integers(0, n)) for n in lengths])
    vec = _vector(tiny, 1).direction("sum")
    seqs = [torch.tensor([1] + [4 + i for i in range(n - 1)]) for n in lengths]
    tokens, mask = left_pad(seqs, fill_id(tiny))
    seen = []
    target = resolve(tiny, [vec], "bridge")
    point = tiny.hook_dict[vec.hook_name]
    with torch.no_grad():
        for steer in (False, True):
            handle = None
            with attached(target, vec, 2.0 if steer else 0.0, positions="response", response_starts=starts,
                          prompt_lengths=mask.sum(dim=1)):
                handle = point.add_hook(lambda x, hook: seen.append(x.detach().clone()), dir="fwd")
                try:
                    target.module(input_ids=tokens, attention_mask=mask)
                finally:
                    handle.hook.remove()
                    point.fwd_hooks.remove(handle)
    steered = (seen[1] - seen[0]).abs().amax(dim=-1) > 0  # [batch, seq]
    pads = tokens.shape[1] - torch.tensor([len(s) for s in seqs])
    expected = [[pads[b] + starts[b] <= s for s in range(tokens.shape[1])] for b in range(len(seqs))]
    assert steered.tolist() == [[bool(x) for x in row] for row in expected]
