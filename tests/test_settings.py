"""steering.settings: the one reader of environment variables; values are defaults, read at each call."""

from pathlib import Path

import pytest

from steering.errors import InvalidArgumentError
from steering.settings import BACKENDS, settings


def test_defaults_without_variables():
    s = settings({})
    assert s.cache == Path.home() / ".cache" / "steering"
    assert (s.backend, s.linear, s.pack, s.hub_offline) == ("auto", "auto", "auto", False)
    assert s.hub_endpoint == "https://huggingface.co"


@pytest.mark.parametrize("env, backend", [
    ({"STEERING_FAST": "0"}, "bridge"),
    ({"STEERING_FAST": "1"}, "auto"),
    ({"STEERING_BACKEND": "twin"}, "twin"),
    ({"STEERING_BACKEND": "Bridge ", "STEERING_FAST": "1"}, "bridge"),  # the new spelling wins, case-insensitive
])
def test_backend_default(env, backend):
    assert settings(env).backend == backend


@pytest.mark.parametrize("env, match", [
    ({"STEERING_LINEAR": "fastest"}, r"STEERING_LINEAR='fastest' is not a linear-kernel setting; allowed: auto, "
                                     r"chunked, torch\. Fix: unset it"),
    ({"STEERING_PACK": "always"}, r"STEERING_PACK='always'.*allowed: auto, off"),
    ({"STEERING_BACKEND": "gpu"}, r"STEERING_BACKEND='gpu'.*allowed: auto, bridge, twin"),
    ({"STEERING_FAST": "yes"}, r"STEERING_FAST='yes'; allowed: 1 .* or 0 .*STEERING_BACKEND"),
])
def test_bad_values_name_the_variable_and_the_fix(env, match):
    with pytest.raises(InvalidArgumentError, match=match):
        settings(env)


def test_read_afresh_at_each_call(monkeypatch, tmp_path):
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path / "a"))
    assert settings().cache == tmp_path / "a"
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path / "b"))
    assert settings().cache == tmp_path / "b"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert settings().hub_offline
    assert set(BACKENDS) == {"auto", "bridge", "twin"}
