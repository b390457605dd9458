"""Analysis on the real built-in models: the lenses read what the issue measured, KL behaves.

Marked slow (CI runs them). Figures measured on this machine are quoted beside each assertion.
"""

import pytest

import steering as st

pytestmark = pytest.mark.slow

WEDDINGISH = {"wedding", "weddings", "nupt", "nuptial", "bride", "bridal", "newlyweds", "mariage", "married",
              "marriage", "groom", "ceremony", "ceremonies", "reception", "honeymoon"}


def is_weddingish(token: str) -> bool:
    return token.strip().lower() in WEDDINGISH




def test_gemma_plain_lens_reads_the_topic_only_at_the_ends(gemma):
    vecs = st.actadd_layers(gemma, " wedding", " ", layers="all")
    first = [t for t, _ in st.logit_lens(gemma, vecs[0], k=5).promoted]
    assert {" Wedding", "Wedding"} & set(first)  # measured: ' Wedding', '<unused1871>', 'Wedding', ' WED', …
    last_vec = st.actadd(gemma, " wedding", " ", layer=17, hook="resid_post")
    last = [t for t, _ in st.logit_lens(gemma, last_vec, k=10).promoted]
    assert sum(is_weddingish(t) for t in last) >= 3  # measured: ' reception', ' rings', ' dresses', ' ceremonies', …
    ranks = st.lens_profile(gemma, vecs, targets=[" wedding"]).set_index("layer")["rank"]
    # measured ranks of ' wedding': 7 at layer 0; 23,197–137,242 at layers 1–10; 1–14 at layers 13–16
    assert ranks[0] <= 20
    assert (ranks.loc[1:10] > 1000).all()
    assert (ranks.loc[13:16] <= 50).all()


def test_gemma_effect_lens_promotes_wedding_words(gemma):
    vec = st.actadd(gemma, " wedding", " ", layer=6)
    shift = st.logprob_shift(gemma, vec, st.texts.NEUTRAL_TEXTS[:4], coeff=4.0, k=10)
    promoted = [t for t, _ in shift.promoted]
    # measured: ' nupt' +4.91, 'wedding' +4.88, ' newlyweds' +4.83, ' bride' +4.73, 'Bride', ' wedding', …
    assert sum(is_weddingish(t) or "wedding" in t.lower() or "brid" in t.lower() for t in promoted) >= 6, promoted
    assert shift.promoted[0][1] > 2.0 and shift.suppressed[0][1] < 0


def test_smollm_plain_lens_is_noise_at_every_layer(smollm):
    vecs = st.actadd_layers(smollm, " wedding", " ", layers="all")
    ranks = st.lens_profile(smollm, vecs, targets=[" wedding"])["rank"]
    assert (ranks > 1000).all()  # measured: best rank 3,829 (layer 19)


@pytest.mark.parametrize("name", ["gemma", "smollm"])
def test_kl_is_zero_at_zero_and_grows_for_small_coefficients(name, request):
    model = request.getfixturevalue(name)
    layer = 6 if name == "gemma" else 2
    vec = st.actadd(model, " weddings", "", layer=layer)
    means = st.off_target_kl(model, vec, st.texts.NEUTRAL_TEXTS[:4], coeffs=[0, 0.25, 0.5, 1, 2]).groupby("coeff")["kl"].mean()
    assert means[0.0] == 0.0
    assert means.is_monotonic_increasing and means[2.0] > means[0.25] > 0, means.tolist()


def test_smollm_massive_activation_is_flagged(smollm):
    vecs = st.actadd_layers(smollm, " weddings", " ", layers=[1, 3, 5])
    with pytest.warns(st.SteeringWarning, match="massive activation"):
        table = st.norm_diagnostics(smollm, vecs)
    after_bos = table[table.position == 1].set_index("layer")
    # measured: norm 83 at layer 1 (typical residual 45); ~206 at layers 3 and 5 (typical 80–93)
    assert not after_bos.loc[1, "flagged"]
    assert after_bos.loc[3, "flagged"] and after_bos.loc[5, "flagged"]


def test_gemma_sweep_finds_the_topic_in_the_middle_layers(gemma):
    prompts = ["I went up to my friend and said", "The best part of the day was", "She looked at the letter and"]
    table = st.sweep(gemma, " weddings", "", prompts, layers=[1, 8, 16], coeffs=[8],
                     metrics=[st.Metric("logprob", targets=[" wedding", " weddings", " bride"])])
    eff = st.effect_sizes(table, n_boot=200).set_index(["layer", "coeff"])["effect"]
    # measured (6 prompts, all layers): d ≈ 0.9 at layer 1, 2.6 at layer 8, 0.1 at layer 16 (c = 8)
    assert eff[(8, 8.0)] > 1.0
    assert eff[(8, 8.0)] > eff[(16, 8.0)]
