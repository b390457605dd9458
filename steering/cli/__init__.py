"""The ``steer`` command line (thin: parse, check, call the API, print).

Commands:
    steer models                      list built-in models and whether each is cached
    steer fetch NAME                  fetch and cache a built-in model now
    steer verify [NAME]               check cached models' files against their recorded checksums
    steer generate --pos P --neg N …  unsteered vs steered completions side by side (or --json)
    steer demo                        the main job: paper-style vectors, completions, an HTML page
    steer report --pos P --neg N …    layer × coefficient sweep, lenses, KL: one HTML page
    steer explore --pos P --neg N …   a precomputed layer × coefficient grid as one page with sliders

Every option is checked while the arguments are parsed (:mod:`steering.cli.options`), and an
output file's folder before the command starts — a bad value costs no model load.

Exit status (:data:`EXIT_CODES`, also in ``steer --help``):
    0    success
    1    any other error: a model that cannot be fetched, a damaged cache, a file the system
         refuses, steering that overflowed (NonFiniteError), or a bug; ``steer verify``: a
         damaged model
    2    usage: a missing or invalid option (argparse), or a value the toolkit refuses —
         InvalidArgumentError, InvalidCoefficientError, LayerOutOfRangeError, UnknownModelError,
         UnknownHookError, EmptyPromptError, ContextLengthError, PromptTooShortError
    130  interrupted (Ctrl-C)
    141  stdout's reader went away (``steer models | head -1``): 128 + SIGPIPE, as ``yes | head -1``
         reports; nothing more is printed and no traceback

An error prints exactly one line on stderr, ``steer: error: <Type>: <message>``;
``steer --debug COMMAND …`` (or ``--debug`` after the command) prints the traceback before it.
An exception that is not a :class:`~steering.errors.SteeringError` or ``OSError`` is a bug and
says so. Output that the terminal's encoding cannot show is written with ASCII look-alikes
(:mod:`steering.cli.streams`).

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
import traceback
from typing import Any, Optional, Sequence

from .. import __version__
from ..errors import (
    ContextLengthError, EmptyPromptError, InvalidArgumentError, InvalidCoefficientError, LayerOutOfRangeError,
    PromptTooShortError, SteeringError, UnknownHookError, UnknownModelError,
)
from ..files import check_writable_target
from .options import (
    device_option, finite_float, float_option, int_option, list_option, positive_int, probability,
    seed_option, text_option,
)
from .streams import CLOSED_PIPE_STATUS, flush_stdout, protect_streams, silence_stdout

__all__ = ["main", "build_parser", "DEFAULT_MODEL", "EXIT_CODES", "USAGE_ERRORS", "exit_status", "error_line"]

#: The model every command uses unless ``--model`` names another.
DEFAULT_MODEL = "gemma3-270m"

#: Errors that mean "you passed a bad value": exit status 2, like argparse's usage errors.
USAGE_ERRORS = (
    InvalidArgumentError, InvalidCoefficientError, LayerOutOfRangeError, UnknownModelError, UnknownHookError,
    EmptyPromptError, ContextLengthError, PromptTooShortError,
)

#: Exit status → meaning (the epilog of ``steer --help``).
EXIT_CODES = {
    0: "success",
    1: "an error: a model that cannot be fetched, a damaged cache, a file the system refuses, "
       "steering that overflowed, or a bug; `steer verify`: a damaged model",
    2: "usage: a missing or invalid option or value (unknown model, layer out of range, empty prompt ...)",
    130: "interrupted (Ctrl-C)",
    141: "stdout closed early (`steer models | head -1`): 128 + SIGPIPE, quietly",
}

_BUG_HINT = "(this is a bug in steering-lens; rerun with --debug and report it)"

EPILOG = (
    "exit status:\n"
    + "".join(f"  {code:<4} {text}\n" for code, text in EXIT_CODES.items())
    + "errors print one line, 'steer: error: TYPE: MESSAGE'; 'steer --debug COMMAND ...' adds the traceback."
)


def _common(p: argparse.ArgumentParser, *, model: bool = True, device: bool = True) -> None:
    """``--debug`` (also accepted after the command) and, where asked, ``--model`` / ``--device``."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="on an error, print the traceback too")
    if model:
        p.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"built-in name, .gguf file, HF directory or hub name (default {DEFAULT_MODEL})")
    if device:
        p.add_argument("--device", type=device_option, default=None, help="cpu / cuda (default: cuda if available)")


def _add_generate(sub: Any) -> None:
    p = sub.add_parser("generate", help="unsteered vs ActAdd-steered completions")
    _common(p)
    p.add_argument("--pos", required=True, help="p+, e.g. 'Love'")
    p.add_argument("--neg", required=True, help="p-, e.g. 'Hate' (may be empty: '')")
    p.add_argument("--layer", type=int_option("--layer", 0, example=6), required=True, help="injection layer (≥ 0)")
    p.add_argument("--coeff", type=finite_float("--coeff", "5"), required=True, help="steering coefficient c (finite)")
    p.add_argument("--prompt", type=text_option("--prompt", "'I hate you because'"), action="append", required=True,
                   help="prompt to complete (repeatable)")
    p.add_argument("--n", type=positive_int("--n"), default=4, help="completions per prompt (default 4)")
    p.add_argument("--seed", type=seed_option(), default=0, help="sampling seed, 0..2**63-1 (default 0)")
    p.add_argument("--max-new-tokens", type=positive_int("--max-new-tokens", 40), default=40,
                   help="tokens per completion (default 40)")
    p.add_argument("--hook", type=text_option("--hook", "resid_pre"), default="resid_pre",
                   help="hook kind (default resid_pre)")
    p.add_argument("--pad", type=text_option("--pad", "space"), default="space",
                   help="padding of the shorter prompt (default: space)")
    p.add_argument("--positions", choices=["front"], default=None, help="where to add (default front)")
    p.add_argument("--temperature", type=float_option("--temperature", low=0.0, low_open=True,
                                                      allowed="a finite number > 0", example="1"),
                   default=1.0, help="sampling temperature, > 0 (default 1)")
    p.add_argument("--top-p", type=probability(), default=0.3, help="nucleus mass in (0, 1] (default 0.3, the paper's)")
    p.add_argument("--freq-penalty", type=finite_float("--freq-penalty"), default=0.0,
                   help="frequency penalty (paper: 1; default 0)")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--json", action="store_true", help="print one JSON object: settings, unsteered, steered")


def _grid_options(p: Any, coeffs: str, coeffs_help: str, prompt_help: str) -> None:
    """The common options, the prompt pair, and the layers × coefficients × prompts grid of report and explore."""
    _common(p)
    p.add_argument("--pos", required=True, help="p+, e.g. ' weddings' or 'Love'")
    p.add_argument("--neg", required=True, help="p-, e.g. '' or 'Hate'")
    p.add_argument("--layers", type=list_option(int, "layers", minimum=0), default="all",
                   help="layers: 'all', '0-17' or '2,4,6' (default all)")
    p.add_argument("--coeffs", type=list_option(float, "coeffs"), default=coeffs, help=coeffs_help)
    p.add_argument("--prompt", type=text_option("--prompt", "'I went up to my friend and said'"), action="append",
                   default=None, help=f"{prompt_help} (repeatable; default 4 neutral openings)")


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="layer × coefficient sweep, lenses, KL: one self-contained HTML page")
    _grid_options(p, "0,2,4,8,16", "coefficients (default 0,2,4,8,16)", "prompt to measure on")
    p.add_argument("--target", type=text_option("--target", "' wedding'"), action="append", default=None,
                   help="target token of the effect metric (repeatable; default: p+'s word)")
    p.add_argument("--n", type=positive_int("--n", 2), default=2,
                   help="steered and unsteered completions in the token view (default 2)")
    p.add_argument("--max-new-tokens", type=positive_int("--max-new-tokens", 24), default=24,
                   help="their length (default 24)")
    p.add_argument("--seed", type=seed_option(), default=0, help="sampling seed, 0..2**63-1 (default 0)")
    p.add_argument("--mechanisms", action="store_true",
                   help="add the 'Why it steers' sections (propagation, attribution, patching, positions; "
                        "a few seconds more on the built-in models)")
    p.add_argument("--out", default="steering-report.html", help="HTML file to write (default steering-report.html)")


def _add_explore(sub: Any) -> None:
    p = sub.add_parser("explore", help="precompute layers × coefficients × prompts × samples: one page with sliders")
    _grid_options(p, "0,2,4,8,12,16", "coefficients; 0 is always added (default 0,2,4,8,12,16)", "prompt to complete")
    p.add_argument("--n", type=positive_int("--n", 2), default=2, help="samples per prompt (default 2; greedy: 1)")
    p.add_argument("--max-new-tokens", type=positive_int("--max-new-tokens", 24), default=24,
                   help="tokens per completion (default 24)")
    p.add_argument("--seed", type=seed_option(), default=0, help="sampling seed, 0..2**63-1 (default 0)")
    p.add_argument("--decoding", choices=["sampled", "greedy", "both"], default="sampled",
                   help="seeded samples (the paper's top-p 0.3), greedy, or both (default sampled)")
    p.add_argument("--greedy", dest="decoding", action="store_const", const="greedy",
                   help="greedy decoding (same as --decoding greedy)")
    p.add_argument("--target", type=text_option("--target", "' wedding'"), action="append", default=None,
                   help="target token of the effect metric (repeatable; default: p+'s word)")
    p.add_argument("--topic-word", type=text_option("--topic-word", "wedding"), action="append", default=None,
                   help="word that makes a completion on-topic (repeatable; default: no topic metric)")
    p.add_argument("--kl-prompt", type=text_option("--kl-prompt", "'The train leaves at seven.'"), action="append",
                   default=None, help="unrelated text of the KL and the effect lens (repeatable; default 3 neutral ones)")
    p.add_argument("--top-k", type=positive_int("--top-k", 8), default=8, help="tokens per lens direction (default 8)")
    p.add_argument("--hook", type=text_option("--hook", "resid_pre"), default="resid_pre",
                   help="hook kind (default resid_pre)")
    p.add_argument("--pad", type=text_option("--pad", "space"), default="space",
                   help="padding of the shorter prompt (default: space)")
    p.add_argument("--out", default="explorable.html", help="HTML page to write (default explorable.html)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``steer`` command.

    The chosen command's name is ``args.command``; :func:`main` hands ``args`` to
    :func:`steering.cli.commands.run`. Option values are converted and range-checked here
    (:mod:`steering.cli.options`): a bad one is an argparse usage error.

    Example:
        >>> build_parser().parse_args(["fetch", "gemma3-270m", "--force"]).force
        True
        >>> build_parser().parse_args(["--debug", "models"]).debug, build_parser().parse_args(["models", "--debug"]).debug
        (True, True)
    """
    parser = argparse.ArgumentParser(
        prog="steer",
        description="steering-lens: activation steering (ActAdd) on TransformerLens 4.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"steering-lens {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list built-in models and whether each is cached")
    _common(p, model=False, device=False)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("fetch", help="fetch, verify and cache a built-in model")
    _common(p, model=False, device=False)
    p.add_argument("name", help="built-in model name")
    p.add_argument("--force", action="store_true", help="re-fetch even when cached")

    p = sub.add_parser("verify", help="check cached built-in models against their checksums (exit 1 if damaged)")
    _common(p, model=False, device=False)
    p.add_argument("name", nargs="?", default=None, help="built-in model name (default: every built-in model)")
    p.add_argument("--json", action="store_true", help="print JSON")

    _add_generate(sub)

    p = sub.add_parser("demo", help="the main job: paper-style steering demo with an HTML page")
    _common(p)
    p.add_argument("--out", default="steering-demo.html", help="HTML page to write (default steering-demo.html)")
    p.add_argument("--n", type=positive_int("--n"), default=4, help="completions shown per setting (default 4)")
    p.add_argument("--max-new-tokens", type=positive_int("--max-new-tokens", 40), default=40,
                   help="tokens per completion (default 40)")

    _add_report(sub)
    _add_explore(sub)
    return parser


def exit_status(err: BaseException) -> int:
    """The exit status of ``steer`` for an exception: 2 for :data:`USAGE_ERRORS`, 130 for Ctrl-C, else 1.

    Example:
        >>> exit_status(LayerOutOfRangeError("layer 40")), exit_status(SteeringError("x")), exit_status(KeyError())
        (2, 1, 1)
    """
    if isinstance(err, KeyboardInterrupt):
        return 130
    return 2 if isinstance(err, USAGE_ERRORS) else 1


def error_line(err: BaseException) -> str:
    """The one stderr line of an error: ``steer: error: <Type>: <message>`` (lines joined).

    An exception that is neither a :class:`SteeringError` nor an ``OSError`` gets a hint that
    it is a bug.

    Example:
        >>> error_line(InvalidArgumentError("n=0; allowed: n ≥ 1.\\nFix: pass n=4."))
        'steer: error: InvalidArgumentError: n=0; allowed: n ≥ 1. Fix: pass n=4.'
        >>> error_line(ZeroDivisionError("division by zero"))
        'steer: error: ZeroDivisionError: division by zero (this is a bug in steering-lens; rerun with --debug and report it)'
    """
    message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    line = f"steer: error: {type(err).__name__}" + (f": {message}" if message else "")
    if not isinstance(err, (SteeringError, OSError)):
        line += f" {_BUG_HINT}"
    return line


def _run(args: argparse.Namespace) -> int:
    """Check the output path, load the commands and run ``args.command``; return its exit status."""
    if getattr(args, "out", None) is not None:
        check_writable_target(args.out, what="--out")
    # The one lazy boundary of the CLI: the commands import torch, TransformerLens and the
    # whole steering API at their module's top, which takes seconds. Loading that module here,
    # once a command is chosen and its options checked, keeps `steer --help` and argument
    # errors instant.
    commands = importlib.import_module("steering.cli.commands")
    status = int(commands.run(args) or 0)
    return status if flush_stdout() else CLOSED_PIPE_STATUS


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``steer``; returns the exit status (see the module docstring and ``steer --help``).

    Example:
        >>> main(["fetch", "no-such-model"])  # prints "steer: error: UnknownModelError: ..." to stderr
        2
    """
    protect_streams()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:  # --help, --version or a usage error: argparse printed it; the reader may be gone
        if not flush_stdout():
            raise SystemExit(CLOSED_PIPE_STATUS) from None
        raise
    try:
        return _run(args)
    except BrokenPipeError:  # stdout's reader went away (`steer models | head -1`): stop quietly
        silence_stdout()
        return CLOSED_PIPE_STATUS
    except KeyboardInterrupt:
        print("steer: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 — every error ends as one line (and a status), never a traceback
        if args.debug:
            traceback.print_exception(type(err), err, err.__traceback__)
        print(error_line(err), file=sys.stderr)
        return exit_status(err)
