"""hook_name / hook_names: building and validating hook-point names and layer specs."""

import re

import pytest

import steering as st
from conftest import BAD_LAYER_SPECS
from steering.hooks import STEERABLE_HOOKS, hook_names, n_layers


@pytest.mark.parametrize("short", STEERABLE_HOOKS)
def test_short_names_resolve_to_real_hook_points(any_tiny, short):
    for layer in range(n_layers(any_tiny)):
        name = st.hook_name(any_tiny, layer, short)
        assert name == f"blocks.{layer}.hook_{short}"
        assert name in any_tiny.hook_dict


def test_default_hook_is_resid_pre(tiny):
    assert st.hook_name(tiny, 1) == "blocks.1.hook_resid_pre"


@pytest.mark.parametrize("short", STEERABLE_HOOKS)
def test_hook_prefix_is_accepted(tiny, short):
    assert st.hook_name(tiny, 0, f"hook_{short}") == st.hook_name(tiny, 0, short)


def test_full_names_are_accepted(tiny):
    assert st.hook_name(tiny, 1, "blocks.1.hook_resid_post") == "blocks.1.hook_resid_post"
    assert st.hook_name(tiny, 0, "blocks.0.attn.hook_pattern") == "blocks.0.attn.hook_pattern"


def test_negative_layers_count_from_the_end(tiny):
    n = n_layers(tiny)
    assert st.hook_name(tiny, -1, "mlp_out") == f"blocks.{n - 1}.hook_mlp_out"
    assert st.hook_name(tiny, -n) == "blocks.0.hook_resid_pre"
    # a full name agrees with the negative layer that means the same block
    assert st.hook_name(tiny, -1, f"blocks.{n - 1}.hook_resid_pre") == f"blocks.{n - 1}.hook_resid_pre"


@pytest.mark.parametrize("layer", [2, 99, -3])
def test_layer_out_of_range(tiny, layer):
    with pytest.raises(st.errors.LayerOutOfRangeError, match=rf"layer={layer} is out of range .*2 layers.*0\.\.1.*-2\.\.-1"):
        st.hook_name(tiny, layer)


def test_bool_layer_is_not_an_integer(tiny):
    with pytest.raises(st.errors.LayerOutOfRangeError, match=r"layer=True is not an integer.*0\.\.1"):
        st.hook_name(tiny, True)


def test_full_name_of_another_layer_is_refused(tiny):
    with pytest.raises(st.errors.UnknownHookError, match=r"names layer 1 but layer=0 was given") as info:
        st.hook_name(tiny, 0, "blocks.1.hook_resid_pre")
    # the fix names both ways out
    assert "hook='hook_resid_pre'" in str(info.value) and "layer=1" in str(info.value)


@pytest.mark.parametrize(
    "typo, suggested",
    [("resid_pr", "resid_pre"), ("hook_resid_pots", "resid_post"), ("mlp_otu", "mlp_out"), ("attn_ot", "attn_out")],
)
def test_typos_suggest_the_nearest_hook_first(tiny, typo, suggested):
    with pytest.raises(st.errors.UnknownHookError, match=rf"hook='{typo}' is not a hook point") as info:
        st.hook_name(tiny, 0, typo)
    message = str(info.value)
    assert f"Did you mean '{suggested}'" in message  # nearest first
    assert "allowed: resid_pre, resid_mid, resid_post, attn_out, mlp_out" in message


@pytest.mark.parametrize("typo", ["resid_pr", "mlp_otu", "attn.hook_patern", "zzz"])
def test_every_suggestion_is_accepted_when_passed_back(tiny, typo):
    """A "Did you mean X?" is only useful if hook=X then works."""
    with pytest.raises(st.errors.UnknownHookError) as info:
        st.hook_name(tiny, 0, typo)
    suggestions = re.findall(r"'([^']+)'", str(info.value).split("Did you mean", 1)[1])
    assert suggestions
    for suggestion in suggestions:
        assert st.hook_name(tiny, 0, suggestion) in tiny.hook_dict


def test_nested_short_name_is_accepted(tiny):
    """Sub-module hook points (attention pattern, q/k/v …) by their short name, as suggested on a typo."""
    assert st.hook_name(tiny, 0, "attn.hook_pattern") == "blocks.0.attn.hook_pattern"


def test_unknown_full_name_is_refused(tiny):
    with pytest.raises(st.errors.UnknownHookError, match=r"'blocks\.0\.hook_nonsense' not in model\.hook_dict"):
        st.hook_name(tiny, 0, "blocks.0.hook_nonsense")


def test_empty_hook_is_refused(tiny):
    with pytest.raises(st.errors.UnknownHookError, match=r"hook='' is not a hook name.*hook='resid_pre'"):
        st.hook_name(tiny, 0, "")


def test_unknown_hook_error_is_a_key_error_with_a_readable_message(tiny):
    with pytest.raises(KeyError) as info:
        st.hook_name(tiny, 0, "resid_pr")
    assert isinstance(info.value, st.SteeringError)
    assert not str(info.value).startswith(("'", '"'))  # not quoted like a bare KeyError


# ---------------------------------------------------------------- hook_names: layer specs
def test_hook_names_of_one_int_is_one_name_and_says_so(tiny):
    assert hook_names(tiny, 1, "mlp_out") == (["blocks.1.hook_mlp_out"], True)
    assert hook_names(tiny, -1) == (["blocks.1.hook_resid_pre"], True)


@pytest.mark.parametrize(
    "layer, layers",
    [("all", [0, 1]), ([1, 0], [1, 0]), ((0,), [0]), (range(2), [0, 1]), ([-1], [1]), ([-2, 1], [0, 1])],
)
def test_hook_names_of_a_spec_keep_the_order_given(any_tiny, layer, layers):
    names, single = hook_names(any_tiny, layer, "resid_post")
    assert names == [f"blocks.{each}.hook_resid_post" for each in layers] and single is False


@pytest.mark.parametrize("layers, match", BAD_LAYER_SPECS)
def test_hook_names_refuses_bad_specs(tiny, layers, match):
    with pytest.raises(st.errors.LayerOutOfRangeError, match=match):
        hook_names(tiny, layers, "resid_pre")


def test_a_layer_list_holding_a_non_int_is_refused(tiny, untyped):
    # With the runtime type checks off (untyped): under them the signature (Sequence[int]) may reject it first.
    with pytest.raises(st.errors.LayerOutOfRangeError, match=r"layer=\[0, '1'\] holds '1', a str; allowed: ints in 0\.\.1.*Fix:"):
        hook_names(tiny, [0, "1"], "resid_pre")
    with pytest.raises(st.errors.LayerOutOfRangeError, match=r"layer=\[True\] holds True, a bool"):
        hook_names(tiny, [True], "resid_pre")


def test_hook_names_refuses_an_unknown_hook(tiny):
    with pytest.raises(st.errors.UnknownHookError, match=r"hook='resid_pr' is not a hook point.*Did you mean 'resid_pre'"):
        hook_names(tiny, "all", "resid_pr")


def test_block_output_hook_names_the_block_output_and_refuses_non_indices(untyped):
    from steering.hooks import block_output_hook, residual_index

    assert block_output_hook(3) == "blocks.3.hook_resid_post" and residual_index(block_output_hook(3)) == 3
    for bad in (-1, 1.5, True, "3", None):
        with pytest.raises(st.errors.LayerOutOfRangeError, match=r"allowed: a block index, an int >= 0\. Fix:"):
            block_output_hook(bad)


# ---------------------------------------------------------------- issue 17 (category 8): a layer is an int, never a rounded float
import numpy as np  # noqa: E402
import torch  # noqa: E402

BAD_LAYERS = [torch.tensor(1.7), torch.tensor(1.0), 1.0, 0.5, True, "1", None, torch.tensor([1]), np.float64(1.0)]


@pytest.mark.parametrize("bad", BAD_LAYERS, ids=repr)
def test_a_layer_that_is_not_an_int_is_refused_everywhere(tiny, bad, untyped, no_hooks):
    shown = re.escape(repr(bad)[:20])
    for call in (lambda: st.hook_name(tiny, bad), lambda: hook_names(tiny, bad), lambda: hook_names(tiny, [0, bad]),
                 lambda: st.actadd(tiny, "a", "b", layer=bad), lambda: st.actadd_layers(tiny, "a", "b", layers=[bad])):
        with pytest.raises(st.errors.LayerOutOfRangeError, match=rf"layer=.*{shown}.*allowed: .*ints? in 0\.\.1"):
            call()
    no_hooks(tiny)


def test_a_float_tensor_layer_is_not_truncated(tiny, untyped):
    with pytest.raises(st.errors.LayerOutOfRangeError, match=r"layer=tensor\(1\.7000\) is not an integer \(a float32 "
                                                             r"tensor of shape \(\)\).*floats are not rounded"):
        st.actadd(tiny, "a", "b", layer=torch.tensor(1.7))


def test_numpy_and_integer_tensor_layers_are_ints(tiny, untyped):
    for layer in (np.int64(1), torch.tensor(1), np.int32(-1)):
        assert st.hook_name(tiny, layer) == "blocks.1.hook_resid_pre"
        assert hook_names(tiny, [0, layer]) == (["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"], False)
    assert st.actadd(tiny, "a", "b", layer=np.int64(1)).hook_name == "blocks.1.hook_resid_pre"
    with pytest.raises(st.errors.LayerOutOfRangeError, match=r"layer=tensor\(1\.5000\); allowed: a block index"):
        st.hooks.block_output_hook(torch.tensor(1.5))
