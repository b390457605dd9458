"""steering.lens on tiny random models: logit_lens and lens_profile against the unembedding by hand.

(Readable lenses on the real models are tested in tests/test_real_analysis.py.)
"""

import pytest
import torch

import steering as st


# -------------------------------------------------------------------------- logit lens
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


# ------------------------------------------------------------------------ lens profile
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


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, match", [
    (lambda m, v: st.lens_profile(m, [v], targets=" wedding"), "wrap a single target"),
    (lambda m, v: st.lens_profile(m, [v], targets=["l"], position=["sum", 1]), "takes one readout"),
])
def test_bad_input_names_the_value_and_the_fix(vec, call, match, no_hooks):
    model, v = vec
    with pytest.raises(st.SteeringError, match=match):
        call(model, v)
    no_hooks(model)
