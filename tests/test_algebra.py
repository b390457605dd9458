"""mean_vectors and cosine_matrix on tiny models (relative_norm: tests/test_norms.py)."""

import pytest
import torch

import steering as st
from steering.algebra import cosine_matrix, mean_vectors
from steering.vectors import SteeringVector

HOOK = "blocks.1.hook_resid_pre"


def _vec(t, hook=HOOK, model="tiny-llama"):
    return SteeringVector(torch.as_tensor(t, dtype=torch.float32), hook_name=hook, model_name=model)


def test_mean_vectors_is_the_elementwise_mean():
    a, b, c = _vec([1.0, 2.0]), _vec([3.0, 4.0]), _vec([5.0, 9.0])
    assert mean_vectors([a, b, c]).tensor.tolist() == [3.0, 5.0]


def test_mean_vectors_refuses_mixed_hooks_and_empty_lists():
    with pytest.raises(st.errors.VectorMismatchError, match="different hook_name"):
        mean_vectors([_vec([1.0]), _vec([1.0], hook="blocks.0.hook_resid_pre")])
    with pytest.raises(st.errors.InvalidArgumentError, match="non-empty list of SteeringVectors"):
        mean_vectors([])


def test_cosine_matrix_values_and_labels(tiny):
    layers = [st.actadd(tiny, "love", "hate", layer=l).direction() for l in (0, 1)]
    m = cosine_matrix(layers + [-layers[0]], labels=["l0", "l1", "neg l0"])
    assert list(m.index) == ["l0", "l1", "neg l0"]
    torch.testing.assert_close(torch.tensor(m.values.diagonal()), torch.ones(3))
    assert m.loc["l0", "neg l0"] == pytest.approx(-1.0, abs=1e-6)
    assert (m.values == m.values.T).all()
    expected = layers[0].cosine_similarity(layers[1])
    assert m.loc["l0", "l1"] == pytest.approx(expected, abs=1e-6)


def test_cosine_matrix_refuses_bad_labels_and_widths():
    with pytest.raises(st.errors.InvalidArgumentError, match="must be 2 distinct strings"):
        cosine_matrix([_vec([1.0, 0.0]), _vec([0.0, 1.0])], labels=["x", "x"])
    with pytest.raises(st.errors.VectorMismatchError, match=r"d_model values \[2, 3\]"):
        cosine_matrix([_vec([1.0, 0.0]), _vec([0.0, 1.0, 0.0])])
