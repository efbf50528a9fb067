"""Recurring themes in comments: what customers keep bringing up, per touchpoint or stage.

Sentiment says how a group's comments feel; themes say what they are about. A theme is a
key phrase (one word or two, lower-cased, English stop words left out) that at least two
comments of a group use. Within a group, phrases are ranked by class-based TF-IDF (as in
BERTopic): how often the group uses a phrase, weighed down when every group uses it, so
"late delivery" rises at the delivery touchpoint even though "service" is said everywhere.
Overall, or with a single group, there is nothing to weigh against, so the count ranks.

Tokenising, stop words, bigrams and the comments-by-phrases matrix are scikit-learn's
CountVectorizer; comments stream through it a page at a time and only the few shown as
examples are read again, so a report over 100,000 comments takes a couple of seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import Connection, null, select

from cxloop.feedback.responses import responses_t
from cxloop.feedback.surveys import get_survey

ThemesBy = Literal["touchpoint", "stage"]
THEME_GROUPS: tuple[ThemesBy, ...] = ("touchpoint", "stage")
MAX_TOP = 100
MIN_COMMENTS = 2  # one comment is an anecdote, not a theme
_PAGE = 2000
# Words of two or more characters. A word cut by an apostrophe ("don't", "I've") is left
# out, not counted as its stump ("don", "ve"); a possessive "'s" keeps its word.
_TOKEN = r"(?u)(?<!['\u2019])\b\w\w+\b(?!['\u2019](?!s\b)\w)"


class _Comments:
    """What each comment needs beyond its words, kept in columns while its text streams
    through the vectorizer and is let go."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.groups: list[int] = []
        self.sentiments: list[float] = []
        self.scores: list[float] = []
        self.moments: list[float] = []
        self.keys: dict[Any, int] = {}
        self.done = False

    def texts(self, rows: Iterable[Any]) -> Iterator[str]:
        nan = math.nan
        for row in rows:
            self.ids.append(row.id)
            self.groups.append(self.keys.setdefault(row.key, len(self.keys)))
            self.sentiments.append(nan if row.sentiment is None else row.sentiment)
            self.scores.append(nan if row.score is None else row.score)
            moment = row.submitted_at
            aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite's are naive
            self.moments.append(aware.timestamp())
            yield row.comment
        self.done = True


def themes_report(
    conn: Connection,
    *,
    survey_id: int | None = None,
    by: ThemesBy | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    top: int = 10,
    examples: int = 3,
) -> dict[str, Any]:
    """The recurring phrases of the comments overall and per group: ``{"comments",
    "themes": [{"phrase", "comments", "share", "mean_sentiment", "mean_score",
    "examples": [{"id", "score", "comment", "sentiment"}]}], "groups"?: [{"key",
    "comments", "themes"}]}``, examples the most recent comments using the phrase."""
    if not 1 <= top <= MAX_TOP:
        raise ValueError(f"top: give 1 to {MAX_TOP} themes, not {top}")
    if examples < 0:
        raise ValueError(f"examples: give 0 or more, not {examples}")
    if by is not None and by not in THEME_GROUPS:
        raise ValueError(f"by: must be one of {', '.join(THEME_GROUPS)}, not {by!r}")
    r = responses_t.c
    key = {None: null(), "touchpoint": r.touchpoint,
           "stage": r.stage_model + ":" + r.stage}[by]  # fmt: skip
    query = select(r.id, r.comment, r.sentiment, r.score, r.submitted_at, key.label("key"))
    query = query.where(r.comment.is_not(None))
    if survey_id is not None:
        get_survey(conn, survey_id)
        query = query.where(r.survey_id == survey_id)
    if start is not None:
        query = query.where(r.submitted_at >= start)
    if end is not None:
        query = query.where(r.submitted_at < end)
    found = _Comments()
    rows = conn.execute(query.execution_options(yield_per=_PAGE))
    theming = _Theming(found, rows, top, examples)
    out: dict[str, Any] = {"comments": len(found.ids), "themes": theming.overall()}
    if by is not None:
        out["groups"] = [
            {"key": label, "comments": int(theming.sizes[code]),
             "themes": theming.of_group(code)}
            for label, code in sorted(found.keys.items(),
                                      key=lambda item: (item[0] is None, str(item[0])))
        ]  # fmt: skip
    theming.fill_examples(conn)
    return out


class _Theming:
    """Which comments use which phrases, held as plain arrays: the phrases' counts per
    group, and for each phrase the comments that use it."""

    def __init__(self, found: _Comments, rows: Iterable[Any], top: int, examples: int):
        self.top, self.examples = top, examples
        indptr, columns, self.phrases = _count(found, rows)
        self.ids = np.asarray(found.ids, dtype=np.int64)
        self.codes = np.asarray(found.groups, dtype=np.int64)
        self.sentiments = np.asarray(found.sentiments, dtype=np.float64)
        self.scores = np.asarray(found.scores, dtype=np.float64)
        self.moments = np.asarray(found.moments, dtype=np.float64)
        self.groups = max(len(found.keys), 1)
        self.sizes = np.bincount(self.codes, minlength=self.groups)
        users = np.repeat(np.arange(len(self.ids)), np.diff(indptr))
        width = len(self.phrases)
        counts = np.bincount(columns, minlength=width)
        # For each phrase, the comments using it: the matrix read by column.
        self.users = users[np.argsort(columns, kind="stable")]
        self.starts = np.concatenate(([0], np.cumsum(counts)))
        # Per group and phrase, how many comments use it, from one sort of (group, phrase).
        pairs, used = np.unique(self.codes[users] * width + columns, return_counts=True)
        pair_groups, self.pair_phrases = np.divmod(pairs, max(width, 1))
        self.pair_counts = used
        self.bounds = np.searchsorted(pair_groups, np.arange(self.groups + 1))
        self.overall_counts = counts
        # c-TF-IDF's idf: average comments per group against the phrase's comments overall.
        self.idf = np.log1p((len(self.ids) / self.groups) / np.maximum(counts, 1))
        # "broadband broadband" is a stutter, not a phrase.
        self.usable = np.array([_not_repeated(p) for p in self.phrases], dtype=bool)
        self.shown: list[dict[str, Any]] = []

    def overall(self) -> list[dict[str, Any]]:
        columns = np.arange(len(self.phrases))
        return self._ranked(columns, self.overall_counts, None, weigh=False)

    def of_group(self, code: int) -> list[dict[str, Any]]:
        lo, hi = self.bounds[code], self.bounds[code + 1]
        columns, used = self.pair_phrases[lo:hi], self.pair_counts[lo:hi]
        return self._ranked(columns, used, code, weigh=self.groups > 1)

    def _ranked(
        self, columns: Any, used: Any, code: int | None, *, weigh: bool
    ) -> list[dict[str, Any]]:
        keep = (used >= MIN_COMMENTS) & self.usable[columns]
        columns, used = columns[keep], used[keep].astype(np.float64)
        weight = used * self.idf[columns] if weigh else used
        order = np.lexsort((columns, -used, -weight))[: self.top]  # ties: alphabetical
        size = len(self.ids) if code is None else int(self.sizes[code])
        return [self._theme(int(columns[i]), code, size) for i in order]

    def _theme(self, column: int, code: int | None, size: int) -> dict[str, Any]:
        users = self.users[self.starts[column] : self.starts[column + 1]]
        if code is not None:
            users = users[self.codes[users] == code]
        scores = self.scores[users]
        scores = scores[~np.isnan(scores)]
        sentiments = self.sentiments[users]
        sentiments = sentiments[~np.isnan(sentiments)]
        latest = users[np.lexsort((self.ids[users], self.moments[users]))[::-1]]
        shown = [
            {"id": int(self.ids[i]), "score": _number(self.scores[i]), "comment": None,
             "sentiment": _number(self.sentiments[i])}
            for i in latest[: self.examples]
        ]  # fmt: skip
        self.shown.extend(shown)
        return {
            "phrase": str(self.phrases[column]),
            "comments": len(users),
            "share": round(len(users) / size, 4),
            "mean_sentiment": round(float(sentiments.mean()), 4) if len(sentiments) else None,
            "mean_score": round(float(scores.mean()), 2) if len(scores) else None,
            "examples": shown,
        }

    def fill_examples(self, conn: Connection) -> None:
        """The examples' text, read again by id: few, where the comments were many."""
        wanted = sorted({e["id"] for e in self.shown})
        texts: dict[int, str] = {}
        for at in range(0, len(wanted), 500):
            chunk = wanted[at : at + 500]
            query = select(responses_t.c.id, responses_t.c.comment)
            for row in conn.execute(query.where(responses_t.c.id.in_(chunk))):
                texts[row.id] = row.comment
        for example in self.shown:
            example["comment"] = texts.get(example["id"])


def _count(found: _Comments, rows: Iterable[Any]) -> tuple[Any, Any, list[str]]:
    """Which comments use which phrases (a phrase once per comment, only phrases of at
    least two comments), as the row pointers and columns of a sparse matrix."""
    # Imported here: scikit-learn takes a second to load, which every command would pay.
    from sklearn.feature_extraction.text import CountVectorizer  # type: ignore[import-untyped]

    vectorizer = CountVectorizer(
        token_pattern=_TOKEN, stop_words="english", ngram_range=(1, 2), binary=True,
        min_df=MIN_COMMENTS, dtype=np.int32,
    )  # fmt: skip
    try:
        matrix = vectorizer.fit_transform(found.texts(rows))
    except ValueError:  # no phrase left: no comments, or none repeated
        if not found.done:
            raise
        return np.zeros(len(found.ids) + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), []
    matrix = matrix.tocsr()
    return matrix.indptr, matrix.indices.astype(np.int64), list(vectorizer.get_feature_names_out())


def _not_repeated(phrase: str) -> bool:
    first, _, second = phrase.partition(" ")
    return first != second


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
