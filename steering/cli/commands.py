"""The ``steer`` commands: each takes the parsed arguments, calls the API and prints.

:func:`steering.cli.main` loads this module only once a command has been chosen (it imports
torch and the model-running API), then calls :func:`run`.

Example:
    >>> from steering.cli import build_parser
    >>> run(build_parser().parse_args(["models", "--json"]))  # doctest: +ELLIPSIS
    [
      {
        "name": "...
    0
"""

import argparse
import sys
import time
from typing import Any, Callable

from ..cache import verify_model
from ..errors import InvalidArgumentError
from ..explorer.page import explorable
from ..extract import actadd
from ..generation import generate
from ..models import cache_dir, fetch_model, load_model, model_info
from ..report.standard import analysis_report
from .demo import run_demo
from .format import print_json, side_by_side
from .options import parse_list

__all__ = ["run", "parse_list", "COMMANDS"]


def models_cmd(args: argparse.Namespace) -> int:
    """``steer models``: the built-in models and whether each is cached."""
    rows = model_info()
    if args.json:
        print_json(rows, indent=2)
        return 0
    print(f"{'name':<14} {'cached':<7} {'download':>9}  description")
    for row in rows:
        print(f"{row['name']:<14} {'yes' if row['cached'] else 'no':<7} {row['download_mb']:>6} MB  {row['description']}")
    print(f"\ncache: {cache_dir()} (set STEERING_CACHE to move it)")
    return 0


def fetch_cmd(args: argparse.Namespace) -> int:
    """``steer fetch NAME``: fetch, verify and cache a built-in model; print its path."""
    path = fetch_model(args.name, force=args.force)
    print(path)
    return 0


def _generate_settings(args: argparse.Namespace, vec: Any) -> dict:
    """The settings block of ``steer generate --json``."""
    return {
        "model": args.model,
        "pos": args.pos,
        "neg": args.neg,
        "layer": args.layer,
        "hook": vec.hook_name,
        "coeff": args.coeff,
        "positions": args.positions or "front",
        "pad": args.pad,
        "prompts": args.prompt,
        "n": args.n,
        "seed": args.seed,
        "max_new_tokens": args.max_new_tokens,
        "do_sample": not args.greedy,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "freq_penalty": args.freq_penalty,
        "vector_tokens": vec.tokens,
        "vector_norms": [round(float(x), 4) for x in vec.norm()],
    }


def generate_cmd(args: argparse.Namespace) -> int:
    """``steer generate``: unsteered vs steered completions side by side (or one JSON object)."""
    model = load_model(args.model, device=args.device)
    vec = actadd(model, args.pos, args.neg, layer=args.layer, hook=args.hook, pad=args.pad)
    common = dict(
        max_new_tokens=args.max_new_tokens,
        n=args.n,
        seed=args.seed,
        do_sample=not args.greedy,
        temperature=args.temperature,
        top_p=args.top_p,
        freq_penalty=args.freq_penalty,
        progress=not args.json,
    )
    unsteered = generate(model, args.prompt, None, **common)
    steered = generate(model, args.prompt, vec, coeff=args.coeff, positions=args.positions, **common)
    if args.json:
        print_json({"settings": _generate_settings(args, vec), "unsteered": unsteered, "steered": steered})
        return 0
    print(f"{vec!r}\n")
    for i, prompt in enumerate(args.prompt):
        rows = slice(i * args.n, (i + 1) * args.n)
        print(f"prompt: {prompt!r}")
        print(side_by_side(unsteered[rows], steered[rows], ("unsteered", f"steered (c = {args.coeff:g})")))
        print()
    return 0


def demo_cmd(args: argparse.Namespace) -> int:
    """``steer demo``: the paper-style demo (see :func:`steering.cli.demo.run_demo`)."""
    run_demo(model_name=args.model, out=args.out, n=args.n, max_new_tokens=args.max_new_tokens, device=args.device)
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    """``steer report``: the standard analysis page (see :func:`steering.report.standard.analysis_report`)."""
    layers = parse_list(args.layers, int, "layers") if isinstance(args.layers, str) else args.layers
    coeffs = parse_list(args.coeffs, float, "coeffs") if isinstance(args.coeffs, str) else args.coeffs
    model = load_model(args.model, device=args.device)
    info = analysis_report(model, args.pos, args.neg, out=args.out, layers=layers, coeffs=coeffs,
                           prompts=args.prompt, targets=args.target, n_completions=args.n,
                           max_new_tokens=args.max_new_tokens, model_name=args.model, seed=args.seed,
                           mechanisms=args.mechanisms)
    best = info["best"]
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in info["seconds"].items())
    print(f"best: layer {best['layer']}, c = {best['coeff']:g}, effect size d = {best['effect']:.2f}")
    print(f"wrote {info['path']} ({info['figures']} figures; {stages})")
    return 0


def explore_cmd(args: argparse.Namespace) -> int:
    """``steer explore``: precompute the grid and write the explorable page (see :func:`steering.explorer.explorable`)."""
    if args.target is None and not args.pos.strip():
        raise InvalidArgumentError(f"--pos {args.pos!r} has no word to use as the effect's target; allowed: a p+ with a "
                                   "word, or --target. Fix: pass e.g. --target ' wedding'.")
    layers = parse_list(args.layers, int, "layers") if isinstance(args.layers, str) else args.layers
    coeffs = parse_list(args.coeffs, float, "coeffs") if isinstance(args.coeffs, str) else args.coeffs
    model = load_model(args.model, device=args.device)
    start = time.perf_counter()
    path = explorable(model, args.pos, args.neg, args.prompt, out=args.out, layers=layers, coeffs=coeffs, n=args.n,
                      max_new_tokens=args.max_new_tokens, seed=args.seed, decoding=args.decoding, targets=args.target,
                      topic_words=args.topic_word, kl_prompts=args.kl_prompt, k=args.top_k, hook=args.hook, pad=args.pad)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; {time.perf_counter() - start:.0f} s)")
    return 0


def verify_cmd(args: argparse.Namespace) -> int:
    """``steer verify [NAME]``: check cached built-in models' files; exit status 1 if any is damaged.

    Prints one line per model (name, status, folder) with its problems indented below, or the
    rows as JSON with ``--json``; for each damaged model, the fix (on stderr with ``--json``).
    """
    rows = verify_model(args.name, progress=not args.json)
    damaged = [row["name"] for row in rows if row["status"] == "damaged"]
    if args.json:
        print_json(rows, indent=2)
    else:
        for row in rows:
            print(f"{row['name']:<14} {row['status']:<11} {row.get('path') or ''}".rstrip())
            for problem in row.get("problems") or []:
                print(f"    {problem}")
    for name in damaged:
        print(f"fix: steer fetch {name} --force", file=sys.stderr if args.json else sys.stdout)
    return 1 if damaged else 0


#: Command name (``args.command``) → its function.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "models": models_cmd,
    "fetch": fetch_cmd,
    "verify": verify_cmd,
    "generate": generate_cmd,
    "demo": demo_cmd,
    "report": report_cmd,
    "explore": explore_cmd,
}


def run(args: argparse.Namespace) -> int:
    """Run the command ``args.command`` with the parsed arguments; return its exit status.

    Example:
        >>> from steering.cli import build_parser
        >>> run(build_parser().parse_args(["fetch", "no-such-model"]))
        Traceback (most recent call last):
        ...
        steering.errors.UnknownModelError: ...
    """
    return COMMANDS[args.command](args)
