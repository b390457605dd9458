"""The ``steer`` command line (thin: parse, call the API, print).

Commands:
    steer models                      list built-in models and whether each is cached
    steer fetch NAME                  fetch and cache a built-in model now
    steer generate --pos P --neg N …  unsteered vs steered completions side by side (or --json)
    steer demo                        the main job: paper-style vectors, completions, an HTML page

Example:
    >>> from steering.cli import build_parser
    >>> args = build_parser().parse_args(["generate", "--pos", "Love", "--neg", "Hate", "--layer", "6",
    ...                                   "--coeff", "5", "--prompt", "I hate you because", "--n", "4"])
    >>> args.layer, args.coeff, args.prompt
    (6, 5.0, ['I hate you because'])
"""

import argparse
import json
import shutil
import sys
import textwrap
from typing import Any, Optional, Sequence

from . import __version__
from .errors import SteeringError

__all__ = ["main", "build_parser", "side_by_side"]

DEFAULT_MODEL = "gemma3-270m"


def side_by_side(left: Sequence[str], right: Sequence[str], titles: tuple[str, str], width: Optional[int] = None) -> str:
    """Format two lists of texts as two wrapped columns, row by row.

    Example:
        >>> print(side_by_side(["a b"], ["c"], ("unsteered", "steered"), width=30))
        # | unsteered   | steered
        --+-------------+------------
        1 | a b         | c
    """
    width = width or min(shutil.get_terminal_size((120, 20)).columns, 160)
    col = max(10, (width - 7) // 2)
    lines = [f"# | {titles[0]:<{col}} | {titles[1]}", f"--+-{'-' * col}-+-{'-' * col}"]
    for i, (a, b) in enumerate(zip(left, right), 1):
        wa = textwrap.wrap(" ".join(a.split()), col) or [""]
        wb = textwrap.wrap(" ".join(b.split()), col) or [""]
        for j in range(max(len(wa), len(wb))):
            num = str(i) if j == 0 else " "
            ca = wa[j] if j < len(wa) else ""
            cb = wb[j] if j < len(wb) else ""
            lines.append(f"{num} | {ca:<{col}} | {cb}".rstrip())
        if i < len(left):
            lines.append(f"  | {'':<{col}} |")
    return "\n".join(lines)


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import model_info

    rows = model_info()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<14} {'cached':<7} {'download':>9}  description")
    for row in rows:
        print(f"{row['name']:<14} {'yes' if row['cached'] else 'no':<7} {row['download_mb']:>6} MB  {row['description']}")
    from .models import cache_dir

    print(f"\ncache: {cache_dir()} (set STEERING_CACHE to move it)")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .models import fetch_model

    path = fetch_model(args.name, force=args.force)
    print(path)
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from .extract import actadd
    from .generation import generate
    from .models import load_model

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
    settings = {
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
    if args.json:
        print(json.dumps({"settings": settings, "unsteered": unsteered, "steered": steered}, ensure_ascii=False))
        return 0
    print(f"{vec!r}\n")
    for i, prompt in enumerate(args.prompt):
        rows = slice(i * args.n, (i + 1) * args.n)
        print(f"prompt: {prompt!r}")
        print(side_by_side(unsteered[rows], steered[rows], ("unsteered", f"steered (c = {args.coeff:g})")))
        print()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(model_name=args.model, out=args.out, n=args.n, max_new_tokens=args.max_new_tokens, device=args.device)
    return 0


def _parse_list(text: str, cast: Any, what: str) -> list:
    """``"0,2,4"`` → ``[0, 2, 4]``; ``"0-3"`` (ints) → ``[0, 1, 2, 3]``; ``"all"`` → ``"all"``."""
    if text == "all":
        return "all"  # type: ignore[return-value]
    out = []
    try:
        for part in text.split(","):
            part = part.strip()
            if cast is int and "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else part[1:].split("-", 1)
                out += list(range(int(lo), int(hi) + 1))
            elif part:
                out.append(cast(part))
    except ValueError:
        raise SteeringError(f"--{what} {text!r} is not a list; allowed: e.g. '0,2,4'" +
                            (", '0-17' or 'all'" if cast is int else "") + ".") from None
    if not out:
        raise SteeringError(f"--{what} {text!r} is empty.")
    return out


def _cmd_report(args: argparse.Namespace) -> int:
    from .analysis_report import analysis_report
    from .models import load_model

    layers = _parse_list(args.layers, int, "layers")
    coeffs = _parse_list(args.coeffs, float, "coeffs")
    model = load_model(args.model, device=args.device)
    info = analysis_report(model, args.pos, args.neg, out=args.out, layers=layers, coeffs=coeffs,
                           prompts=args.prompt, targets=args.target, n_completions=args.n,
                           max_new_tokens=args.max_new_tokens, model_name=args.model, seed=args.seed)
    best = info["best"]
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in info["seconds"].items())
    print(f"best: layer {best['layer']}, c = {best['coeff']:g}, effect size d = {best['effect']:.2f}")
    print(f"wrote {info['path']} ({info['figures']} figures; {stages})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``steer`` command."""
    parser = argparse.ArgumentParser(
        prog="steer",
        description="steering-lens: activation steering (ActAdd) on TransformerLens 4.",
    )
    parser.add_argument("--version", action="version", version=f"steering-lens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list built-in models and whether each is cached")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("fetch", help="fetch, verify and cache a built-in model")
    p.add_argument("name", help="built-in model name")
    p.add_argument("--force", action="store_true", help="re-fetch even when cached")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("generate", help="unsteered vs ActAdd-steered completions")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"built-in name, .gguf file, HF directory or hub name (default {DEFAULT_MODEL})")
    p.add_argument("--pos", required=True, help="p+, e.g. 'Love'")
    p.add_argument("--neg", required=True, help="p-, e.g. 'Hate' (may be empty: '')")
    p.add_argument("--layer", type=int, required=True, help="injection layer")
    p.add_argument("--coeff", type=float, required=True, help="steering coefficient c")
    p.add_argument("--prompt", action="append", required=True, help="prompt to complete (repeatable)")
    p.add_argument("--n", type=int, default=4, help="completions per prompt (default 4)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="tokens per completion (default 40)")
    p.add_argument("--hook", default="resid_pre", help="hook kind (default resid_pre)")
    p.add_argument("--pad", default="space", help="padding of the shorter prompt (default: space)")
    p.add_argument("--positions", choices=["front"], default=None, help="where to add (default front)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    p.add_argument("--top-p", type=float, default=0.3, help="nucleus mass (default 0.3, the paper's)")
    p.add_argument("--freq-penalty", type=float, default=0.0, help="frequency penalty (paper: 1; default 0)")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="print one JSON object: settings, unsteered, steered")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("demo", help="the main job: paper-style steering demo with an HTML page")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    p.add_argument("--out", default="steering-demo.html", help="HTML page to write (default steering-demo.html)")
    p.add_argument("--n", type=int, default=4, help="completions shown per setting (default 4)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="tokens per completion (default 40)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("report", help="layer × coefficient sweep, lenses, KL: one self-contained HTML page")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    p.add_argument("--pos", required=True, help="p+, e.g. ' weddings' or 'Love'")
    p.add_argument("--neg", required=True, help="p-, e.g. '' or 'Hate'")
    p.add_argument("--layers", default="all", help="layers to sweep: 'all', '0-17' or '2,4,6' (default all)")
    p.add_argument("--coeffs", default="0,2,4,8,16", help="coefficients (default 0,2,4,8,16)")
    p.add_argument("--prompt", action="append", default=None, help="prompt to measure on (repeatable; default 4 neutral openings)")
    p.add_argument("--target", action="append", default=None, help="target token of the effect metric (repeatable; default: p+'s word)")
    p.add_argument("--n", type=int, default=2, help="steered and unsteered completions in the token view (default 2)")
    p.add_argument("--max-new-tokens", type=int, default=24, help="their length (default 24)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    p.add_argument("--out", default="steering-report.html", help="HTML file to write (default steering-report.html)")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``steer``; returns the exit status (2 on a SteeringError)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SteeringError as err:
        print(f"steer: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("steer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
