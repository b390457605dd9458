"""SteeringVector: algebra, checks, measures, moves and display."""

import math
import re

import pytest
import torch
from jaxtyping import TypeCheckError

import steering as st
from steering import SteeringVector

HOOK = "blocks.1.hook_resid_pre"


def vec(tensor, hook=HOOK, model="m", **kw):
    return SteeringVector(torch.as_tensor(tensor, dtype=torch.float32), hook_name=hook, model_name=model, **kw)


def rand(*shape, seed=0, **kw):
    gen = torch.Generator().manual_seed(seed)
    return vec(torch.randn(*shape, generator=gen), **kw)


# ---------------------------------------------------------------- properties
def test_properties_of_a_per_position_vector():
    v = rand(5, 8)
    assert (v.layer, v.hook, v.d_model, v.n_pos, v.is_direction) == (1, "resid_pre", 8, 5, False)
    assert v.dtype == torch.float32 and v.device.type == "cpu"


def test_properties_of_a_direction():
    v = rand(8, hook="blocks.0.hook_mlp_out")
    assert (v.layer, v.hook, v.d_model, v.n_pos, v.is_direction) == (0, "mlp_out", 8, None, True)


def test_non_block_hook_has_no_layer():
    v = rand(8, hook="hook_embed")
    assert v.layer is None and v.hook == "embed"


# ---------------------------------------------------------------- arithmetic
def test_add_and_subtract_match_the_tensors():
    a, b = rand(4, 8, seed=1), rand(4, 8, seed=2)
    torch.testing.assert_close((a + b).tensor, a.tensor + b.tensor, rtol=0, atol=0)
    torch.testing.assert_close((a - b).tensor, a.tensor - b.tensor, rtol=0, atol=0)
    assert (a + b).hook_name == HOOK and (a - b).model_name == "m"


def test_add_does_not_modify_its_operands():
    a, b = rand(4, 8, seed=1), rand(4, 8, seed=2)
    a0, b0 = a.tensor.clone(), b.tensor.clone()
    _ = a + b
    _ = a - b
    _ = 3 * a
    _ = -b
    assert torch.equal(a.tensor, a0) and torch.equal(b.tensor, b0)


def test_scalar_multiplication_division_and_negation():
    a = rand(3, 8)
    torch.testing.assert_close((2.5 * a).tensor, 2.5 * a.tensor, rtol=0, atol=0)
    torch.testing.assert_close((a * 2.5).tensor, 2.5 * a.tensor, rtol=0, atol=0)
    torch.testing.assert_close((a * -3).tensor, -3 * a.tensor, rtol=0, atol=0)
    torch.testing.assert_close((a / 4).tensor, a.tensor / 4, rtol=1e-6, atol=0)
    torch.testing.assert_close((-a).tensor, -a.tensor, rtol=0, atol=0)
    torch.testing.assert_close((a - a).tensor, torch.zeros_like(a.tensor), rtol=0, atol=0)
    torch.testing.assert_close((2 * a - a).tensor, a.tensor)
    assert (a / 4).hook_name == HOOK and (-a).model_name == "m"


def test_directions_combine_too():
    a, b = rand(8, seed=1), rand(8, seed=2)
    assert (a + b).is_direction
    torch.testing.assert_close((a - 2 * b).tensor, a.tensor - 2 * b.tensor)


def test_different_lengths_are_zero_padded_at_the_end():
    """The paper composes ActAdd vectors of different lengths at the front."""
    short, long = rand(2, 8, seed=1), rand(5, 8, seed=2)
    for total, sign in ((short + long, 1), (short - long, -1)):
        assert total.n_pos == 5
        torch.testing.assert_close(total.tensor[:2], short.tensor + sign * long.tensor[:2])
        torch.testing.assert_close(total.tensor[2:], sign * long.tensor[2:])
    torch.testing.assert_close((long + short).tensor, (short + long).tensor)


@pytest.mark.parametrize(
    "other, match",
    [
        (lambda: rand(3, 8, hook="blocks.0.hook_resid_pre"), r"different hook_name: 'blocks\.1\.hook_resid_pre' vs 'blocks\.0\.hook_resid_pre'"),
        (lambda: rand(3, 16), r"different d_model: 8 vs 16"),
        (lambda: rand(3, 8, model="other"), r"different models: 'm' vs 'other'"),
        (lambda: rand(8), r"per-position vector \(3, 8\) and a single direction.*\.direction\('sum'\)"),
        (lambda: rand(3, 8, weight_mode="compat"), r"different weight_mode: 'hf' vs 'compat'"),
    ],
    ids=["hook", "d_model", "model", "direction-vs-per-position", "weight_mode"],
)
@pytest.mark.parametrize("op", ["+", "-"])
def test_mixing_incompatible_vectors_is_refused(other, match, op):
    a, b = rand(3, 8), other()
    with pytest.raises(st.errors.VectorMismatchError, match=match):
        _ = a + b if op == "+" else a - b
    with pytest.raises(st.errors.VectorMismatchError):
        _ = b + a if op == "+" else b - a


def test_unknown_model_name_combines_with_a_known_one():
    a, b = rand(3, 8, model=None), rand(3, 8, model="m")
    assert (a + b).model_name == "m" and (b + a).model_name == "m"


def test_adding_a_non_vector_is_refused():
    with pytest.raises((st.errors.InvalidArgumentError, TypeCheckError)):
        _ = rand(3, 8) + torch.ones(3, 8)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True])
def test_multiplying_by_a_non_finite_or_non_number_is_refused(bad):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"cannot multiply a SteeringVector by .*allowed: a finite int or float"):
        _ = rand(3, 8) * bad


@pytest.mark.parametrize("zero", [0, 0.0])
def test_division_by_zero_is_refused(zero):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"cannot divide a SteeringVector by 0"):
        _ = rand(3, 8) / zero


# ---------------------------------------------------------------- measures
def test_norm_is_per_position_or_scalar():
    v = vec([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    assert v.norm().tolist() == [5.0, 0.0, 1.0]
    d = vec([6.0, 8.0])
    assert d.norm().ndim == 0 and d.norm().item() == 10.0
    r = rand(4, 8)
    torch.testing.assert_close(r.norm(), r.tensor.norm(dim=-1))


def test_direction_reductions():
    v = rand(4, 8)
    torch.testing.assert_close(v.direction("sum").tensor, v.tensor.sum(0))
    torch.testing.assert_close(v.direction().tensor, v.tensor.sum(0))  # default: sum
    torch.testing.assert_close(v.direction("mean").tensor, v.tensor.mean(0))
    torch.testing.assert_close(v.direction("last").tensor, v.tensor[-1])
    d = v.direction("mean")
    assert d.is_direction and d.hook_name == v.hook_name and d.model_name == v.model_name
    assert "mean of 4 positions" in d.meta["reduced_from"]
    assert v.n_pos == 4  # the original is untouched


def test_direction_of_a_direction_is_itself():
    d = rand(8)
    assert torch.equal(d.direction("mean").tensor, d.tensor)


def test_unknown_reduction_is_refused():
    with pytest.raises(st.errors.InvalidArgumentError, match=r"reduce='max'; allowed: 'sum', 'mean', 'last'"):
        rand(3, 8).direction("max")


def test_cosine_similarity():
    a = vec([1.0, 0.0, 0.0])
    assert a.cosine_similarity(vec([2.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert a.cosine_similarity(vec([0.0, 3.0, 0.0])) == pytest.approx(0.0, abs=1e-7)
    assert a.cosine_similarity(-a) == pytest.approx(-1.0)
    assert a.cosine_similarity(vec([1.0, 1.0, 0.0])) == pytest.approx(1 / math.sqrt(2))


def test_cosine_similarity_of_per_position_vectors_uses_the_reduction():
    a, b = rand(3, 8, seed=1), rand(5, 8, seed=2)  # different lengths are fine
    for reduce in ("sum", "mean", "last"):
        expected = torch.nn.functional.cosine_similarity(
            a.direction(reduce).tensor, b.direction(reduce).tensor, dim=0
        ).item()
        assert a.cosine_similarity(b, reduce=reduce) == pytest.approx(expected, abs=1e-6)
    assert a.cosine_similarity(a) == pytest.approx(1.0)


def test_cosine_similarity_refuses_other_widths():
    with pytest.raises(st.errors.VectorMismatchError, match=r"d_model 8 and 16"):
        rand(8).cosine_similarity(rand(16))


# ---------------------------------------------------------------- moves
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_to_dtype_keeps_metadata(dtype):
    v = rand(3, 8, method="actadd", prompts={"pos": "a", "neg": "b"}, pad="space")
    w = v.to(dtype)
    assert w.dtype == dtype and v.dtype == torch.float32
    assert (w.hook_name, w.model_name, w.method, w.prompts, w.pad) == (v.hook_name, "m", "actadd", v.prompts, "space")
    torch.testing.assert_close(w.tensor.float(), v.tensor, atol=1e-2, rtol=1e-2)


def test_to_half_that_overflows_is_refused():
    with pytest.raises(st.errors.InvalidVectorError, match=r"Inf"):
        vec([1e6, 0.0]).to(torch.float16)


def test_clone_is_independent():
    v = rand(3, 8, prompts={"pos": "a", "neg": "b"}, tokens={"pos": ["<s>", "a"], "neg": ["<s>", "b"]}, meta={"k": 1})
    c = v.clone()
    assert torch.equal(c.tensor, v.tensor) and c.tensor.data_ptr() != v.tensor.data_ptr()
    c.tensor[0, 0] += 1.0
    assert not torch.equal(c.tensor, v.tensor)
    c.prompts["pos"] = "changed"
    c.meta["k"] = 2
    c.tokens["pos"] = ["<s>", "changed"]
    assert v.prompts["pos"] == "a" and v.meta["k"] == 1
    assert v.tokens["pos"] == ["<s>", "a"]


# ---------------------------------------------------------------- display
def test_repr_names_what_matters(tiny):
    v = st.actadd(tiny, "Love", "Hate", layer=1)
    text = repr(v)
    for part in ("SteeringVector(", "actadd 'Love' − 'Hate'", "blocks.1.hook_resid_pre", "shape=5×64",
                 "model='tiny-llama'", "dtype=float32", "device=cpu"):
        assert part in text, (part, text)
    first_norms = ", ".join(f"{n:.3g}" for n in v.norm().tolist())
    assert f"norms=[{first_norms}]" in text
    assert "norm=10" in repr(vec([6.0, 8.0]))


def test_repr_of_a_long_vector_is_shortened():
    text = repr(rand(20, 8))
    assert text.count(",", text.index("norms=["), text.index("]")) == 8  # 8 norms shown, then "…"
    assert "…" in text


def test_repr_html_shows_metadata_and_per_position_tokens(tiny):
    v = st.actadd(tiny, "Lo<v>e", "Hate", layer=1)
    page = v._repr_html_()
    assert page.startswith("<div>") and page.endswith("</div>")
    for part in ("blocks.1.hook_resid_pre", "7 × 64", "tiny-llama", "space", "hf", "float32 / cpu"):
        assert part in page, part
    # one row per position, with both prompts' tokens, HTML-escaped
    assert page.count("<tr><td>") == v.n_pos
    assert "&lt;s&gt;" in page and "<s>" not in page and "&lt;v&gt;" in page
    assert "actadd &#x27;Lo&lt;v&gt;e&#x27; − &#x27;Hate&#x27;" in page


def test_repr_html_of_a_direction_has_no_position_table():
    page = rand(8)._repr_html_()
    assert "p+ token" not in page and "<b>SteeringVector</b>" in page


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("value, n_nan, n_inf", [(float("nan"), 1, 0), (float("inf"), 0, 1), (float("-inf"), 0, 1)])
def test_nan_and_inf_are_rejected(value, n_nan, n_inf):
    t = torch.zeros(3, 4)
    t[2, 1] = value
    with pytest.raises(st.errors.InvalidVectorError, match=rf"{HOOK} holds {n_nan} NaN and {n_inf} Inf value\(s\) \(first at index \(2, 1\)\); allowed: finite values only\. Fix:"):
        vec(t)


def test_check_finite_catches_later_corruption():
    v = rand(3, 8)
    assert v.check_finite() is v
    v.tensor[1, 1] = float("nan")
    with pytest.raises(st.errors.InvalidVectorError, match="1 NaN"):
        v.check_finite()


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 8)])
def test_empty_tensors_are_rejected(shape):
    with pytest.raises(st.errors.InvalidVectorError, match=r"allowed: \[d_model\] \(a direction\) or \[pos, d_model\]"):
        vec(torch.zeros(shape))


@pytest.mark.parametrize(
    "tensor",
    [torch.zeros(2, 3, 4), torch.zeros(()), torch.zeros(3, dtype=torch.long), [1.0, 2.0]],
    ids=["3-d", "0-d", "int", "list"],
)
def test_bad_shapes_dtypes_and_types_are_rejected(tensor):
    # Under pytest the jaxtyping annotation catches these first; without it, __post_init__ does.
    with pytest.raises((st.errors.InvalidVectorError, TypeCheckError)):
        SteeringVector(tensor, hook_name=HOOK)


@pytest.mark.parametrize(
    "tensor, match",
    [
        (torch.zeros(2, 3, 4), r"shape \(2, 3, 4\); allowed: \[d_model\] \(a direction\) or \[pos, d_model\]"),
        (torch.zeros(()), r"shape \(\); allowed"),
        (torch.zeros(3, dtype=torch.long), r"dtype torch\.int64; allowed: a floating dtype\. Fix: call \.float\(\)"),
        ([1.0, 2.0], r"tensor must be a torch\.Tensor, got list\. Fix: wrap it with torch\.as_tensor"),
    ],
    ids=["3-d", "0-d", "int", "list"],
)
def test_validation_messages(tensor, match):
    """The production-time messages (__post_init__), checked without the runtime type checker in front."""
    v = object.__new__(SteeringVector)
    v.tensor, v.hook_name, v.weight_mode = tensor, HOOK, "hf"
    with pytest.raises(st.errors.InvalidVectorError, match=match):
        v.__post_init__()


def test_unknown_weight_mode_is_refused(untyped):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"weight_mode='folded'; allowed: 'hf' or 'compat'"):
        rand(3, 8, weight_mode="folded")


# ---------------------------------------------------------------- check_compatible
def test_check_compatible_accepts_a_vector_of_the_model(tiny):
    st.actadd(tiny, "a", "b", layer=0).check_compatible(tiny)
    SteeringVector(torch.zeros(64), hook_name="blocks.1.hook_mlp_out").check_compatible(tiny)  # no model name: ok


def test_check_compatible_refuses_another_width(tiny):
    with pytest.raises(st.errors.VectorMismatchError, match=r"d_model=8 but model 'tiny-llama' has d_model=64"):
        rand(3, 8, model="tiny-llama").check_compatible(tiny)


def test_check_compatible_refuses_another_model(tiny, tiny_gpt2):
    v = st.actadd(tiny_gpt2, "a", "b", layer=0)
    with pytest.raises(st.errors.VectorMismatchError, match=r"comes from model 'tiny-gpt2' but is applied to 'tiny-llama'.*vec\.model_name = model\.cfg\.model_name"):
        v.check_compatible(tiny)


def test_check_compatible_refuses_an_unknown_hook(tiny):
    v = SteeringVector(torch.zeros(64), hook_name="blocks.7.hook_resid_pre", model_name="tiny-llama")
    with pytest.raises(st.errors.VectorMismatchError, match=r"hook 'blocks\.7\.hook_resid_pre' is not a hook point of model 'tiny-llama'"):
        v.check_compatible(tiny)


def test_check_compatible_refuses_another_weight_mode():
    from steering.testing import tiny_model

    model = tiny_model("gpt2")  # own copy: compatibility mode rewrites the weights
    v = st.actadd(model, "ab", "cd", layer=1)
    assert v.weight_mode == "hf"
    model.enable_compatibility_mode()
    with pytest.raises(st.errors.VectorMismatchError, match=r"weight_mode='hf' but the model runs in 'compat'"):
        v.check_compatible(model)
    w = st.actadd(model, "ab", "cd", layer=1)
    assert w.weight_mode == "compat"
    w.check_compatible(model)


# ---------------------------------------------------------------- issue 17 (category 8): what a vector may be made of
@pytest.mark.parametrize("hook_name", [None, 123, "", b"blocks.0.hook_resid_pre", ["blocks.0.hook_resid_pre"]], ids=repr)
def test_hook_name_must_be_a_non_empty_string(hook_name, untyped):
    with pytest.raises(st.errors.InvalidArgumentError, match=rf"hook_name={re.escape(repr(hook_name)[:20])}.*allowed: a "
                                                             r"full hook-point name.*Fix:"):
        SteeringVector(torch.ones(4), hook_name=hook_name)


@pytest.mark.parametrize("tensor, match", [
    (torch.ones(4, device="meta"), r"tensor is on the meta device.*Fix: .*\.to\('cpu'\)"),
    (torch.ones(2, 4).to_sparse(), r"tensor is a torch\.sparse_coo tensor"),
    (torch.ones(4, dtype=torch.complex64), r"dtype torch\.complex64; allowed: a floating dtype\. Fix: call \.float\(\)"),
    (torch.ones(4, dtype=torch.int64), r"dtype torch\.int64; allowed: a floating dtype"),
    (torch.ones(4, dtype=torch.bool), r"dtype torch\.bool; allowed: a floating dtype"),
    ([1.0, 2.0], r"tensor must be a torch\.Tensor, got list\. Fix: wrap it with torch\.as_tensor"),
    (3.0, r"tensor must be a torch\.Tensor, got float"),
], ids=["meta", "sparse", "complex", "int", "bool", "list", "float"])
def test_tensors_without_usable_values_are_refused_at_construction(tensor, match, untyped):
    with pytest.raises(st.errors.InvalidVectorError, match=match):
        SteeringVector(tensor, hook_name="blocks.0.hook_resid_pre")


def test_vector_list_lives_with_the_vector():
    from steering.vectors import vector_list

    v = SteeringVector(torch.ones(4), hook_name="blocks.0.hook_resid_pre")
    assert vector_list(v) == [v]
    with pytest.raises(st.errors.InvalidArgumentError, match=r"vector=3 is not a SteeringVector"):
        vector_list(3)


def test_scaling_takes_numpy_and_tensor_scalars_and_refuses_the_rest(untyped):
    import numpy as np

    v = SteeringVector(torch.ones(4), hook_name="blocks.0.hook_resid_pre")
    assert torch.equal((v * np.float32(2.0)).tensor, torch.full((4,), 2.0))
    assert torch.equal((v / torch.tensor(4.0)).tensor, torch.full((4,), 0.25))
    for bad in (True, "2", float("nan"), 1 + 1j):
        with pytest.raises(st.errors.InvalidArgumentError, match="cannot multiply a SteeringVector by"):
            v * bad
    for bad in (0, np.float64(0.0), float("inf")):
        with pytest.raises(st.errors.InvalidArgumentError, match="cannot divide a SteeringVector by"):
            v / bad
