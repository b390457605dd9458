"""Reference texts and the text metrics computed on completions.

This module is the one owner of the package's fixed texts — the paper's wedding-word list,
the neutral sentences used as "unrelated" text, the report's default prompt openings — and
of the two measurements made on sampled completions: the fraction that mention a topic and
their VADER sentiment.

Example:
    >>> from steering.texts import WEDDING_WORDS, mean_sentiment, topic_fraction
    >>> len(WEDDING_WORDS), WEDDING_WORDS[:3]
    (9, ('wedding', 'weddings', 'wed'))
    >>> topic_fraction(["The bride smiled.", "A sunny day."])
    0.5
    >>> mean_sentiment(["I love this, wonderful!"]) > 0.5
    True
"""

import functools
import re
from typing import Any, Sequence

__all__ = [
    "WEDDING_WORDS",
    "NEUTRAL_TEXTS",
    "DEFAULT_REPORT_PROMPTS",
    "topic_fraction",
    "sentiment_scores",
    "mean_sentiment",
]

#: The paper's wedding-word list (Turner et al., topic-steering experiment).
WEDDING_WORDS = ("wedding", "weddings", "wed", "marry", "married", "marriage", "bride", "groom", "honeymoon")

#: Short everyday sentences with no particular topic or sentiment: the default
#: "unrelated" text for side-effect measures and norm baselines.
NEUTRAL_TEXTS = [
    "The train to the city leaves every morning at half past seven.",
    "She opened the window and looked at the garden below.",
    "The report lists the results of the survey in three tables.",
    "He bought bread, cheese and apples at the market on Saturday.",
    "The museum is closed on Mondays and open late on Thursdays.",
    "Water boils at a lower temperature high in the mountains.",
    "The committee will meet again next week to discuss the budget.",
    "They walked along the river until the path turned into the woods.",
]

#: Neutral prompt openings the standard report (``steer report``) measures steering on.
DEFAULT_REPORT_PROMPTS = [
    "I went up to my friend and said",
    "Yesterday my neighbour told me that",
    "The best part of the day was",
    "She looked at the letter and",
]


@functools.lru_cache(maxsize=32)
def _word_pattern(words: tuple[str, ...]) -> "re.Pattern[str]":
    """A case-insensitive whole-word pattern matching any of ``words``."""
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


def topic_fraction(texts: Sequence[str], words: Sequence[str] = WEDDING_WORDS) -> float:
    """Fraction of ``texts`` containing any of ``words`` as a whole word (case-insensitive).

    Args:
        texts: The texts (e.g. sampled completions).
        words: The topic words (default :data:`WEDDING_WORDS`).

    Returns:
        A float in [0, 1]; 0.0 for no texts.

    Example:
        >>> topic_fraction(["We got married!", "A sunny day", "weddingcake"], ["married", "wedding"])
        0.3333333333333333
        >>> topic_fraction(["the bride smiled", "nothing here", "We married", "wedded"])
        0.5
    """
    pattern = _word_pattern(tuple(words))
    return sum(bool(pattern.search(t)) for t in texts) / max(len(texts), 1)


@functools.lru_cache(maxsize=1)
def _analyzer() -> Any:
    """The VADER analyzer, built once (it reads its lexicon from disk)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_scores(texts: Sequence[str]) -> list[float]:
    """VADER compound sentiment (−1 … +1) of each text.

    Args:
        texts: The texts.

    Returns:
        One score per text, in order.

    Example:
        >>> [round(s, 2) for s in sentiment_scores(["I love it!", "It is a table.", "I hate it."])]
        [0.67, 0.0, -0.57]
    """
    analyzer = _analyzer()
    return [analyzer.polarity_scores(t)["compound"] for t in texts]


def mean_sentiment(texts: Sequence[str]) -> float:
    """Mean VADER compound sentiment (−1 … +1) of ``texts``; 0.0 for no texts.

    Example:
        >>> mean_sentiment(["I love this, wonderful!"]) > 0.5 > mean_sentiment(["I hate this, awful."])
        True
    """
    return sum(sentiment_scores(texts)) / max(len(texts), 1)
