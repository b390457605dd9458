"""llama.cpp control-vector GGUF export and import (steering.export)."""

import errno
import os
import random
import types

import gguf
import numpy as np
import pytest
import torch

import steering as st
from conftest import within
from steering import SteeringVector
from steering.export import export_gguf, gguf_tensor_name, import_gguf
from steering.errors import FileAccessError, VectorFileError
from steering.testing import tiny_model


def direction(layer, hook="resid_post", seed=0, d_model=64, model="tiny-llama", **kw):
    gen = torch.Generator().manual_seed(seed)
    return SteeringVector(
        torch.randn(d_model, generator=gen), hook_name=f"blocks.{layer}.hook_{hook}", model_name=model, **kw
    )


def read(path):
    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    tensors = {t.name: (t.tensor_type, np.array(t.data)) for t in reader.tensors}
    return fields, tensors


# ---------------------------------------------------------------- the mapping
@pytest.mark.parametrize(
    "hook_name, tensor",
    [
        ("blocks.1.hook_resid_post", "direction.1"),
        ("blocks.6.hook_resid_post", "direction.6"),
        ("blocks.2.hook_resid_pre", "direction.1"),
        ("blocks.6.hook_resid_pre", "direction.5"),
    ],
)
def test_hook_names_map_to_the_block_whose_output_llama_cpp_steers(hook_name, tensor):
    assert gguf_tensor_name(hook_name) == tensor


@pytest.mark.parametrize("hook_name, where", [
    ("blocks.0.hook_resid_post", "the output of block 0"),
    ("blocks.1.hook_resid_pre", "the output of block 0"),
    ("blocks.0.hook_resid_pre", "the embeddings"),
])
def test_points_llama_cpp_cannot_steer_are_refused(hook_name, where):
    with pytest.raises(st.errors.InvalidArgumentError, match=rf"is {where}, which llama\.cpp never steers.*Fix: take the vector at a later layer"):
        gguf_tensor_name(hook_name)


def test_resid_pre_and_resid_post_of_the_previous_block_are_one_point(any_tiny):
    """The premise of the mapping: blocks.{l}.hook_resid_post == blocks.{l+1}.hook_resid_pre."""
    _, cache = any_tiny.run_with_cache("hello there")
    assert torch.equal(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"])


# ---------------------------------------------------------------- export read back with GGUFReader
def test_export_writes_the_control_vector_layout(tmp_path):
    vecs = [direction(2, seed=2), direction(1, seed=1), direction(4, "resid_pre", seed=4)]
    path = export_gguf(vecs, tmp_path / "cv.gguf", model_hint="llama")
    assert path == tmp_path / "cv.gguf"
    fields, tensors = read(path)
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.model_hint"] == "llama"
    assert fields["controlvector.layer_count"] == 3
    assert list(tensors) == ["direction.1", "direction.2", "direction.3"]
    for vec, name in zip(vecs, ["direction.2", "direction.1", "direction.3"]):
        kind, data = tensors[name]
        assert kind == gguf.GGMLQuantizationType.F32 and data.dtype == np.float32 and data.shape == (64,)
        assert np.array_equal(data, vec.tensor.numpy())
    assert sorted(os.listdir(tmp_path)) == ["cv.gguf"]


def test_export_of_an_actadd_direction_and_bfloat16(tmp_path):
    model = tiny_model(n_layers=4)
    vec = st.actadd(model, "Love", "Hate", layer=2).direction("sum").to(torch.bfloat16)
    _, tensors = read(export_gguf(vec, tmp_path / "love.gguf"))
    kind, data = tensors["direction.1"]
    assert kind == gguf.GGMLQuantizationType.F32
    assert np.array_equal(data, vec.tensor.float().numpy())


def test_the_model_hint_defaults_to_the_model_name(tmp_path):
    fields, _ = read(export_gguf(direction(1), tmp_path / "a.gguf"))
    assert fields["controlvector.model_hint"] == "tiny-llama"
    fields, _ = read(export_gguf(direction(1, model=None), tmp_path / "b.gguf"))
    assert fields["controlvector.model_hint"] == "unknown"


# ---------------------------------------------------------------- import
def test_import_round_trip_restores_values_hooks_and_model(tmp_path):
    vecs = [direction(1, seed=1), direction(3, "resid_pre", seed=3), direction(5, seed=5)]
    back = import_gguf(export_gguf(vecs, tmp_path / "cv.gguf"))
    assert [v.hook_name for v in back] == [v.hook_name for v in vecs]
    for a, b in zip(vecs, back):
        assert torch.equal(a.tensor, b.tensor) and b.dtype == torch.float32
        assert b.method == "gguf" and b.model_name == "tiny-llama" and b.is_direction
    assert back[1].meta["gguf_tensor"] == "direction.2" and back[1].meta["model_hint"] == "tiny-llama"


def test_import_names_a_model_when_asked(tmp_path):
    back = import_gguf(export_gguf(direction(1), tmp_path / "cv.gguf"), model_name="other")
    assert back[0].model_name == "other"


def _write_foreign(path, tensors, arch="controlvector", hint="llama"):
    """A file as repeng / llama.cpp's cvector-generator write it: no steering-lens keys."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string(f"{arch}.model_hint", hint)
    writer.add_uint32(f"{arch}.layer_count", len(tensors))
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_import_of_a_foreign_file_uses_resid_post(tmp_path, tiny):
    data = {f"direction.{n}": np.full(64, float(n), dtype=np.float32) for n in (2, 1)}
    back = import_gguf(_write_foreign(tmp_path / "repeng.gguf", data))
    assert [v.hook_name for v in back] == ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
    assert [float(v.tensor[0]) for v in back] == [1.0, 2.0]
    assert back[0].model_name is None and back[0].meta["model_hint"] == "llama"
    back[0].check_compatible(tiny)  # no model name: fits any model of its width


@pytest.mark.parametrize(
    "tensors, arch, match",
    [
        ({"direction.0": np.ones(4, np.float32)}, "controlvector", r"holds direction\.0, which llama\.cpp rejects"),
        ({"blk.1.weight": np.ones(4, np.float32)}, "controlvector", r"tensor named 'blk\.1\.weight'"),
        ({"direction.1": np.ones(4, np.float16)}, "controlvector", r"of type F16, which llama\.cpp rejects \(it needs F32\)"),
        ({"direction.1": np.ones((2, 4), np.float32)}, "controlvector", r"with shape \[4, 2\], which llama\.cpp rejects \(it needs 1-D\)"),
        ({"direction.1": np.ones(4, np.float32), "direction.2": np.ones(8, np.float32)}, "controlvector", r"different widths \[4, 8\]"),
        ({}, "controlvector", r"holds no direction\.N tensor"),
        ({"direction.1": np.ones(4, np.float32)}, "llama", r"architecture 'llama', not a control vector"),
    ],
    ids=["direction-0", "other-name", "f16", "2-d", "widths", "empty", "model-file"],
)
def test_import_refuses_what_llama_cpp_refuses(tmp_path, tensors, arch, match):
    path = _write_foreign(tmp_path / "bad.gguf", tensors, arch=arch)
    with pytest.raises(VectorFileError, match=match):
        import_gguf(path)


def test_import_refuses_a_missing_or_non_gguf_file(tmp_path):
    with pytest.raises(VectorFileError, match=r"no control-vector file at '.*nope\.gguf'"):
        import_gguf(tmp_path / "nope.gguf")
    (tmp_path / "x.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(VectorFileError, match=r"is not a readable GGUF file"):
        import_gguf(tmp_path / "x.gguf")


# ---------------------------------------------------------------- refusals on export
def test_a_per_position_vector_is_refused_with_the_fix(tmp_path):
    vec = st.actadd(tiny_model(n_layers=4), "Love", "Hate", layer=2)
    with pytest.raises(st.errors.InvalidVectorError, match=r"per-position ActAdd vector of shape \(5, 64\).*vec\.direction\('sum'\)"):
        export_gguf([vec], tmp_path / "v.gguf")
    assert os.listdir(tmp_path) == []


def test_mixed_widths_are_refused(tmp_path):
    with pytest.raises(st.errors.VectorMismatchError, match=r"vectors\[1\] at blocks\.2\.hook_resid_post has d_model=32 but vectors\[0\] has d_model=64"):
        export_gguf([direction(1), direction(2, d_model=32)], tmp_path / "v.gguf")


def test_mixed_models_are_refused(tmp_path):
    with pytest.raises(st.errors.VectorMismatchError, match=r"different models: 'a', 'b'"):
        export_gguf([direction(1, model="a"), direction(2, model="b")], tmp_path / "v.gguf")
    export_gguf([direction(1, model="a"), direction(2, model=None)], tmp_path / "v.gguf")  # unknown joins known


def test_two_vectors_at_one_layer_are_refused(tmp_path):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"vectors\[0\] \(blocks\.3\.hook_resid_post\) and vectors\[1\] \(blocks\.4\.hook_resid_pre\) both map to direction\.3"):
        export_gguf([direction(3), direction(4, "resid_pre")], tmp_path / "v.gguf")
    with pytest.raises(st.errors.InvalidArgumentError, match=r"both map to direction\.2"):
        export_gguf([direction(2), direction(2, seed=1)], tmp_path / "v.gguf")


@pytest.mark.parametrize("hook", ["mlp_out", "attn_out", "resid_mid"])
def test_non_residual_hooks_are_refused(tmp_path, hook):
    with pytest.raises(st.errors.InvalidArgumentError, match=rf"hook 'blocks\.2\.hook_{hook}' is not a residual-stream hook"):
        export_gguf(direction(2, hook), tmp_path / "v.gguf")


def test_compatibility_mode_vectors_are_refused(tmp_path):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"weight_mode='compat'; allowed: 'hf'"):
        export_gguf(direction(2, weight_mode="compat"), tmp_path / "v.gguf")


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(st.errors.InvalidArgumentError, match=r"vectors is empty"):
        export_gguf([], tmp_path / "v.gguf")
    with pytest.raises(st.errors.InvalidArgumentError, match=r"the folder '.*missing' does not exist"):
        export_gguf(direction(1), tmp_path / "missing" / "v.gguf")


def test_a_failed_export_leaves_no_file(tmp_path, monkeypatch):
    def broken(self):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", broken)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(direction(1), tmp_path / "v.gguf")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- file-system faults and damaged files (issue 17, category 7)
ROOT = os.geteuid() == 0  # root ignores file modes: permission cases are emulated through os.access


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system"),
                                         (errno.EACCES, "permission denied")])
@pytest.mark.parametrize("stage", ["fsync", "replace"])
def test_a_refused_export_is_a_file_access_error_and_keeps_the_old_file(tmp_path, monkeypatch, code, cause, stage):
    path = export_gguf(direction(1), tmp_path / "v.gguf")
    before = path.read_bytes()

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, stage, refuse)
    with pytest.raises(FileAccessError) as caught:
        export_gguf(direction(2), path)
    assert f"'{path}'" in str(caught.value) and cause in str(caught.value) and "Fix: " in str(caught.value)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["v.gguf"]


def test_a_disk_that_fills_while_writing_tensors(tmp_path, monkeypatch):
    path = export_gguf(direction(1), tmp_path / "v.gguf")
    before = path.read_bytes()

    def full(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full)
    with pytest.raises(FileAccessError, match=rf"cannot write file '{path}': no space left on device"):
        export_gguf(direction(2), path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["v.gguf"]


def test_export_paths_are_checked_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf, "GGUFWriter", lambda *a, **k: pytest.fail("wrote before checking the path"))
    with pytest.raises(FileAccessError, match=r"file name too long"):
        export_gguf(direction(1), tmp_path / ("v" * 300 + ".gguf"))
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    box = within(5, lambda: export_gguf(direction(1), fifo))
    assert isinstance(box.get("error"), FileAccessError) and "named pipe" in str(box["error"]), box
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: types.SimpleNamespace(f_flag=os.ST_RDONLY | real(p).f_flag))
    with pytest.raises(FileAccessError, match=r"read-only file system"):
        export_gguf(direction(1), tmp_path / "v.gguf")
    assert sorted(os.listdir(tmp_path)) == ["pipe.gguf"]


def test_import_of_a_named_pipe_does_not_block(tmp_path):
    fifo = tmp_path / "v.gguf"
    os.mkfifo(fifo)
    box = within(5, lambda: import_gguf(fifo))
    assert isinstance(box.get("error"), FileAccessError), box
    assert f"'{fifo}'" in str(box["error"]) and "named pipe (FIFO)" in str(box["error"])


def test_import_of_an_unreadable_file_says_permission(tmp_path, monkeypatch):
    path = export_gguf(direction(1), tmp_path / "v.gguf")
    if ROOT:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if os.fspath(p) == str(path) else real(p, m, *a, **k))
    else:
        os.chmod(path, 0)
    try:
        with pytest.raises(FileAccessError, match=rf"cannot read control-vector file '{path}': permission denied"):
            import_gguf(path)
    finally:
        os.chmod(path, 0o644)


def test_an_os_error_inside_the_reader_is_a_file_access_error(tmp_path, monkeypatch):
    path = export_gguf(direction(1), tmp_path / "v.gguf")

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(gguf, "GGUFReader", broken)
    with pytest.raises(FileAccessError, match=rf"cannot read control-vector file '{path}': input/output error"):
        import_gguf(path)


def test_every_truncation_of_a_gguf_is_a_vector_file_error(tmp_path):
    data = export_gguf([direction(1), direction(2, seed=1)], tmp_path / "v.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    for size in range(0, len(data), 7):
        cut.write_bytes(data[:size])
        with pytest.raises(VectorFileError, match=rf"'{cut}' (is not a readable GGUF file|holds)"):
            import_gguf(cut)


def test_garbage_in_a_gguf_is_never_a_raw_error(tmp_path):
    data = export_gguf([direction(1), direction(2, seed=1)], tmp_path / "v.gguf").read_bytes()
    bad = tmp_path / "bad.gguf"
    rng = random.Random(0)
    for _ in range(150):
        noisy = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            noisy[rng.randrange(len(noisy))] = rng.randrange(256)
        bad.write_bytes(bytes(noisy))
        try:
            import_gguf(bad)
        except VectorFileError as err:
            assert f"'{bad}'" in str(err)
    bad.write_bytes(b"GGUF" + bytes(rng.randrange(256) for _ in range(200)))
    with pytest.raises(VectorFileError, match=rf"'{bad}' is not a readable GGUF file"):
        import_gguf(bad)


def test_a_gguf_holding_nan_names_the_file(tmp_path):
    data = np.ones(8, dtype=np.float32)
    data[3] = np.nan
    path = _write_foreign(tmp_path / "nan.gguf", {"direction.1": data})
    with pytest.raises(VectorFileError, match=rf"'{path}' holds direction\.1 with NaN or Inf values"):
        import_gguf(path)
