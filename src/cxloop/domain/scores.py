"""Feedback scores: NPS, eNPS, CSAT and CES, with their 95% margins of error.

One implementation for every report, API and CLI, so a score never differs between two
screens. Scores are computed from counts (or sums) rather than from lists of answers, so
the same functions serve a SQL aggregate and an in-memory list.

The margins treat the answers as a random sample of the audience (normal approximation,
z = 1.96): for NPS each answer is +1 (promoter), 0 (passive) or -1 (detractor), whose mean
is the score / 100 and whose variance is p + d - (p - d)^2, p and d the promoter and
detractor shares; CSAT is a proportion; CES a mean with the sample standard deviation.
With few answers the approximation is rough, which is why every score carries its count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Z_95 = 1.959963984540054  # the two-sided 95% quantile of the normal distribution
NPS_RANGE = (0, 10)
CSAT_RANGE = (1, 5)
CES_RANGE = (1, 7)
Kind = Literal["promoter", "passive", "detractor"]


class ScoreOutOfRange(ValueError):
    """An answer outside its survey type's scale."""


def check_score(score: float, low: int, high: int, what: str = "score") -> int:
    """The answer as a whole number on its scale, or a clear error."""
    if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
        raise ScoreOutOfRange(f"{what}: must be a whole number from {low} to {high}")
    if score != int(score) or not low <= score <= high:
        raise ScoreOutOfRange(f"{what}: must be a whole number from {low} to {high}, not {score}")
    return int(score)


def nps_kind(score: float) -> Kind:
    """Promoters answer 9-10, passives 7-8, detractors 0-6."""
    value = check_score(score, *NPS_RANGE)
    if value >= 9:
        return "promoter"
    return "passive" if value >= 7 else "detractor"


class _Score:
    """What every score has: a value, its standard error, and so a margin of error."""

    @property
    def score(self) -> float | None:
        raise NotImplementedError

    @property
    def standard_error(self) -> float | None:
        raise NotImplementedError

    @property
    def margin_of_error(self) -> float | None:
        """Half the width of the 95% confidence interval, in the score's unit."""
        error = self.standard_error
        return None if error is None else Z_95 * error


@dataclass(frozen=True)
class Nps(_Score):
    """A Net Promoter Score (also eNPS) from -100 to +100; ``None`` without answers."""

    promoters: int
    passives: int
    detractors: int

    @classmethod
    def of(cls, scores: Iterable[float]) -> Nps:
        counts = {"promoter": 0, "passive": 0, "detractor": 0}
        for score in scores:
            counts[nps_kind(score)] += 1
        return cls(counts["promoter"], counts["passive"], counts["detractor"])

    @property
    def responses(self) -> int:
        return self.promoters + self.passives + self.detractors

    @property
    def score(self) -> float | None:
        if not self.responses:
            return None
        return 100.0 * (self.promoters - self.detractors) / self.responses

    @property
    def standard_error(self) -> float | None:
        """Of the score, in points."""
        n = self.responses
        if not n:
            return None
        p, d = self.promoters / n, self.detractors / n
        variance = max(p + d - (p - d) ** 2, 0.0)
        return 100.0 * math.sqrt(variance / n)


@dataclass(frozen=True)
class Proportion(_Score):
    """CSAT: the share (in %) of answers that are satisfied (4-5 of 1-5)."""

    satisfied: int
    responses: int

    @classmethod
    def csat(cls, scores: Iterable[float]) -> Proportion:
        values = [check_score(s, *CSAT_RANGE) for s in scores]
        return cls(sum(1 for v in values if v >= 4), len(values))

    @property
    def score(self) -> float | None:
        return 100.0 * self.satisfied / self.responses if self.responses else None

    @property
    def standard_error(self) -> float | None:
        if not self.responses:
            return None
        p = self.satisfied / self.responses
        return 100.0 * math.sqrt(p * (1 - p) / self.responses)


@dataclass(frozen=True)
class Mean(_Score):
    """CES: the mean answer (1-7), from the count, sum and sum of squares of the answers."""

    responses: int
    total: float
    squares: float

    @classmethod
    def ces(cls, scores: Iterable[float]) -> Mean:
        values = [check_score(s, *CES_RANGE) for s in scores]
        return cls(len(values), float(sum(values)), float(sum(v * v for v in values)))

    @property
    def score(self) -> float | None:
        return self.total / self.responses if self.responses else None

    @property
    def standard_error(self) -> float | None:
        n = self.responses
        if n < 2:
            return None if n == 0 else 0.0
        variance = max((self.squares - self.total * self.total / n) / (n - 1), 0.0)
        return math.sqrt(variance / n)


@dataclass(frozen=True)
class Difference:
    """Whether two groups' scores differ by more than chance: a two-sided z-test."""

    difference: float
    standard_error: float
    p_value: float

    @property
    def significant(self) -> bool:
        """At the 5% level."""
        return self.p_value < 0.05


def compare(a: Nps | Proportion | Mean, b: Nps | Proportion | Mean) -> Difference | None:
    """``a``'s score minus ``b``'s, with its p-value; ``None`` when either has no answers
    (or neither varies, so there is nothing to test)."""
    score_a, score_b = a.score, b.score
    error_a, error_b = a.standard_error, b.standard_error
    if score_a is None or score_b is None or error_a is None or error_b is None:
        return None
    error = math.hypot(error_a, error_b)
    if error == 0:
        return None
    difference = score_a - score_b
    z = abs(difference) / error
    return Difference(difference, error, math.erfc(z / math.sqrt(2)))
