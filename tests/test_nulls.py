"""steering.nulls: norm-matched random vectors, the swapped pair, label-permuted many-pair directions."""

import numpy as np
import pytest
import torch

import steering as st
from steering.nulls import random_vectors, shuffled_directions, swapped_vector


def test_random_vectors_match_the_norm_per_position_and_are_seeded(tiny):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    nulls = random_vectors(vec, 5, seed=3)
    assert len(nulls) == 5 and random_vectors(vec, 0) == []
    for i, n in enumerate(nulls):
        assert n.hook_name == vec.hook_name and n.tensor.shape == vec.tensor.shape and n.tensor.dtype == vec.tensor.dtype
        assert torch.allclose(n.tensor.norm(dim=-1), vec.tensor.norm(dim=-1), atol=1e-5)
        assert n.meta["null"] == "random" and n.meta["null_index"] == i
    assert torch.equal(nulls[0].tensor[0], vec.tensor[0])  # the zero BOS row stays zero
    again = random_vectors(vec, 5, seed=3)
    assert all(torch.equal(a.tensor, b.tensor) for a, b in zip(nulls, again))
    other_layer = random_vectors(st.actadd(tiny, "love", "hate", layer=0), 1, seed=3)[0]
    assert not torch.allclose(other_layer.tensor[1:] / other_layer.tensor[1:].norm(dim=-1, keepdim=True),
                              nulls[0].tensor[1:] / nulls[0].tensor[1:].norm(dim=-1, keepdim=True))
    cosines = [abs(vec.cosine_similarity(n)) for n in nulls]
    assert max(cosines) < 0.6  # random directions in 64 dimensions


def test_swapped_vector_is_the_negation(tiny):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    swapped = swapped_vector(vec)
    assert torch.equal(swapped.tensor, -vec.tensor) and swapped.meta["null"] == "shuffled"
    assert torch.allclose(swapped.tensor, st.actadd(tiny, "hate", "love", layer=1).tensor, atol=1e-5)


def test_shuffled_directions_flip_pair_differences(tiny):
    pos, neg = ["good", "nice", "fine", "great"], ["bad", "mean", "poor", "awful"]
    real, nulls = shuffled_directions(tiny, pos, neg, 1, 16, seed=0)
    assert torch.allclose(real.tensor, st.mean_diff(tiny, pos, neg, 1).tensor, atol=1e-5)
    assert len(nulls) == 16 and all(n.meta["null"] == "shuffled" for n in nulls)
    diffs = np.stack([(st.mean_diff(tiny, [p], [q], 1).tensor).numpy() for p, q in zip(pos, neg)])
    for n in nulls:  # each control is the mean of ±diffs: solve for the signs, they must be ±1
        signs, *_ = np.linalg.lstsq(diffs.T / len(pos), n.tensor.numpy(), rcond=None)
        assert np.allclose(np.abs(signs), 1.0, atol=1e-3)
    _, again = shuffled_directions(tiny, pos, neg, 1, 16, seed=0)
    assert all(torch.equal(a.tensor, b.tensor) for a, b in zip(nulls, again))


def test_bad_counts_are_refused(tiny):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    with pytest.raises(st.errors.InvalidArgumentError, match="n=-1"):
        random_vectors(vec, -1)
