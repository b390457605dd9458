"""steering.sampling: NucleusSampler keeps and draws exactly what HF's temperature / top-k / top-p warpers do.

(FrequencyPenalty is tested through st.generate in tests/test_generation.py.)
"""

import pytest
import torch


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, 0.3), (0.7, None, 0.9), (1.3, 40, 0.5),
                                                     (1.0, 5, None), (2.0, None, 0.999)])
def test_sampler_keeps_exactly_what_hf_warpers_keep(temperature, top_k, top_p):
    """NucleusSampler (partial top-k nucleus) keeps the same tokens as HF's temperature/top-k/top-p warpers.

    Rows mix peaked and flat distributions; with ``probe=8`` the flat rows need the full-sort fallback.
    """
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from steering.sampling import NucleusSampler

    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 1000, generator=gen) * torch.tensor([8.0, 4.0, 1.0, 0.3, 0.05, 2.0]).unsqueeze(1)
    hf = LogitsProcessorList([TemperatureLogitsWarper(temperature)] if temperature != 1.0 else [])
    if top_k:
        hf.append(TopKLogitsWarper(top_k))
    if top_p is not None:
        hf.append(TopPLogitsWarper(top_p))
    ids = torch.zeros(6, 1, dtype=torch.long)
    want = hf(ids, scores.clone())
    for probe in (8, 512):
        got = NucleusSampler(temperature, top_k, top_p, probe=probe).filter(scores.clone())
        assert torch.equal(torch.isinf(got), torch.isinf(want)), probe
        kept = ~torch.isinf(want)
        torch.testing.assert_close(got[kept], want[kept])
    if top_p is not None and top_p < 1:
        assert int((~torch.isinf(want)).sum(-1).max()) > 8  # the fallback was exercised


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, 0.3), (0.7, None, 0.9), (1.3, 40, 0.5),
                                                     (1.0, 5, None)])
@pytest.mark.parametrize("probe", [8, 512])
def test_sampler_draws_from_the_distribution_hf_samples_from(temperature, top_k, top_p, probe):
    """NucleusSampler's own draw: only kept tokens, with the frequencies of HF's softmax over its warped scores.

    20,000 draws per row; each token's frequency must lie within 5 standard errors (plus 1e-3) of its
    probability. With ``probe=8`` the flat rows draw through the full-sort fallback.
    """
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from steering.sampling import NucleusSampler

    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 300, generator=gen) * torch.tensor([6.0, 2.0, 0.5, 0.05]).unsqueeze(1)
    hf = LogitsProcessorList([TemperatureLogitsWarper(temperature)] if temperature != 1.0 else [])
    if top_k:
        hf.append(TopKLogitsWarper(top_k))
    if top_p is not None:
        hf.append(TopPLogitsWarper(top_p))
    want = hf(torch.zeros(4, 1, dtype=torch.long), scores.clone()).softmax(dim=-1)
    n = 20_000
    sampler = NucleusSampler(temperature, top_k, top_p, probe=probe)
    torch.manual_seed(0)
    drawn = sampler.draw(scores.repeat_interleave(n, dim=0)).view(4, n)
    freq = torch.zeros(4, 300).scatter_add_(1, drawn, torch.ones(4, n)) / n
    assert bool((freq[want == 0] == 0).all())  # nothing outside the nucleus / top-k
    tolerance = 5 * (want * (1 - want) / n).sqrt() + 1e-3
    assert bool(((freq - want).abs() <= tolerance).all()), (freq - want).abs().max()
    # as a logits processor: the drawn token is the only one left, so greedy decoding picks it
    torch.manual_seed(3)
    out = sampler(torch.zeros(4, 1, dtype=torch.long), scores.clone())
    torch.manual_seed(3)
    assert torch.equal(out.argmax(dim=-1), sampler.draw(scores.clone()))
    assert torch.equal(torch.isinf(out).sum(dim=-1), torch.full((4,), 299))


def test_non_finite_logits_stop_generation_with_a_clear_error(tiny, no_hooks):
    """NaN activations used to come back as empty completions (issue 17, category 4)."""
    import steering as st
    from steering.errors import NonFiniteError
    from steering.sampling import check_finite_logits

    check_finite_logits(torch.tensor([[0.0, float("-inf")]]), "x")  # -inf for some tokens is fine
    for bad in ([[float("nan"), 0.0]], [[float("inf"), 0.0]], [[float("-inf"), float("-inf")]]):
        with pytest.raises(NonFiniteError, match=r"logits are NaN/Inf x; allowed:.*Fix: lower the coefficient"):
            check_finite_logits(torch.tensor(bad), "x")

    def poison(resid, hook):
        return resid * float("nan")

    point = "blocks.1.hook_resid_post"
    with tiny.hooks(fwd_hooks=[(point, poison)]):
        for kw in (dict(do_sample=False), dict(seed=0)):
            with pytest.raises(NonFiniteError, match=r"without steering"):
                st.generate(tiny, ["hello", "abc"], None, max_new_tokens=3, backend="bridge", **kw)
        with pytest.raises(NonFiniteError):
            st.off_target_kl(tiny, st.actadd(tiny, "a", "b", layer=0), ["a quiet day"], coeffs=[1.0], backend="bridge")
    no_hooks(tiny)


# ---------------------------------------------------------------- issue 17 (category 8): the processors check their settings
from steering.errors import InvalidArgumentError  # noqa: E402
from steering.sampling import MAX_FREQ_PENALTY, FrequencyPenalty, NucleusSampler  # noqa: E402


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=0.0), r"temperature=0\.0; allowed: a finite number > 0"),
    (dict(temperature=True), r"temperature=True is a bool"),
    (dict(temperature=float("nan")), r"temperature=nan"),
    (dict(top_k=-5), r"top_k=-5; allowed: an int in 1\.\."),
    (dict(top_k="5"), r"top_k='5' is a str"),
    (dict(top_k=2.7), r"top_k=2\.7 is a float"),
    (dict(top_p=True), r"top_p=True is a bool; allowed: a number in \(0, 1\], or None"),
    (dict(top_p=0.0), r"top_p=0\.0; allowed: a number in \(0, 1\]"),
    (dict(probe=0), r"probe=0; allowed: an integer ≥ 1"),
], ids=lambda v: repr(v))
def test_nucleus_sampler_refuses_bad_settings(kwargs, match, untyped):
    settings = dict(temperature=1.0, top_k=None, top_p=0.3) | kwargs
    with pytest.raises(InvalidArgumentError, match=match):
        NucleusSampler(**settings)


@pytest.mark.parametrize("penalty", [1e308, -1e308, MAX_FREQ_PENALTY + 1, float("inf"), float("nan"), True, "1"],
                         ids=repr)
def test_frequency_penalty_is_finite_and_at_most_the_documented_bound(penalty, untyped):
    with pytest.raises(InvalidArgumentError, match=r"freq_penalty=.*allowed: a finite number in -100\.\.100"):
        FrequencyPenalty(penalty, 3)
    scores = torch.zeros(1, 4)
    out = FrequencyPenalty(MAX_FREQ_PENALTY, 1)(torch.tensor([[0, 2, 2]]), scores)
    assert out.tolist() == [[0.0, 0.0, -200.0, 0.0]] and torch.isfinite(out).all()
