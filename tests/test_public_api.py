"""steering/__init__.py: a small public face from one list; moved names still work, with a DeprecationWarning."""

import importlib
import subprocess
import sys
import warnings

import pytest

import steering as st


def test_all_comes_from_the_one_list_and_is_small():
    assert st.__all__ == list(st.PUBLIC_API)
    assert len(st.__all__) <= 32  # tools/check_architecture.py MAX_PUBLIC_NAMES
    for name, module in st.PUBLIC_API.items():
        assert getattr(st, name) is getattr(importlib.import_module(f"steering.{module}"), name), name


@pytest.mark.parametrize("name", sorted(st.MOVED))
def test_moved_names_warn_and_point_to_their_new_home(name):
    module = importlib.import_module(f"steering.{st.MOVED[name]}")
    with pytest.warns(DeprecationWarning, match=rf"steering\.{name} moved to steering\.{st.MOVED[name]}\.{name}"):
        value = getattr(st, name)
    assert value is getattr(module, name)
    assert name not in st.__all__


def test_submodules_are_reachable_as_attributes():
    assert st.plots.effect_heatmap is importlib.import_module("steering.plots").effect_heatmap
    assert issubclass(st.errors.InvalidArgumentError, st.SteeringError)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        st.nonsense  # noqa: B018


def test_import_is_light_and_warning_free():
    """``import steering`` loads no torch, and the public names do not warn."""
    code = (
        "import sys, warnings\nwarnings.simplefilter('error')\nimport steering as st\n"
        "assert 'torch' not in sys.modules, 'torch imported by import steering'\n"
        "print(len(st.__all__))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in st.__all__:
            getattr(st, name)
