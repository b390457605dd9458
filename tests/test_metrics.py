"""steering.metrics on tiny random models, each measure against a value computed by hand.

(Tests that steering *works* on real models — KL grows with the coefficient, wedding words promoted — are in
tests/test_real_analysis.py.)
"""

import math
import re

import pytest
import torch

import steering as st
from conftest import TEXTS, logprobs
from steering.metrics import kl_divergence
from steering.tokens import tokenize_prompt


# ---------------------------------------------------------------------------------- KL
def test_kl_of_two_known_distributions():
    p = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    q = torch.tensor([[0.25, 0.25, 0.5], [0.1, 0.2, 0.7]])
    kl = kl_divergence(p.log(), q.log())
    # row 0: 2 × 0.5 ln(0.5 / 0.25) = ln 2 (the p = 0 term contributes 0, not NaN); row 1: identical
    assert kl.tolist() == pytest.approx([math.log(2), 0.0], abs=1e-7)


def test_off_target_kl_masks_steered_positions_and_matches_by_hand(vec):
    model, v = vec
    table = st.off_target_kl(model, v, TEXTS, coeffs=[0, 3.0, -2.0])
    assert list(table.columns)[:6] == ["layer", "hook", "coeff", "prompt", "kl", "kl_max"]
    assert len(table) == 3 * len(TEXTS)
    for text in TEXTS:
        base, tokens = logprobs(model, text)
        for c in (3.0, -2.0):
            steered, _ = logprobs(model, text, v, c)
            per_pos = kl_divergence(base, steered)
            start = 5  # the 5 steered positions are masked
            assert float(per_pos[:start].max()) > 0  # (they do differ there)
            row = table[(table.prompt == text) & (table.coeff == c)].iloc[0]
            assert row.kl == pytest.approx(float(per_pos[start:].mean()), rel=1e-3, abs=2e-6)  # fast path: sdpa vs the bridge's eager kernels
            assert row.kl_max == pytest.approx(float(per_pos[start:].max()), rel=1e-3, abs=2e-6)  # fast path: sdpa vs the bridge's eager kernels
            assert row.n_positions == tokens.numel() - start
    assert (table[table.coeff == 0]["kl"] == 0.0).all()


def test_off_target_kl_grows_with_the_coefficient_when_small(vec):
    model, v = vec
    means = st.off_target_kl(model, v, TEXTS, coeffs=[0, 0.25, 0.5, 1.0, 2.0]).groupby("coeff")["kl"].mean()
    assert means.is_monotonic_increasing and means[2.0] > means[0.25] > 0


def test_direction_added_everywhere_masks_nothing(vec):
    model, v = vec
    d = v.direction()
    table = st.off_target_kl(model, d, TEXTS[:1], coeffs=[2.0])
    base, tokens = logprobs(model, TEXTS[0])
    steered, _ = logprobs(model, TEXTS[0], d, 2.0)
    assert table.n_positions[0] == tokens.numel()
    assert table.kl[0] == pytest.approx(float(kl_divergence(base, steered).mean()), rel=1e-4)


def test_too_short_prompt_is_refused(vec, no_hooks):
    model, v = vec
    with pytest.raises(st.errors.PromptTooShortError, match="no position is left"):
        st.off_target_kl(model, v, ["hi"], coeffs=[1.0])
    no_hooks(model)


# -------------------------------------------------------------------------- perplexity
def test_perplexity_ratio_by_hand_and_the_prompting_baseline(vec):
    model, v = vec
    table = st.perplexity_ratio(model, v, {"a": TEXTS[:2], "b": TEXTS[2:]}, coeff=[0, 3.0], prompt="love")
    assert set(table.method) == {"actadd", "prompting"} and set(table.group) == {"a", "b"}
    for text in TEXTS:
        base, tokens = logprobs(model, text)
        steered, _ = logprobs(model, text, v, 3.0)
        start = 5
        idx = torch.arange(start, tokens.numel() - 1)
        lu = base[idx, tokens[idx + 1]].mean()
        ls = steered[idx, tokens[idx + 1]].mean()
        row = table[(table.text == text) & (table.coeff == 3.0)].iloc[0]
        assert row.n_tokens == tokens.numel() - start - 1
        assert row.ppl_ratio == pytest.approx(math.exp(float(lu - ls)), rel=1e-4)
        assert table[(table.text == text) & (table.coeff == 0.0)].iloc[0].ppl_ratio == 1.0
        # prompting: BOS + "love" + the text, the same text tokens scored
        prefix = tokenize_prompt(model, "love")[1:]
        joined = torch.cat([tokens[:1], prefix, tokens[1:]])
        with torch.no_grad():
            lp = torch.log_softmax(model(joined.unsqueeze(0))[0].float(), -1)
        shift = prefix.numel()
        lprompt = lp[idx + shift, tokens[idx + 1]].mean()
        prow = table[(table.text == text) & (table.method == "prompting")].iloc[0]
        assert prow.ppl_ratio == pytest.approx(math.exp(float(lu - lprompt)), rel=1e-4)


# ---------------------------------------------------------------------- log-prob shift
def test_logprob_shift_is_the_mean_shift_over_unsteered_positions(vec):
    model, v = vec
    shift = st.logprob_shift(model, v, TEXTS, coeff=3.0, k=4)
    total, count = 0, 0
    for text in TEXTS:
        base, _ = logprobs(model, text)
        steered, _ = logprobs(model, text, v, 3.0)
        total = total + (steered[5:] - base[5:]).sum(0)
        count += base.shape[0] - 5
    mean = total / count
    top = torch.topk(mean, 4)
    assert [tid for tid in shift.table[shift.table.direction == "promoted"].token_id] == top.indices.tolist()
    assert [s for _, s in shift.promoted] == pytest.approx(top.values.tolist(), rel=1e-4)
    assert [s for _, s in shift.suppressed] == pytest.approx(torch.topk(-mean, 4).values.neg().tolist(), rel=1e-4)
    assert set(shift.table.source) == {"logprob_shift"} and set(shift.table.coeff) == {3.0}


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, match", [
    (lambda m, v: st.perplexity_ratio(m, v, []), "texts=\\[\\]"),
    (lambda m, v: st.perplexity_ratio(m, v, ["the cat sat on the mat"], prompt=""), "prompt=''"),
    (lambda m, v: st.off_target_kl(m, v, TEXTS, coeffs=[1.0], op="clamp"), "op='clamp'"),
    (lambda m, v: st.logprob_shift(m, v, TEXTS, k=0), "k=0"),
    (lambda m, v: st.token_shift(m, v, TEXTS, labels=["one"]), "labels has 1 entries"),
])
def test_bad_input_names_the_value_and_the_fix(vec, call, match, no_hooks):
    model, v = vec
    with pytest.raises(st.SteeringError, match=match):
        call(model, v)
    no_hooks(model)


# ---------------------------------------------------------------- issue 17 (category 8): batch sizes and options, before any work
import numpy as np  # noqa: E402

METRICS = {
    "off_target_kl": lambda m, v, **kw: st.off_target_kl(m, v, TEXTS, coeffs=[1.0], **kw),
    "perplexity_ratio": lambda m, v, **kw: st.perplexity_ratio(m, v, TEXTS, coeff=1.0, **kw),
    "logprob_shift": lambda m, v, **kw: st.logprob_shift(m, v, TEXTS, coeff=1.0, **kw),
    "token_shift": lambda m, v, **kw: st.token_shift(m, v, TEXTS, coeff=1.0, **kw),
}
BAD_BATCH_SIZES = [0, -1, 2.0, True, "8", None, torch.tensor(2.5)]


@pytest.mark.parametrize("bad", BAD_BATCH_SIZES, ids=repr)
@pytest.mark.parametrize("metric", list(METRICS))
def test_bad_batch_size_is_refused_before_any_forward(tiny, metric, bad, untyped, no_hooks, monkeypatch):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    module = __import__("steering.metrics", fromlist=["forward_logprobs"])
    monkeypatch.setattr(module, "forward_logprobs", lambda *a, **k: pytest.fail("ran a forward pass first"))
    with pytest.raises(st.errors.InvalidArgumentError, match=rf"batch_size={re.escape(repr(bad))}; allowed: an integer "
                                                             r"≥ 1\. Fix: pass e\.g\. batch_size=8\."):
        METRICS[metric](tiny, vec, batch_size=bad)
    no_hooks(tiny)


@pytest.mark.parametrize("kwargs, match", [
    (dict(progress="no"), r"progress='no' is a str; allowed: True, False or None"),
    (dict(backend="fast"), r"backend='fast'; allowed: 'auto', 'bridge', 'twin'"),
    (dict(positions="everywhere"), r"positions='everywhere'; allowed"),
    (dict(coeffs=[1.0, float("nan")]), r"coeff=nan is not a finite number"),
])
def test_off_target_kl_options_are_checked_first(tiny, kwargs, match, untyped, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with pytest.raises(st.errors.SteeringError, match=match):
        st.off_target_kl(tiny, vec, TEXTS, **({"coeffs": [1.0]} | kwargs))
    no_hooks(tiny)


@pytest.mark.parametrize("metric", ["logprob_shift", "token_shift"])
def test_single_coefficient_metrics_refuse_a_list(tiny, metric, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    call = getattr(st, metric)
    with pytest.raises(st.errors.InvalidCoefficientError, match=r"coeff=\[1\.0, 2\.0\] is not a finite number"):
        call(tiny, vec, TEXTS, coeff=[1.0, 2.0])
    no_hooks(tiny)


def test_numpy_batch_sizes_are_ints(tiny, untyped):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    a = st.off_target_kl(tiny, vec, TEXTS, coeffs=[2.0], batch_size=np.int64(2))
    b = st.off_target_kl(tiny, vec, TEXTS, coeffs=[2.0], batch_size=2)
    assert a.equals(b)


@pytest.mark.parametrize("name, bad", [("labels", True), ("labels", "one"), ("conditions", True), ("conditions", ["a"])])
def test_token_shift_labels_and_conditions_are_lists_of_one_per_text(tiny, name, bad, untyped, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with pytest.raises(st.errors.InvalidArgumentError, match=rf"{name} .* for 3 texts; allowed: a list with one per text"):
        st.token_shift(tiny, vec, TEXTS, **{name: bad})
    no_hooks(tiny)


def test_kl_and_effect_lens_chat_equal_hand_formatted_texts(tiny, monkeypatch, no_hooks):
    from steering.chat import TINY_TEMPLATE

    monkeypatch.setattr(tiny.tokenizer, "chat_template", TINY_TEMPLATE, raising=False)
    vec = st.actadd(tiny, "love", "hate", layer=1, chat=True)
    texts = ["a quiet day", "the sea is"]
    hand = [f"<s>u:{t}|a:" for t in texts]
    assert st.off_target_kl(tiny, vec, texts, [0, 2], chat=True).equals(st.off_target_kl(tiny, vec, hand, [0, 2]))
    chat, by_hand = st.logprob_shift(tiny, vec, texts, 2.0, chat=True), st.logprob_shift(tiny, vec, hand, 2.0)
    assert chat.table.equals(by_hand.table)
    with pytest.raises(st.errors.InvalidArgumentError, match="system= only with chat=True"):
        st.off_target_kl(tiny, vec, texts, [0, 2], system="hi")
    no_hooks(tiny)
