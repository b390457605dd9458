"""Tiny random models for tests, doctests and quick experiments.

These models are randomly initialised: use them to test plumbing and numerics,
never to judge whether steering *works* (that needs a real model, see
:func:`steering.load_model`). Building one takes ~0.1 s and needs no download.

Example:
    >>> from steering.testing import tiny_model
    >>> model = tiny_model("llama")
    >>> model.cfg.n_layers, model.cfg.d_model
    (2, 64)
    >>> model.to_str_tokens("hi there")[:3]
    ['<s>', 'h', 'i']
"""

import string
from typing import Any, Literal

import torch

from .errors import InvalidArgumentError
from .models import boot_bridge

__all__ = ["tiny_model", "tiny_hf_model", "tiny_tokenizer"]

_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
_CHARS = string.ascii_letters + string.digits + string.punctuation + " \n"


def tiny_tokenizer() -> Any:
    """A character-level fast tokenizer: one token per character, ``<s>`` as BOS.

    Example:
        >>> tok = tiny_tokenizer()
        >>> tok("ab").input_ids
        [1, 4, 5]
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, decoders
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(_SPECIALS)}
    for ch in _CHARS:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tok.init_kwargs["name_or_path"] = "tiny-char"
    return tok


def tiny_hf_model(
    arch: Literal["llama", "gpt2"] = "llama",
    *,
    n_layers: int = 2,
    d_model: int = 64,
    seed: int = 0,
) -> tuple[Any, Any]:
    """The plain (unbridged) Hugging Face model and tokenizer behind :func:`tiny_model`.

    Useful to save a tiny model with ``save_pretrained`` (a bridged model cannot be saved).

    Example:
        >>> hf_model, tok = tiny_hf_model("llama")
        >>> type(hf_model).__name__
        'LlamaForCausalLM'
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    vocab = len(tok)
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        hf_model = LlamaForCausalLM(config)
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab, n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=256,
            bos_token_id=1, eos_token_id=2, pad_token_id=0,
        )
        hf_model = GPT2LMHeadModel(config)
    else:
        raise InvalidArgumentError(f"arch={arch!r} is not a tiny architecture; allowed: 'llama', 'gpt2'.")
    hf_model.eval()
    return hf_model, tok


def tiny_model(
    arch: Literal["llama", "gpt2"] = "llama",
    *,
    n_layers: int = 2,
    d_model: int = 64,
    seed: int = 0,
) -> Any:
    """A randomly initialised tiny ``TransformerBridge`` (Llama- or GPT-2-style).

    Args:
        arch: ``"llama"`` (RMSNorm, rotary, gated MLP) or ``"gpt2"`` (LayerNorm, learned positions).
        n_layers: Number of blocks.
        d_model: Residual width.
        seed: Seed of the random initialisation (same seed, same weights).

    Returns:
        A ``TransformerBridge`` on CPU, float32, in eval mode.

    Example:
        >>> tiny_model("gpt2", n_layers=3).cfg.n_layers
        3
    """
    hf_model, tok = tiny_hf_model(arch, n_layers=n_layers, d_model=d_model, seed=seed)
    return boot_bridge(f"tiny-{arch}", hf_model, tok, "cpu")
