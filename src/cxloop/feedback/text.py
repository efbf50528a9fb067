"""What comments say: sentiment, offline.

VADER (a lexicon and rules tuned for short, informal text such as reviews and survey
comments) scores each comment from -1 (most negative) to +1, with no network and no model
to download, so scores are the same on every machine and every run.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(comment: str) -> float:
    """VADER's compound score of the comment, -1 to +1."""
    return round(float(_analyzer().polarity_scores(comment)["compound"]), 4)
