"""Record (or check) greedy and sampled outputs of the two built-in models.

The architecture refactor (issue 16) must not change behaviour: this script took the
outputs on the code *before* the move and wrote them to ``tests/data/pinned_outputs.json``;
``tests/test_pinned.py`` generates them again with today's code and compares.

    python tools/pin_outputs.py            # print the outputs as JSON
    python tools/pin_outputs.py --write    # (re)write tests/data/pinned_outputs.json

Only the stable public API is used (``load_model``, ``actadd``, ``generate``,
``off_target_kl``, ``sweep``), so the same script runs before and after the move.
"""

import argparse
import json
import sys
from pathlib import Path

import steering as st

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "pinned_outputs.json"

#: Per model: the vector (p+, p−, layer) and coefficient of the pinned generations.
SETTINGS = {
    "smollm2-135m": {"pos": " weddings", "neg": "", "layer": 1, "coeff": 10.0},
    "gemma3-270m": {"pos": " weddings", "neg": "", "layer": 10, "coeff": 10.0},
}
PROMPTS = ["I went up to my friend and said", "The weather today"]


def outputs(name: str, model=None) -> dict:
    """Every pinned output of one model (texts exactly; numbers rounded to 4 decimals)."""
    cfg = SETTINGS[name]
    model = model if model is not None else st.load_model(name, device="cpu")
    vec = st.actadd(model, cfg["pos"], cfg["neg"], layer=cfg["layer"])
    mid = st.actadd(model, cfg["pos"], cfg["neg"], layer=cfg["layer"], hook="resid_mid")
    c = cfg["coeff"]
    out = {
        "greedy_unsteered": st.generate(model, PROMPTS, None, max_new_tokens=16, do_sample=False),
        "greedy_steered": st.generate(model, PROMPTS, vec, c, max_new_tokens=16, do_sample=False),
        "greedy_steered_resid_mid": st.generate(model, PROMPTS[:1], mid, c, max_new_tokens=12, do_sample=False),
        "sampled_unsteered": st.generate(model, PROMPTS[0], None, max_new_tokens=16, n=3, seed=0),
        "sampled_steered": st.generate(model, PROMPTS[0], vec, c, max_new_tokens=16, n=3, seed=0),
        "sampled_per_row": st.generate(model, PROMPTS, vec, [0.0, 4.0, c], max_new_tokens=32, n=2, seed=1),
        "sampled_direction_all": st.generate(model, PROMPTS[1], vec.direction("sum"), 0.5, max_new_tokens=12,
                                             n=2, seed=2, positions="all"),
    }
    kl = st.off_target_kl(model, vec, coeffs=[0, 2, 8])
    out["kl_mean_by_coeff"] = [round(float(x), 4) for x in kl.groupby("coeff")["kl"].mean().tolist()]
    table = st.sweep(model, cfg["pos"], cfg["neg"], PROMPTS, layers=[cfg["layer"], cfg["layer"] + 2],
                     coeffs=[0, 4], metrics=[st.Metric("logprob", targets=[" wedding"])])
    out["sweep_logprob"] = [round(float(x), 4) for x in table["value"].tolist()]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(OUT.parents[2])}")
    args = parser.parse_args()
    result = {name: outputs(name) for name in SETTINGS}
    text = json.dumps(result, indent=1, ensure_ascii=False)
    if args.write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {OUT}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
