"""Integration tests on the two real built-in models: steering must *work*.

These are marked slow (CI runs them). The first run fetches and caches the models
(~1.5 min); later runs load them in seconds. Effect sizes measured with these
exact settings are quoted beside each assertion.
"""

import json
import subprocess
import sys

import pytest
import torch

import steering as st
from steering.cli.demo import run_demo
from steering.tokens import left_pad, tokenize_prompt
from steering.texts import mean_sentiment, topic_fraction

pytestmark = pytest.mark.slow

WEDDING_PROMPT = "I went up to my friend and said"
NEGATIVE_PROMPTS = ["I hate you because", "I think you are", "Today I feel"]




@pytest.mark.parametrize("name, layers, d_model", [("gemma3-270m", 18, 640), ("smollm2-135m", 30, 576)])
def test_builtin_models_load_and_answer(name, layers, d_model, request):
    model = request.getfixturevalue("gemma" if name.startswith("gemma") else "smollm")
    assert (model.cfg.n_layers, model.cfg.d_model) == (layers, d_model)
    assert model.cfg.model_name == name
    assert any(row["name"] == name and row["cached"] for row in st.models.model_info())
    text = st.generate(model, "The capital of France is", None, max_new_tokens=8, do_sample=False)[0]
    assert "Paris" in text or "France" in text, text


def test_actadd_follows_the_paper_on_gemma(gemma):
    vec = st.actadd(gemma, " weddings", "", layer=10)
    # BOS first on both, p− right-padded with the space token, BOS difference exactly zero
    assert vec.tokens == {"pos": ["<bos>", " weddings"], "neg": ["<bos>", " "]}
    assert vec.norm()[0].item() == 0.0
    # equals the difference of a full (non-truncated) forward pass at that hook
    tokens = torch.tensor([[2, gemma.to_single_token(" weddings")], [2, gemma.to_single_token(" ")]])
    _, cache = gemma.run_with_cache(tokens, names_filter=["blocks.10.hook_resid_pre"])
    by_hand = cache["blocks.10.hook_resid_pre"][0] - cache["blocks.10.hook_resid_pre"][1]
    torch.testing.assert_close(vec.tensor, by_hand, atol=1e-4, rtol=1e-4)


def test_wedding_vector_steers_gemma_topic(gemma):
    """Measured: 13/16 (81%) steered vs 0/16 unsteered (layer 10, c = 10, 30 tokens, top-p 0.3, seed 0)."""
    vec = st.actadd(gemma, " weddings", "", layer=10)
    kw = dict(max_new_tokens=30, n=16, seed=0)
    unsteered = st.generate(gemma, WEDDING_PROMPT, None, **kw)
    steered = st.generate(gemma, WEDDING_PROMPT, vec, coeff=10.0, **kw)
    before, after = topic_fraction(unsteered), topic_fraction(steered)
    print(f"wedding-word fraction: unsteered {before:.2f}, steered {after:.2f}")
    assert before <= 0.125
    assert after >= 0.5
    assert after - before >= 0.4
    assert st.active_hooks(gemma) == 0


def test_love_hate_raises_sentiment_on_gemma(gemma):
    """Mean VADER compound of 24 completions (3 negative-leaning prompts × 8).

    Measured: +0.098 unsteered → +0.632 steered (layer 6, c = 5, 30 tokens, top-p 0.3, seed 0).
    (On smollm2-135m the same vector moves it far less — best seen +0.282 → +0.449 at layer 2,
    c = 8 — so no sentiment margin is asserted there.)
    """
    vec = st.actadd(gemma, "Love", "Hate", layer=6)
    kw = dict(max_new_tokens=30, n=8, seed=0)
    unsteered = st.generate(gemma, NEGATIVE_PROMPTS, None, **kw)
    steered = st.generate(gemma, NEGATIVE_PROMPTS, vec, coeff=5.0, **kw)
    before, after = mean_sentiment(unsteered), mean_sentiment(steered)
    print(f"mean VADER: unsteered {before:+.3f}, steered {after:+.3f}")
    assert after - before >= 0.25


@pytest.mark.parametrize("name, layer", [("gemma3-270m", 6), ("smollm2-135m", 6)])
def test_cli_generate_json(name, layer):
    cmd = [
        sys.executable, "-m", "steering.cli", "generate", "--model", name, "--pos", "Love", "--neg", "Hate",
        "--layer", str(layer), "--coeff", "5", "--prompt", "I hate you because", "--n", "2", "--seed", "0",
        "--max-new-tokens", "16", "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert set(out) == {"settings", "unsteered", "steered"}
    assert len(out["unsteered"]) == len(out["steered"]) == 2
    assert out["steered"] != out["unsteered"]
    assert out["settings"]["hook"] == f"blocks.{layer}.hook_resid_pre"


def test_cli_reports_errors_cleanly():
    cmd = [sys.executable, "-m", "steering.cli", "generate", "--model", "smollm2-135m", "--pos", "a", "--neg", "b",
           "--layer", "99", "--coeff", "1", "--prompt", "x"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "LayerOutOfRangeError" in proc.stderr and "0..29" in proc.stderr


def test_demo_writes_html_page(tmp_path, capsys):
    out = tmp_path / "demo.html"
    result = run_demo("smollm2-135m", out=str(out), n=2, max_new_tokens=12, n_measure=2)
    page = out.read_text()
    assert "plotly" in page.lower() and page.count("<table>") >= 2
    assert set(result) == {"sentiment", "topic"}
    assert result["topic"]["steered"] != result["topic"]["unsteered"]
    printed = capsys.readouterr().out
    assert "unsteered" in printed and "steered (c = " in printed


SENTIMENT_PAIRS = (
    ["I love this.", "What a wonderful day.", "You are kind and generous.", "This is fantastic news!",
     "I feel happy and grateful.", "She was delighted by the gift.", "The movie was brilliant.", "We had a lovely time."],
    ["I hate this.", "What a terrible day.", "You are cruel and selfish.", "This is awful news!",
     "I feel sad and bitter.", "She was disgusted by the gift.", "The movie was dreadful.", "We had a horrible time."],
)


def test_mean_diff_direction_raises_sentiment_on_gemma(gemma):
    """Measured: mean VADER +0.098 unsteered → +0.789 steered (layer 6, c = 4, all positions, 24 samples).

    (Same prompts: ActAdd Love − Hate c = 5 gave +0.632; PCA c = 8 only +0.123.)
    """
    vec = st.mean_diff(gemma, *SENTIMENT_PAIRS, layer=6, token="mean")
    kw = dict(max_new_tokens=30, n=8, seed=0)
    before = mean_sentiment(st.generate(gemma, NEGATIVE_PROMPTS, None, **kw))
    after = mean_sentiment(st.generate(gemma, NEGATIVE_PROMPTS, vec, coeff=4.0, positions="all", **kw))
    print(f"mean VADER: unsteered {before:+.3f}, mean-diff steered {after:+.3f}")
    assert after - before >= 0.3


def test_ablating_the_sentiment_direction_neutralises_positive_text_on_gemma(gemma):
    """Measured: positive-laden prompts, mean VADER +0.760 → +0.404 with the mean-diff direction
    ablated at every layer (24 samples). On negative-laden prompts the same ablation moved it
    −0.252 → +0.222 (|mean| barely falls, the sign flips), so only the positive set is asserted.
    """
    directions = st.mean_diff(gemma, *SENTIMENT_PAIRS, layer="all", token="mean")
    prompts = ["I love you so much because", "What a beautiful, happy", "The best day of my life was when"]
    kw = dict(max_new_tokens=30, n=8, seed=0)
    before = mean_sentiment(st.generate(gemma, prompts, None, **kw))
    after = mean_sentiment(st.generate(gemma, prompts, directions, coeff=1.0, op="ablate", positions="all", **kw))
    print(f"positive-laden mean VADER: unsteered {before:+.3f}, ablated {after:+.3f}")
    assert before >= 0.4
    assert abs(after) <= abs(before) - 0.15
    assert st.active_hooks(gemma) == 0


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_chunked_matmul_generates_torch_matmuls_tokens(name, request, monkeypatch):
    """The small-batch kernel changes speed, not text: greedy tokens equal torch's own matmuls.

    The model's one twin under each kernel setting (the setting takes effect at the next use);
    4 prompts × 24 greedy tokens, one at a time (bmm form) and as a batch of 4 (left-padded; matmul form).
    Measured: identical on both models (and 8/8 prompts × 64 tokens in benchmarks/bench.py).
    """
    from steering._fast import linear_kernel, twin_for

    model = request.getfixturevalue("gemma" if name.startswith("gemma") else "smollm")
    tok = model.tokenizer
    prompts = [WEDDING_PROMPT, "The weather this morning was", "She opened the box and found", "Our teacher said"]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    kw = dict(max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=pad)
    batches = [[p] for p in prompts] + [prompts]
    for batch in batches:
        ids = [tokenize_prompt(model, p) for p in batch]
        tokens, mask = left_pad(ids, pad)
        out = {}
        for kernel in ("torch", "chunked"):
            monkeypatch.setenv("STEERING_LINEAR", kernel)
            assert linear_kernel(model) == kernel
            with torch.no_grad():
                out[kernel] = twin_for(model).generate(input_ids=tokens, attention_mask=mask, **kw)
        assert torch.equal(out["torch"], out["chunked"]), batch


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_packed_weights_and_shared_rows_generate_the_same_tokens(name, request, monkeypatch):
    """Packed weights (fused q/k/v and gate/up) and shared rows below the steered layer change speed, not tokens.

    8 rows × 32 tokens, steered per row (2 coefficients × 4 prompts): packed (seen from inside the
    forward) vs ``STEERING_PACK=off``, and without sharing rows below the steered layer.
    Measured: identical on both models (also 32 rows in the benchmark).
    """
    from steering._fast import decoder_layers, linear_kernel
    from steering._fast import twin_for as plain_model
    from steering._fast.kernels import reorder_op

    model = request.getfixturevalue("gemma" if name.startswith("gemma") else "smollm")
    if reorder_op() is None or linear_kernel(model) != "chunked":
        pytest.skip("packing needs oneDNN and the chunked kernel (CPUs where it pays)")
    vec = st.actadd(model, " weddings", "", layer=model.cfg.n_layers // 3)
    prompts = [WEDDING_PROMPT, "The weather this morning was", "She opened the box and found", "Our teacher said"]
    head = max((m for m in plain_model(model).modules() if isinstance(m, torch.nn.Linear)), key=lambda m: m.weight.numel())
    seen, first_layer = [], []
    handle = head.register_forward_pre_hook(lambda m, a: seen.append(m.packed is not None))
    rows_hook = decoder_layers(plain_model(model))[0].register_forward_hook(  # rows layer 0 computed per call
        lambda m, a, out: first_layer.append(int((out[0] if isinstance(out, tuple) else out).shape[0])))
    texts = {}
    try:
        for setting in ("auto", "off"):
            monkeypatch.setenv("STEERING_PACK", setting)
            seen.clear()
            texts[setting] = st.generate(model, prompts, vec, coeff=[0.0, 6.0], max_new_tokens=32, do_sample=False,
                                         stop_at_eos=False, progress=False)
            assert seen and set(seen) == {setting == "auto"}, setting
            # below the steered layer: 4 rows on the prompt pass, one per group of agreeing rows after it
            assert first_layer[0] == 4 and min(first_layer[1:]) < 8 and max(first_layer) <= 8, first_layer
            first_layer.clear()
        # and without sharing rows below the steered layer across the two coefficients' blocks
        import steering.generation as gen

        monkeypatch.setattr(gen, "repeat_block", lambda rows: None)
        texts["unshared"] = st.generate(model, prompts, vec, coeff=[0.0, 6.0], max_new_tokens=32, do_sample=False,
                                        stop_at_eos=False, progress=False)
    finally:
        handle.remove()
        rows_hook.remove()
    assert first_layer and set(first_layer) == {8}  # unshared: every row everywhere
    assert texts["auto"] == texts["off"] == texts["unshared"]
    assert st.active_hooks(model) == 0
