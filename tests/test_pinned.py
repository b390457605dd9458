"""Behaviour unchanged by the architecture move: outputs recorded before it, generated again now.

``tests/data/pinned_outputs.json`` was written by ``tools/pin_outputs.py`` on the code before
issue 16's refactor (greedy and sampled texts on both built-in models, per-row coefficients,
the bridge path, KL and sweep numbers). The same seeds must give the same texts today.
"""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import pin_outputs  # noqa: E402  (tools/ is not a package)

pytestmark = pytest.mark.slow
PINNED = json.loads((ROOT / "tests" / "data" / "pinned_outputs.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(PINNED))
def test_same_seeds_give_the_same_outputs(name, request):
    model = request.getfixturevalue("gemma" if name.startswith("gemma") else "smollm")  # shared with other tests
    now = pin_outputs.outputs(name, model)
    before = PINNED[name]
    assert set(now) == set(before)
    for key, expected in before.items():
        if key.startswith(("kl_", "sweep_")):
            assert now[key] == pytest.approx(expected, abs=2e-4), key
        else:
            assert now[key] == expected, key
