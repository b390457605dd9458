"""steering.explorer (issue 20): the precomputed grid, the explorable page in headless Chromium, and the
playground's update logic and widget (without a browser). Tiny models, except one slow Gemma test."""

import json
import math
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import steering as st
from steering.explorer import Playground, View, explorable, explore, explore_grid, read_explorable, view_html
from steering.explorer.measures import reference, side_effects, target_effects, token_deltas
from steering.explorer.page import check_data, render_explorable, write_explorable

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["I think that", "we will go"]
KL = ["a quiet day in town", "numbers 1 2 3 4 5 6"]
GRID = dict(layers=[0, 1], coeffs=[0, 2, 6], max_new_tokens=4, targets=["l"], kl_prompts=KL)


@pytest.fixture(scope="module")
def both(tiny_grid_model):
    return explore_grid(tiny_grid_model, "love", "hate", PROMPTS, n=2, decoding="both", topic_words=["l"], **GRID)


@pytest.fixture(scope="module")
def tiny_grid_model():
    from steering.testing import tiny_model

    return tiny_model("llama")


# ---------------------------------------------------------------------------------------------
# The grid: complete, reproducible, the same numbers as the library's own measures


def test_grid_is_complete_and_json_ready(both):
    records = both["records"]
    assert len(records) == 2 * 3 * 2 * (2 + 1)  # layers × coeffs × prompts × (2 sampled + 1 greedy)
    keys = {(r["layer"], r["coeff"], r["prompt_index"], r["sample"], r["decoding"]) for r in records}
    assert len(keys) == len(records)
    assert both["samples"] == {"sampled": 2, "greedy": 1} and both["coeffs"] == [0.0, 2.0, 6.0]
    for r in records:
        assert {"layer", "coeff", "prompt", "sample", "completion", "effect", "kl", "sentiment", "topic"} <= set(r)
        assert r["prompt"] == PROMPTS[r["prompt_index"]]
    assert len(both["cells"]) == 6 and len(both["lens"]) == 2 and len(both["lens"][0]["promoted"]) == 8
    json.dumps(both, allow_nan=False)  # strict JSON: no NaN
    check_data(both)


def test_greedy_records_equal_generate(tiny_grid_model, both):
    model = tiny_grid_model
    vectors = st.actadd_layers(model, "love", "hate", [0, 1])
    plain = st.generate(model, PROMPTS, None, do_sample=False, max_new_tokens=4)
    for vec in vectors:
        for c in both["coeffs"]:
            shown = [r["completion"] for r in both["records"]
                     if (r["layer"], r["coeff"], r["decoding"]) == (vec.layer, c, "greedy")]
            expected = plain if c == 0 else st.generate(model, PROMPTS, vec, coeff=c, do_sample=False, max_new_tokens=4)
            assert shown == expected, (vec.layer, c)


def test_sampled_records_equal_the_documented_generate_call(tiny_grid_model, both):
    model = tiny_grid_model
    vec = st.actadd(model, "love", "hate", layer=1)
    texts = st.generate(model, PROMPTS, vec, coeff=[2.0, 6.0], n=2, max_new_tokens=4, seed=0)
    for ci, c in enumerate([2.0, 6.0]):
        shown = [r["completion"] for r in both["records"] if (r["layer"], r["coeff"], r["decoding"]) == (1, c, "sampled")]
        assert shown == texts[ci * 4 : (ci + 1) * 4]
    plain = st.generate(model, PROMPTS, None, n=2, max_new_tokens=4, seed=0)
    assert [r["completion"] for r in both["records"] if (r["layer"], r["coeff"], r["decoding"]) == (0, 0.0, "sampled")] == plain


def test_measures_equal_the_library(tiny_grid_model, both):
    model = tiny_grid_model
    vec = st.actadd(model, "love", "hate", layer=1)
    side = side_effects(model, vec, reference(model, KL), [0, 6], k=5)
    kl = st.off_target_kl(model, vec, KL, coeffs=[6])["kl"].mean()
    assert side[6.0]["kl"] == pytest.approx(kl, rel=1e-5) and side[0.0]["kl"] == 0.0
    shift = st.logprob_shift(model, vec, KL, coeff=6, k=5)
    assert [t for t, _ in side[6.0]["promoted"]] == [t for t, _ in shift.promoted]
    assert [s for _, s in side[6.0]["suppressed"]] == pytest.approx([s for _, s in shift.suppressed], abs=1e-5)
    cell = next(c for c in both["cells"] if (c["layer"], c["coeff"]) == (1, 6.0))
    assert cell["kl"] == pytest.approx(st.off_target_kl(model, vec, KL, coeffs=[6])["kl"].mean(), abs=1e-5)
    # the effect: Δ log p of the target after each prompt, as the sweep's "logprob" metric measures it
    table = st.sweep(model, "love", "hate", PROMPTS, layers=[1], coeffs=[0, 6], metrics=[st.Metric("logprob", targets=["l"])])
    base, steered = (table[table["coeff"] == c].sort_values("prompt")["value"].to_numpy() for c in (0.0, 6.0))
    effects = target_effects(model, vec, sorted(PROMPTS), [model.tokenizer.encode("l", add_special_tokens=False)[0]], [6])
    assert effects[6.0] == pytest.approx(list(steered - base), abs=1e-4)


def test_token_deltas_equal_token_shift(tiny_grid_model):
    model = tiny_grid_model
    vec = st.actadd(model, "love", "hate", layer=0)
    rows = token_deltas(model, vec, 5.0, ["I think that"], [" we go"])
    table = st.token_shift(model, vec, "I think that we go", coeff=5.0)
    assert [t for t, _ in rows[0]] == list(table["token"][-6:])
    assert [d for _, d in rows[0]] == pytest.approx(list(table["delta"][-6:]), abs=1e-5)
    assert all(d == 0.0 for _, d in token_deltas(model, vec, 0, ["ab"], ["cd"])[0])


def test_grid_options_are_checked_before_any_work(tiny_grid_model, untyped, monkeypatch):
    import steering.explorer.grid as grid

    monkeypatch.setattr(grid, "actadd_layers", lambda *a, **k: pytest.fail("work started before the options were checked"))
    for bad, message in [(dict(n=0), r"n=0"), (dict(decoding="beam"), r"decoding='beam'; allowed: 'sampled'"),
                         (dict(coeffs=[1, math.nan]), r"nan"), (dict(k=0), r"k=0"), (dict(prompts=[""]), r"prompts"),
                         (dict(kl_prompts=[]), r"kl_prompts")]:
        kwargs = {**dict(prompts=PROMPTS, targets=["l"]), **bad}
        with pytest.raises(st.errors.SteeringError, match=message):
            explore_grid(tiny_grid_model, "love", "hate", **kwargs)


# ---------------------------------------------------------------------------------------------
# The page: the island, the size budget, and a real browser moving the sliders


def _records(layers, coeffs, prompts, samples, tokens=24):
    word = "wedding "
    return [{"layer": layer, "coeff": c, "prompt": p, "prompt_index": i, "sample": s, "decoding": "sampled",
             "completion": (word * tokens)[: 5 * tokens] + f" {layer}/{c}/{i}/{s}", "effect": -1.2345, "kl": 0.12345,
             "sentiment": 0.123, "topic": 1.0}
            for layer in layers for c in coeffs for i, p in enumerate(prompts) for s in range(samples)]


def _synthetic(layers=range(18), coeffs=(0.0, 2.0, 4.0, 8.0, 12.0, 16.0), prompts=None, samples=2):
    prompts = prompts or list(st.texts.DEFAULT_REPORT_PROMPTS)
    lens = [[" weddings", 1.234], [" bride", 0.987]] * 4
    return {"layers": list(layers), "coeffs": list(coeffs), "prompts": prompts, "decodings": ["sampled"],
            "samples": {"sampled": samples}, "records": _records(layers, coeffs, prompts, samples),
            "cells": [{"layer": lay, "coeff": c, "effect": 0.5 * c, "kl": 0.01 * c, "topic": 0.5, "promoted": lens,
                       "suppressed": lens} for lay in layers for c in coeffs],
            "lens": [{"layer": lay, "promoted": lens, "suppressed": lens} for lay in layers],
            "settings": {"model": "gemma3-270m", "pos": " weddings", "neg": ""}}


def test_page_size_budget_for_the_default_grid():
    """18 layers × 6 coefficients × 4 prompts × 2 samples of 24-token completions: ≤ 3 MB beyond plotly.js."""
    page = render_explorable(_synthetic(), plotly_src="plotly.min.js")
    assert len(page.encode("utf-8")) <= 3_000_000, len(page.encode("utf-8"))


def test_island_is_documented_json_and_cannot_close_the_script(tmp_path):
    data = _synthetic(layers=[0], coeffs=[0.0, 4.0], prompts=["</script><script>alert(1)</script>"], samples=1)
    data["records"][0]["completion"] = "<!-- </script> -->"
    out = write_explorable(tmp_path / "p.html", data, plotly_src="plotly.min.js")
    page = out.read_text(encoding="utf-8")
    assert page.count("</script>") == 3  # plotly's tag, the island, the app
    island = re.search(r'<script type="application/json" id="explorable-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(island)["records"][0]["completion"] == "<!-- </script> -->"
    assert read_explorable(out)["records"] == data["records"]


def test_incomplete_data_is_refused_in_python():
    data = _synthetic(layers=[0, 1], coeffs=[0.0, 4.0], samples=1)
    del data["records"][3]
    with pytest.raises(st.errors.InvalidArgumentError, match=r"no record for layer 0, coeff 0.0, prompt 3, sample 0 \(sampled\); the grid is incomplete"):
        render_explorable(data)
    with pytest.raises(st.errors.InvalidArgumentError, match=r"record 0 lacks \['completion'\]"):
        render_explorable({**data, "records": [{"layer": 0, "coeff": 0, "prompt": "a", "sample": 0}]})


def _browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium not found (install the 'chromium' package)")
    return found


def _dom(path: Path, profile: Path, fragment: str = "") -> str:
    cmd = [_browser(), "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
           f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--run-all-compositor-stages-before-draw",
           "--dump-dom", path.resolve().as_uri() + fragment]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "</html>" in proc.stdout, proc.stderr[-2000:]
    return re.sub(r"<script>.*?</script>", "", proc.stdout, flags=re.S)  # drop plotly.js and the app


def _shown(dom: str) -> dict:
    """The steered completions the page shows: ``(prompt index, sample) -> (layer, coeff, text)``."""
    import html

    found = re.findall(r'<td class="completion steered" data-layer="([^"]+)" data-coeff="([^"]+)" '
                       r'data-prompt-index="(\d+)" data-sample="(\d+)" data-decoding="[^"]+">(.*?)</td>', dom, re.S)
    return {(int(p), int(s)): (float(layer), float(c), html.unescape(text)) for layer, c, p, s, text in found}


def _body(dom: str) -> dict:
    tag = re.search(r"<body([^>]*)>", dom).group(1)
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', tag))


@pytest.fixture(scope="module")
def page(tmp_path_factory, tiny_grid_model):
    """A real page from the tiny model (plotly.js inlined, as `steer explore` writes it)."""
    out = tmp_path_factory.mktemp("explorable") / "page.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.SteeringWarning)
        explorable(tiny_grid_model, "love", "hate", PROMPTS, out=out, n=2, **GRID)
    return out


def _expected(data: dict, layer: int, coeff: float) -> dict:
    return {(r["prompt_index"], r["sample"]): (float(layer), float(coeff), r["completion"]) for r in data["records"]
            if r["layer"] == layer and r["coeff"] == coeff}


def test_page_opens_offline_at_the_hash_setting(page, tmp_path):
    data = read_explorable(page)
    assert "https://" not in page.read_text(encoding="utf-8").split('id="explorable-data"')[0].split("<script>")[0]
    for layer, coeff in [(1, 6.0), (0, 2.0)]:
        dom = _dom(page, tmp_path / "profile", f"#layer={layer}&coeff={coeff:g}")
        body = _body(dom)
        assert body["state"] == "ready" and body["plot"] == "ready", body
        assert (body["layer"], body["coeff"]) == (str(layer), f"{coeff:g}")
        assert _shown(dom) == _expected(data, layer, coeff)
        assert 'id="explorable-error" role="alert" hidden=""' in dom


def test_moving_the_sliders_changes_the_shown_record(page, tmp_path):
    """A script drives the real controls (input events on the range inputs, and the test hook); the DOM follows."""
    data = read_explorable(page)
    driven = tmp_path / "driven.html"
    drive = ("<script>var s = document.getElementById('layer-slider'); s.value = '0';"
             "s.dispatchEvent(new Event('input', {bubbles: true}));"
             "var c = document.getElementById('coeff-slider'); c.value = '2';"
             "c.dispatchEvent(new Event('input', {bubbles: true}));</script></body>")
    driven.write_text(page.read_text(encoding="utf-8").replace("</body>", drive), encoding="utf-8")
    dom = _dom(driven, tmp_path / "profile", "#layer=1&coeff=2")  # starts elsewhere, then the sliders move
    assert (_body(dom)["layer"], _body(dom)["coeff"]) == ("0", "6")
    assert _shown(dom) == _expected(data, 0, 6.0)
    hooked = tmp_path / "hooked.html"
    hooked.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", "<script>document.title = JSON.stringify(window.explorableSet(1, 1));</script></body>"), encoding="utf-8")
    dom = _dom(hooked, tmp_path / "profile")
    assert _shown(dom) == _expected(data, 1, 2.0)
    assert json.loads(re.search(r"<title>(.*?)</title>", dom).group(1).replace("&quot;", '"'))["coeff"] == "2"


@pytest.mark.parametrize("breakage, message", [
    (lambda island: "{not json", "This explorable cannot be shown: "),
    (lambda island: json.dumps({**json.loads(island), "records": []}), "no records list"),
    (lambda island: json.dumps({**json.loads(island), "records": json.loads(island)["records"][:-1]}), "grid is incomplete"),
])
def test_a_page_with_broken_data_shows_an_error(page, tmp_path, breakage, message):
    text = page.read_text(encoding="utf-8")
    start = text.index('<script type="application/json" id="explorable-data">') + len(
        '<script type="application/json" id="explorable-data">')
    end = text.index("</script>", start)
    broken = tmp_path / "broken.html"
    broken.write_text(text[:start] + breakage(text[start:end]) + text[end:], encoding="utf-8")
    dom = _dom(broken, tmp_path / "profile")
    assert _body(dom)["state"] == "error"
    error = re.search(r'<div id="explorable-error" role="alert">(.*?)</div>', dom, re.S)
    assert error and message in error.group(1), dom[:3000]
    assert not _shown(dom)


# ---------------------------------------------------------------------------------------------
# The playground: the update function without a browser, and the widget wiring


def test_view_is_computed_once_and_leaves_no_hooks(tiny_grid_model, no_hooks):
    pg = Playground(tiny_grid_model, ("love", "hate"), prompts=PROMPTS, coeffs=[0, 4], max_new_tokens=4, kl_prompts=KL)
    assert pg.layers == [0, 1] and pg.coeffs == [0.0, 4.0]
    view = pg.view(1, 4, "I think that")
    no_hooks(tiny_grid_model)
    vec = st.actadd(tiny_grid_model, "love", "hate", layer=1)
    assert view.steered == st.generate(tiny_grid_model, "I think that", vec, 4.0, n=2, max_new_tokens=4)
    assert view.unsteered == st.generate(tiny_grid_model, "I think that", None, n=2, max_new_tokens=4)
    assert ["".join(t for t, _ in row) for row in view.tokens] == view.steered
    assert view.kl == pytest.approx(st.off_target_kl(tiny_grid_model, vec, KL, coeffs=[4])["kl"].mean(), rel=1e-5)
    assert len(view.promoted) == len(view.lens["promoted"]) == 8
    start = time.perf_counter()
    assert pg.view(1, 4.0, "I think that") is view and time.perf_counter() - start < 0.05  # moving back: instant
    assert pg.view(0, 4.0).prompt == "I think that" and len(pg.cache) == 3  # 2 views + 1 prompt's unsteered


def test_vector_or_pair_rules(tiny_grid_model, untyped):
    model = tiny_grid_model
    vec = st.actadd(model, "love", "hate", layer=1)
    assert Playground(model, vec).layers == [0, 1]  # an ActAdd vector with known prompts: any layer
    manual = st.SteeringVector(vec.tensor.clone(), hook_name=vec.hook_name)
    fixed = Playground(model, manual, prompts=["abcdef"], coeffs=[3], max_new_tokens=2, kl_prompts=KL)
    assert fixed.layers == [1] and fixed.view(1, 3).steered
    with pytest.raises(st.errors.InvalidArgumentError, match=r"layers=\[0\]; allowed: \[1\] \(the vector's own layer"):
        Playground(model, manual, layers=[0])
    with pytest.raises(st.errors.InvalidArgumentError, match=r"vector_or_pair=.*allowed: a SteeringVector or a \(pos, neg\)"):
        Playground(model, "love")
    with pytest.raises(st.errors.InvalidArgumentError, match=r"layer=5; allowed: one of \[1\]"):
        fixed.view(5, 3)
    with pytest.raises(st.errors.LayerOutOfRangeError):
        Playground(model, ("love", "hate"), layers=[7])


def test_view_html_escapes_and_shades():
    view = View(1, 4.0, "<b>", ["<script>x</script>"], ["ok"], [[("<i>", 1.0), ("k", -3.0)]], 0.5, [("&", 0.5)], [],
                {"promoted": [], "suppressed": []})
    page = view_html(view)
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page and "&lt;i&gt;" in page
    assert "rgba(17,140,70,0.30)" in page and "rgba(200,30,30,0.60)" in page  # green up, red (capped) down
    assert view._repr_html_() == page


def test_widget_wires_controls_to_the_update_in_the_background(tiny_grid_model, no_hooks):
    pytest.importorskip("ipywidgets")
    ex = explore(tiny_grid_model, ("love", "hate"), prompts=PROMPTS, coeffs=[0, 4], max_new_tokens=3, kl_prompts=KL)
    assert ex.wait(60)
    assert ex.setting() == (1, 4.0, "I think that") and "layer 1, c = 4" in ex.output.value
    ex.layer.value = 0  # what moving the slider does: a request computed in the background
    assert ex.wait(60) and "layer 0, c = 4" in ex.output.value and ex.progress.bar_style == "success"
    assert (0, 4.0, "I think that") in ex.playground.cache
    ex.layer.value = 1  # back: from the cache
    assert ex.wait(60) and "(cached)" in ex.status.value
    ex.prompt.value = "a new prompt"
    assert ex.wait(60) and "&#x27;a new prompt&#x27;" in ex.output.value
    no_hooks(tiny_grid_model)
    assert "hooks attached: 0" in ex.status.value
    assert "application/vnd.jupyter.widget-view+json" in ex._repr_mimebundle_()
    fixed = explore(tiny_grid_model, st.SteeringVector(st.actadd(tiny_grid_model, "a", "b", 0).tensor,
                                                       hook_name="blocks.0.hook_resid_pre"), start=False)
    assert fixed.layer.disabled and fixed.playground.layers == [0]


def test_a_failing_update_shows_the_error_and_leaves_no_hooks(tiny_grid_model, no_hooks):
    pytest.importorskip("ipywidgets")
    ex = explore(tiny_grid_model, ("love", "hate"), prompts=PROMPTS, coeffs=[0, 1e38], max_new_tokens=2, kl_prompts=KL,
                 start=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.SteeringWarning)
        assert ex.show(1, 1e38) is None  # refused inside the steered call, after the unsteered one ran
    assert ex.progress.bar_style == "danger" and "InvalidCoefficientError: coeff=1e+38" in ex.output.value
    assert "failed: InvalidCoefficientError" in ex.status.value
    no_hooks(tiny_grid_model)


# ---------------------------------------------------------------------------------------------
# The docs site's explorable (Gemma): one real-model test


@pytest.mark.slow
def test_docs_explorable_on_gemma(tmp_path, gemma):
    sys.path.insert(0, str(ROOT / "tools"))
    import docs_site

    out = docs_site.write_docs_explorable(tmp_path, model=gemma)
    data = read_explorable(out)
    s = docs_site.DOCS_EXPLORABLE
    assert len(data["records"]) == len(s["layers"]) * (len(s["coeffs"])) * len(s["prompts"])
    assert out.stat().st_size < 1_000_000  # plotly.js comes from the site
    record = next(r for r in data["records"] if r["layer"] == s["layers"][-1] and r["coeff"] == max(s["coeffs"]))
    vec = st.actadd(gemma, " weddings", "", layer=record["layer"])
    assert record["completion"] == st.generate(gemma, s["prompts"], vec, coeff=record["coeff"], do_sample=False,
                                               max_new_tokens=s["max_new_tokens"])[record["prompt_index"]]


def test_an_unexpected_error_is_shown_and_the_worker_goes_on(tiny_grid_model, monkeypatch):
    pytest.importorskip("ipywidgets")
    ex = explore(tiny_grid_model, ("love", "hate"), prompts=PROMPTS, coeffs=[0, 2], max_new_tokens=2, kl_prompts=KL,
                 start=False)
    real = ex.playground.view
    monkeypatch.setattr(ex.playground, "view", lambda *a, **k: 1 / 0)
    ex.request(0, 2.0)
    assert ex.wait(60) and "a bug in steering-lens" in ex.status.value and "ZeroDivisionError" in ex.output.value
    monkeypatch.setattr(ex.playground, "view", real)
    ex.request(0, 2.0)
    assert ex.wait(60) and "layer 0, c = 2" in ex.output.value
