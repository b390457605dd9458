"""steering.engine.forward_logprobs: the one batched forward pass behind every no-sampling measure."""

import pytest
import torch

import steering as st
from steering.engine import forward_logprobs
from steering.errors import InvalidArgumentError
from steering.tokens import tokenize_prompt

TEXTS = ["the cat sat on the mat", "hello", "a quiet day in town today"]


@pytest.fixture
def seqs(tiny):
    return [tokenize_prompt(tiny, t) for t in TEXTS]


def test_readouts_agree_with_each_other(tiny, seqs):
    full = forward_logprobs(tiny, seqs)
    last = forward_logprobs(tiny, seqs, readout="last")
    nxt = forward_logprobs(tiny, seqs, readout="next")
    for s, f, l, n in zip(seqs, full, last, nxt):
        assert f.shape == (s.numel(), tiny.cfg.d_vocab) and l.shape == (1, tiny.cfg.d_vocab)
        torch.testing.assert_close(l[0], f[-1], atol=1e-4, rtol=1e-4)  # left padding changes nothing
        torch.testing.assert_close(n, f[:-1].gather(-1, s[1:].unsqueeze(-1)).squeeze(-1), atol=1e-4, rtol=1e-4)


def test_batching_and_backends_change_nothing(tiny, seqs):
    vec = st.actadd(tiny, "love", "hate", layer=1)
    coeffs = [0.0, 2.0, 8.0]
    ref = forward_logprobs(tiny, seqs, vec, coeffs, batch_size=3, backend="bridge")
    for kwargs in (dict(batch_size=1), dict(batch_size=2, backend="twin")):
        for a, b in zip(ref, forward_logprobs(tiny, seqs, vec, coeffs, **kwargs)):
            torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
    unsteered = forward_logprobs(tiny, seqs[:1])
    torch.testing.assert_close(ref[0], unsteered[0], atol=2e-4, rtol=1e-4)  # coefficient 0 is the plain model
    assert not torch.allclose(ref[2], forward_logprobs(tiny, seqs[2:])[0])
    assert st.active_hooks(tiny) == 0


def test_progress_bar_counts_rows(tiny, seqs):
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    forward_logprobs(tiny, seqs, batch_size=2, bar=bar)
    assert bar.n == len(seqs)


def test_bad_arguments(tiny, seqs, untyped):
    with pytest.raises(InvalidArgumentError, match=r"readout='first'; allowed: 'all', 'last', 'next'"):
        forward_logprobs(tiny, seqs, readout="first")
    with pytest.raises(InvalidArgumentError, match=r"batch_size=0; allowed: an integer ≥ 1"):
        forward_logprobs(tiny, seqs, batch_size=0)


def test_last_only_forward_equals_the_full_forward(tiny):
    model, v = tiny, st.actadd(tiny, "love", "hate", layer=1)
    seqs = [tokenize_prompt(model, t) for t in TEXTS]  # different lengths: left vs right padding
    coeffs = [0.0, 4.0, -3.0]
    full = forward_logprobs(model, seqs, v, coeffs, batch_size=3)
    last = forward_logprobs(model, seqs, v, coeffs, batch_size=3, readout="last")
    for f, l in zip(full, last):
        torch.testing.assert_close(l[0], f[-1], atol=1e-4, rtol=1e-4)
