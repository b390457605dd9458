"""steering.norms on tiny random models: norm_diagnostics and relative_norm against medians computed by hand."""

import pytest
import torch

import steering as st
from conftest import TEXTS
from steering.norms import relative_norm
from steering.tokens import tokenize_prompt

HOOK = "blocks.1.hook_resid_pre"


# -------------------------------------------------------------------- norm diagnostics
def test_norm_diagnostics_by_hand_and_the_warning(vec):
    model, v = vec
    table = st.norm_diagnostics(model, v, TEXTS, warn=False)
    _, cache = model.run_with_cache(tokenize_prompt(model, TEXTS[0]).unsqueeze(0), names_filter=[v.hook_name])
    assert len(table) == 5
    assert table.vector_norm.tolist() == pytest.approx(v.norm().tolist(), rel=1e-5)
    assert table.share.sum() == pytest.approx(1.0)
    norms = []
    for text in TEXTS:
        _, c = model.run_with_cache(tokenize_prompt(model, text).unsqueeze(0), names_filter=[v.hook_name])
        norms.append(torch.linalg.vector_norm(c[v.hook_name][0], dim=-1))
    at2 = torch.stack([n[2] for n in norms]).median()
    assert table.resid_norm[2] == pytest.approx(float(at2), rel=1e-5)
    typical = torch.cat([n[1:] for n in norms]).median()
    assert table.typical_resid_norm[0] == pytest.approx(float(typical), rel=1e-5)
    big = v * (10 * float(typical) / float(v.norm().max()))
    with pytest.warns(st.SteeringWarning, match="exceed 2× the typical residual norm"):
        flagged = st.norm_diagnostics(model, big, TEXTS)
    assert flagged.flagged.any() and not table.flagged.any()


# ----------------------------------------------------------------------- relative norm
def test_relative_norm_matches_a_by_hand_median(tiny):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    prompts = ["neutral words here", "abc"]
    _, cache = tiny.run_with_cache(tiny.to_tokens(prompts[0]), names_filter=[HOOK])
    first = cache[HOOK][0, 1:].norm(dim=-1)
    _, cache = tiny.run_with_cache(tiny.to_tokens(prompts[1]), names_filter=[HOOK])
    second = cache[HOOK][0, 1:].norm(dim=-1)
    typical = torch.cat([first, second]).median()
    assert relative_norm(tiny, vec, prompts) == pytest.approx(float(vec.norm().max() / typical), rel=1e-4)
    assert relative_norm(tiny, 3 * vec, prompts) == pytest.approx(3 * relative_norm(tiny, vec, prompts), rel=1e-5)
    with pytest.raises(st.errors.InvalidArgumentError, match="non-empty list of non-empty strings"):
        relative_norm(tiny, vec, [])


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, match", [
    (lambda m, v: st.norm_diagnostics(m, v, TEXTS, threshold=0), "threshold=0"),
])
def test_bad_input_names_the_value_and_the_fix(vec, call, match, no_hooks):
    model, v = vec
    with pytest.raises(st.SteeringError, match=match):
        call(model, v)
    no_hooks(model)


# ---------------------------------------------------------------- issue 17 (category 8): the same refusals as the rest of the API
def test_norm_profile_refuses_an_empty_prompt_like_everything_else(tiny, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with pytest.raises(st.errors.EmptyPromptError, match=r"prompt\[0\] is the empty string"):
        st.norm_profile(tiny, vec, "")
    with pytest.raises(st.errors.EmptyPromptError):
        st.generate(tiny, "", vec, 1.0)  # the rule it follows
    no_hooks(tiny)


@pytest.mark.parametrize("call, error, match", [
    (lambda m, v: st.norm_profile(m, v, ["a", "b"]), st.errors.InvalidArgumentError,
     r"prompt=\['a', 'b'\] is a list; allowed: one prompt string"),
    (lambda m, v: st.norm_profile(m, v, 3), st.errors.InvalidArgumentError, r"prompt=3 is an int"),
    (lambda m, v: st.norm_profile(m, [v, v], "hello"), st.errors.InvalidArgumentError, r"vector is a list of 2 vectors"),
    (lambda m, v: st.norm_profile(m, "v", "hello"), st.errors.InvalidArgumentError, r"vector='v' is not a SteeringVector"),
    (lambda m, v: st.norm_profile(m, v, "hello", coeff=True), st.errors.InvalidCoefficientError, r"coeff=True"),
    (lambda m, v: st.norm_diagnostics(m, v, threshold=True), st.errors.InvalidArgumentError, r"threshold=True is a bool"),
    (lambda m, v: st.norm_diagnostics(m, v, threshold=0), st.errors.InvalidArgumentError,
     r"threshold=0; allowed: a finite number > 0"),
    (lambda m, v: st.norm_diagnostics(m, v, warn="no"), st.errors.InvalidArgumentError, r"warn='no' is a str"),
    (lambda m, v: relative_norm(m, 3), st.errors.InvalidArgumentError, r"vector=3 is not a SteeringVector"),
])
def test_bad_arguments_name_the_value(tiny, call, error, match, untyped, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with pytest.raises(error, match=match):
        call(tiny, vec)
    no_hooks(tiny)
