"""Activation patching, batched vs one forward pass per patch (issue 18), and the runtime of each mechanism measure.

    python benchmarks/bench_mechanisms.py                       # Gemma-3-270M, 20-token prompt, every layer
    python benchmarks/bench_mechanisms.py --model smollm2-135m --layer 1
    python benchmarks/bench_mechanisms.py --smoke               # seconds: a tiny random model (CI)

``st.mechanisms.patch_effect`` runs all patched positions of one layer as rows of one batch, resumed
above the patched layer on the twin backend. The naive reference patches one (layer, position) cell
per full forward pass on the bridge (``steering.mechanisms.patching.patched_metric_naive``), over
the same cells (those the steering changed; the others are exactly 0 and run in neither). Both give
the same numbers (the largest difference is printed). ``--measures`` also times the other measures.
"""

import argparse
import json
import time
import warnings

import torch

import steering as st
from machine import cpu_name, load_average
from steering.mechanisms import attention_to_steered, attribute, delta_profile, patch_effect, position_effects
from steering.mechanisms.patching import patched_metric_naive
from steering.mechanisms.runs import cached_pair, prepared, readout
from steering.testing import tiny_model

PROMPT_20 = "I went up to my friend and said that the weather today was really quite nice, so we"
SETTINGS = {"gemma3-270m": (10, 10.0), "smollm2-135m": (1, 10.0)}


def clocked(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of ``fn()``; CPU time / cores approximates an idle machine's wall time."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def naive(model, vec, coeff, text, target, table) -> tuple[float, float, float]:
    """One bridge forward per patched cell: (wall s, CPU s, largest |effect difference| vs the batched table)."""
    prompt = prepared(model, vec, text, coeff)
    names = sorted(set(table.hook))
    base, steered = cached_pair(model, vec, coeff, prompt, names)
    _, weights, pair = readout(model, target)
    m_u = float(torch.log_softmax(base.logits[-1], -1) @ weights) if not pair else None
    cells = table[table.ran]
    worst = [0.0]

    def run() -> None:
        for row in cells.itertuples():
            m = patched_metric_naive(model, vec, prompt, coeff, row.layer, row.position,
                                     steered.cache[row.hook][row.position], weights, pair, "denoise")
            if m_u is not None:
                worst[0] = max(worst[0], abs((m - m_u) - row.effect))

    wall, cpu = clocked(run)
    return wall, cpu, worst[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m", choices=sorted(SETTINGS))
    parser.add_argument("--layer", type=int, default=None, help="steered layer (default: the demo's)")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, seconds")
    parser.add_argument("--measures", action="store_true", help="also time every mechanism measure")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.smoke:
        torch.set_num_threads(1)  # tiny tensors gain nothing from threads
        model, layer, coeff, target, name = tiny_model("llama", n_layers=3), 1, 6.0, "a", "tiny-llama (3 layers)"
    else:
        model, name = st.load_model(args.model), args.model
        layer, coeff = SETTINGS[args.model]
        layer = layer if args.layer is None else args.layer
        target = " wedding"
    vec = st.actadd(model, " weddings" if not args.smoke else "love", "" if not args.smoke else "hate", layer=layer)
    text = PROMPT_20 if not args.smoke else "I am here, ok"  # 20 tokens on Gemma's tokenizer; 14 on the tiny one
    n_tokens = int(st.tokens.tokenize_prompt(model, text).numel())
    patch_effect(model, vec, "warm up", target=target, coeff=coeff, layers=[model.cfg.n_layers - 1])
    load = [load_average()]
    tables = []
    batched, batched_cpu = clocked(lambda: tables.append(patch_effect(model, vec, text, target=target, coeff=coeff)))
    table = tables[0]
    bridge, bridge_cpu = clocked(lambda: patch_effect(model, vec, text, target=target, coeff=coeff, backend="bridge"))
    slow, slow_cpu, worst = naive(model, vec, coeff, text, target, table)
    load.append(load_average())
    out = {"model": name, "cpu": cpu_name(), "threads": torch.get_num_threads(), "prompt_tokens": n_tokens,
           "layers": int(model.cfg.n_layers), "steered_layer": layer, "cells_run": int(table.ran.sum()),
           "batched_s": batched, "batched_cpu_s": batched_cpu, "batched_bridge_s": bridge,
           "batched_bridge_cpu_s": bridge_cpu, "naive_s": slow, "naive_cpu_s": slow_cpu, "ratio": slow / batched,
           "ratio_cpu": slow_cpu / batched_cpu, "max_abs_diff": worst, "load_average": load}
    print(f"{name}: {n_tokens}-token prompt × {out['layers']} layers, vector at layer {layer}; "
          f"{out['cells_run']} cells changed by the steering (the rest are 0 and not run). CPU: {out['cpu']}, "
          f"{out['threads']} threads; load average {load[0]:.1f} → {load[1]:.1f}")
    print(f"batched (twin, resumed above each layer): {batched:.2f} s wall, {batched_cpu:.2f} s CPU")
    print(f"batched (bridge, full passes):            {bridge:.2f} s wall, {bridge_cpu:.2f} s CPU")
    print(f"naive (one bridge pass per patch):        {slow:.2f} s wall, {slow_cpu:.2f} s CPU")
    print(f"ratio naive / batched: {out['ratio']:.1f}× wall, {out['ratio_cpu']:.1f}× CPU   "
          f"largest |difference|: {worst:.2e}")
    if args.measures:
        prompts = [text, "The weather this morning was", "My favourite way to spend a Sunday is"]
        for label, fn in [("delta_profile (8 new tokens)", lambda: delta_profile(model, vec, prompts, coeff,
                                                                                 max_new_tokens=8)),
                          ("attribute", lambda: attribute(model, vec, prompts, target, coeff)),
                          ("attention_to_steered", lambda: attention_to_steered(model, vec, prompts, coeff)),
                          ("patch_effect", lambda: patch_effect(model, vec, prompts, target, coeff)),
                          ("position_effects", lambda: position_effects(model, vec, prompts, target=target,
                                                                        coeff=coeff))]:
            wall, cpu = clocked(fn)
            out[label] = {"wall_s": wall, "cpu_s": cpu}
            print(f"{label} on 3 prompts: {wall:.2f} s wall, {cpu:.2f} s CPU")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
