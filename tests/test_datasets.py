"""steering.datasets: the JSONL format and its refusals, the built-in datasets, pairs and split, and the A/B score."""

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import steering as st
from steering.chat import TINY_TEMPLATE, chat_prompt
from steering.datasets import (
    BUILTIN_DATASETS, DATA_DIR, ABItem, ContrastiveDataset, ContrastiveItem, ab_prompts, ab_score, ab_summary,
    answer_letter_ids, load_dataset, parse_dataset,
)
from steering.errors import DatasetError, FileAccessError, InvalidArgumentError, InvalidCoefficientError
from steering.testing import tiny_model
from steering.texts import topic_fraction
from steering.tokens import tokenize_prompt

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]
C1 = {"prompt": "How are you?", "positive": "Great, thanks!", "negative": "Leave me alone."}
C2 = {"prompt": "Nice shoes.", "positive": "Thank you, kind of you!", "negative": "Mind your own business."}
AB1 = {"question": "Plans tonight?", "matching": "A wedding.", "not_matching": "Reading."}
EXPECTED = {"sentiment": ("contrastive", 90), "formality": ("contrastive", 90), "weddings_ab": ("ab", 70)}


def lines(*records):
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records)


def check_message(message, *parts):
    assert "allowed:" in message and "Fix:" in message, message
    for part in parts:
        assert part in message, message


# ---------------------------------------------------------------- the format and its refusals
BAD_LINES = [
    ((C1, "{not json"), 2, "not valid JSON"),
    ((C1, "[1, 2]"), 2, "is an array, not an object"),
    (('"just text"',), 1, "is a string, not an object"),
    (({"prompt": "x", "positive": "y"},), 1, "missing key(s) ['negative']"),
    (({**C1, "label": "kind"},), 1, "unknown key(s) ['label']"),
    (({"question": "Q?", "matching": "a", "negative": "b"},), 1, "missing key(s) ['not_matching']; unknown key(s) ['negative']"),
    (({**C1, "positive": 3},), 1, "positive=3 is a number"),
    (({**C1, "negative": None},), 1, "negative=None is null"),
    (({**C1, "negative": "   "},), 1, "negative='   ' is empty"),
    (({**C1, "id": 5},), 1, "id=5 is a number"),
    (({**C1, "negative": " Great, thanks! "},), 1, "positive and negative are the same text"),
    (({**AB1, "not_matching": "A wedding."},), 1, "matching and not_matching are the same text"),
    ((C1, AB1), 2, "a 'ab' item in a file whose first item (line 1) is 'contrastive'"),
    ((C1, C2, {**C1, "positive": " Great, thanks!"}), 3, "the item repeats line 1"),
    (({**C1, "id": "x"}, {**C2, "id": "x"}), 2, "id 'x' is already used on line 1"),
    (({**C1, "id": "d:2"}, C2), 2, "id 'd:2' is already used on line 1"),  # an explicit id equal to an automatic one
    (('{"prompt": "a", "prompt": "b", "positive": "c", "negative": "d"}',), 1, "appears twice in one object"),
    (("", C1, "   ", "oops"), 4, "not valid JSON"),  # blank lines are skipped but counted
]


@pytest.mark.parametrize("records, line, problem", BAD_LINES)
def test_malformed_lines_name_the_line(records, line, problem):
    with pytest.raises(DatasetError) as info:
        parse_dataset(lines(*records), "d")
    check_message(str(info.value), f"<d>, line {line}: ", problem)
    assert isinstance(info.value, InvalidArgumentError)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_text_is_refused(text):
    with pytest.raises(DatasetError) as info:
        parse_dataset(text, "d")
    check_message(str(info.value), "<d> holds no items")


def test_ids_optional_whitespace_dropped_and_lines_accepted():
    ds = parse_dataset([json.dumps({**C1, "prompt": "  How are you?  "}), "", json.dumps({**C2, "id": "shoes"})], "d")
    assert [item.id for item in ds] == ["d:1", "shoes"]
    assert ds.items[0] == ContrastiveItem("How are you?", "Great, thanks!", "Leave me alone.", id="d:1")
    assert ds.source == "<d>" and ds.kind == "contrastive" and len(ds) == 2
    assert parse_dataset(lines(C1) + "\r\n", "d").items[0].prompt == "How are you?"  # CRLF line ends


def test_a_dataset_checks_its_items():
    with pytest.raises(DatasetError):
        ContrastiveDataset("d", "ab", [ContrastiveItem("p", "a", "b")])
    with pytest.raises(DatasetError):
        ContrastiveDataset("d", "contrastive", [])
    assert isinstance(ContrastiveDataset("d", "ab", [ABItem("q", "a", "b")]).items, tuple)


# ---------------------------------------------------------------- files and the built-in datasets
def test_load_a_file_names_the_file_and_line(tmp_path):
    good = tmp_path / "mine.jsonl"
    good.write_text(lines(C1, C2) + "\n", encoding="utf-8-sig")  # a byte-order mark is allowed
    ds = load_dataset(good)
    assert (ds.name, len(ds), ds.source) == ("mine", 2, str(good))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines(C1, {**C2, "extra": "x"}), encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(str(bad))
    check_message(str(info.value), f"{bad}, line 2: unknown key(s) ['extra']")


def test_load_refusals(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset("weddings")
    check_message(str(info.value), "'weddings' is neither a built-in name", "'weddings_ab'")
    with pytest.raises(FileAccessError):
        load_dataset(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidArgumentError):
        load_dataset(tmp_path)  # a folder
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(C1).encode("utf-8")[:-2] + b'\xe9"}')
    with pytest.raises(DatasetError) as info:
        load_dataset(latin)
    check_message(str(info.value), "not UTF-8 text")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_datasets_load_with_their_counts(name):
    ds = load_dataset(name)
    kind, n = EXPECTED[name]
    assert (ds.name, ds.kind, len(ds)) == (name, kind, n)
    assert f"{n} items" in BUILTIN_DATASETS[name]
    assert len({item.id for item in ds}) == n
    first = [item.prompt if kind == "contrastive" else item.question for item in ds]
    assert len(set(first)) == n  # every prompt / question appears once


def test_builtin_datasets_are_package_data():
    assert sorted(BUILTIN_DATASETS) == sorted(p.stem for p in DATA_DIR.glob("*.jsonl"))
    if tomllib is not None:
        config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        assert "data/*.jsonl" in config["tool"]["setuptools"]["package-data"]["steering"]


def test_weddings_answers_differ_in_topic_only_where_they_should():
    ds = load_dataset("weddings_ab")
    assert topic_fraction([item.matching for item in ds]) == 1.0
    assert topic_fraction([item.not_matching for item in ds]) == 0.0
    assert topic_fraction([item.question for item in ds]) == 0.0


# ---------------------------------------------------------------- split and pairs
def test_split_is_deterministic_disjoint_and_spread():
    ds = load_dataset("sentiment")
    train, test = ds.split(0.2)
    assert (len(train), len(test)) == (72, 18)
    assert ds.split(0.2) == (train, test)
    assert {i.id for i in train}.isdisjoint({i.id for i in test})
    assert {i.id for i in train} | {i.id for i in test} == {i.id for i in ds}
    assert [ds.items.index(i) for i in test][:3] == [4, 9, 14]
    folds = [ds.split(0.2, offset=k)[1] for k in range(5)]
    ids = [i.id for fold in folds for i in fold]
    assert len(ids) == len(set(ids)) == 90  # five disjoint folds that cover the dataset
    assert train.kind == "contrastive" and test.name == "sentiment/test"


@pytest.mark.parametrize("heldout, offset", [(0, 0), (1, 0), (1.5, 0), (float("nan"), 0), ("0.2", 0), (0.2, -1)])
def test_split_refuses_bad_arguments(untyped, heldout, offset):
    with pytest.raises(InvalidArgumentError) as info:
        load_dataset("formality").split(heldout, offset=offset)
    check_message(str(info.value), "heldout=")


def test_split_refuses_an_empty_side():
    ds = ContrastiveDataset("d", "ab", [ABItem("Q?", "a", "b"), ABItem("R?", "a", "b")])
    with pytest.raises(InvalidArgumentError) as info:
        ds.split(0.2)
    check_message(str(info.value), "holds out 0 of the 2 items")


def test_contrastive_pairs():
    ds = parse_dataset(lines({**C1, "prompt": "How are you?  "}, C2), "d")
    pos, neg = ds.pairs()
    assert pos == ["How are you? Great, thanks!", "Nice shoes. Thank you, kind of you!"]
    assert neg == ["How are you? Leave me alone.", "Nice shoes. Mind your own business."]
    pos, neg = ds.pairs(chat=True)
    assert pos[0] == [{"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Great, thanks!"}]
    assert neg[1][1] == {"role": "assistant", "content": "Mind your own business."}


def test_ab_pairs_alternate_the_matching_letter():
    ds = ContrastiveDataset("d", "ab", [ABItem("Q?", "wed", "no"), ABItem("R?", "bride", "yes")])
    pos, neg = ds.pairs()
    assert pos == ["Q?\n(A) wed\n(B) no\nAnswer: (A", "R?\n(A) yes\n(B) bride\nAnswer: (B"]
    assert neg == ["Q?\n(A) wed\n(B) no\nAnswer: (B", "R?\n(A) yes\n(B) bride\nAnswer: (A"]
    pos, neg = ds.pairs(chat=True)
    assert pos[1] == [{"role": "user", "content": "R?\n(A) yes\n(B) bride"}, {"role": "assistant", "content": "(B"}]
    assert neg[1][1]["content"] == "(A"


def test_pairs_feed_direction_extraction(tiny):
    vec = st.mean_diff(tiny, *load_dataset("sentiment").split(0.9)[0].pairs(), layer=1)
    assert tuple(vec.tensor.shape) == (64,)


# ---------------------------------------------------------------- the A/B score
SHORT = ContrastiveDataset("short", "ab", [ABItem(f"Q{i}?", f"wed {i}", f"no {i}") for i in range(5)])


@pytest.fixture(scope="module")
def chat_tiny():
    """A tiny model of this module's own with a chat template (the shared ones stay unchanged)."""
    model = tiny_model()
    model.tokenizer.chat_template = TINY_TEMPLATE
    return model


@pytest.fixture(scope="module")
def direction(chat_tiny):
    return st.mean_diff(chat_tiny, *SHORT.pairs(), layer=1)


def test_ab_prompts_end_with_the_answer_opener(chat_tiny):
    texts, letters = ab_prompts(chat_tiny, SHORT)
    assert texts[0] == chat_prompt(chat_tiny, "Q0?\n(A) wed 0\n(B) no 0") + "("
    assert texts[1].endswith("|a:(") and letters == ["A", "B", "A", "B", "A"]
    plain, _ = ab_prompts(chat_tiny, SHORT, chat=False)
    assert plain[1] == "Q1?\n(A) no 1\n(B) wed 1\nAnswer: ("


def test_ab_score_table(chat_tiny, direction):
    table = ab_score(chat_tiny, SHORT, direction, [0, 3.0])
    assert list(table.columns) == ["item", "id", "coeff", "matching_letter", "p_matching", "logit_diff", "p_letters"]
    assert len(table) == 10 and table["coeff"].tolist() == [0.0] * 5 + [3.0] * 5
    assert table["matching_letter"].tolist()[:5] == ["A", "B", "A", "B", "A"]
    assert table["p_matching"].between(0, 1).all() and table["p_letters"].between(0, 1).all()
    expected = 1 / (1 + (-table["logit_diff"]).map(math.exp))
    assert (table["p_matching"] - expected).abs().max() < 1e-9
    assert st.active_hooks(chat_tiny) == 0


def test_ab_score_matches_a_plain_forward_pass(chat_tiny):
    table = ab_score(chat_tiny, SHORT, chat=False)
    a, b = answer_letter_ids(chat_tiny, "A"), answer_letter_ids(chat_tiny, "B")
    text = ab_prompts(chat_tiny, SHORT, chat=False)[0][1]  # item 1: the matching answer is (B)
    with torch.no_grad():
        logp = torch.log_softmax(chat_tiny(tokenize_prompt(chat_tiny, text).unsqueeze(0))[0, -1].double(), dim=-1)
    diff = float(logp[b].logsumexp(0) - logp[a].logsumexp(0))
    assert table["logit_diff"][1] == pytest.approx(diff, abs=1e-4)


def test_coeff_zero_is_the_unsteered_model_exactly(chat_tiny, direction):
    unsteered = ab_score(chat_tiny, SHORT)
    with_vector = ab_score(chat_tiny, SHORT, direction, 0.0)
    pd.testing.assert_frame_equal(unsteered, with_vector, check_exact=True)
    steered = ab_score(chat_tiny, SHORT, direction, 4.0)
    assert (steered["p_matching"] - unsteered["p_matching"]).abs().max() > 1e-4
    assert st.active_hooks(chat_tiny) == 0


def test_ab_score_with_an_actadd_vector(chat_tiny):
    vec = st.actadd(chat_tiny, "wed", "no", layer=0)
    table = ab_score(chat_tiny, SHORT, vec, [0, 2], batch_size=2)
    assert len(table) == 10 and st.active_hooks(chat_tiny) == 0


def test_ab_score_refusals(untyped, chat_tiny, tiny, direction):
    with pytest.raises(InvalidArgumentError) as info:
        ab_score(chat_tiny, load_dataset("sentiment"))
    check_message(str(info.value), "of kind 'contrastive'", "load_dataset('weddings_ab')")
    with pytest.raises(InvalidArgumentError) as info:
        ab_score(tiny, SHORT, chat=True)  # no chat template
    check_message(str(info.value), "has no chat template")
    with pytest.raises(InvalidArgumentError) as info:
        ab_score(chat_tiny, SHORT, chat=False, system="be brief")
    check_message(str(info.value), "system='be brief' with chat=False")
    with pytest.raises(InvalidCoefficientError):
        ab_score(chat_tiny, SHORT, direction, [0, float("nan")])
    with pytest.raises(InvalidArgumentError) as info:
        ab_score(chat_tiny, SHORT, direction, [2, 2.0])
    check_message(str(info.value), "repeats a value")
    with pytest.raises(InvalidArgumentError) as info:
        ab_score(chat_tiny, SHORT, None, 3.0)
    check_message(str(info.value), "non-zero without a vector")
    with pytest.raises(InvalidArgumentError):
        ab_score(chat_tiny, SHORT, direction, 1.0, batch_size=0)
    with pytest.raises(st.errors.VectorMismatchError):
        ab_score(chat_tiny, SHORT, st.mean_diff(tiny_model("gpt2"), ["a"], ["b"], layer=1), 1.0)
    with pytest.raises(InvalidArgumentError):
        answer_letter_ids(chat_tiny, "C")
    assert st.active_hooks(chat_tiny) == 0 and st.active_hooks(tiny) == 0


def test_ab_summary():
    table = pd.DataFrame({"coeff": [4.0] * 3 + [0.0] * 3, "p_matching": [0.9, 0.8, 0.4, 0.5, 0.2, 0.6],
                          "logit_diff": [2.2, 1.4, -0.4, 0.0, -1.4, 0.4], "p_letters": [0.5] * 6})
    summary = ab_summary(table, n_boot=300, seed=1)
    assert summary["coeff"].tolist() == [0.0, 4.0] and summary["n"].tolist() == [3, 3]
    assert summary["mean_p_matching"].round(6).tolist() == [0.433333, 0.7]
    assert summary["share_matching"].round(6).tolist() == [pytest.approx(1 / 3), pytest.approx(2 / 3)]
    assert (summary["ci_low"] <= summary["mean_p_matching"]).all()
    assert (summary["mean_p_matching"] <= summary["ci_high"]).all()
    pd.testing.assert_frame_equal(summary, ab_summary(table, n_boot=300, seed=1))
    with pytest.raises(InvalidArgumentError) as info:
        ab_summary(table.drop(columns="logit_diff"))
    check_message(str(info.value), "lacks the column(s) ['logit_diff']")


# ---------------------------------------------------------------- a real model
@pytest.mark.slow
def test_weddings_ab_on_smollm(smollm):
    """SmolLM2-135M picks the wedding answer at chance (mean p_matching ≈ 0.5; it mostly follows the letters).

    Measured (chat=True, held-out half, mean_diff of the other half's chat=False pairs at layer 10): unsteered
    0.47 [0.39, 0.55], coeff 8: 0.49 [0.41, 0.57], coeff 20 (addition ≈ half the residual's norm): 0.53 [0.41, 0.66]
    — no effect beyond noise. The test checks the table and the baseline, not an effect.
    """
    train, test = load_dataset("weddings_ab").split(0.5)
    vec = st.mean_diff(smollm, *train.pairs(chat=False), layer=10)
    table = ab_score(smollm, test, vec, [0, 8.0], chat=True)
    assert len(table) == 2 * len(test) == 70 and not table.isna().any().any()
    assert table["p_matching"].between(0, 1).all()
    assert table["p_letters"].mean() > 0.3  # the model does answer with a letter after "("
    summary = ab_summary(table, n_boot=500)
    assert (summary["ci_low"] <= summary["mean_p_matching"]).all()
    assert (summary["mean_p_matching"] <= summary["ci_high"]).all()
    base = summary.set_index("coeff").loc[0.0, "mean_p_matching"]
    assert 0.3 < base < 0.7  # at chance, as measured
    assert st.active_hooks(smollm) == 0


@pytest.mark.slow
def test_sentiment_dataset_steers_smollm_chat_answers(smollm, no_hooks):
    """Real steering from a dataset: a chat-formatted mean difference over the assistant turn (token='response')
    of 72 training pairs makes SmolLM2's answers to 12 held-out prompts warmer (VADER), and the reverse sign colder."""
    from steering.texts import mean_sentiment

    train, test = load_dataset("sentiment").split(0.2)
    vec = st.mean_diff(smollm, train, None, layer=10, chat=True, token="response")
    prompts = [item.prompt for item in test.items][:12]
    kw = dict(max_new_tokens=30, n=2, seed=0, chat=True)
    base = mean_sentiment(st.generate(smollm, prompts, None, **kw))
    warmer = mean_sentiment(st.generate(smollm, prompts, vec, coeff=4.0, positions="all", **kw))
    colder = mean_sentiment(st.generate(smollm, prompts, vec, coeff=-4.0, positions="all", **kw))
    assert warmer > base + 0.3 and colder < base - 0.1, (colder, base, warmer)  # measured: 0.078 / 0.228 / 0.909
    no_hooks(smollm)
