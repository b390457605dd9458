"""steering.mechanisms (issue 18): propagation, attribution, attention, patching and position effects.

Every measure is checked against an identity that holds exactly (or to float precision) on tiny
random models; the real built-in models check the same identities and where the wedding vector's
effect lives. The figures of steering.plots.mechanisms are smoke-tested here too.
"""

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

import steering as st
import steering.plots as plots
from steering import _fast
from steering.errors import InvalidArgumentError
from steering.mechanisms import (attention_to_steered, attribute, delta_profile, masked_vector, patch_effect,
                                 position_effects)
from steering.mechanisms import attribution as attribution_module
from steering.mechanisms.patching import patched_metric_naive
from steering.mechanisms.runs import cached_pair, prepared, readout
from steering.testing import tiny_model

ROOT = Path(__file__).resolve().parents[1]
TEXT = "I am here today"  # 16 tokens on the tiny character-level tokenizer
PROMPTS = [TEXT, "so it goes on"]


def direction(model, layer=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return st.SteeringVector(torch.randn(int(model.cfg.d_model), generator=g),
                             hook_name=st.hook_name(model, layer, "resid_pre"), model_name=model.cfg.model_name)


@pytest.fixture(scope="module")
def deep():
    """Tiny Llama and GPT-2 with 4 layers: patching then has layers between the steered one and the last."""
    return {"llama": tiny_model("llama", n_layers=4), "gpt2": tiny_model("gpt2", n_layers=4)}


# ---------------------------------------------------------------------------------------------- propagation
def test_delta_profile_is_exact_at_the_injection_point_and_zero_before(any_tiny, no_hooks):
    vec = direction(any_tiny)
    table = delta_profile(any_tiny, vec, TEXT, coeff=3.0, include_before=True)
    at = table[table.hook == vec.hook_name]
    assert list(at.position_class) == ["steered"]  # a direction at every position: every position is steered
    row = at.iloc[0]
    assert row.cos_injected == pytest.approx(1.0, abs=1e-5)
    assert row.frac_injected == pytest.approx(1.0, abs=1e-5)
    assert row.retained == pytest.approx(1.0, abs=1e-5)
    assert row.delta_norm == pytest.approx(3.0 * float(vec.tensor.norm()), rel=1e-5)
    before = table.iloc[: int(at.index[0])]  # rows come in forward order
    assert len(before) == 5 and (before.delta_norm == 0.0).all()  # every hook of block 0: bit-for-bit unchanged
    assert list(table.kind.iloc[:5]) == ["resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"]
    no_hooks(any_tiny)


def test_delta_profile_position_classes_with_generation(tiny, no_hooks):
    vec = st.actadd(tiny, "love", "hate", layer=1)  # BOS + 4 positions
    table = delta_profile(tiny, vec, PROMPTS, coeff=4.0, max_new_tokens=3)
    assert set(table.position_class) == {"steered", "later", "generated"}
    first = table[table.hook == "blocks.1.hook_resid_pre"].set_index("position_class")
    assert first.loc["steered", "cos_injected"] == pytest.approx(1.0, abs=1e-5)
    assert first.loc["steered", "n_positions"] == 8  # 4 non-zero rows × 2 prompts
    assert first.loc["generated", "n_positions"] == 6
    assert first.loc["later", "delta_norm"] == 0.0 and first.loc["generated", "delta_norm"] == 0.0
    later = table[(table.hook == "blocks.1.hook_resid_post") & (table.position_class == "later")].iloc[0]
    assert later.delta_norm > 0  # reached through attention
    assert table.attrs["injected_norm"] == pytest.approx(4.0 * float(vec.norm()[1:].mean()), rel=1e-6)
    no_hooks(tiny)


# ---------------------------------------------------------------------------------------------- attribution
@pytest.mark.parametrize("target", ["a", ("a", "b")])
def test_attribution_adds_up_to_the_true_logit_change(any_tiny, target, no_hooks):
    vec = st.actadd(any_tiny, "love", "hate", layer=1)
    table = attribute(any_tiny, vec, PROMPTS, target=target, coeff=6.0)
    assert table.attrs["per_head"] and table.attrs["per_head_reason"] == ""
    total = table.contribution.sum() + table.attrs["norm_gap"]
    assert total == pytest.approx(table.attrs["logit_change"], abs=1e-6, rel=1e-4)
    assert (table.loc[table.layer < 1, "contribution"] == 0.0).all()  # embeddings and block 0: exactly 0
    assert table.loc[table.kind == "injected", "contribution"].item() == 0.0  # front vector: not at the last position
    heads = table[table.kind == "head"]
    assert len(heads) == 2 * 4 and set(table.kind) == {"embed", "head", "mlp", "injected"}
    # the true change, read independently from the model's outputs under st.steer
    _, weights, pair = readout(any_tiny, target)
    change = 0.0
    for text in PROMPTS:
        tokens = st.tokens.tokenize_prompt(any_tiny, text).unsqueeze(0)
        with torch.no_grad():
            base = any_tiny(tokens)[0, -1]
            with st.steer(any_tiny, vec, 6.0):
                steered = any_tiny(tokens)[0, -1]
        change += float((steered - base) @ weights) / len(PROMPTS)
    assert table.attrs["logit_change"] == pytest.approx(change, abs=1e-5)
    no_hooks(any_tiny)


def test_attribution_of_a_direction_everywhere_has_an_injected_row(tiny):
    table = attribute(tiny, direction(tiny), TEXT, target="a", coeff=3.0)
    assert table.loc[table.kind == "injected", "contribution"].item() != 0.0
    assert table.contribution.sum() + table.attrs["norm_gap"] == pytest.approx(table.attrs["logit_change"], abs=1e-5)


def test_attribution_falls_back_to_layers_when_heads_do_not_add_up(tiny, monkeypatch):
    monkeypatch.setattr(attribution_module, "_heads_add_up", lambda model, base: False)
    table = attribute(tiny, st.actadd(tiny, "love", "hate", layer=1), TEXT, target="a", coeff=6.0)
    assert not table.attrs["per_head"] and "do not add up" in table.attrs["per_head_reason"]
    assert set(table.kind) == {"embed", "attn", "mlp", "injected"}
    assert table.contribution.sum() + table.attrs["norm_gap"] == pytest.approx(table.attrs["logit_change"], abs=1e-5)


# ---------------------------------------------------------------------------------------------- attention
def test_attention_to_steered_is_unchanged_below_the_steered_layer(any_tiny, no_hooks):
    table = attention_to_steered(any_tiny, st.actadd(any_tiny, "love", "hate", layer=1), PROMPTS, coeff=6.0)
    assert len(table) == 2 * 4
    assert (table.loc[table.layer == 0, "change"] == 0.0).all()
    assert (table.loc[table.layer == 1, "change"] != 0.0).any()
    assert ((table.mass_steered >= 0) & (table.mass_steered + table.bos_steered <= 1 + 1e-6)).all()
    assert (table.n_queries == 11 + 9).all()  # positions 5.. of a 16- and a 14-token prompt
    no_hooks(any_tiny)


def test_attention_to_steered_needs_later_positions(tiny):
    with pytest.raises(InvalidArgumentError, match="no prompt has a position after the steered ones"):
        attention_to_steered(tiny, st.actadd(tiny, "love you", "hate", layer=1), "abc", coeff=1.0)


# ---------------------------------------------------------------------------------------------- patching
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("mode", ["denoise", "noise"])
def test_patching_ends_and_batched_runs_match_one_pass_per_patch(deep, arch, mode, no_hooks):
    model = deep[arch]
    vec = st.actadd(model, "love", "hate", layer=1)
    twin = patch_effect(model, vec, TEXT, target="a", coeff=6.0, mode=mode)
    bridge = patch_effect(model, vec, TEXT, target="a", coeff=6.0, mode=mode, backend="bridge", batch_size=5)
    last = twin.position.max()
    assert (twin.loc[twin.layer == 0, "recovered"] == 0.0).all() and not twin.loc[twin.layer == 0, "ran"].any()
    assert twin.loc[(twin.layer == 3) & (twin.position == last), "recovered"].item() == pytest.approx(1.0, abs=1e-4)
    assert (twin.loc[(twin.layer == 3) & (twin.position < last), "recovered"] == 0.0).all()
    assert (twin.effect - bridge.effect).abs().max() < 1e-5
    prompt = prepared(model, vec, TEXT, 6.0)
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(4)]
    base, steered = cached_pair(model, vec, 6.0, prompt, names)
    _, weights, pair = readout(model, "a")
    source = steered if mode == "denoise" else base
    m_u, m_s = (float(torch.log_softmax(run.logits[-1], -1)[4]) for run in (base, steered))
    for row in twin[twin.ran & (twin.layer < 3)].sample(6, random_state=0).itertuples():
        m = patched_metric_naive(model, vec, prompt, 6.0, row.layer, row.position,
                                 source.cache[row.hook][row.position], weights, pair, mode)
        assert (m - m_u if mode == "denoise" else m_s - m) == pytest.approx(row.effect, abs=1e-5)
    no_hooks(model)


def test_patching_validates_its_options(tiny, untyped):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with pytest.raises(InvalidArgumentError, match=r"mode='both'; allowed: 'denoise'.*Fix: pass mode='denoise'"):
        patch_effect(tiny, vec, TEXT, target="a", mode="both")
    with pytest.raises(st.errors.LayerOutOfRangeError, match="layer=5 is out of range"):
        patch_effect(tiny, vec, TEXT, target="a", layers=[5])
    with pytest.raises(InvalidArgumentError, match=r"target=\['a'\] is a list; allowed: one token"):
        patch_effect(tiny, vec, TEXT, target=["a"])
    with pytest.raises(InvalidArgumentError, match="names the same token twice"):
        patch_effect(tiny, vec, TEXT, target=("a", "a"))


def test_patching_warns_when_the_measure_does_not_move(tiny):
    zero = masked_vector(st.actadd(tiny, "love", "hate", layer=1), [False] * 5)
    with pytest.warns(st.SteeringWarning, match="does not move the target measure"):
        table = patch_effect(tiny, zero, TEXT, target="a", coeff=1.0)
    assert table.recovered.isna().all()


# ---------------------------------------------------------------------------------------------- position effects
def test_knocking_out_every_position_is_no_steering(any_tiny, no_hooks):
    vec = st.actadd(any_tiny, "love", "hate", layer=1)
    zero = masked_vector(vec, [False] * 5)
    for metric, target in (("logprob", "a"), ("kl", None)):
        table = position_effects(any_tiny, zero, PROMPTS, metric=metric, target=target, coeff=6.0, n_boot=50)
        assert (table.effect == 0.0).all() and (table.ci_low == 0.0).all()
    no_hooks(any_tiny)


def test_position_effects_variants(any_tiny):
    vec = st.actadd(any_tiny, "a", "", layer=1)  # BOS (zero) + one real position
    table = position_effects(any_tiny, vec, PROMPTS, target="b", coeff=6.0, n_boot=200).set_index(["variant", "position"])
    full = table.loc[("full", -1), "effect"]
    assert full != 0.0
    assert table.loc[("alone", 1), "effect"] == full and table.loc[("knockout", 0), "effect"] == full  # BOS row is 0
    assert table.loc[("alone", 0), "effect"] == 0.0 and table.loc[("knockout", 1), "effect"] == 0.0
    assert list(table.loc["alone"].token) == ["<s>", "a"]
    assert (table.ci_low <= table.effect + 1e-12).all() and (table.effect <= table.ci_high + 1e-12).all()
    assert ("summed", -1) in table.index


def test_position_effects_validation(tiny, untyped):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with pytest.raises(InvalidArgumentError, match="metric='logprob' needs target="):
        position_effects(tiny, vec, TEXT, metric="logprob")
    with pytest.raises(InvalidArgumentError, match="needs a per-position"):
        position_effects(tiny, direction(tiny), TEXT)
    with pytest.raises(InvalidArgumentError, match=r"keep=\[True\]; allowed: a list of 5 bools"):
        masked_vector(vec, [True])


# ---------------------------------------------------------------------------------------------- arguments, hooks
def test_common_argument_checks(tiny, untyped):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with pytest.raises(InvalidArgumentError, match="vector=None; allowed: a SteeringVector"):
        delta_profile(tiny, None, TEXT)
    with pytest.raises(InvalidArgumentError, match=r"prompts=\[\]; allowed: a prompt or a non-empty list"):
        attribute(tiny, vec, [], target="a")
    with pytest.raises(st.errors.InvalidCoefficientError):
        attention_to_steered(tiny, vec, TEXT, coeff=float("nan"))
    with pytest.raises(InvalidArgumentError, match="max_new_tokens"):
        delta_profile(tiny, vec, TEXT, max_new_tokens=0)


class Boom(Exception):
    pass


@pytest.mark.parametrize("call", ["delta_profile", "attribute", "attention", "patch_bridge", "patch_twin", "greedy"])
def test_no_hook_is_left_after_an_exception(call, monkeypatch):
    model = tiny_model("llama", n_layers=3)
    vec = st.actadd(model, "love", "hate", layer=1)
    original = model.run_with_cache
    state = {"runs": 0}

    def second_run_fails(*args, **kwargs):  # the steered pass of the pair, with the steering hooks on
        state["runs"] += 1
        if state["runs"] == 2:
            raise Boom
        return original(*args, **kwargs)

    fail_at = {"greedy": 1, "patch_bridge": 3, "patch_twin": 2}.get(call)  # greedy: its first step; patching:
    calls = {"n": 0}  # the first patch batch (the twin's first resume is its own check)

    def head_fails(module, args):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise Boom

    resume = _fast.ResumableForward.last_logits

    def resume_fails(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise Boom
        return resume(*args, **kwargs)

    handle = None
    if call in ("patch_bridge", "greedy"):
        handle = model.original_model.lm_head.register_forward_pre_hook(head_fails)
    elif call == "patch_twin":
        monkeypatch.setattr(_fast.ResumableForward, "last_logits", resume_fails)
    else:
        monkeypatch.setattr(model, "run_with_cache", second_run_fails)
    try:
        _raise_inside(call, model, vec)
    finally:
        if handle is not None:
            handle.remove()
    assert st.active_hooks(model) == 0


def _raise_inside(call, model, vec):
    with pytest.raises(Boom):
        if call == "delta_profile":
            delta_profile(model, vec, TEXT)
        elif call == "attribute":
            attribute(model, vec, TEXT, target="a")
        elif call == "attention":
            attention_to_steered(model, vec, TEXT)
        elif call == "greedy":
            delta_profile(model, vec, TEXT, max_new_tokens=2)
        else:
            patch_effect(model, vec, TEXT, target="a", mode="noise", backend="bridge" if call == "patch_bridge" else "auto")


# ---------------------------------------------------------------------------------------------- figures
def test_figures_draw_the_tables(tiny):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    fig = plots.propagation_figure(delta_profile(tiny, vec, TEXT, coeff=4.0, max_new_tokens=2))
    assert {t.name for t in fig.data} >= {"steered", "later", "generated"}
    fig = plots.attribution_figure(attribute(tiny, vec, TEXT, target="a", coeff=4.0))
    assert list(fig.data[0].y) == ["mlp", "head 0", "head 1", "head 2", "head 3"] and list(fig.data[0].x) == [0, 1]
    table = patch_effect(tiny, vec, PROMPTS, target="a", coeff=4.0)
    fig = plots.patching_figure(table, prompt=PROMPTS[1])
    assert len(fig.data[0].x) == 14 and fig.data[0].x[1] == "1: 's'"
    fig = plots.position_effects_figure(position_effects(tiny, vec, PROMPTS, target="a", coeff=4.0, n_boot=50))
    assert [t.name for t in fig.data] == ["knockout", "alone"] and len(fig.data[0].x) == 5
    fig = plots.attention_figure(attention_to_steered(tiny, vec, TEXT, coeff=4.0))
    assert len(fig.data[0].z) == 4
    with pytest.raises(InvalidArgumentError, match="patching_figure needs a table with columns"):
        plots.patching_figure(table.drop(columns="token"))
    with pytest.raises(InvalidArgumentError, match="prompt='nope' is not in the table"):
        plots.patching_figure(table, prompt="nope")


def test_benchmark_smoke_run(monkeypatch, capsys, tmp_path):
    """benchmarks/bench_mechanisms.py runs (in this process: a subprocess would spend seconds importing torch)."""
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench_mechanisms.py", "--smoke", "--json", str(out)])
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as `python benchmarks/...` puts it first
    runpy.run_path(str(ROOT / "benchmarks" / "bench_mechanisms.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "batched" in printed and "naive" in printed and "ratio" in printed
    data = json.loads(out.read_text())
    assert data["max_abs_diff"] < 1e-4 and data["ratio"] > 0 and data["cells_run"] > 0


# ---------------------------------------------------------------------------------------------- real models
@pytest.mark.slow
def test_gemma_wedding_vector(gemma, no_hooks):
    vec = st.actadd(gemma, " weddings", "", layer=10)
    prompts = ["I went up to my friend and said", "The weather this morning was"]
    table = attribute(gemma, vec, prompts, target=" wedding", coeff=10.0)
    change = table.attrs["logit_change"]
    assert change > 3.0  # the vector raises " wedding"
    assert table.contribution.sum() + table.attrs["norm_gap"] == pytest.approx(change, abs=1e-3)
    assert (table.loc[table.layer < 10, "contribution"] == 0.0).all()  # dominated by layers ≥ 10: the rest is 0
    assert not table.attrs["per_head"] and "normalised after the heads are summed" in table.attrs["per_head_reason"]
    patch = patch_effect(gemma, vec, prompts[0], target=" wedding", coeff=10.0)
    last = patch.position.max()
    assert (patch.loc[patch.layer < 10, "recovered"] == 0.0).all()
    assert patch.loc[(patch.layer == 17) & (patch.position == last), "recovered"].item() == pytest.approx(1, abs=1e-3)
    # localised: at the steered layer the " weddings" cell (position 1) carries the effect, late layers the last position
    assert patch.loc[(patch.layer == 10) & (patch.position == 1), "recovered"].item() > 0.8
    assert patch.loc[(patch.layer == 15) & (patch.position == last), "recovered"].item() > 0.8
    profile = delta_profile(gemma, vec, prompts[0], coeff=10.0)
    row = profile[(profile.hook == vec.hook_name) & (profile.position_class == "steered")].iloc[0]
    assert row.cos_injected == pytest.approx(1.0, abs=1e-4)
    assert row.delta_norm == pytest.approx(10.0 * float(vec.norm()[1]), rel=1e-4)
    no_hooks(gemma)


@pytest.mark.slow
def test_smollm_identities(smollm, no_hooks):
    vec = st.actadd(smollm, " weddings", "", layer=1)
    prompt = "I went up to my friend and said"
    table = attribute(smollm, vec, prompt, target=" wedding", coeff=10.0)
    assert table.attrs["per_head"] and (table.kind == "head").sum() == 30 * 9
    assert table.contribution.sum() + table.attrs["norm_gap"] == pytest.approx(table.attrs["logit_change"], abs=1e-3)
    assert (table.loc[table.layer < 1, "contribution"] == 0.0).all()
    patch = patch_effect(smollm, vec, prompt, target=" wedding", coeff=10.0, layers=[0, 1, 29])
    last = patch.position.max()
    assert (patch.loc[patch.layer == 0, "recovered"] == 0.0).all()
    assert patch.loc[(patch.layer == 29) & (patch.position == last), "recovered"].item() == pytest.approx(1, abs=1e-3)
    assert patch.loc[(patch.layer == 1) & (patch.position == 1), "recovered"].item() > 0.7
    effects = position_effects(smollm, vec, [prompt, "The weather this morning was"], target=" wedding", coeff=10.0,
                               n_boot=100).set_index(["variant", "position"])
    assert effects.loc[("alone", 1), "effect"] == effects.loc[("full", -1), "effect"] > 0
    no_hooks(smollm)
