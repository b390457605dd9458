"""Analysis measures on tiny random models, each against a value computed by hand.

(Tests that steering *works* — readable lenses, wedding words promoted — use the real models:
tests/test_real_analysis.py.)
"""

import math
import warnings

import pandas as pd
import pytest
import torch

import steering as st
from steering.tokens import tokenize_prompt
from steering.engine import forward_logprobs
from steering.metrics import kl_divergence
from steering.placement import masked_prefix as steered_positions
from steering.texts import topic_fraction

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
    return any_tiny, st.actadd(any_tiny, "love", "hate", layer=1)  # 5 positions (BOS + 4)


# ------------------------------------------------------------------------------------ KL
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


def test_steered_positions_rule(vec):
    _, v = vec
    assert steered_positions(v, 12) == 5
    assert steered_positions(v, 3) == 3
    assert steered_positions(v.direction(), 12) == 0
    assert steered_positions(v.direction(), 12, op="ablate") == 0


def test_last_only_forward_equals_the_full_forward(vec):
    model, v = vec
    seqs = [tokenize_prompt(model, t) for t in TEXTS]  # different lengths: left vs right padding
    coeffs = [0.0, 4.0, -3.0]
    full = forward_logprobs(model, seqs, v, coeffs, batch_size=3)
    last = forward_logprobs(model, seqs, v, coeffs, batch_size=3, readout="last")
    for f, l in zip(full, last):
        torch.testing.assert_close(l[0], f[-1], atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------ perplexity
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


# ------------------------------------------------------------------------------------ lenses
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


def test_logit_lens_scores_are_the_unembedded_normed_vector(vec):
    model, v = vec
    lens = st.logit_lens(model, v, k=5, position=["sum", 2, "mean"])
    assert lens.readouts == [(1, "sum"), (1, "pos 2 'o'"), (1, "mean")]
    with torch.no_grad():
        for label, x in (("sum", v.tensor.sum(0)), ("pos 2 'o'", v.tensor[2]), ("mean", v.tensor.mean(0))):
            logits = model.unembed(model.ln_final(x.view(1, 1, -1)))[0, 0]
            got = lens.select(readout=label)
            assert [t for _, t in zip(range(5), got.table[got.table.direction == "promoted"].token_id)] == \
                torch.topk(logits, 5).indices.tolist()
            assert got.promoted[0][1] == pytest.approx(float(logits.max()), rel=1e-4)
    with pytest.raises(st.errors.InvalidArgumentError, match="position=9"):
        st.logit_lens(model, v, position=9)
    with pytest.raises(st.errors.InvalidArgumentError, match="k=0"):
        st.logit_lens(model, v, k=0)


def test_lens_profile_ranks(vec):
    model, v = vec
    vecs = st.actadd_layers(model, "love", "hate", layers="all")
    lens = st.logit_lens(model, vecs[0], k=1)
    top_token = lens.promoted[0][0]
    top_id = int(lens.table.token_id.iloc[0])
    table = st.lens_profile(model, vecs, targets=[top_id, "h"])
    first = table[(table.layer == 0) & (table.target_id == top_id)].iloc[0]
    assert first["rank"] == 1 and first.target == top_token
    assert table["rank"].between(1, model.cfg.d_vocab).all() and len(table) == 4


# ------------------------------------------------------------------------------------ sweeps
def test_sweep_values_match_single_runs(vec):
    model, _ = vec
    prompts = ["I think that it", "we will go to the"]
    table = st.sweep(model, "love", "hate", prompts, layers=[0, 1], coeffs=[2.0, -3.0],
                     metrics=[st.Metric("logprob", targets=["l", "o"]), st.Metric("logit_diff", targets=["l"], against=["h"]),
                              st.Metric("kl", prompts=TEXTS[:2])])
    assert len(table) == 2 * 3 * (2 + 2 + 2)  # layers × coeffs (0 added) × (prompts per metric)
    ids = [model.tokenizer.encode(t, add_special_tokens=False)[0] for t in ("l", "o", "h")]
    for layer in (0, 1):
        v = st.actadd(model, "love", "hate", layer=layer)
        for c in (0.0, 2.0, -3.0):
            for p in prompts:
                lp, _ = logprobs(model, p, v, c) if c else logprobs(model, p)
                row = table[(table.layer == layer) & (table.coeff == c) & (table.prompt == p)].set_index("metric")["value"]
                assert row["logprob"] == pytest.approx(float(torch.logsumexp(lp[-1, ids[:2]], 0)), abs=1e-4)
                assert row["logit_diff"] == pytest.approx(float(lp[-1, ids[0]] - lp[-1, ids[2]]), abs=1e-4)
    kl = table[(table.metric == "kl") & (table.layer == 1) & (table.coeff == 2.0)]
    ref = st.off_target_kl(model, st.actadd(model, "love", "hate", layer=1), TEXTS[:2], coeffs=[2.0])
    assert kl.value.tolist() == pytest.approx(ref.kl.tolist(), rel=1e-4)


def test_sweep_sampled_metrics_and_topic_words(any_tiny):
    table = st.sweep(any_tiny, "love", "hate", ["I think", "we go"], layers=[1], coeffs=[5.0],
                     metrics=["topic", "sentiment"], topic_words=["a", "e"], n=3, max_new_tokens=4)
    assert set(table.metric) == {"topic", "sentiment"}
    topic = table[table.metric == "topic"].value
    assert topic.isin([0, 1 / 3, 2 / 3, 1]).all()  # fractions of 3 completions
    assert table[table.metric == "sentiment"].value.between(-1, 1).all()


def test_topic_fraction_matches_whole_words():
    assert topic_fraction(["The wedding was lovely", "They wed in May", "wedged in", "BRIDE!"],
                          st.texts.WEDDING_WORDS) == 0.75


def test_metric_validation():
    with pytest.raises(st.errors.InvalidArgumentError, match="needs targets"):
        st.Metric("logprob")
    with pytest.raises(st.errors.InvalidArgumentError, match="metric kind 'bleu'"):
        st.Metric("bleu")


# ------------------------------------------------------------------------------------ norms
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


# ------------------------------------------------------------------------------------ report
# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("call, match", [
    (lambda m, v: st.perplexity_ratio(m, v, []), "texts=\\[\\]"),
    (lambda m, v: st.perplexity_ratio(m, v, ["the cat sat on the mat"], prompt=""), "prompt=''"),
    (lambda m, v: st.off_target_kl(m, v, TEXTS, coeffs=[1.0], op="clamp"), "op='clamp'"),
    (lambda m, v: st.logprob_shift(m, v, TEXTS, k=0), "k=0"),
    (lambda m, v: st.token_shift(m, v, TEXTS, labels=["one"]), "labels has 1 entries"),
    (lambda m, v: st.lens_profile(m, [v], targets=" wedding"), "wrap a single target"),
    (lambda m, v: st.lens_profile(m, [v], targets=["l"], position=["sum", 1]), "takes one readout"),
    (lambda m, v: st.norm_diagnostics(m, v, TEXTS, threshold=0), "threshold=0"),
    (lambda m, v: st.sweep(m, "love", "hate", ["I think"], metrics=["bleu"]), "metric kind 'bleu'"),
    (lambda m, v: st.sweep(m, "love", "hate", [], metrics=["kl"]), "prompts=\\[\\]"),
    (lambda m, v: st.sweep(m, "love", "hate", ["I think"], layers=[7], metrics=["kl"]), "layer=7 is out of range"),
    (lambda m, v: st.effect_sizes(pd.DataFrame({"layer": [0]})), "missing"),
])
def test_bad_input_names_the_value_and_the_fix(vec, call, match, no_hooks):
    model, v = vec
    with pytest.raises(st.SteeringError, match=match):
        call(model, v)
    no_hooks(model)
