"""steering.validate: the shared argument checks and their messages (value, allowed, fix)."""

import pytest
import torch

from steering.errors import EmptyPromptError, InvalidArgumentError, InvalidCoefficientError
from steering.validate import coeff, coeff_list, coeffs, count, finite_number, text_list, top_k
from steering.vectors import SteeringVector, vector_list


def test_coefficients():
    assert coeff(torch.tensor(2)) == 2.0
    assert coeffs(3) == 3.0
    assert torch.equal(coeffs([1, 2.5]), torch.tensor([1.0, 2.5]))
    assert torch.equal(coeffs(torch.tensor([0.0, 1.0])), torch.tensor([0.0, 1.0]))
    assert coeff_list(range(3)) == [0.0, 1.0, 2.0]
    for bad in (float("nan"), float("-inf"), True, "5", None):
        with pytest.raises(InvalidCoefficientError, match=r"is not a finite number; allowed: any finite float"):
            coeff(bad)
    with pytest.raises(InvalidCoefficientError, match=r"coeff=\[\] is an empty sequence"):
        coeffs([])
    with pytest.raises(InvalidCoefficientError, match=r"coeff=nan"):
        coeffs([1.0, float("nan")])


def test_counts_and_numbers():
    assert count("n", 3) == 3 and count("boundary", 0, 0) == 0
    with pytest.raises(InvalidArgumentError, match=r"n=True; allowed: an integer ≥ 1\. Fix: pass e\.g\. n=4\."):
        count("n", True)
    with pytest.raises(InvalidArgumentError, match=r"packed_weights: rows=0; allowed: an int >= 1"):
        count("rows", 0, caller="packed_weights")
    assert finite_number("freq_penalty", -1) == -1.0
    with pytest.raises(InvalidArgumentError, match=r"temperature=0; allowed: a finite number > 0\."):
        finite_number("temperature", 0, positive=True)
    assert top_k(5, 10) == 5
    with pytest.raises(InvalidArgumentError, match=r"k=11; allowed: an int in 1\.\.10"):
        top_k(11, 10)


def test_text_lists():
    assert text_list("prompts", "hi") == ["hi"]
    assert text_list("prompts", ("a", "b")) == ["a", "b"]
    with pytest.raises(InvalidArgumentError, match=r"prompts=\[\]; allowed: a non-empty string or a non-empty list"):
        text_list("prompts", [])
    with pytest.raises(InvalidArgumentError, match=r"pos=None; allowed: one per pair\. Fix: pass e\.g\. pos=\['x'\]"):
        text_list("pos", None, allowed="one per pair", example="['x']")
    with pytest.raises(InvalidArgumentError, match=r"texts\[1\]=3 is a int; allowed: str"):
        text_list("texts", ["a", 3])
    with pytest.raises(EmptyPromptError, match=r"texts\[0\] is the empty string") as info:
        text_list("texts", [""])
    assert isinstance(info.value, InvalidArgumentError)  # an empty prompt is an invalid argument too
    with pytest.raises(EmptyPromptError, match=r"^p\[1\] custom$"):
        text_list("p", ["a", ""], empty="{name}[{i}] custom")


def test_vector_lists():
    vec = SteeringVector(torch.ones(4), hook_name="blocks.0.hook_resid_pre")
    assert vector_list(vec) == [vec] and vector_list([vec, vec]) == [vec, vec]
    assert vector_list([], allow_empty=True) == []
    for bad in ([], [vec, 1], "vec", None):
        with pytest.raises(InvalidArgumentError, match=r"is not a SteeringVector; allowed: a SteeringVector or a list"):
            vector_list(bad)


def test_numbers_beyond_float_range_are_refused_not_overflowed():
    """An int too large for a float (10**400) used to raise a raw OverflowError (issue 17, category 4)."""
    with pytest.raises(InvalidCoefficientError, match=r"coeff=1000000000000000000000000000000000000… is not a finite"):
        coeff(10**400)
    with pytest.raises(InvalidCoefficientError):
        coeffs([1.0, 10**400])


# ---------------------------------------------------------------- issue 17 (category 8): one rule for every argument
import numpy as np  # noqa: E402

from steering.validate import as_int, as_real, flag, integer, number, seed, top_p  # noqa: E402

NOT_INTS = [True, False, 2.0, 2.7, "5", None, torch.tensor(1.7), torch.tensor(2.0), torch.tensor(True),
            torch.tensor([1, 2]), np.float64(2.0), np.bool_(True), 1 + 0j]


def test_ints_are_ints_and_nothing_else_is():
    assert [as_int(v) for v in (3, np.int64(3), np.int32(-2), torch.tensor(4), torch.tensor(5, dtype=torch.int8))] == [
        3, 3, -2, 4, 5]
    for bad in NOT_INTS:
        assert as_int(bad) is None, bad


@pytest.mark.parametrize("bad", NOT_INTS, ids=repr)
def test_integer_refuses_non_ints_naming_the_value_the_range_and_the_fix(bad):
    with pytest.raises(InvalidArgumentError) as info:
        integer("n", bad, 1, 9)
    text = str(info.value)
    assert text.startswith(f"n={bad!r}"[:20]) and "allowed: an int in 1..9" in text and "Fix: pass e.g. n=" in text


def test_a_float_tensor_is_refused_not_truncated():
    with pytest.raises(InvalidArgumentError, match=r"layer=tensor\(1\.7000\) is a float32 tensor .*floats are not rounded"):
        integer("layer", torch.tensor(1.7), 0, 5)


@pytest.mark.parametrize("bad", [True, "0.5", None, float("nan"), float("inf"), -float("inf"), 1 + 1j, 10**400,
                                 torch.tensor([0.5, 0.5]), torch.tensor(True)], ids=repr)
def test_number_refuses_what_is_not_a_finite_real(bad):
    with pytest.raises(InvalidArgumentError, match=r"allowed: a finite number"):
        number("x", bad)


def test_number_accepts_numpy_and_0d_tensors_and_checks_the_range():
    assert number("x", np.float32(0.5)) == 0.5 and number("x", torch.tensor(0.25)) == 0.25 and number("x", 3) == 3.0
    with pytest.raises(InvalidArgumentError, match=r"x=0; allowed: a finite number > 0\. Fix: pass e\.g\. x=1"):
        number("x", 0, 0, above=True, example=1)
    with pytest.raises(InvalidArgumentError, match=r"freq_penalty=1e\+308; allowed: a finite number in -100\.\.100"):
        finite_number("freq_penalty", 1e308, bound=100)


@pytest.mark.parametrize("bad", ["no", "False", 0, 1, None, 0.0, torch.tensor(True)], ids=repr)
def test_flags_are_real_bools(bad):
    with pytest.raises(InvalidArgumentError, match=rf"do_sample={bad!r}"[:40].replace("(", r"\(").replace(")", r"\)")):
        flag("do_sample", bad)
    assert flag("do_sample", np.bool_(False)) is False and flag("progress", None, optional=True) is None


@pytest.mark.parametrize("bad", [2**70, -(2**64), 1.0, "0", True, torch.tensor(1.5)], ids=repr)
def test_seeds(bad):
    with pytest.raises(InvalidArgumentError, match=r"allowed: an int in -2\*\*63\.\.2\*\*64-1"):
        seed(bad)
    assert seed(None) is None and seed(np.int64(7)) == 7 and seed(2**64 - 1) == 2**64 - 1


@pytest.mark.parametrize("bad", [True, "0.5", 0, -0.1, 1.5, float("nan")], ids=repr)
def test_top_p(bad):
    with pytest.raises(InvalidArgumentError, match=r"allowed: a number in \(0, 1\], or None\. Fix"):
        top_p(bad)


@pytest.mark.parametrize("bad", [-5, 0, "5", 2.7, True, torch.tensor(3.0), 11], ids=repr)
def test_top_k_refuses_everything_but_an_int_in_range(bad):
    with pytest.raises(InvalidArgumentError, match=r"top_k=.*allowed: an int in 1\.\.10 \(the vocabulary size\)"):
        top_k(bad, 10, "top_k")
    assert top_k(np.int64(3), 10) == 3


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "4", torch.tensor(2.5)], ids=repr)
def test_counts_refuse_bools_floats_and_strings(bad):
    with pytest.raises(InvalidArgumentError, match=r"batch_size=.*allowed: an integer ≥ 1\. Fix: pass e\.g\. batch_size="):
        count("batch_size", bad)
    assert count("batch_size", np.int64(4)) == 4 and count("batch_size", torch.tensor(4)) == 4


def test_coefficients_take_numpy_numbers_and_refuse_complex():
    assert coeff(np.float32(2.5)) == 2.5
    with pytest.raises(InvalidCoefficientError):
        coeff(1 + 2j)
