"""The jaxtyping runtime checks are on under pytest (``--jaxtyping-packages=steering,beartype.beartype``).

Every call below is wrong in a way that *only* the runtime checker notices: without it, the
package would return a result (or fail later with an unrelated error), so these tests fail
whenever the checks are switched off.
"""

import pytest
import torch
from jaxtyping import TypeCheckError

import steering as st


def test_checks_are_configured_for_the_package(pytestconfig):
    assert "steering" in pytestconfig.getoption("--jaxtyping-packages")


def test_wrong_argument_type_is_caught():
    from steering.tokens import left_pad

    # unchecked, this quietly returns a batch padded with 0.5 truncated to 0
    with pytest.raises(TypeCheckError, match=r"left_pad"):
        left_pad([torch.tensor([1, 5]), torch.tensor([1, 6, 7])], pad_id=0.5)


def test_correct_call_passes():
    from steering.tokens import left_pad

    tokens, mask = left_pad([torch.tensor([1, 5]), torch.tensor([1, 6, 7])], pad_id=0)
    assert tokens.tolist() == [[0, 1, 5], [1, 6, 7]] and mask.tolist() == [[0, 1, 1], [1, 1, 1]]


def test_inconsistent_dimensions_are_caught():
    from steering.placement import Span

    first_real = torch.zeros(2, dtype=torch.long)  # " batch" = 2
    real_mask = torch.ones(3, 5, dtype=torch.long)  # "batch seq" with batch = 3
    with pytest.raises(TypeCheckError, match=r"batch"):
        Span(batch=2, seq=5, start=0, first_real=first_real, real_mask=real_mask)
    Span(batch=3, seq=5, start=0, first_real=torch.zeros(3, dtype=torch.long), real_mask=real_mask)


def test_wrong_rank_is_caught():
    from steering.placement import Rule, Span, apply_rule, placement

    mask, index = placement("all", None, Span.whole(1, 4))
    direction = torch.ones(64)
    assert apply_rule(torch.zeros(1, 4, 64), Rule("all"), direction, mask, index, 1.0).shape == (1, 4, 64)
    with pytest.raises(TypeCheckError, match=r"batch seq d_model"):
        apply_rule(torch.zeros(4, 64), Rule("all"), direction, mask, index, 1.0)  # a residual without its batch axis


def test_wrong_dtype_is_caught():
    # an integer tensor is not a Float[Tensor, ...] (the class's own check would say the same later)
    with pytest.raises(TypeCheckError, match=r"SteeringVector"):
        st.SteeringVector(torch.zeros(4, dtype=torch.long), hook_name="blocks.0.hook_resid_pre")


def test_the_checker_is_beartype():
    """Plain (non-array) annotations are checked by beartype, as named in the pytest options."""
    from beartype.roar import BeartypeException

    from steering.tokens import left_pad

    with pytest.raises(TypeCheckError) as info:
        left_pad([torch.tensor([1, 5])], pad_id="0")
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert any(isinstance(e, BeartypeException) for e in chain), [type(e).__name__ for e in chain]
