"""Reference texts and text metrics (steering.texts): the values the sweeps and the demo report."""

import re

import pytest

import steering.texts as texts
from steering.texts import (DEFAULT_REPORT_PROMPTS, NEUTRAL_TEXTS, WEDDING_WORDS, mean_sentiment, sentiment_scores,
                            topic_fraction)


def test_wedding_words_are_the_papers_nine():
    assert WEDDING_WORDS == ("wedding", "weddings", "wed", "marry", "married", "marriage", "bride", "groom",
                             "honeymoon")


def test_reference_texts():
    assert len(NEUTRAL_TEXTS) == 8 and NEUTRAL_TEXTS[0].startswith("The train to the city")
    assert len(DEFAULT_REPORT_PROMPTS) == 4 and DEFAULT_REPORT_PROMPTS[0] == "I went up to my friend and said"
    assert all(isinstance(t, str) and t.strip() for t in NEUTRAL_TEXTS + DEFAULT_REPORT_PROMPTS)


def test_topic_fraction_whole_words_any_case():
    assert topic_fraction(["The wedding was lovely", "They wed in May", "wedged in", "BRIDE!"]) == 0.75
    assert topic_fraction(["the bride smiled", "nothing here", "We married", "wedded"]) == 0.5
    assert topic_fraction(["We got married!", "A sunny day", "weddingcake"], ["married", "wedding"]) == 1 / 3
    assert topic_fraction([]) == 0.0


def test_topic_fraction_escapes_words():
    assert topic_fraction(["costs $5 today", "costs 5 today"], ["$5", "c++"]) == 0.0  # \b never matches before "$"
    assert topic_fraction(["I like c.d", "I like cxd"], ["c.d"]) == 0.5  # "." is literal


def test_topic_fraction_matches_the_old_demo_regex():
    old = re.compile(r"\b(" + "|".join(WEDDING_WORDS) + r")\b", re.IGNORECASE)
    samples = ["a Wedding day", "honeymoons", "groom.", "Marriage!", "wedlock", "", "We wed."]
    assert topic_fraction(samples) == sum(bool(old.search(t)) for t in samples) / len(samples)


def test_sentiment_matches_vader_and_the_analyzer_is_built_once():
    vader = pytest.importorskip("vaderSentiment.vaderSentiment")
    samples = ["I love this, wonderful!", "I hate this, awful.", "It is a table.", ""]
    expected = [vader.SentimentIntensityAnalyzer().polarity_scores(t)["compound"] for t in samples]
    texts._analyzer.cache_clear()
    assert sentiment_scores(samples) == expected
    assert mean_sentiment(samples) == sum(expected) / len(expected)
    sentiment_scores(["again"])
    assert texts._analyzer.cache_info().misses == 1
    assert mean_sentiment([]) == 0.0 and sentiment_scores([]) == []
