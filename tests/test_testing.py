"""steering.testing: tiny random models for plumbing tests (never for judging steering)."""

import pytest
import torch

from steering.errors import InvalidArgumentError
from steering.testing import tiny_hf_model, tiny_model, tiny_tokenizer


def test_tiny_models_are_deterministic_per_seed():
    a, b, c = tiny_model(seed=3), tiny_model(seed=3), tiny_model(seed=4)
    tokens = a.to_tokens("hello")
    assert torch.equal(a(tokens), b(tokens)) and not torch.equal(a(tokens), c(tokens))


@pytest.mark.parametrize("arch, cls", [("llama", "LlamaForCausalLM"), ("gpt2", "GPT2LMHeadModel")])
def test_architectures_and_sizes(arch, cls):
    model = tiny_model(arch, n_layers=3, d_model=32)
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.model_name) == (3, 32, f"tiny-{arch}")
    assert type(tiny_hf_model(arch)[0]).__name__ == cls


def test_tokenizer_is_character_level_with_bos():
    tok = tiny_tokenizer()
    assert tok("ab").input_ids == [1, 4, 5] and tok.decode([4, 5]) == "ab"


def test_unknown_architecture_is_refused(untyped):
    with pytest.raises(InvalidArgumentError, match=r"arch='bert' is not a tiny architecture; allowed: 'llama', 'gpt2'"):
        tiny_hf_model("bert")
