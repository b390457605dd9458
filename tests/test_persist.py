"""Saving and loading vectors (steering.persist, SteeringVector.save/load/retarget), and
property-based tests of the SteeringVector algebra and of the save/load round trip."""

import errno
import json
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from hypothesis.extra.numpy import arrays

import steering as st
from conftest import within
from steering import SteeringVector
from steering.errors import FileAccessError, VectorFileError
from steering.export import load_vectors, save_vectors
from steering.persist import FORMAT_VERSION
from steering.testing import tiny_model

HOOK = "blocks.1.hook_resid_pre"


def vec(tensor, hook=HOOK, model="tiny-llama", **kw):
    return SteeringVector(torch.as_tensor(tensor), hook_name=hook, model_name=model, **kw)


def rand(*shape, seed=0, dtype=torch.float32, **kw):
    gen = torch.Generator().manual_seed(seed)
    return vec(torch.randn(*shape, generator=gen).to(dtype), **kw)


FIELDS = ("hook_name", "model_name", "method", "prompts", "tokens", "pad", "weight_mode", "meta")


def assert_same(a: SteeringVector, b: SteeringVector) -> None:
    assert a.dtype == b.dtype and a.tensor.shape == b.tensor.shape
    assert torch.equal(a.tensor, b.tensor)
    for name in FIELDS:
        assert getattr(a, name) == getattr(b, name), name


# ---------------------------------------------------------------- exact round trips
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("shape", [(5, 64), (64,)], ids=["per-position", "direction"])
def test_round_trip_is_exact(tmp_path, dtype, shape):
    v = rand(*shape, dtype=dtype, method="manual", prompts={"pos": "Love", "neg": "Hate"}, pad="space")
    w = SteeringVector.load(v.save(tmp_path / "v.safetensors"))
    assert_same(v, w)


def test_round_trip_of_an_actadd_vector_keeps_all_metadata(tiny, tmp_path):
    v = st.actadd(tiny, "Love ☃", "Hate", layer=1)
    v.meta["note"] = {"nested": [1, 2.5, None, True, "ü"]}
    w = SteeringVector.load(v.save(str(tmp_path / "love.safetensors")))
    assert_same(v, w)
    assert (w.layer, w.hook, w.d_model, w.n_pos) == (v.layer, v.hook, v.d_model, v.n_pos)
    w.check_compatible(tiny)


def test_the_file_is_safetensors_with_json_metadata(tmp_path):
    from safetensors import safe_open

    v = rand(3, 64, prompts={"pos": "a", "neg": "b"})
    path = v.save(tmp_path / "v.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert list(handle.keys()) == ["vector"]
        header = json.loads(handle.metadata()["steering_lens"])
    assert header["format"] == FORMAT_VERSION and header["steering_version"] == st.__version__
    assert header["kind"] == "vector"
    (rec,) = header["vectors"]
    assert rec["hook_name"] == HOOK and (rec["layer"], rec["hook"], rec["d_model"]) == (1, "resid_pre", 64)
    assert rec["shape"] == [3, 64] and rec["dtype"] == "float32" and rec["model_name"] == "tiny-llama"


def test_tuples_in_metadata_come_back_as_lists(tmp_path):
    v = rand(64, meta={"span": (1, 2)})
    assert SteeringVector.load(v.save(tmp_path / "v.safetensors")).meta == {"span": [1, 2]}


def test_save_returns_a_path_and_overwrites(tmp_path):
    target = tmp_path / "v.safetensors"
    rand(64, seed=1).save(target)
    path = rand(64, seed=2).save(target)
    assert path == target
    assert torch.equal(SteeringVector.load(path).tensor, rand(64, seed=2).tensor)
    assert sorted(os.listdir(tmp_path)) == ["v.safetensors"]  # no temporary file left behind


def test_a_view_into_a_larger_tensor_is_saved_from_a_copy(tmp_path):
    base = torch.randn(4, 64)
    v = vec(base[1:3])  # a view into a larger storage
    w = SteeringVector.load(v.save(tmp_path / "v.safetensors"))
    assert torch.equal(w.tensor, base[1:3])


# ---------------------------------------------------------------- atomic writes
def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken_fsync(fd):  # the bytes are written, then the disk fills up
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        rand(64).save(tmp_path / "v.safetensors")
    assert os.listdir(tmp_path) == []


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    import safetensors.torch

    path = rand(64, seed=1).save(tmp_path / "v.safetensors")
    before = path.read_bytes()

    def broken(tensors, metadata=None):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(safetensors.torch, "save", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        rand(64, seed=2).save(path)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["v.safetensors"]


def test_metadata_that_is_not_json_is_refused_before_writing(tmp_path):
    v = rand(64, meta={"t": torch.ones(2)})
    with pytest.raises(st.errors.InvalidArgumentError, match=r"vector 0 \(blocks\.1\.hook_resid_pre\)\.meta\['t'\] holds a Tensor.*Fix: convert it"):
        v.save(tmp_path / "v.safetensors")
    v = rand(64, meta={"by_layer": {3: "x"}})
    with pytest.raises(st.errors.InvalidArgumentError, match=r"\.meta\['by_layer'\] has the key 3 \(int\); allowed: str keys only"):
        v.save(tmp_path / "v.safetensors")
    assert os.listdir(tmp_path) == []


def test_saving_into_a_missing_folder_or_onto_a_folder_is_refused(tmp_path):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"the folder '.*nope' does not exist.*os\.makedirs"):
        rand(64).save(tmp_path / "nope" / "v.safetensors")
    with pytest.raises(st.errors.InvalidArgumentError, match=r"is a folder; allowed: a file path"):
        rand(64).save(tmp_path)


# ---------------------------------------------------------------- refused files
def test_loading_a_missing_file_is_refused(tmp_path):
    with pytest.raises(VectorFileError, match=r"no vector file at '.*missing\.safetensors' \(the path does not exist\)"):
        SteeringVector.load(tmp_path / "missing.safetensors")
    assert issubclass(VectorFileError, st.SteeringError)


def test_loading_a_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "v.safetensors"
    path.write_bytes(b"\x80\x04 this is a pickle, or anything else")
    with pytest.raises(VectorFileError, match=r"is not a readable \.safetensors file"):
        SteeringVector.load(path)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(VectorFileError, match=r"is not a readable \.safetensors file"):
        load_vectors(tmp_path / "empty.safetensors")


def test_loading_a_safetensors_file_without_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bare.safetensors"
    save_file({"vector": torch.ones(64)}, str(path))
    with pytest.raises(VectorFileError, match=r"without steering-lens metadata.*safetensors\.torch\.load_file"):
        SteeringVector.load(path)
    save_file({"vector": torch.ones(64)}, str(path), metadata={"steering_lens": "{not json"})
    with pytest.raises(VectorFileError, match=r"not valid JSON"):
        SteeringVector.load(path)


def _rewrite_header(path, **changes):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        header = json.loads(handle.metadata()["steering_lens"])
    header.update(changes)
    save_file(tensors, str(path), metadata={"steering_lens": json.dumps(header)})
    return header


def test_a_file_from_a_newer_format_is_refused(tmp_path):
    path = rand(64).save(tmp_path / "v.safetensors")
    _rewrite_header(path, format=FORMAT_VERSION + 1, steering_version="9.0.0")
    with pytest.raises(VectorFileError, match=rf"written by steering-lens 9\.0\.0 in file format {FORMAT_VERSION + 1}.*upgrade steering-lens"):
        SteeringVector.load(path)


def test_an_edited_file_is_refused(tmp_path):
    path = rand(64).save(tmp_path / "v.safetensors")
    header = _rewrite_header(path)
    header["vectors"][0]["dtype"] = "float16"
    _rewrite_header(path, vectors=header["vectors"])
    with pytest.raises(VectorFileError, match=r"recorded as float16 \[64\] but its tensor is float32 \[64\]"):
        SteeringVector.load(path)
    header["vectors"][0].update(dtype="float32", layer=5)
    _rewrite_header(path, vectors=header["vectors"])
    with pytest.raises(VectorFileError, match=r"layer=5, hook='resid_pre' that do not match"):
        SteeringVector.load(path)


def test_a_file_holding_nan_is_refused(tmp_path):
    path = rand(64).save(tmp_path / "v.safetensors")
    header = _rewrite_header(path)
    from safetensors.torch import save_file

    save_file({"vector": torch.full((64,), float("nan"))}, str(path), metadata={"steering_lens": json.dumps(header)})
    with pytest.raises(st.errors.InvalidVectorError, match="holds 64 NaN"):
        SteeringVector.load(path)


# ---------------------------------------------------------------- sets
def test_sets_round_trip_in_order(tmp_path):
    vecs = [rand(64, seed=l, hook=f"blocks.{l}.hook_resid_post") for l in (1, 0)]
    vecs.append(rand(3, 64, seed=9, dtype=torch.bfloat16, hook="blocks.0.hook_mlp_out"))
    path = save_vectors(vecs, tmp_path / "set.safetensors")
    loaded = load_vectors(path)
    assert [v.hook_name for v in loaded] == [v.hook_name for v in vecs]
    for a, b in zip(vecs, loaded):
        assert_same(a, b)


def test_a_set_stores_one_tensor_per_hook_name(tmp_path):
    from safetensors import safe_open

    vecs = [rand(64, hook=f"blocks.{l}.hook_resid_pre") for l in (0, 1)]
    path = save_vectors(vecs, tmp_path / "set.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert sorted(handle.keys()) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]


def test_the_same_tensor_twice_in_a_set_is_fine(tmp_path):
    v = rand(64)
    w = SteeringVector(v.tensor, hook_name="blocks.0.hook_resid_pre")  # the same tensor object
    assert len(load_vectors(save_vectors([v, w], tmp_path / "s.safetensors"))) == 2


def test_duplicate_hooks_in_a_set_are_refused(tmp_path):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"vectors 0 and 2 are both at hook 'blocks\.1\.hook_resid_pre'.*combine them first"):
        save_vectors([rand(64), rand(64, hook="blocks.0.hook_resid_pre"), rand(64, seed=1)], tmp_path / "s.safetensors")
    assert os.listdir(tmp_path) == []


def test_bad_sets_are_refused(tmp_path):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"vectors is empty"):
        save_vectors([], tmp_path / "s.safetensors")


def test_single_and_set_files_read_both_ways(tmp_path):
    v = rand(64)
    single = v.save(tmp_path / "one.safetensors")
    assert len(load_vectors(single)) == 1
    one_set = save_vectors(v, tmp_path / "set1.safetensors")
    assert_same(SteeringVector.load(one_set), v)
    two = save_vectors([v, rand(64, hook="blocks.0.hook_resid_pre")], tmp_path / "set2.safetensors")
    with pytest.raises(VectorFileError, match=r"holds a set of 2 vectors.*load_vectors\(path\)"):
        SteeringVector.load(two)


# ---------------------------------------------------------------- models: refusal after load, retarget
def test_a_loaded_vector_from_another_model_is_refused(tiny, tiny_gpt2, tmp_path):
    v = st.actadd(tiny_gpt2, "Love", "Hate", layer=1)
    w = SteeringVector.load(v.save(tmp_path / "gpt2.safetensors"))
    with pytest.raises(st.errors.VectorMismatchError, match=r"comes from model 'tiny-gpt2' but is applied to 'tiny-llama'"):
        w.check_compatible(tiny)
    with pytest.raises(st.errors.VectorMismatchError, match=r"comes from model 'tiny-gpt2'"):
        with st.steer(tiny, w, coeff=1.0):
            pass


def test_a_loaded_vector_of_another_width_is_refused(tiny, tmp_path):
    narrow = tiny_model("llama", d_model=32)
    v = st.actadd(narrow, "Love", "Hate", layer=1)
    w = SteeringVector.load(v.save(tmp_path / "narrow.safetensors"))
    with pytest.raises(st.errors.VectorMismatchError, match=r"d_model=32 but model 'tiny-llama' has d_model=64"):
        w.check_compatible(tiny)
    with pytest.raises(st.errors.VectorMismatchError, match=r"cannot retarget the vector at blocks\.1\.hook_resid_pre \(d_model=32\) to model 'tiny-llama', whose d_model=64"):
        w.retarget(tiny)


def test_retarget_is_the_explicit_override(tiny, tiny_gpt2, tmp_path):
    v = SteeringVector.load(st.actadd(tiny_gpt2, "Love", "Hate", layer=1).save(tmp_path / "v.safetensors"))
    w = v.retarget(tiny)
    assert (w.model_name, w.weight_mode) == ("tiny-llama", "hf")
    assert w.meta["retargeted_from"] == {"model_name": "tiny-gpt2", "weight_mode": "hf"}
    assert torch.equal(w.tensor, v.tensor) and w.tensor.data_ptr() != v.tensor.data_ptr()
    assert v.model_name == "tiny-gpt2" and "retargeted_from" not in v.meta  # the original is unchanged
    assert (w.hook_name, w.prompts, w.tokens, w.pad, w.method) == (v.hook_name, v.prompts, v.tokens, v.pad, v.method)
    w.check_compatible(tiny)
    with st.steer(tiny, w, coeff=1.0):
        tiny(tiny.to_tokens("Hi there"))


def test_retarget_refuses_a_hook_the_model_lacks(tiny):
    v = rand(64, hook="blocks.5.hook_resid_pre", model="big")
    with pytest.raises(st.errors.VectorMismatchError, match=r"its hook 'blocks\.5\.hook_resid_pre' is not a hook point of model 'tiny-llama' \(2 layers\)"):
        v.retarget(tiny)


def test_retarget_takes_the_weight_mode_of_the_model(tmp_path):
    model = tiny_model("gpt2")  # own copy: compatibility mode rewrites the weights
    v = st.actadd(model, "ab", "cd", layer=1)
    model.enable_compatibility_mode()
    with pytest.raises(st.errors.VectorMismatchError, match=r"weight_mode='hf' but the model runs in 'compat'"):
        v.check_compatible(model)
    w = v.retarget(model)
    assert w.weight_mode == "compat" and w.meta["retargeted_from"]["weight_mode"] == "hf"
    w.check_compatible(model)


# ---------------------------------------------------------------- properties (hypothesis)
_FLOATS = hs.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)
_SCALARS = hs.floats(-100, 100, allow_nan=False, allow_infinity=False, allow_subnormal=False)
# database=None: no .hypothesis/ folder in the work tree; the runs stay reproducible via derandomize
_PROPS = settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@hs.composite
def vector_pairs(draw, same_length=False):
    """Two vectors at the same hook: both directions, or both per-position (lengths may differ)."""
    d = draw(hs.integers(1, 12))
    if draw(hs.booleans()):
        shapes = [(d,), (d,)]
    else:
        n = draw(hs.integers(1, 5))
        m = n if same_length else draw(hs.integers(1, 5))
        shapes = [(n, d), (m, d)]
    a, b = (draw(arrays(np.float32, s, elements=_FLOATS)) for s in shapes)
    return vec(torch.from_numpy(a)), vec(torch.from_numpy(b))


def _pad_to(t: torch.Tensor, n: int) -> torch.Tensor:
    return t if t.ndim == 1 else torch.nn.functional.pad(t, (0, 0, 0, n - t.shape[0]))


def _close(x: torch.Tensor, y: torch.Tensor, scale: float) -> None:
    torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5 * max(scale, 1.0))


@_PROPS
@given(vector_pairs())
def test_prop_add_then_subtract_gives_back_a(pair):
    a, b = pair
    out = (a + b) - b
    n = out.tensor.shape[0]
    scale = float(a.tensor.abs().max() + b.tensor.abs().max())
    _close(out.tensor, _pad_to(a.tensor, n), scale)


@_PROPS
@given(vector_pairs(same_length=True), _SCALARS, _SCALARS)
def test_prop_scalar_multiplication_distributes(pair, c, d):
    a, b = pair
    scale = abs(c) * float(a.tensor.abs().max() + b.tensor.abs().max()) + abs(d) * float(a.tensor.abs().max())
    _close((c * (a + b)).tensor, (c * a + c * b).tensor, scale)
    _close(((c + d) * a).tensor, (c * a + d * a).tensor, scale)


@_PROPS
@given(vector_pairs(), _SCALARS)
def test_prop_norm_is_absolutely_homogeneous(pair, c):
    a, _ = pair
    _close((c * a).norm(), abs(c) * a.norm(), abs(c) * float(a.norm().max()))


@_PROPS
@given(vector_pairs(), hs.floats(1e-2, 1e2))
def test_prop_cosine_is_bounded_and_scale_invariant(pair, c):
    a, b = pair
    cos = a.cosine_similarity(b)
    assert -1 - 1e-6 <= cos <= 1 + 1e-6
    assert cos == pytest.approx((c * a).cosine_similarity(b), abs=1e-5)
    assert cos == pytest.approx(b.cosine_similarity(a), abs=1e-6)


_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
_JSON = hs.recursive(
    hs.none() | hs.booleans() | hs.integers(-(2**53), 2**53) | hs.floats(allow_nan=False, allow_infinity=False)
    | hs.text(max_size=8),
    lambda inner: hs.lists(inner, max_size=3) | hs.dictionaries(hs.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@_PROPS
@given(
    shape=hs.one_of(hs.tuples(hs.integers(1, 16)), hs.tuples(hs.integers(1, 6), hs.integers(1, 16))),
    dtype=hs.sampled_from(_DTYPES),
    layer=hs.integers(0, 99),
    hook=hs.sampled_from(["resid_pre", "resid_post", "attn_out", "mlp_out"]),
    model_name=hs.none() | hs.text(max_size=12),
    prompts=hs.dictionaries(hs.text(max_size=4), hs.text(max_size=12), max_size=2),
    meta=hs.dictionaries(hs.text(max_size=5), _JSON, max_size=3),
    data=hs.data(),
)
def test_prop_save_load_round_trip(shape, dtype, layer, hook, model_name, prompts, meta, data):
    values = data.draw(arrays(np.float32, shape, elements=_FLOATS))
    v = SteeringVector(
        torch.from_numpy(values).to(dtype),
        hook_name=f"blocks.{layer}.hook_{hook}",
        model_name=model_name,
        prompts=prompts,
        meta=meta,
        weight_mode=data.draw(hs.sampled_from(["hf", "compat"])),
    )
    with tempfile.TemporaryDirectory() as folder:
        w = SteeringVector.load(v.save(os.path.join(folder, "v.safetensors")))
        (u,) = load_vectors(save_vectors([v], os.path.join(folder, "s.safetensors")))
    assert_same(v, w)
    assert_same(v, u)


# ---------------------------------------------------------------- file-system faults (issue 17, category 7)
ROOT = os.geteuid() == 0  # root ignores file modes: permission cases are emulated through os.access


def _deny(monkeypatch, path, mode):
    """Make ``path`` refuse ``mode`` (os.R_OK / os.W_OK): chmod when not root, else an emulated os.access."""
    if not ROOT:
        os.chmod(path, 0o555 if mode == os.W_OK else 0o000)
        return
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if os.fspath(p) == os.fspath(path) and m & mode
                        else real(p, m, *a, **k))


@pytest.fixture
def restore_modes(tmp_path):
    yield
    for p in [tmp_path, *tmp_path.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system"),
                                         (errno.EDQUOT, "disk quota exceeded"), (errno.EIO, "input/output error")])
@pytest.mark.parametrize("stage", ["fsync", "replace", "chmod"])
def test_a_refused_save_is_a_file_access_error_and_keeps_the_old_file(tmp_path, monkeypatch, code, cause, stage):
    path = rand(64, seed=1).save(tmp_path / "v.safetensors")
    before = path.read_bytes()

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, stage, refuse)
    for save in (lambda: rand(64, seed=2).save(path), lambda: save_vectors([rand(64, seed=2)], path)):
        with pytest.raises(FileAccessError) as caught:
            save()
        assert f"'{path}'" in str(caught.value) and cause in str(caught.value) and "Fix: " in str(caught.value)
        assert isinstance(caught.value, OSError) and caught.value.errno == code
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["v.safetensors"]


def test_saving_into_a_folder_without_permission_is_refused_before_any_work(tmp_path, monkeypatch, restore_modes):
    import safetensors.torch

    folder = tmp_path / "locked"
    folder.mkdir()
    _deny(monkeypatch, folder, os.W_OK)
    monkeypatch.setattr(safetensors.torch, "save", lambda *a, **k: pytest.fail("serialised before checking the path"))
    with pytest.raises(FileAccessError, match=rf"cannot write vector file '{folder}/v\.safetensors': permission denied"):
        rand(64).save(folder / "v.safetensors")
    assert os.listdir(folder) == []


def test_saving_onto_a_read_only_file_system_is_refused(tmp_path, monkeypatch):
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: types.SimpleNamespace(f_flag=os.ST_RDONLY | real(p).f_flag))
    with pytest.raises(FileAccessError, match=r"cannot write vector file '.*v\.safetensors': read-only file system"):
        save_vectors([rand(64)], tmp_path / "v.safetensors")
    assert os.listdir(tmp_path) == []


def test_a_name_too_long_is_refused(tmp_path):
    path = tmp_path / ("v" * 300 + ".safetensors")
    with pytest.raises(FileAccessError, match=r"file name too long.*shorter file name"):
        rand(64).save(path)
    with pytest.raises(FileAccessError, match=r"cannot read vector file .*file name too long"):
        SteeringVector.load(path)
    assert os.listdir(tmp_path) == []


def test_loading_a_named_pipe_is_refused_without_blocking(tmp_path):
    """In a child process with a time limit: opening a FIFO blocks in native code that holds the GIL (and
    ignores Ctrl-C), so no thread or alarm in this process could stop it."""
    fifo = tmp_path / "v.safetensors"
    os.mkfifo(fifo)
    script = (
        "import sys\n"
        "from steering import SteeringVector\n"
        "from steering.errors import FileAccessError\n"
        "from steering.export import load_vectors\n"
        "for load in (SteeringVector.load, load_vectors):\n"
        "    try:\n"
        "        load(sys.argv[1])\n"
        "    except FileAccessError as err:\n"
        "        print(err)\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", script, str(fifo)], capture_output=True, text=True, timeout=60,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except subprocess.TimeoutExpired:
        pytest.fail("loading a named pipe blocked")
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2, done.stderr[-2000:]
    assert all(f"'{fifo}'" in line and "named pipe (FIFO)" in line for line in lines), lines


def test_saving_onto_a_named_pipe_is_refused(tmp_path):
    fifo = tmp_path / "v.safetensors"
    os.mkfifo(fifo)
    box = within(5, lambda: rand(64).save(fifo))
    assert isinstance(box.get("error"), FileAccessError) and "named pipe" in str(box["error"]), box


def test_loading_an_unreadable_file_says_permission_not_missing(tmp_path, monkeypatch, restore_modes):
    path = rand(64).save(tmp_path / "v.safetensors")
    _deny(monkeypatch, path, os.R_OK)
    with pytest.raises(FileAccessError, match=rf"cannot read vector file '{path}': permission denied") as caught:
        SteeringVector.load(path)
    assert "does not exist" not in str(caught.value) and "No such" not in str(caught.value)


def test_loading_a_folder_is_refused(tmp_path):
    with pytest.raises(VectorFileError, match=r"is a folder, not a vector file"):
        load_vectors(tmp_path)


def test_an_os_error_while_reading_is_a_file_access_error(tmp_path, monkeypatch):
    import safetensors

    path = rand(64).save(tmp_path / "v.safetensors")

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(safetensors, "safe_open", broken)
    with pytest.raises(FileAccessError, match=rf"cannot read vector file '{path}': input/output error"):
        load_vectors(path)


# ---------------------------------------------------------------- metadata schema on load
def _set_field(path, field, value, delete=False):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        header = json.loads(handle.metadata()["steering_lens"])
    if field is None:
        header["vectors"][0] = value
    elif delete:
        del header["vectors"][0][field]
    else:
        header["vectors"][0][field] = value
    save_file(tensors, str(path), metadata={"steering_lens": json.dumps(header)})


_WRONG = [
    ("key", 5), ("key", ""), ("hook_name", 5), ("hook_name", ""), ("hook_name", None),
    ("layer", "1"), ("layer", True), ("layer", -1), ("layer", 1.0), ("hook", 3),
    ("model_name", 5), ("model_name", ["m"]), ("d_model", "64"), ("d_model", True), ("d_model", 0),
    ("method", None), ("method", 7), ("prompts", "x"), ("prompts", [1]), ("prompts", None),
    ("tokens", [1]), ("tokens", {"pos": "ab"}), ("tokens", {"pos": [1]}), ("tokens", None),
    ("pad", 7), ("pad", ["space"]), ("weight_mode", "other"), ("weight_mode", None), ("meta", 3), ("meta", None),
    ("meta", ["a"]), ("shape", ["64"]), ("shape", "64"), ("shape", [-1]), ("shape", [64.0]), ("shape", [True]),
    ("dtype", "int8"), ("dtype", 5), ("dtype", None),
]


@pytest.mark.parametrize("field, value", _WRONG, ids=[f"{f}={v!r}" for f, v in _WRONG])
def test_a_field_of_the_wrong_type_is_refused_at_load(tmp_path, field, value):
    path = rand(64, prompts={"pos": "a"}, tokens={"pos": ["<s>", "a"]}, pad="space").save(tmp_path / "v.safetensors")
    _set_field(path, field, value)
    for load in (SteeringVector.load, load_vectors):
        with pytest.raises(VectorFileError) as caught:
            load(path)
        text = str(caught.value)
        assert f"'{path}'" in text and f"field '{field}' in vector 0" in text, text
        assert f"{field}={json.dumps(value)}" in text and "allowed: " in text and "Fix: " in text, text


@pytest.mark.parametrize("field", ["key", "hook_name", "method", "weight_mode", "shape", "dtype"])
def test_a_missing_required_field_is_refused_at_load(tmp_path, field):
    path = rand(64).save(tmp_path / "v.safetensors")
    _set_field(path, field, None, delete=True)
    with pytest.raises(VectorFileError, match=rf"bad field '{field}' in vector 0: missing; allowed: "):
        SteeringVector.load(path)


def test_a_record_that_is_not_an_object_is_refused(tmp_path):
    path = rand(64).save(tmp_path / "v.safetensors")
    _set_field(path, None, 3)
    with pytest.raises(VectorFileError, match=r"bad record in vector 0: a int; allowed: a JSON object"):
        SteeringVector.load(path)


def test_optional_fields_may_be_absent_and_accepted_values_load(tmp_path):
    path = rand(64).save(tmp_path / "v.safetensors")
    for field in ("layer", "hook", "model_name", "d_model", "prompts", "tokens", "pad", "meta"):
        _set_field(path, field, None, delete=True)
    w = SteeringVector.load(path)
    assert (w.model_name, w.prompts, w.tokens, w.pad, w.meta) == (None, {}, {}, None, {})
    path = rand(64).save(tmp_path / "n.safetensors")
    _set_field(path, "hook_name", "hook_embed")
    _set_field(path, "layer", None)
    _set_field(path, "hook", "embed")
    assert SteeringVector.load(path).hook_name == "hook_embed"


def test_what_every_builder_writes_passes_the_schema(tiny, tmp_path):
    a = st.actadd(tiny, "Love", "Hate", layer=1)
    b = st.actadd(tiny, "Joy", "Grief", layer=1)
    d = st.mean_diff(tiny, ["good", "nice"], ["bad", "mean"], layer=1)
    p = st.pca_direction(tiny, ["good", "nice", "kind"], ["bad", "mean", "cruel"], layer=1)
    for i, v in enumerate([a, a + b, 2 * a - b, a.direction("sum"), d, p, a.retarget(tiny)]):
        w = SteeringVector.load(v.save(tmp_path / f"v{i}.safetensors"))
        assert_same(v, w)


# ---------------------------------------------------------------- non-finite metadata on save
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_metadata_is_refused_at_save(tmp_path, bad):
    v = rand(64, meta={"probe": {"accuracy": [0.5, bad]}})
    with pytest.raises(st.errors.InvalidArgumentError, match=r"vector 0 \(blocks\.1\.hook_resid_pre\)\.meta\['probe'\]\['accuracy'\]\[1\] is (nan|inf|-inf), not a finite number.*Fix: store None"):
        v.save(tmp_path / "v.safetensors")
    with pytest.raises(st.errors.InvalidArgumentError, match=r"\.prompts\['weight'\] is"):
        rand(64, prompts={"weight": bad}).save(tmp_path / "v.safetensors")
    assert os.listdir(tmp_path) == []


def test_the_header_is_standard_json(tmp_path):
    from safetensors import safe_open

    path = rand(64, meta={"x": 1e308, "y": -0.0, "z": [None, True]}).save(tmp_path / "v.safetensors")

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    with safe_open(str(path), framework="pt") as handle:
        header = json.loads(handle.metadata()["steering_lens"], parse_constant=refuse)
    assert header["vectors"][0]["meta"] == {"x": 1e308, "y": -0.0, "z": [None, True]}


def test_fields_of_the_wrong_type_are_refused_at_save(tmp_path):
    v = rand(64)
    v.model_name = 5  # set after construction: the class itself does not check it
    with pytest.raises(st.errors.InvalidArgumentError, match=r"vector 0 \(blocks\.1\.hook_resid_pre\) cannot be saved: model_name=5 \(a int\); allowed: a str or null"):
        v.save(tmp_path / "v.safetensors")
    w = rand(64)
    w.tokens = {"pos": [1, 2]}
    with pytest.raises(st.errors.InvalidArgumentError, match=r"cannot be saved: tokens="):
        save_vectors([w], tmp_path / "v.safetensors")
    assert os.listdir(tmp_path) == []
