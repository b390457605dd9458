"""steering-lens benchmarks: steered generation vs plain Hugging Face, batched coefficients, sweeps, peers.

One command runs everything and prints a table plus JSON:

    python benchmarks/bench.py                       # SmolLM2-135M, 5 repetitions after warm-up
    python benchmarks/bench.py --model gemma3-270m   # the other built-in model
    python benchmarks/bench.py --smoke               # seconds: tiny random model, 1 repetition (CI)

Every figure is a median over ``--reps`` repetitions after one warm-up, and the methods
of one comparison are interleaved within each repetition (round-robin), so drift in
machine load hits them alike. Ratios, not absolute speeds, are the results: the
machines are shared.

Peers (``steering-vectors``, ``repeng``) are installed into the running environment
on first use with ``pip install --no-deps`` (their pinned dependency ranges predate
transformers 5 / numpy 2, but the code paths timed here work; repeng 0.4 needs the
``np.float_`` alias NumPy 2 removed, which this script restores); ``--no-peers`` skips them.
"""

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

PROMPTS = [
    "I went up to my friend and said",
    "The weather this morning was",
    "My favourite way to spend a Sunday is",
    "The report on the new bridge says that",
    "When the train finally arrived, we",
    "She opened the box and found",
    "Our teacher always told us that",
    "The best thing about this city is",
]
PEERS = {"steering_vectors": "steering-vectors==0.12.2", "repeng": "repeng==0.4.0"}


# ------------------------------------------------------------------------------------------ helpers
def median_time(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved(methods: dict, reps: int, warmup: int = 1, raw: Optional[dict] = None) -> dict:
    """Median seconds per method; each repetition runs every method once, in rotating order.

    With ``raw`` (a dict), the per-repetition times are stored there too, for paired ratios.
    """
    names = list(methods)
    for _ in range(warmup):
        for name in names:
            methods[name]()
    times: dict = {name: [] for name in names}
    for r in range(reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            t = time.perf_counter()
            methods[name]()
            times[name].append(time.perf_counter() - t)
    if raw is not None:
        raw.update(times)
    return {name: statistics.median(v) for name, v in times.items()}


def paired_ratio(num: list, den: list, n_boot: int = 2000) -> tuple[float, float, float]:
    """Median over repetitions of ``num[r] / den[r]`` and a bootstrap 95% interval of that median.

    Both times of a pair come from the same repetition (run back to back), so slow drift in
    machine load cancels; this is the low-noise comparison of two methods.
    """
    import random

    ratios = [a / b for a, b in zip(num, den)]
    rng = random.Random(0)
    meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(n_boot))
    return statistics.median(ratios), meds[int(0.025 * n_boot)], meds[int(0.975 * n_boot) - 1]


def left_batch(tok: Any, prompts: list, device: Any) -> dict:
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)
    if tok.bos_token_id is not None and not bool((enc["input_ids"][:, :] == tok.bos_token_id).any(dim=1).all()):
        bos = torch.full((enc["input_ids"].shape[0], 1), tok.bos_token_id)
        enc = {"input_ids": torch.cat([bos, enc["input_ids"]], 1),
               "attention_mask": torch.cat([torch.ones_like(bos), enc["attention_mask"]], 1)}
    return {k: v.to(device) for k, v in enc.items()}


def ensure_peers(install: bool) -> dict:
    import numpy as np

    if "float_" not in np.__dict__:  # repeng 0.4 annotates with np.float_, removed in NumPy 2: alias it
        np.float_ = np.float64
    found = {}
    for module, spec in PEERS.items():
        try:
            __import__(module)
            found[module] = True
            continue
        except Exception:
            pass
        if install:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", spec, "scikit-learn", "scipy", "joblib",
                            "threadpoolctl", "cloudpickle"],
                           check=False, capture_output=True)
            try:
                __import__(module)
                found[module] = True
                continue
            except Exception as err:  # noqa: BLE001 - report and go on
                found[module] = f"import failed: {err}"
        else:
            found[module] = "not installed"
    return found


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------ parts
def bench_generation(model: Any, plain_hf: Any, name: str, reps: int, new_tokens: int, peers: dict, out: dict) -> None:
    """Target 1 and 4: tokens/s of steered generation vs plain HF, batch 1 and 8; peers alike."""
    import steering as st

    tok = model.tokenizer
    layer = model.cfg.n_layers // 3
    vec = st.actadd(model, " weddings", "", layer=layer)  # per-position ActAdd (front)
    direction = vec.direction("sum") / float(vec.norm().max()) * 4.0  # one direction, same size for every method
    device = next(plain_hf.parameters()).device
    gen_kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
                  pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    plain_hf.generation_config.eos_token_id = None

    from steering._fast import linear_kernel

    out["linear_kernel"] = linear_kernel(model)
    compare_torch = out["linear_kernel"] == "chunked"
    rows = []
    for batch in (1, 8):
        prompts = PROMPTS[:batch]
        enc = left_batch(tok, prompts, device)

        def plain() -> Any:
            with torch.no_grad():
                return plain_hf.generate(**enc, **gen_kw)

        common = dict(max_new_tokens=new_tokens, do_sample=False, stop_at_eos=False, batch_size=8, progress=False)
        methods: dict = {
            "plain HF (unsteered)": plain,
            "steering-lens ActAdd (front)": lambda: st.generate(model, prompts, vec, 4.0, **common),
            "steering-lens direction (all positions)": lambda: st.generate(model, prompts, direction, 1.0, **common),
            "steering-lens unsteered": lambda: st.generate(model, prompts, None, **common),
        }
        peer_fns = peer_generators(model, plain_hf, direction, enc, gen_kw, peers)
        methods.update(peer_fns)
        if compare_torch:  # where the speed comes from: the same path with torch's own matmuls
            methods["steering-lens ActAdd, torch's matmuls (STEERING_LINEAR=torch)"] = (
                lambda: with_kernel("torch", lambda: st.generate(model, prompts, vec, 4.0, **common)))
        if batch == 1:  # the bridge's own path, for reference (slow: fewer repetitions)
            methods["steering-lens via the bridge's hook points"] = (
                lambda: st.generate(model, prompts, vec, 4.0, backend="bridge", **common))
        raw: dict = {}
        secs = interleaved(methods, reps, raw=raw)
        total = batch * new_tokens
        base = secs["plain HF (unsteered)"]
        ours = raw["steering-lens ActAdd (front)"]
        for method, s in secs.items():
            med, lo, hi = paired_ratio(raw["plain HF (unsteered)"], raw[method])
            row = {"part": "generation", "model": name, "batch": batch, "method": method,
                   "seconds": s, "tokens_per_s": total / s, "ratio_vs_plain": base / s,
                   "paired_ratio_vs_plain": med, "paired_ratio_ci": [lo, hi]}
            if method.endswith("(peer)"):  # > 1: ActAdd through steering-lens is faster than this peer
                row["actadd_speed_vs_this_peer"] = list(paired_ratio(raw[method], ours))
            rows.append(row)
    out["generation"] = rows
    # coeff 0 must equal plain HF greedy output, token for token
    enc = left_batch(tok, PROMPTS, device)
    with torch.no_grad():
        ref = plain_hf.generate(**enc, **gen_kw)[:, enc["input_ids"].shape[1]:]
    ref_text = tok.batch_decode(ref, skip_special_tokens=True)
    ours = st.generate(model, PROMPTS, vec, 0.0, max_new_tokens=new_tokens, do_sample=False, stop_at_eos=False,
                       progress=False)
    out["coeff0_equal"] = [a == b for a, b in zip(ours, ref_text)]
    out["coeff0_first_diff"] = [first_diff(a, b) for a, b in zip(ours, ref_text)]
    # and one prompt at a time (batch 1 takes the other form of the small-batch matmul)
    singles = []
    for prompt in PROMPTS:
        one = left_batch(tok, [prompt], device)
        with torch.no_grad():
            ref1 = plain_hf.generate(**one, **gen_kw)[:, one["input_ids"].shape[1]:]
        mine = st.generate(model, prompt, vec, 0.0, max_new_tokens=new_tokens, do_sample=False, stop_at_eos=False,
                           progress=False)[0]
        singles.append(mine == tok.batch_decode(ref1, skip_special_tokens=True)[0])
    out["coeff0_equal_batch1"] = singles


def pin_linear_kernel(model: Any) -> str:
    """Fix ``STEERING_LINEAR`` for the run to the kernel ``auto`` chooses for ``model`` (measured once, here).

    The twin re-reads the setting at every call and re-measures when it changes to ``auto``; pinned to
    the measured kernel, switching to torch's matmuls for a comparison and back never re-measures
    inside a timed call.
    """
    from steering._fast import linear_kernel

    kernel = linear_kernel(model)
    os.environ["STEERING_LINEAR"] = kernel
    return kernel


def with_kernel(kernel: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with the twin's small-batch matmul set to ``kernel`` (``STEERING_LINEAR``, read at each call)."""
    saved = os.environ.get("STEERING_LINEAR")
    os.environ["STEERING_LINEAR"] = kernel
    try:
        return fn()
    finally:
        if saved is None:
            del os.environ["STEERING_LINEAR"]
        else:
            os.environ["STEERING_LINEAR"] = saved


def first_diff(a: str, b: str) -> Optional[int]:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def peer_generators(model: Any, plain_hf: Any, direction: Any, enc: dict, gen_kw: dict, peers: dict) -> dict:
    """Steered generate with each installed peer, adding the same direction at the same block output."""
    out: dict = {}
    block = direction.layer - 1 if direction.hook == "resid_pre" else direction.layer  # resid_pre l = output of l−1
    vec = direction.tensor.float()
    if peers.get("steering_vectors") is True:
        from steering_vectors import SteeringVector as PeerVector

        peer = PeerVector(layer_activations={block: vec}, layer_type="decoder_block")

        def run_sv() -> Any:
            with torch.no_grad(), peer.apply(plain_hf, multiplier=1.0):
                return plain_hf.generate(**enc, **gen_kw)

        out["steering-vectors (peer)"] = run_sv
    if peers.get("repeng") is True:
        import numpy as np
        from repeng import ControlModel, ControlVector

        control = ControlVector(model_type=plain_hf.config.model_type, directions={block: vec.numpy().astype(np.float32)})
        wrapped = getattr(plain_hf, "_bench_repeng", None)
        if wrapped is None:  # repeng rewrites the model's layers in place: give it its own copy
            wrapped = ControlModel(load_plain_hf(getattr(plain_hf, "_bench_name")), [block])
            wrapped.reset()
            object.__setattr__(plain_hf, "_bench_repeng", wrapped)

        def run_repeng() -> Any:
            wrapped.set_control(control, 1.0)
            try:
                with torch.no_grad():
                    return wrapped.generate(**enc, **gen_kw)
            finally:
                wrapped.reset()

        out["repeng (peer)"] = run_repeng
    return out


def gemm_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    """This machine's float32 matmul throughput now: the median of ``reps`` n×n×n products (GFLOP/s)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n ** 3 / median_time(lambda: a @ b, reps) / 1e9


def per_row_gflop(model: Any, prompts: list, coeffs: int, new_tokens: int) -> float:
    """Matmul work (GFLOP) of one greedy call for ``coeffs`` × ``prompts`` rows if every row ran every layer:
    every linear layer on every (left-padded) prompt position, the output head on the last one, then one pass
    per further new token."""
    from steering.tokens import tokenize_prompt

    linears = [m.weight.numel() for m in model.original_model.modules() if isinstance(m, torch.nn.Linear)]
    head = max(linears)  # the unembedding: the largest matrix in both built-in models
    width = max(tokenize_prompt(model, p).numel() for p in prompts)
    rows = coeffs * len(prompts)
    prefill = rows * (width * (sum(linears) - head) + head)
    decode = rows * (new_tokens - 1) * sum(linears)
    return 2 * (prefill + decode) / 1e9


def computed_gflop(model: Any, call: Callable[[], Any]) -> float:
    """Matmul work (GFLOP) ``call`` actually did on the fast path: each linear layer's weight × the rows it
    was fed, counted by hooks during one (untimed) run — below the steered layer, rows that agree are shared."""
    from steering._fast import twin_for

    work = [0]
    twin = twin_for(model)
    if twin is None:
        return float("nan")

    def count(module: Any, args: tuple) -> None:
        work[0] += args[0].numel() // args[0].shape[-1] * module.weight.numel()

    linears = [m for m in twin.modules() if isinstance(m, torch.nn.Linear)]
    handles = [m.register_forward_pre_hook(count) for m in linears]
    try:
        call()
    finally:
        for h in handles:
            h.remove()
    return 2 * work[0] / 1e9


def bench_per_row(model: Any, name: str, reps: int, new_tokens: int, out: dict) -> None:
    """Target 2: C = 8 coefficients × N = 4 prompts as one batch vs a loop of 8 calls; vs unsteered rows.

    Runs with half the generation part's new tokens (32 by default) to keep the run short.
    """
    import steering as st

    vec = st.actadd(model, " weddings", "", layer=model.cfg.n_layers // 3)
    coeffs = [0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0]
    prompts = PROMPTS[:4]
    kw = dict(max_new_tokens=new_tokens, do_sample=False, stop_at_eos=False, batch_size=32, progress=False)
    rows32 = [p for _ in coeffs for p in prompts]
    methods = {
        "one call, coeff=[8 values]": lambda: st.generate(model, prompts, vec, coeffs, **kw),
        "loop of 8 calls": lambda: [st.generate(model, prompts, vec, c, **kw) for c in coeffs],
        "same 32 rows unsteered": lambda: st.generate(model, rows32, None, **kw),
    }
    from steering._fast import linear_kernel

    if linear_kernel(model) == "chunked":  # the same two ways with torch's own matmuls, for context
        methods["one call, torch's matmuls"] = lambda: with_kernel("torch", methods["one call, coeff=[8 values]"])
        methods["loop of 8 calls, torch's matmuls"] = lambda: with_kernel("torch", methods["loop of 8 calls"])
    secs = interleaved(methods, reps)
    one = secs["one call, coeff=[8 values]"]
    out["per_row"] = {"model": name, "seconds": secs,
                      "speedup_vs_loop": secs["loop of 8 calls"] / one,
                      "time_vs_unsteered": one / secs["same 32 rows unsteered"]}
    # How close the one call runs to this machine's compute limit (measured now, side by side).
    gflop = computed_gflop(model, methods["one call, coeff=[8 values]"])
    peak = gemm_peak_gflops()
    out["per_row"].update({
        "one_call_gflop": gflop, "one_call_gflop_every_row": per_row_gflop(model, prompts, len(coeffs), new_tokens),
        "one_call_gflops": gflop / one, "gemm_peak_gflops": peak,
        "loop_vs_one_call_at_peak": secs["loop of 8 calls"] / (gflop / peak),
    })
    if "one call, torch's matmuls" in secs:
        out["per_row"]["speedup_vs_loop_torch_matmuls"] = secs["loop of 8 calls, torch's matmuls"] / secs[
            "one call, torch's matmuls"]
        out["per_row"]["speedup_vs_torch_loop"] = secs["loop of 8 calls, torch's matmuls"] / one


def bench_sampling(model: Any, plain_hf: Any, name: str, reps: int, new_tokens: int, out: dict, rows: int = 64) -> None:
    """Sampled generation with the paper's settings (temperature 1, top-p 0.3): steered st.generate vs plain HF.

    HF's top-p warper sorts the whole vocabulary for every row and step; st.generate finds the
    nucleus from a partial top-k (steering.generation._Sampler, exact: tests/test_fast.py).
    """
    import steering as st

    tok = model.tokenizer
    vec = st.actadd(model, " weddings", "", layer=model.cfg.n_layers // 3)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(rows)]
    enc = left_batch(tok, prompts, next(plain_hf.parameters()).device)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    hf_kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_p=0.3,
                 top_k=0, eos_token_id=None, pad_token_id=pad)

    def plain() -> Any:
        torch.manual_seed(0)
        with torch.no_grad():
            return plain_hf.generate(**enc, **hf_kw)

    raw: dict = {}
    secs = interleaved({
        "plain HF generate, sampled (unsteered)": plain,
        "st.generate ActAdd, sampled": lambda: st.generate(model, prompts, vec, 4.0, max_new_tokens=new_tokens,
                                                           stop_at_eos=False, batch_size=rows, progress=False),
    }, reps, raw=raw)
    med, lo, hi = paired_ratio(raw["plain HF generate, sampled (unsteered)"], raw["st.generate ActAdd, sampled"])
    out["sampling"] = {"model": name, "rows": rows, "new_tokens": new_tokens, "seconds": secs,
                       "tokens_per_s": {k: rows * new_tokens / v for k, v in secs.items()},
                       "ratio_vs_plain": med, "ratio_ci": [lo, hi]}


def bench_sweep(model: Any, name: str, reps: int, out: dict, layers: Any = "all") -> None:
    """Target 3: next-token layer × coeff sweep, batched (st.sweep) vs a naive loop of full forwards."""
    import steering as st

    prompts = PROMPTS[:4]
    coeffs = [0.0, 2.0, 4.0, 8.0]
    targets = [" wedding"]
    tid = model.tokenizer.encode(targets[0], add_special_tokens=False)[0]
    layer_list = list(range(model.cfg.n_layers)) if layers == "all" else layers

    def batched() -> Any:
        return st.sweep(model, " weddings", "", prompts, layers=layer_list, coeffs=coeffs,
                        metrics=[st.Metric("logprob", targets=targets)], progress=False)

    def naive() -> Any:
        values = []
        for layer in layer_list:
            vec = st.actadd(model, " weddings", "", layer=layer)  # one forward pass per layer
            for c in coeffs:
                for p in prompts:
                    with torch.no_grad(), st.steer(model, vec, c):
                        logits = model(model.to_tokens(p))
                    values.append(float(torch.log_softmax(logits[0, -1].float(), -1)[tid]))
        return values

    def batched_full() -> Any:
        return st.sweep(model, " weddings", "", prompts, layers=layer_list, coeffs=coeffs,
                        metrics=[st.Metric("logprob", targets=targets)], progress=False, reuse=False)

    secs = interleaved({"st.sweep (batched)": batched, "st.sweep reuse=False (batched, full passes)": batched_full,
                        "naive loop (bridge, full forward)": naive}, reps, warmup=0)
    out["sweep"] = {"model": name, "layers": len(layer_list), "coeffs": len(coeffs), "prompts": len(prompts),
                    "seconds": secs, "speedup": secs["naive loop (bridge, full forward)"] / secs["st.sweep (batched)"],
                    "reuse_speedup": secs["st.sweep reuse=False (batched, full passes)"] / secs["st.sweep (batched)"]}


def bench_startup(name: str, out: dict, smoke: bool) -> None:
    """Target 5: `steer --help` time, cached load time and peak RSS of load + one generate (fresh processes)."""
    exe = Path(sys.executable).with_name("steer")
    steer = [str(exe) if exe.exists() else "steer", "--help"]
    times = []
    for _ in range(3 if smoke else 5):
        t = time.perf_counter()
        subprocess.run(steer, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    out["startup"] = {"steer_help_s": statistics.median(times)}
    if smoke:
        return
    code = (
        "import time, steering as st\n"
        "t = time.perf_counter()\n"
        f"m = st.load_model({name!r}, device='cpu')\n"
        "load = time.perf_counter() - t\n"
        "st.generate(m, 'Hello there', st.actadd(m, ' weddings', '', layer=3), 4.0, max_new_tokens=16, do_sample=False)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (this benchmark)
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(load, int(hwm) / 1024)\n"
    )
    loads, peaks = [], []
    for _ in range(3):
        res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        load, peak = map(float, res.stdout.split()[-2:])
        loads.append(load)
        peaks.append(peak)
    out["startup"].update({"cached_load_s": statistics.median(loads), "peak_rss_mb": statistics.median(peaks)})


# ------------------------------------------------------------------------------------------ main
def load_plain_hf(name: str) -> Any:
    """The reference: an independently loaded, unbridged HF model with the library's default attention."""
    from transformers import AutoModelForCausalLM

    from steering.models import cache_dir

    path = Path(cache_dir()) / name
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


def table(out: dict) -> str:
    lines = ["| part | batch | method | tokens/s | ratio vs plain HF (medians) | paired ratio [95% CI] |",
             "|---|---|---|---|---|---|"]
    for r in out.get("generation", []):
        lo, hi = r["paired_ratio_ci"]
        extra = ""
        if "actadd_speed_vs_this_peer" in r:
            m, plo, phi = r["actadd_speed_vs_this_peer"]
            extra = f"; steering-lens ActAdd vs this peer: {m:.3f} [{plo:.3f}, {phi:.3f}]"
        lines.append(f"| generation | {r['batch']} | {r['method']} | {r['tokens_per_s']:.1f} | {r['ratio_vs_plain']:.3f} | "
                     f"{r['paired_ratio_vs_plain']:.3f} [{lo:.3f}, {hi:.3f}]{extra} |")
    if "per_row" in out:
        p = out["per_row"]
        lines.append(f"| per-row coefficients (C=8 × N=4) | 32 | one call vs loop of 8 | — | "
                     f"{p['speedup_vs_loop']:.2f}× faster; {p['time_vs_unsteered']:.2f}× the unsteered time | — |")
        if "gemm_peak_gflops" in p:
            lines.append(f"| per-row, compute | 32 | one call's matmuls vs a 2048³ matmul now | — | "
                         f"{p['one_call_gflops']:.0f} of {p['gemm_peak_gflops']:.0f} GFLOP/s ({p['one_call_gflop']:.1f} GFLOP "
                         f"computed; {p.get('one_call_gflop_every_row', float('nan')):.1f} if every row ran every layer); "
                         f"ceiling (loop time ÷ the one call's matmuls at that peak, no other work): "
                         f"{p['loop_vs_one_call_at_peak']:.1f}× | — |")
        if "speedup_vs_loop_torch_matmuls" in p:
            lines.append(f"| per-row, both with torch's matmuls | 32 | one call vs loop of 8 | — | "
                         f"{p['speedup_vs_loop_torch_matmuls']:.2f}× faster; default one call vs that loop: "
                         f"{p['speedup_vs_torch_loop']:.2f}× | — |")
    if "sampling" in out:
        p = out["sampling"]
        t = list(p["tokens_per_s"].values())
        lo, hi = p["ratio_ci"]
        lines.append(f"| sampled generation, top-p 0.3 | {p['rows']} | st.generate ActAdd vs plain HF (sort-based top-p) | "
                     f"{t[1]:.0f} vs {t[0]:.0f} | {t[1] / t[0]:.2f} | {p['ratio_vs_plain']:.2f} [{lo:.2f}, {hi:.2f}] |")
    if "sweep" in out:
        s = out["sweep"]
        lines.append(f"| next-token sweep ({s['layers']} layers × {s['coeffs']} coeffs × {s['prompts']} prompts) | — | "
                     f"st.sweep vs naive loop | — | {s['speedup']:.1f}× faster; resuming each layer vs batched full passes: "
                     f"{s['reuse_speedup']:.2f}× | — |")
    if "startup" in out:
        lines.append("| start-up | — | " + ", ".join(f"{k} = {v:.2f}" for k, v in out["startup"].items()) + " | — | — | — |")
    if "coeff0_equal" in out:
        eq = out["coeff0_equal"]
        lines.append(f"| coeff 0 == plain HF greedy | 8 | rows equal | {sum(eq)}/{len(eq)} | — | — |")
    if "coeff0_equal_batch1" in out:
        eq = out["coeff0_equal_batch1"]
        lines.append(f"| coeff 0 == plain HF greedy, one prompt at a time | 1 | rows equal | {sum(eq)}/{len(eq)} | — | — |")
    if "linear_kernel" in out:
        lines.append(f"| small-batch matmul of the fast path | — | steering.fast.linear_kernel | {out['linear_kernel']} | — | — |")
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="built-in model (default smollm2-135m)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions after warm-up (default 5)")
    parser.add_argument("--new-tokens", type=int, default=64, help="greedy new tokens (default 64)")
    parser.add_argument("--no-peers", action="store_true", help="skip steering-vectors and repeng")
    parser.add_argument("--smoke", action="store_true", help="seconds-long run on a tiny random model (CI)")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    parser.add_argument("--parts", default="generation,per_row,sampling,sweep,startup", help="comma-separated parts")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    import steering as st

    out: dict = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                             "platform": platform.platform(), "cpus": os.cpu_count(),
                             "threads": torch.get_num_threads()}}
    parts = set(args.parts.split(","))
    if "startup" in parts:  # first, in fresh subprocesses, before this process holds any model
        bench_startup(args.model, out, args.smoke)
    if args.smoke:
        from steering.testing import tiny_model

        model = tiny_model()
        name, reps, new_tokens = "tiny-llama (random)", 1, 4
        plain_hf = model.original_model  # no separate reference in smoke mode
        peers: dict = {}
    else:
        name, reps, new_tokens = args.model, args.reps, args.new_tokens
        model = st.load_model(name, device="cpu")
        plain_hf = load_plain_hf(name)
        object.__setattr__(plain_hf, "_bench_name", name)
        peers = {} if args.no_peers else ensure_peers(install=True)
    out["model"] = name
    out["peers"] = peers
    pin_linear_kernel(model)
    if "generation" in parts:
        bench_generation(model, plain_hf, name, reps, new_tokens, peers, out)
    if "per_row" in parts:
        bench_per_row(model, name, reps, max(1, new_tokens // 2), out)
    if "sampling" in parts:
        bench_sampling(model, plain_hf, name, reps, max(1, new_tokens // 2), out, rows=4 if args.smoke else 64)
    if "sweep" in parts:
        bench_sweep(model, name, max(1, min(reps, 3)), out, layers=[0, 1] if args.smoke else "all")
    gc.collect()
    print(table(out))
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
