"""The ``steer`` command line (thin: parse, call the API, print).

Commands:
    steer models                      list built-in models and whether each is cached
    steer fetch NAME                  fetch and cache a built-in model now
    steer generate --pos P --neg N …  unsteered vs steered completions side by side (or --json)
    steer demo                        the main job: paper-style vectors, completions, an HTML page
    steer report --pos P --neg N …    layer × coefficient sweep, lenses, KL: one HTML page

This package's ``__init__`` holds only the parser and :func:`main`, and imports only light
modules, so ``steer --help`` answers at once. The commands themselves live in
:mod:`steering.cli.commands` (with :mod:`steering.cli.demo` and :mod:`steering.cli.format`),
which imports torch and the model-running API at its top; :func:`main` loads it only when a
command runs.

Example:
    >>> args = build_parser().parse_args(["generate", "--pos", "Love", "--neg", "Hate", "--layer", "6",
    ...                                   "--coeff", "5", "--prompt", "I hate you because", "--n", "4"])
    >>> args.command, args.layer, args.coeff, args.prompt
    ('generate', 6, 5.0, ['I hate you because'])
"""

import argparse
import importlib
import sys
from typing import Any, Optional, Sequence

from .. import __version__
from ..errors import SteeringError

__all__ = ["main", "build_parser", "DEFAULT_MODEL"]

#: The model every command uses unless ``--model`` names another.
DEFAULT_MODEL = "gemma3-270m"


def _add_generate(sub: Any) -> None:
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


def _add_report(sub: Any) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``steer`` command.

    The chosen command's name is ``args.command``; :func:`main` hands ``args`` to
    :func:`steering.cli.commands.run`.

    Example:
        >>> build_parser().parse_args(["fetch", "gemma3-270m", "--force"]).force
        True
    """
    parser = argparse.ArgumentParser(
        prog="steer",
        description="steering-lens: activation steering (ActAdd) on TransformerLens 4.",
    )
    parser.add_argument("--version", action="version", version=f"steering-lens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list built-in models and whether each is cached")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("fetch", help="fetch, verify and cache a built-in model")
    p.add_argument("name", help="built-in model name")
    p.add_argument("--force", action="store_true", help="re-fetch even when cached")

    _add_generate(sub)

    p = sub.add_parser("demo", help="the main job: paper-style steering demo with an HTML page")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    p.add_argument("--out", default="steering-demo.html", help="HTML page to write (default steering-demo.html)")
    p.add_argument("--n", type=int, default=4, help="completions shown per setting (default 4)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="tokens per completion (default 40)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")

    _add_report(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``steer``; returns the exit status (2 on a SteeringError, 130 on Ctrl-C).

    Example:
        >>> main(["fetch", "no-such-model"])  # prints "steer: error: UnknownModelError: ..." to stderr
        2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # The one lazy boundary of the CLI: the commands import torch, TransformerLens and the
        # whole steering API at their module's top, which takes seconds. Loading that module here,
        # once a command is chosen, keeps `steer --help` and argument errors instant.
        commands = importlib.import_module("steering.cli.commands")
        return int(commands.run(args) or 0)
    except SteeringError as err:
        print(f"steer: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("steer: interrupted", file=sys.stderr)
        return 130
