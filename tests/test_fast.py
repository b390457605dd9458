"""The twin backend (steering._fast) computes exactly what the bridge's hook points compute, and its speed-ups
(small-batch kernels, packed weights, shared rows, resumed passes) change speed, not results."""

import contextlib
import gc
import subprocess
import sys
import weakref

import pytest
import torch
from jaxtyping import TypeCheckError

import steering as st
from steering._fast import (
    PACK_MIN_NEW_TOKENS, PACK_MIN_ROWS, PACK_MIN_WORK, ResumableForward, chunked_linear, decoder_layers,
    existing_twin, linear_kernel, packed_weights, shared_rows, shares_weights, twin_for,
)
from steering._fast import kernels, packing
from steering._fast.kernels import TwinLinear, chunkable, clear_probes, onednn_linear, reorder_op
from steering._fast.packing import FusedGroup, GroupSlice
from steering.apply import attached
from steering.backends import resolve
from steering.errors import InvalidArgumentError
from steering.testing import tiny_hf_model, tiny_model
from steering.tokens import left_pad, tokenize_prompt

PROMPTS = ["I went up to my friend and said", "Hello there, you", "abcdefghijk"]


def test_twin_shares_every_weight_and_is_built_once(any_tiny):
    plain = twin_for(any_tiny)
    assert plain is twin_for(any_tiny) is existing_twin(any_tiny)
    assert shares_weights(any_tiny, plain)
    assert len(decoder_layers(plain)) == any_tiny.cfg.n_layers
    assert not any(t.is_meta for t in list(plain.parameters()) + list(plain.buffers()))
    before = [p.detach().clone() for p in any_tiny.original_model.parameters()][0]
    with torch.no_grad():
        next(plain.parameters()).add_(1.0)  # a change through the twin is a change of the bridge's weights
        assert torch.equal(next(any_tiny.original_model.parameters()), before + 1.0)
        next(plain.parameters()).sub_(1.0)


def test_twin_lives_in_a_registry_not_on_the_bridge():
    """Nothing is set on the user's bridge; existing_twin never builds; the twin goes when the bridge goes."""
    model = tiny_model("llama")
    attrs = set(vars(model))
    assert existing_twin(model) is None and existing_twin(model) is None  # asking does not build
    twin = twin_for(model)
    assert twin is not None and existing_twin(model) is twin
    assert set(vars(model)) == attrs  # no attribute added to the bridge
    gone = weakref.ref(twin)
    del model, twin
    gc.collect()
    assert gone() is None  # the registry held the bridge weakly: its twin was freed with it


def test_twin_linear_layers_hold_the_bridge_parameters():
    """The twin's nn.Linear children are replaced by TwinLinear instances holding the same Parameter objects."""
    model = tiny_model("llama")
    plain = twin_for(model)
    linears = [m for m in plain.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is TwinLinear for m in linears)
    assert all(type(m) is torch.nn.Linear for m in model.original_model.modules() if isinstance(m, torch.nn.Linear))
    bridge_params = {id(p) for p in model.original_model.parameters()}
    assert all(id(p) in bridge_params for m in linears for p in m.parameters())
    assert list(plain.state_dict()) == list(tiny_hf_model("llama")[0].state_dict())  # keys unchanged
    assert plain.get_output_embeddings() in linears


@pytest.mark.parametrize("hook", ["resid_pre", "resid_post"])
@pytest.mark.parametrize("layer", [0, 1])
def test_twin_steered_logits_equal_bridge_hook_points(any_tiny, hook, layer, no_hooks):
    model = any_tiny
    vec = st.actadd(model, "Love you", "Hate", layer=layer, hook=hook)
    tokens = tokenize_prompt(model, PROMPTS[0]).unsqueeze(0)
    with torch.no_grad():
        with st.steer(model, vec, [4.0]):
            bridged = model.original_model(input_ids=tokens).logits
        with attached(resolve(model, [vec], "twin"), vec, [4.0]):
            fast = twin_for(model)(input_ids=tokens).logits
        plain_unsteered = twin_for(model)(input_ids=tokens).logits
    torch.testing.assert_close(fast, bridged, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast, plain_unsteered, atol=1e-3)
    no_hooks(model)


@pytest.mark.parametrize("kw", [
    dict(coeff=20.0),
    dict(coeff=[0.0, 5.0, 20.0]),
    dict(coeff=20.0, use_cache=False),
    dict(coeff=3.0, direction=True, positions="all"),
    dict(coeff=1.0, direction=True, op="ablate"),
    dict(coeff=1.0, direction=True, op="clamp", value=2.0),
    dict(coeff=3.0, direction=True, positions="generated"),
])
def test_fast_generation_equals_the_bridge_path(any_tiny, kw, no_hooks):
    model = any_tiny
    kw = dict(kw)
    vec = st.actadd(model, "I love you!", "I hate you", layer=1)
    if kw.pop("direction", False):
        vec = vec.direction()
    args = dict(max_new_tokens=8, do_sample=False, n=1, **kw)
    fast = st.generate(model, PROMPTS, vec, backend="twin", **args)
    bridged = st.generate(model, PROMPTS, vec, backend="bridge", **args)
    assert fast == bridged
    no_hooks(model)


def test_other_hooks_stay_on_the_bridge(any_tiny):
    """A vector at mlp_out cannot use the twin; generation still steers through the hook points."""
    model = any_tiny
    vec = st.actadd(model, "I love you!", "I hate you", layer=1, hook="mlp_out")
    calls = []
    hp = model.hook_dict[vec.hook_name]
    hp.add_hook(lambda t, hook: calls.append(1), dir="fwd")
    try:
        st.generate(model, PROMPTS[:1], vec, 5.0, max_new_tokens=3, do_sample=False)
    finally:
        hp.remove_hooks("fwd")
    assert calls  # the bridge ran


def test_active_hooks_counts_hooks_on_the_twin(any_tiny, no_hooks):
    model = any_tiny
    vec = st.actadd(model, "ab", "", layer=0)
    twin_for(model)
    with attached(resolve(model, [vec], "twin"), vec, 1.0):
        assert st.active_hooks(model) == 3  # tracker pre + post, one layer hook
    no_hooks(model)


def test_resumed_sweep_equals_full_passes(any_tiny):
    prompts = ["I think that it", "we will go to the", "ab"]  # "ab" is shorter than the vector: truncated
    kw = dict(layers="all", coeffs=[2.0, -3.0, 6.0], metrics=[st.Metric("logprob", targets=["l", "o"])])
    with pytest.warns(st.SteeringWarning):
        resumed = st.sweep(any_tiny, "love", "hate", prompts, reuse=True, batch_size=4, **kw)
    with pytest.warns(st.SteeringWarning):
        full = st.sweep(any_tiny, "love", "hate", prompts, reuse=False, **kw)
    assert resumed[["layer", "coeff", "prompt"]].equals(full[["layer", "coeff", "prompt"]])
    assert resumed.value.tolist() == pytest.approx(full.value.tolist(), abs=1e-4)
    assert resumed.value.nunique() > 3


def test_resumable_forward_reproduces_the_full_pass(any_tiny):
    seqs = [tokenize_prompt(any_tiny, t) for t in ("hello there you", "ab", "the cat sat on the mat")]
    ids, mask = left_pad(seqs, any_tiny.tokenizer.pad_token_id)
    resume = ResumableForward(twin_for(any_tiny), ids, mask)
    assert all(resume.check(layer) for layer in range(any_tiny.cfg.n_layers))
    with torch.no_grad():
        full = twin_for(any_tiny)(input_ids=ids, attention_mask=mask,
                                  position_ids=(mask.cumsum(-1) - 1).clamp_min(0)).logits[:, -1]
    torch.testing.assert_close(resume.base_logits, full, atol=1e-5, rtol=1e-5)
    resume.inputs[1] = (resume.inputs[1][0] * 2, *resume.inputs[1][1:])  # corrupt: the check must notice
    assert not resume.check(1)


# ----------------------------------------------------------------------------- the chunked small-batch matmul
@pytest.fixture
def fresh_probes():
    """Probe oneDNN afresh in the test, and again after it (whatever the test patched)."""
    clear_probes()
    yield
    clear_probes()


def _without_onednn(monkeypatch):
    """Make chunked_linear behave as on a torch build without oneDNN."""
    monkeypatch.setattr(kernels, "onednn_linear", lambda: None)


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "no-onednn"])
@pytest.mark.parametrize("shape", [(1, 64), (3, 64), (2, 1, 64), (4, 4, 64), (16, 64), (2, 32, 64), (3, 50, 64)])
@pytest.mark.parametrize("bias", [False, True])
def test_chunked_linear_equals_f_linear(shape, bias, onednn, monkeypatch):
    """Every form (row blocks up to 4 rows; oneDNN, or the row-block matmul without it, above) gives F.linear's values."""
    if onednn and onednn_linear() is None:
        pytest.skip("this torch build has no oneDNN linear")
    if not onednn:
        _without_onednn(monkeypatch)
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 64, generator=gen)
    b = torch.randn(96, generator=gen) if bias else None
    x = torch.randn(*shape, generator=gen)
    with torch.no_grad():
        ours = chunked_linear(x, weight, b)
        ref = torch.nn.functional.linear(x, weight, b)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_chunked_linear_uses_onednn_from_five_rows(monkeypatch):
    """oneDNN serves 5+ rows (decode batches, prefill); up to 4 rows the row-block bmm does; an odd layout still works."""
    real = onednn_linear()
    if real is None:
        pytest.skip("this torch build has no oneDNN linear")
    seen = []

    def spy(x, *args):
        seen.append(x.numel() // x.shape[-1])
        return real(x, *args)

    monkeypatch.setattr(kernels, "onednn_linear", lambda: spy)
    weight = torch.randn(96, 64)
    with torch.no_grad():
        for rows in (1, 4, 5, 32, 200):
            chunked_linear(torch.randn(rows, 64), weight)
        strided = torch.randn(6, 128)[:, ::2]  # not contiguous
        torch.testing.assert_close(chunked_linear(strided, weight), torch.nn.functional.linear(strided, weight),
                                   atol=1e-5, rtol=1e-5)
    assert seen == [5, 32, 200, 6]


@pytest.mark.parametrize("rows", [1, 2, 4])
def test_chunked_linear_feeds_bmm_column_major_rows_and_returns_contiguous(rows, monkeypatch):
    """A transposed input (as one bmm output used to hand the next layer) is copied to row-major rows first.

    MKL's batched matmul runs a row-major [d_in, rows] right-hand side 2-4x slower than the column-major
    one; the output is contiguous so the next layer gets row-major input too.
    """
    real_bmm = torch.bmm
    rhs_strides = []

    def spy(a, b, *args, **kwargs):
        rhs_strides.append(b.stride())
        return real_bmm(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "bmm", spy)
    weight = torch.randn(96, 64)
    x = torch.randn(64, rows).t()  # [rows, 64], column-major
    with torch.no_grad():
        out = chunked_linear(x, weight)
        again = chunked_linear(out[:, :64], torch.randn(96, 64))  # a chained call, as in an MLP
    assert len(rhs_strides) == 2 and all(s[1] == 1 for s in rhs_strides), rhs_strides  # d_in is the unit stride
    assert out.is_contiguous() and again.is_contiguous()
    torch.testing.assert_close(out, torch.nn.functional.linear(x, weight), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["grad", "bf16", "too_many_rows", "indivisible", "indivisible_few_rows"])
def test_chunked_linear_hands_other_inputs_to_f_linear(case, monkeypatch):
    """Inputs no fast form serves (the row-count cases: without oneDNN) get F.linear's exact result."""
    if case in ("too_many_rows", "indivisible"):
        _without_onednn(monkeypatch)
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(98 if case.startswith("indivisible") else 96, 64, generator=gen)
    x = torch.randn({"too_many_rows": 65, "indivisible": 8}.get(case, 2), 64, generator=gen)
    if case == "bf16":
        weight, x = weight.bfloat16(), x.bfloat16()
    with torch.set_grad_enabled(case == "grad"):
        assert torch.equal(chunked_linear(x, weight), torch.nn.functional.linear(x, weight))


def test_onednn_probe_is_cached_and_tolerates_a_missing_op(monkeypatch, fresh_probes):
    first = onednn_linear()
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: pytest.fail("probed twice"))
    assert onednn_linear() is first  # cached: the probe did not run again
    clear_probes()
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert onednn_linear() is None and reorder_op() is None
    x, w = torch.randn(8, 64), torch.randn(96, 64)
    with torch.no_grad():
        torch.testing.assert_close(chunked_linear(x, w), torch.nn.functional.linear(x, w), atol=1e-5, rtol=1e-5)


def test_chunked_linear_refuses_mismatched_widths():
    """Under pytest the jaxtyping shape check refuses it; without it, F.linear's own error does."""
    with torch.no_grad(), pytest.raises((TypeCheckError, RuntimeError), match="d_in|cannot be multiplied"):
        chunked_linear(torch.randn(2, 32), torch.randn(96, 64))  # 64 elements, but 32 wide
    with torch.no_grad():  # the fast form is never tried on it
        assert not chunkable(torch.randn(2, 32), torch.randn(96, 64))
        assert chunkable(torch.randn(2, 64), torch.randn(96, 64))
    # outside pytest's shape checks a caller gets a SteeringError naming both widths and the fix
    code = ("import torch\nfrom steering._fast import chunked_linear\nfrom steering.errors import SteeringError\n"
            "try:\n    chunked_linear(torch.randn(2, 32), torch.randn(96, 64))\n"
            "except SteeringError as err:\n    print(err)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "input width 32" in res.stdout and "d_in 64" in res.stdout and "[d_out, d_in]" in res.stdout, res.stderr[-2000:]


def test_linear_kernel_setting_is_obeyed_and_checked(monkeypatch):
    monkeypatch.setenv("STEERING_LINEAR", "chunked")
    forced = tiny_model("llama")
    assert linear_kernel(forced) == "chunked"
    plain = twin_for(forced)
    linears = [m for m in plain.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, TwinLinear) and m.choice.kernel == "chunked" for m in linears)
    assert shares_weights(forced, plain)
    monkeypatch.setenv("STEERING_LINEAR", "torch")
    plain_torch = twin_for(tiny_model("llama"))
    assert all(m.choice.kernel == "torch" for m in plain_torch.modules() if isinstance(m, TwinLinear))
    assert list(plain.state_dict()) == list(plain_torch.state_dict())  # same parameters, only the forward differs
    monkeypatch.setenv("STEERING_LINEAR", "fastest")
    with pytest.raises(InvalidArgumentError, match="'fastest'.*auto, chunked, torch"):
        twin_for(tiny_model("llama"))
    with pytest.raises(InvalidArgumentError, match="'fastest'.*auto, chunked, torch"):
        twin_for(forced)  # also for a model whose twin exists


def test_changing_the_linear_setting_takes_effect_at_the_next_call(monkeypatch):
    """STEERING_LINEAR is re-read each time the twin is used: the same model's layers switch kernels."""
    model = tiny_model("llama")
    layer = next(m for m in twin_for(model).modules() if isinstance(m, TwinLinear))
    real_bmm, bmm_calls = torch.bmm, []
    monkeypatch.setattr(torch, "bmm", lambda *a, **k: bmm_calls.append(1) or real_bmm(*a, **k))
    x = torch.randn(1, layer.in_features)  # one row: the chunked kernel's row-block bmm
    ran = {}
    for kernel in ("chunked", "torch", "chunked"):
        monkeypatch.setenv("STEERING_LINEAR", kernel)
        assert linear_kernel(model) == kernel
        bmm_calls.clear()
        with torch.no_grad():
            out = layer(x)
        ran[kernel] = bool(bmm_calls)
        torch.testing.assert_close(out, torch.nn.functional.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
    assert ran == {"chunked": True, "torch": False}
    # auto measures when it becomes the setting, not on every call under it
    measured = []
    monkeypatch.setattr(kernels, "chunked_pays", lambda weight, reps=4: measured.append(weight.numel()) or True)
    monkeypatch.setenv("STEERING_LINEAR", "torch")
    twin_for(model)
    monkeypatch.delenv("STEERING_LINEAR")
    assert linear_kernel(model) == "chunked" and linear_kernel(model) == "chunked"
    assert measured == [max(m.weight.numel() for m in twin_for(model).modules() if isinstance(m, TwinLinear))]


def test_auto_keeps_torch_for_matrices_that_fit_in_cache(monkeypatch):
    monkeypatch.delenv("STEERING_LINEAR", raising=False)
    assert linear_kernel(tiny_model("llama")) == "torch"  # 64-wide model: chunking cannot pay


def test_chunked_kernel_generates_what_the_torch_kernel_generates(monkeypatch, no_hooks):
    """Same weights, both kernels: steered greedy tokens agree and logits differ only by rounding."""
    models = {}
    for kernel in ("torch", "chunked"):
        monkeypatch.setenv("STEERING_LINEAR", kernel)
        models[kernel] = tiny_model("llama")
        assert linear_kernel(models[kernel]) == kernel
    texts, step = {}, {}
    tokens = tokenize_prompt(models["torch"], PROMPTS[0]).unsqueeze(0)
    for kernel, model in models.items():
        monkeypatch.setenv("STEERING_LINEAR", kernel)  # each model generates under its own setting
        vec = st.actadd(model, "I love you!", "I hate you", layer=1)
        texts[kernel] = st.generate(model, PROMPTS, vec, coeff=[0.0, 8.0], max_new_tokens=8, do_sample=False)
        no_hooks(model)
        with torch.no_grad():
            step[kernel] = twin_for(model)(input_ids=tokens[:, :1]).logits  # one row: chunked
        assert linear_kernel(model) == kernel
    assert texts["torch"] == texts["chunked"]
    torch.testing.assert_close(step["chunked"], step["torch"], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- packed weights for large batched calls
def _packed_modules(model):
    return [m for m in twin_for(model).modules() if getattr(m, "packed", None) is not None]


def _chunked_tiny(monkeypatch):
    if reorder_op() is None:
        pytest.skip("this torch build cannot pack weights for oneDNN")
    monkeypatch.setenv("STEERING_LINEAR", "chunked")
    monkeypatch.delenv("STEERING_PACK", raising=False)
    model = tiny_model("llama")
    assert linear_kernel(model) == "chunked"
    return model


def test_packed_weights_only_for_large_calls_and_always_dropped(monkeypatch):
    model = _chunked_tiny(monkeypatch)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in twin_for(model).modules())
    with packed_weights(model, rows=PACK_MIN_ROWS, new_tokens=PACK_MIN_WORK // PACK_MIN_ROWS) as packed:
        assert packed and len(_packed_modules(model)) == n_linear
    assert _packed_modules(model) == []
    for rows, new in ((1, 10_000), (PACK_MIN_ROWS - 1, 10_000), (PACK_MIN_ROWS, PACK_MIN_WORK // PACK_MIN_ROWS - 1),
                      (64, PACK_MIN_NEW_TOKENS - 1)):
        with packed_weights(model, rows=rows, new_tokens=new) as packed:
            assert not packed and _packed_modules(model) == []
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with packed_weights(model, rows=32, new_tokens=32) as packed:
                assert packed
                raise exc
        assert _packed_modules(model) == []
    monkeypatch.setenv("STEERING_LINEAR", "torch")  # packing serves the chunked kernel only (read at call time)
    with packed_weights(model, rows=32, new_tokens=32) as packed:
        assert not packed
    monkeypatch.setenv("STEERING_LINEAR", "chunked")
    monkeypatch.setenv("STEERING_PACK", "off")
    with packed_weights(model, rows=32, new_tokens=32) as packed:
        assert not packed
    monkeypatch.setenv("STEERING_PACK", "always")
    with pytest.raises(InvalidArgumentError, match="'always'.*auto, off"):
        with packed_weights(model, rows=32, new_tokens=32):
            pass
    with pytest.raises(InvalidArgumentError, match="'always'.*auto, off"):
        with packed_weights(model, rows=1, new_tokens=1):  # checked whatever the call's size
            pass


@pytest.mark.parametrize("rows", [1, 2, 5, 40])
def test_packed_linear_equals_f_linear(rows, monkeypatch):
    """A packed layer gives F.linear's values at every row count (one row still takes the row-block kernel)."""
    model = _chunked_tiny(monkeypatch)
    layer = next(m for m in twin_for(model).modules() if isinstance(m, torch.nn.Linear))
    x = torch.randn(rows, layer.in_features)
    with torch.no_grad(), packed_weights(model, rows=32, new_tokens=32):
        ours = layer(x)
    torch.testing.assert_close(ours, torch.nn.functional.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)


def test_generate_packs_large_calls_and_gives_the_same_tokens(monkeypatch, no_hooks):
    """A large per-row call runs on packed weights (seen from inside the forward) and matches the unpacked run."""
    model = _chunked_tiny(monkeypatch)
    vec = st.actadd(model, "I love you!", "I hate you", layer=1)
    seen = []
    layer = next(m for m in twin_for(model).modules() if isinstance(m, torch.nn.Linear))
    handle = layer.register_forward_pre_hook(lambda m, a: seen.append(m.packed is not None))
    try:
        kw = dict(max_new_tokens=32, do_sample=False)
        packed = st.generate(model, PROMPTS[:2], vec, coeff=[0.0, 2.0, 4.0, 8.0], **kw)
        assert seen and all(seen)
        seen.clear()
        small = st.generate(model, PROMPTS[:2], vec, coeff=2.0, max_new_tokens=4, do_sample=False)
        assert seen and not any(seen)
        monkeypatch.setenv("STEERING_PACK", "off")
        seen.clear()
        plain = st.generate(model, PROMPTS[:2], vec, coeff=[0.0, 2.0, 4.0, 8.0], **kw)
        assert seen and not any(seen)
    finally:
        handle.remove()
    assert packed == plain and len(small) == 2
    assert _packed_modules(model) == []
    no_hooks(model)


def test_fused_groups_serve_siblings_in_any_order_and_never_stale(monkeypatch):
    """q/k/v and gate/up share one packed product per input; any order, a changed input or a new one recomputes."""
    model = _chunked_tiny(monkeypatch)
    twin = twin_for(model)
    attn = next(m for m in twin.modules() if hasattr(m, "q_proj"))
    mlp = next(m for m in twin.modules() if hasattr(m, "gate_proj"))
    members = [attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj]
    x = torch.randn(6, 1, attn.q_proj.in_features)
    ref = lambda m, inp: torch.nn.functional.linear(inp, m.weight, m.bias)  # noqa: E731
    with torch.no_grad(), packed_weights(model, rows=32, new_tokens=32):
        assert all(isinstance(m.packed, GroupSlice) for m in members)
        assert isinstance(attn.q_proj.packed.group, FusedGroup)
        assert attn.q_proj.packed.group is attn.v_proj.packed.group is not mlp.up_proj.packed.group
        for order in ([0, 1, 2], [2, 0, 1], [1, 1, 0, 2, 2]):  # repeats included
            for i in order:
                m = members[i]
                torch.testing.assert_close(m(x), ref(m, x), atol=1e-5, rtol=1e-5)
        attn.q_proj(x)
        x.mul_(2.0)  # same object, new values: k must not come from the stale product
        torch.testing.assert_close(attn.k_proj(x), ref(attn.k_proj, x), atol=1e-5, rtol=1e-5)
        y = torch.randn(6, 1, attn.q_proj.in_features)
        torch.testing.assert_close(mlp.up_proj(y), ref(mlp.up_proj, y), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mlp.gate_proj(x), ref(mlp.gate_proj, x), atol=1e-5, rtol=1e-5)
    assert all(m.packed is None for m in members)


def test_packing_is_skipped_when_memory_is_short(monkeypatch):
    if sys.platform.startswith("linux"):
        assert packing.available_bytes() > 0
    model = _chunked_tiny(monkeypatch)
    weights = sum(m.weight.numel() * 4 for m in twin_for(model).modules() if isinstance(m, torch.nn.Linear))
    monkeypatch.setattr(packing, "available_bytes", lambda: 2 * weights - 1)
    with packed_weights(model, rows=32, new_tokens=32) as packed:
        assert not packed and _packed_modules(model) == []
    monkeypatch.setattr(packing, "available_bytes", lambda: 2 * weights)
    with packed_weights(model, rows=32, new_tokens=32) as packed:
        assert packed


# ----------------------------------------------------------------------------- shared rows for per-row coefficients
@pytest.mark.parametrize("arch,coeffs", [("llama", [0.0, 0.5, 1.0, 2.0]), ("llama", [0.0, 3.0, 8.0]),
                                         ("gpt2", [0.0, 3.0, 8.0])])
def test_shared_rows_run_lower_layers_once_per_group_and_give_the_same_tokens(arch, coeffs, monkeypatch, no_hooks):
    import steering.generation as gen

    model = tiny_model(arch, n_layers=3)
    vec = st.actadd(model, "I love you!", "I hate you", layer=2)
    twin = twin_for(model)
    layers = decoder_layers(twin)
    seen: dict = {0: [], 2: []}
    steps: list = []  # the token each row was fed at each decode step
    handles = [layers[i].register_forward_hook(  # rows each layer computed (its output)
        lambda m, a, out, i=i: seen[i].append(int((out[0] if isinstance(out, tuple) else out).shape[0])))
        for i in seen]
    handles.append(twin.register_forward_pre_hook(
        lambda m, a, k: steps.append(k["input_ids"][:, 0].tolist()) if k["input_ids"].shape[1] == 1 else None,
        with_kwargs=True))
    kw = dict(max_new_tokens=10, do_sample=False)
    prompts = ["I think that", "The cat sat"]  # on these the tiny llama's rows split at several steps
    try:
        shared = st.generate(model, prompts, vec, coeff=coeffs, **kw)
        prefill = {i: v[0] for i, v in seen.items()}
        decode = {i: v[1:] for i, v in seen.items()}
        for v in seen.values():
            v.clear()
        monkeypatch.setattr(gen, "repeat_block", lambda rows: None)
        unshared = st.generate(model, prompts, vec, coeff=coeffs, **kw)
    finally:
        for h in handles:
            h.remove()
    rows = 2 * len(coeffs)
    # groups, counted independently: rows with the same prompt and the same tokens so far
    history = [(r % 2,) for r in range(rows)]
    expected = []
    for fed in steps[:len(decode[0])]:
        history = [h + (t,) for h, t in zip(history, fed)]
        expected.append(len(set(history)))
    assert prefill == {0: 2, 2: rows}  # below the steered layer: one block of 2 prompts; from it: every row
    assert decode[2] == [rows] * len(decode[2])  # the steered layer and above always run every row
    assert decode[0] == expected and min(expected) < rows  # below it: one row per group
    assert seen[0] and set(seen[0]) == {rows}  # unshared: every row everywhere
    if coeffs == [0.0, 0.5, 1.0, 2.0]:
        assert len(set(expected)) > 1  # groups split mid-generation: the cache was regrouped
    assert shared == unshared
    # the bridge's own hook points, no twin
    assert st.generate(model, prompts, vec, coeff=coeffs, backend="bridge", **kw) == shared
    no_hooks(model)


def test_shared_rows_give_every_row_its_cache_back_on_a_step_they_do_not_know(no_hooks):
    from transformers.cache_utils import DynamicCache

    model = tiny_model("llama", n_layers=3)
    twin = twin_for(model)
    prompt = torch.tensor([[5, 6, 7], [8, 9, 10]] * 3)
    step = torch.tensor([[11], [12], [11], [12], [13], [12]])  # the 3rd block's first row picks another token
    two = torch.tensor([[1, 2]] * 6)  # two tokens per row: not a decode step
    logits, sizes = {}, {}
    with torch.no_grad():
        for shared in (True, False):
            cache = DynamicCache(config=twin.config)
            ctx = shared_rows(model, boundary=2, block=2, times=3) if shared else contextlib.nullcontext()
            with ctx:
                out = [twin(input_ids=prompt, past_key_values=cache, use_cache=True).logits[:, -1]]
                out.append(twin(input_ids=step, past_key_values=cache, use_cache=True).logits[:, -1])
                sizes[shared] = [cache.layers[i].keys.shape[0] for i in range(3)]
                out.append(twin(input_ids=two, past_key_values=cache, use_cache=True).logits[:, -1])
            logits[shared] = torch.stack(out)
            assert [cache.layers[i].keys.shape[:3] for i in range(3)] == [(6, 2, 6)] * 3  # every row, 6 positions
    assert sizes == {True: [3, 3, 6], False: [6, 6, 6]}  # after the step: 3 groups below layer 2
    torch.testing.assert_close(logits[True], logits[False])
    no_hooks(model)


def test_shared_rows_remove_their_hooks_and_skips_what_it_cannot_share(no_hooks):
    model = tiny_model("llama", n_layers=3)
    twin = twin_for(model)
    count = lambda: sum(len(m._forward_pre_hooks) for m in twin.modules())  # noqa: E731
    before = count()
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with shared_rows(model, boundary=2, block=2, times=3) as on:
                assert on and count() == before + 4
                raise exc
        assert count() == before
    for boundary, times in ((0, 3), (3, 3), (2, 1)):  # nothing below, past the last layer, nothing repeated
        with shared_rows(model, boundary=boundary, block=2, times=times) as on:
            assert not on and count() == before
    # a call it does not recognise (no cache) runs untouched
    tokens = torch.tensor([[5, 6, 7]] * 6)
    with torch.no_grad():
        ref = twin(input_ids=tokens, use_cache=False).logits
        with shared_rows(model, boundary=2, block=2, times=3):
            got = twin(input_ids=tokens, use_cache=False).logits
    torch.testing.assert_close(got, ref)
    no_hooks(model)


@pytest.mark.parametrize("kwargs", [dict(rows=0, new_tokens=32), dict(rows=True, new_tokens=32),
                                    dict(rows=8, new_tokens=-1)])
def test_packed_weights_rejects_bad_counts(kwargs):
    model = tiny_model("llama")
    name, value = next((k, v) for k, v in kwargs.items() if not (isinstance(v, int) and not isinstance(v, bool)
                                                                 and v >= (1 if k == "rows" else 0)))
    with pytest.raises(InvalidArgumentError, match=rf"packed_weights: {name}={value!r}.*int >= "):
        with packed_weights(model, **kwargs):
            pass
    assert _packed_modules(model) == []


@pytest.mark.parametrize("kwargs", [dict(boundary=-1, block=2, times=3), dict(boundary=1, block=0, times=3),
                                    dict(boundary=1, block=2, times=0)])
def test_shared_rows_reject_bad_counts(kwargs, no_hooks):
    model = tiny_model("llama", n_layers=3)
    with pytest.raises(InvalidArgumentError, match=r"shared_rows: .*allowed: an int >= "):
        with shared_rows(model, **kwargs):
            pass
    no_hooks(model)


def test_packing_and_sharing_name_non_int_counts_outside_pytest_checks():
    # under pytest the type hints reject a float first; a caller gets a SteeringError naming the value
    code = ("from steering._fast import packed_weights, shared_rows\n"
            "from steering.testing import tiny_model\nfrom steering.errors import SteeringError\n"
            "m = tiny_model()\n"
            "for cm in (lambda: packed_weights(m, 2.5, 32), lambda: shared_rows(m, 1, 2, '3')):\n"
            "    try:\n        cm().__enter__()\n    except SteeringError as err:\n        print(err)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "packed_weights: rows=2.5; allowed: an int >= 1" in res.stdout, res.stderr[-2000:]
    assert "shared_rows: times='3'; allowed: an int >= 1" in res.stdout, res.stderr[-2000:]


# ---------------------------------------------------------------- issue 17 (category 8): the twin sees changed weights
def _mutate_in_place(model):
    with torch.no_grad():
        _down(model).weight.mul_(0.0)


def _down(model):
    layers = model.original_model.model.layers if hasattr(model.original_model, "model") else model.original_model.transformer.h
    layer = layers[0]
    return layer.mlp.down_proj if hasattr(layer.mlp, "down_proj") else layer.mlp.c_proj


def _reassign(model):
    old = _down(model).weight
    _down(model).weight = torch.nn.Parameter(torch.randn_like(old) * 2.0, requires_grad=False)


def _reassign_on_the_bridge(model):
    out = model.blocks[0].mlp.out
    out.weight = torch.nn.Parameter(torch.randn_like(out.weight) * 2.0, requires_grad=False)


def _load_other_weights(model, assign):
    arch = "llama" if hasattr(model.original_model, "model") else "gpt2"
    model.original_model.load_state_dict(tiny_model(arch, seed=7).original_model.state_dict(), assign=assign)


CHANGES = {
    "in place": _mutate_in_place,
    "reassigned on the HF module": _reassign,
    "reassigned on the bridge": _reassign_on_the_bridge,
    "load_state_dict": lambda m: _load_other_weights(m, False),
    "load_state_dict(assign=True)": lambda m: _load_other_weights(m, True),
}


@pytest.mark.parametrize("change", list(CHANGES))
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_generation_after_a_weight_change_equals_the_bridge(arch, change):
    model = tiny_model(arch)
    vec = st.actadd(model, "love", "hate", layer=1)
    kw = dict(max_new_tokens=8, do_sample=False)
    before = st.generate(model, PROMPTS, vec, 4.0, backend="twin", **kw)  # builds and uses the twin
    CHANGES[change](model)
    bridge = st.generate(model, PROMPTS, vec, 4.0, backend="bridge", **kw)
    assert bridge != before  # the change matters
    assert st.generate(model, PROMPTS, vec, 4.0, backend="twin", **kw) == bridge
    assert st.generate(model, PROMPTS, vec, 4.0, **kw) == bridge  # auto
    assert st.generate(model, PROMPTS, None, backend="twin", **kw) == st.generate(model, PROMPTS, None, backend="bridge", **kw)
    assert shares_weights(model, twin_for(model))


def test_the_twin_is_rebuilt_only_when_a_tensor_was_replaced():
    model = tiny_model()
    twin = twin_for(model)
    _mutate_in_place(model)
    assert twin_for(model) is twin  # shared tensors: nothing to rebuild
    _reassign(model)
    rebuilt = twin_for(model)
    assert rebuilt is not twin and existing_twin(model) is rebuilt and twin_for(model) is rebuilt
    assert st.active_hooks(model) == 0


def test_a_swapped_sub_module_is_seen_too():
    model = tiny_model("llama")
    vec = st.actadd(model, "love", "hate", layer=1)
    kw = dict(max_new_tokens=8, do_sample=False)
    before = st.generate(model, PROMPTS, vec, 4.0, backend="twin", **kw)
    mlp = model.original_model.model.layers[0].mlp
    width, hidden = mlp.down_proj.weight.shape
    torch.manual_seed(3)
    mlp.down_proj = torch.nn.Linear(hidden, width, bias=False).requires_grad_(False)
    bridge = st.generate(model, PROMPTS, vec, 4.0, backend="bridge", **kw)
    assert bridge != before
    assert st.generate(model, PROMPTS, vec, 4.0, backend="twin", **kw) == bridge
