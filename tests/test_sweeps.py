"""steering.sweeps on tiny random models: sweep values equal single steered runs; Metric and sweep refuse bad input."""

import pytest
import torch

import steering as st
from conftest import TEXTS, logprobs


# ------------------------------------------------------------------------------ sweeps
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


def test_metric_validation():
    with pytest.raises(st.errors.InvalidArgumentError, match="needs targets"):
        st.Metric("logprob")
    with pytest.raises(st.errors.InvalidArgumentError, match="metric kind 'bleu'"):
        st.Metric("bleu")


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, match", [
    (lambda m, v: st.sweep(m, "love", "hate", ["I think"], metrics=["bleu"]), "metric kind 'bleu'"),
    (lambda m, v: st.sweep(m, "love", "hate", [], metrics=["kl"]), "prompts=\\[\\]"),
    (lambda m, v: st.sweep(m, "love", "hate", ["I think"], layers=[7], metrics=["kl"]), "layer=7 is out of range"),
])
def test_bad_input_names_the_value_and_the_fix(vec, call, match, no_hooks):
    model, v = vec
    with pytest.raises(st.SteeringError, match=match):
        call(model, v)
    no_hooks(model)
