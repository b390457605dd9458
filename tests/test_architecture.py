"""The package's architecture rules hold (issue 16); ``tools/check_architecture.py`` prints the details."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_architecture as arch  # noqa: E402  (tools/ is not a package)


@pytest.fixture(scope="module")
def result():
    return arch.check()


def test_no_import_cycles(result):
    assert result["import_cycles"] == []


def test_no_private_imports_across_modules(result):
    assert result["private_imports"] == []


def test_functions_are_at_most_80_code_lines(result):
    assert result["long_functions"] == []
    assert result["longest_function"]["code_lines"] <= arch.MAX_FUNCTION_LINES


def test_modules_are_at_most_500_lines(result):
    assert result["long_modules"] == []


def test_public_api_is_small(result):
    assert result["public_names"] <= arch.MAX_PUBLIC_NAMES


def test_environment_read_only_in_settings(result):
    assert result["env_reads_outside_settings"] == []


def test_imports_at_the_top(result):
    assert result["imports_inside_functions"] == []


def test_option_arguments_use_literal_types(result):
    assert result["str_typed_options"] == []


def test_the_checker_finds_what_it_looks_for(tmp_path):
    """The measures are not vacuous: a cycle, a long function and an environment read are found."""
    assert arch._cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    long = tmp_path / "long.py"
    long.write_text("def f():\n    '''doc\n    more doc'''\n" + "    x = 1\n" * 81 + "    # comment\n\n")
    assert arch.function_lengths(long) == [("f", 1, 82)]
    env = tmp_path / "env.py"
    env.write_text("import os\nvalue = os.environ.get('X')\n")
    assert arch._env_reads(env) == [2]


def test_tests_mirror_the_package():
    """A test module per package module (one per subpackage), so the tests of X are in tests/test_X.py."""
    missing = []
    for name in arch.modules():
        parts = name.split(".")[1:]
        if not parts:
            continue
        stem = parts[0].lstrip("_")
        if not (ROOT / "tests" / f"test_{stem}.py").exists():
            missing.append(f"{name} -> tests/test_{stem}.py")
    assert not missing, missing
