"""Check the package's architecture rules (issue 16) and print what breaks them.

    python tools/check_architecture.py            # summary + every violation; exit 1 if any
    python tools/check_architecture.py --json     # the same as JSON

Rules (``tests/test_architecture.py`` asserts each):

* import cycles between ``steering`` modules: 0 (module-level and function-level imports);
* imports of another module's ``_private`` name: 0;
* function length: at most 80 lines of code (docstrings, comments and blank lines not counted;
  a nested function counts towards its parent too);
* module length: at most 500 lines;
* ``len(steering.__all__)``: at most 32 (30, plus the chat and condition names issue 19 puts at the top level);
* environment variables read only in ``steering/settings.py``;
* imports inside functions only of heavy optional dependencies (never of ``steering`` modules);
* option arguments (``positions``, ``op``, ``backend``, ``short_prompt``) annotated with their
  ``Literal`` types, never ``str``.
"""

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "steering"

MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500
MAX_PUBLIC_NAMES = 32
SETTINGS_MODULE = "steering.settings"
#: Third-party packages that may be imported inside a function (slow to import, or optional).
HEAVY = {
    "transformers", "transformer_lens", "pandas", "plotly", "vaderSentiment", "gguf", "safetensors",
    "tokenizers", "numpy", "tqdm", "nbformat", "nbclient", "ipywidgets", "IPython", "scipy",
}
OPTION_ARGS = {"positions", "op", "backend", "short_prompt"}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute dotted name an ``ImportFrom`` refers to."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[ast.AST, str, Optional[str], bool]]:
    """``(node, target module, imported name or None, inside a function)`` for every import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent

    def in_function(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return True
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, None, in_function(node)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, is_package, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:  # `from . import module`
                    yield node, sub, None, in_function(node)
                else:
                    yield node, target, alias.name, in_function(node)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, code lines)`` for every function of a file."""
    source = path.read_text(encoding="utf-8")
    text = source.splitlines()
    tree = ast.parse(source)
    docs = _docstring_lines(tree)
    out = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                code = [
                    i for i in range(start, child.end_lineno + 1)
                    if i not in docs and text[i - 1].strip() and not text[i - 1].strip().startswith("#")
                ]
                out.append((f"{prefix}{child.name}", child.lineno, len(code)))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
    walk(tree, "")
    return out


def _env_reads(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb", "putenv"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id in ("environ", "getenv"):
            lines.append(node.lineno)
    return lines


def _str_options(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.args + node.args.kwonlyargs + node.args.posonlyargs
            for arg in args:
                if arg.arg in OPTION_ARGS and arg.annotation is not None:
                    text = ast.unparse(arg.annotation)
                    if text in ("str", "Optional[str]", "str | None"):
                        bad.append(f"{node.name}({arg.arg}: {text}) line {node.lineno}")
    return bad


def check() -> dict:
    """Every measure and every violation, as a dict."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    private, late, env, long_functions, long_modules, options = [], [], [], [], [], []
    longest = ("", 0)
    for name, path in known.items():
        rel = path.relative_to(ROOT).as_posix()
        for node, target, imported, inside in imports(name, path, known):
            own = target == "steering" or target.startswith("steering.")
            if own and target in known and target != name:
                graph[name].add(target)
            if imported and imported.startswith("_") and not imported.startswith("__") and own and target != name:
                private.append(f"{rel}:{node.lineno} imports {imported} from {target}")
            top = target.split(".")[0]
            if inside and (own or top not in HEAVY):
                late.append(f"{rel}:{node.lineno} imports {target}{'.' + imported if imported else ''} inside a function")
        for qual, line, n in function_lengths(path):
            if n > longest[1]:
                longest = (f"{rel}:{line} {qual}", n)
            if n > MAX_FUNCTION_LINES:
                long_functions.append(f"{rel}:{line} {qual} has {n} code lines")
        n_lines = len(path.read_text(encoding="utf-8").splitlines())
        if n_lines > MAX_MODULE_LINES:
            long_modules.append(f"{rel} has {n_lines} lines")
        if name != SETTINGS_MODULE:
            env += [f"{rel}:{line} reads the environment" for line in _env_reads(path)]
        options += [f"{rel}: {item}" for item in _str_options(path)]
    sys.path.insert(0, str(ROOT))
    import steering

    cycles = _cycles(graph)
    return {
        "modules": len(known),
        "import_cycles": cycles,
        "private_imports": private,
        "longest_function": {"where": longest[0], "code_lines": longest[1]},
        "long_functions": long_functions,
        "long_modules": long_modules,
        "public_names": len(steering.__all__),
        "env_reads_outside_settings": env,
        "imports_inside_functions": late,
        "str_typed_options": options,
    }


def violations(result: dict) -> list[str]:
    """One line per broken rule."""
    out = [f"import cycle: {' <-> '.join(c)}" for c in result["import_cycles"]]
    out += result["private_imports"] + result["long_functions"] + result["long_modules"]
    out += result["env_reads_outside_settings"] + result["imports_inside_functions"] + result["str_typed_options"]
    if result["public_names"] > MAX_PUBLIC_NAMES:
        out.append(f"steering.__all__ has {result['public_names']} names (at most {MAX_PUBLIC_NAMES})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the measures as JSON")
    args = parser.parse_args()
    result = check()
    bad = violations(result)
    if args.json:
        print(json.dumps({**result, "violations": bad}, indent=1))
        return 1 if bad else 0
    print(f"modules: {result['modules']}")
    print(f"import cycles: {len(result['import_cycles'])}")
    print(f"cross-module private imports: {len(result['private_imports'])}")
    print(f"longest function: {result['longest_function']['code_lines']} code lines "
          f"({result['longest_function']['where']}; limit {MAX_FUNCTION_LINES})")
    print(f"functions over {MAX_FUNCTION_LINES} code lines: {len(result['long_functions'])}")
    print(f"modules over {MAX_MODULE_LINES} lines: {len(result['long_modules'])}")
    print(f"len(steering.__all__): {result['public_names']} (limit {MAX_PUBLIC_NAMES})")
    print(f"environment reads outside steering/settings.py: {len(result['env_reads_outside_settings'])}")
    print(f"imports inside functions (not heavy optional dependencies): {len(result['imports_inside_functions'])}")
    print(f"option arguments typed str: {len(result['str_typed_options'])}")
    for line in bad:
        print(f"  - {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
