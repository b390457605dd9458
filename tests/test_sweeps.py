"""steering.sweeps on tiny random models: sweep values equal single steered runs; Metric and sweep refuse bad input."""

import numpy as np
import pandas as pd
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


# ---------------------------------------------------------------- issue 17 (category 8): options checked before any work
BAD_SWEEP_OPTIONS = [
    ("batch_size", 0), ("batch_size", -4), ("batch_size", 2.0), ("batch_size", True), ("batch_size", torch.tensor(1.5)),
    ("n", 0), ("n", True), ("max_new_tokens", 0), ("max_new_tokens", 3.0), ("seed", 2**70), ("seed", 0.5),
    ("reuse", "no"), ("progress", 1), ("backend", "fast"), ("nulls", -1), ("nulls", 2.0), ("nulls", True),
]


@pytest.mark.parametrize("name, bad", BAD_SWEEP_OPTIONS, ids=[f"{n}={b!r}" for n, b in BAD_SWEEP_OPTIONS])
def test_bad_sweep_options_are_refused_before_any_work(tiny, name, bad, untyped, no_hooks, monkeypatch):
    module = __import__("steering.sweeps", fromlist=["actadd_layers"])
    monkeypatch.setattr(module, "actadd_layers", lambda *a, **k: pytest.fail("extracted vectors before the check"))
    with pytest.raises(st.errors.InvalidArgumentError) as info:
        st.sweep(tiny, "love", "hate", ["I think that"], layers=[1], coeffs=[0, 2], metrics=["kl"],
                 kl_prompts=["a quiet day in town"], **{name: bad})
    text = str(info.value)
    assert text.startswith(f"{name}={bad!r}"[:30]) and "allowed:" in text, text
    no_hooks(tiny)


@pytest.mark.parametrize("name, bad", [("targets", True), ("targets", " love"), ("targets", torch.tensor([1, 2])),
                                       ("topic_words", 3)])
def test_target_and_word_lists_must_be_lists(tiny, name, bad, untyped, no_hooks):
    with pytest.raises(st.errors.InvalidArgumentError, match=rf"{name}=.*allowed: a list of token strings.*Fix: wrap"):
        st.sweep(tiny, "love", "hate", ["I think that"], layers=[1], coeffs=[0, 2], **{name: bad})
    no_hooks(tiny)


# --------------------------------------------------------------------------- issue 18: null models
def _target_of(model, vec, position=1):
    """The token the vector's row at ``position`` pushes most directly (a strong, real effect on 1-token prompts)."""
    return model.tokenizer.decode([int((vec.tensor[position] @ model.W_U).argmax())])


def test_nulls_add_rows_and_leave_the_real_rows_unchanged(any_tiny):
    kwargs = dict(layers=[0, 1], coeffs=[0, 4, -2], metrics=[st.Metric("logprob", targets=["l"]), "kl"],
                  kl_prompts=TEXTS[:2])
    plain = st.sweep(any_tiny, "love", "hate", ["I think that", "we go"], **kwargs)
    with_nulls = st.sweep(any_tiny, "love", "hate", ["I think that", "we go"], nulls=3, **kwargs)
    assert list(plain.columns) == ["layer", "hook", "coeff", "prompt", "metric", "value"]
    assert list(with_nulls.columns) == list(plain.columns) + ["null_kind", "null_index"]
    real = with_nulls[with_nulls.null_kind == "real"].drop(columns=["null_kind", "null_index"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(real, plain)
    controls = with_nulls[with_nulls.null_kind != "real"]
    assert (controls.coeff != 0).all()
    per_cell = controls.groupby(["layer", "coeff", "metric", "prompt"]).null_kind.value_counts().unstack()
    assert (per_cell["random"] == 3).all() and (per_cell["shuffled"] == 1).all()
    # the shuffled (label-swapped) control at +c is the real vector at −c
    swapped = controls[(controls.null_kind == "shuffled") & (controls.coeff == 4) & (controls.metric == "logprob")]
    v = st.actadd(any_tiny, "love", "hate", layer=1)
    lp, _ = logprobs(any_tiny, "we go", v, -4.0)
    value = swapped[(swapped.layer == 1) & (swapped.prompt == "we go")].value.item()
    ids = [any_tiny.tokenizer.encode("l", add_special_tokens=False)[0]]
    assert value == pytest.approx(float(lp[-1, ids[0]]), abs=1e-4)


def test_a_strong_real_effect_is_significant_and_a_zero_vector_is_not(any_tiny):
    n_null = 39
    prompts = ["a", "c", "e", "g"]  # one token after BOS: the vector's row 1 sits at the readout
    target = _target_of(any_tiny, st.actadd(any_tiny, "love", "hate", layer=1))
    metric = [st.Metric("logprob", targets=[target])]
    real = st.effect_sizes(st.sweep(any_tiny, "love", "hate", prompts, layers=[1], coeffs=[0, 8], metrics=metric,
                                    nulls=n_null), n_boot=50)
    zero = st.effect_sizes(st.sweep(any_tiny, "love", "love", prompts, layers=[0, 1], coeffs=[0, 8], metrics=metric,
                                    nulls=n_null), n_boot=50)
    for effects in (real, zero):
        steered = effects[effects.coeff != 0]
        assert steered.p_value.between(1 / (n_null + 1), 1).all()
        assert (steered.q_value >= steered.p_value).all() and (steered.n_null == n_null).all()
        assert effects[effects.coeff == 0].p_value.isna().all() and not effects[effects.coeff == 0].significant.any()
    row = real[real.coeff == 8].iloc[0]
    assert row.p_value == pytest.approx(1 / (n_null + 1)) and bool(row.significant)
    assert (zero[zero.coeff != 0].p_value == 1).all() and not zero.significant.any()
    shuffled = st.effect_sizes(st.sweep(any_tiny, "love", "hate", prompts, layers=[1], coeffs=[0, 8], metrics=metric,
                                        nulls=2), n_boot=50, null="shuffled")
    assert set(shuffled[shuffled.coeff != 0].p_value) <= {0.5, 1.0}  # one member (−v): (1 + 0 or 1) / 2


def test_null_vectors_are_seeded_per_layer(tiny):
    args = ("love", "hate", ["I think that", "we go"])
    kwargs = dict(layers=[0, 1], coeffs=[0, 4], metrics=["kl"], kl_prompts=TEXTS[:1], nulls=2)
    a, b = st.sweep(tiny, *args, seed=1, **kwargs), st.sweep(tiny, *args, seed=1, **kwargs)
    c = st.sweep(tiny, *args, seed=2, **kwargs)
    pd.testing.assert_frame_equal(a, b)
    random_rows = a.null_kind == "random"
    assert not np.allclose(a[random_rows].value, c[random_rows].value)


def test_sweep_chat_equals_hand_formatted_inputs(tiny, monkeypatch, no_hooks):
    from steering.chat import TINY_TEMPLATE

    monkeypatch.setattr(tiny.tokenizer, "chat_template", TINY_TEMPLATE, raising=False)
    fmt = lambda t: f"<s>u:{t}|a:"  # noqa: E731
    common = dict(layers=[1], coeffs=[0, 3], metrics=[st.Metric("logprob", targets=["l"]), "kl"])
    chat = st.sweep(tiny, "love", "hate", ["I think", "we go"], chat=True, kl_prompts=["a day", "the sea"], **common)
    hand = st.sweep(tiny, fmt("love"), fmt("hate"), [fmt("I think"), fmt("we go")],
                    kl_prompts=[fmt("a day"), fmt("the sea")], **common)
    assert chat.equals(hand)
    assert {fmt("I think"), fmt("we go")} <= set(chat.prompt) and "I think" not in set(chat.prompt)
    with pytest.raises(st.errors.InvalidArgumentError, match="system= only with chat=True"):
        st.sweep(tiny, "love", "hate", ["I think"], system="hi", **common)
    no_hooks(tiny)
