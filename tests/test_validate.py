"""steering.validate: the shared argument checks and their messages (value, allowed, fix)."""

import pytest
import torch

from steering.errors import EmptyPromptError, InvalidArgumentError, InvalidCoefficientError
from steering.validate import coeff, coeff_list, coeffs, count, finite_number, text_list, top_k, vector_list
from steering.vectors import SteeringVector


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
