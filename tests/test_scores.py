"""The feedback scores' arithmetic, checked against its definitions on any answers."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxloop.domain.scores import Mean, Nps, Proportion, ScoreOutOfRange, compare, nps_kind

nps_answers = st.lists(st.integers(0, 10), max_size=300)


@given(nps_answers)
def test_nps_is_promoter_share_minus_detractor_share(scores: list[int]) -> None:
    nps = Nps.of(scores)
    assert nps.responses == len(scores)
    if not scores:
        assert nps.score is None and nps.margin_of_error is None
        return
    promoters = sum(s >= 9 for s in scores) / len(scores)
    detractors = sum(s <= 6 for s in scores) / len(scores)
    assert nps.score == pytest.approx(100 * (promoters - detractors))
    assert -100 <= nps.score <= 100
    # The margin is 1.96 standard errors of the mean of +1/0/-1 per answer.
    values = np.array([1 if s >= 9 else -1 if s <= 6 else 0 for s in scores], dtype=float)
    expected = 1.959963984540054 * 100 * values.std() / math.sqrt(len(values))
    assert nps.margin_of_error == pytest.approx(expected, abs=1e-9)


@given(nps_answers, st.integers(0, 10))
def test_one_more_promoter_never_lowers_the_score(scores: list[int], extra: int) -> None:
    before, after = Nps.of(scores), Nps.of([*scores, max(extra, 9)])
    assert before.score is None or (after.score is not None and after.score >= before.score)


@given(st.integers(1, 50), st.integers(0, 50), st.integers(1, 50), st.integers(2, 9))
def test_the_margin_shrinks_with_the_root_of_the_sample(p: int, q: int, d: int, k: int) -> None:
    small, large = Nps(p, q, d), Nps(p * k, q * k, d * k)
    assert small.score == pytest.approx(large.score)
    assert small.margin_of_error is not None and large.margin_of_error is not None
    assert large.margin_of_error == pytest.approx(small.margin_of_error / math.sqrt(k))


def test_the_95_percent_interval_covers_the_true_score_about_95_times_in_100() -> None:
    rng = np.random.default_rng(2026)
    truth = 100 * (0.45 - 0.25)
    covered = 0
    trials = 2000
    for _ in range(trials):
        draws = rng.choice([10, 8, 3], size=400, p=[0.45, 0.30, 0.25])
        nps = Nps.of(draws.tolist())
        assert nps.score is not None and nps.margin_of_error is not None
        covered += abs(nps.score - truth) <= nps.margin_of_error
    assert 0.93 <= covered / trials <= 0.97


@given(st.lists(st.integers(1, 5), max_size=200))
def test_csat_is_the_share_of_fours_and_fives(scores: list[int]) -> None:
    csat = Proportion.csat(scores)
    if not scores:
        assert csat.score is None
        return
    assert csat.score == pytest.approx(100 * sum(s >= 4 for s in scores) / len(scores))
    assert 0 <= csat.score <= 100


@given(st.lists(st.integers(1, 7), min_size=2, max_size=200))
def test_ces_is_the_mean_with_the_sample_standard_error(scores: list[int]) -> None:
    ces = Mean.ces(scores)
    assert ces.score == pytest.approx(float(np.mean(scores)))
    expected = float(np.std(scores, ddof=1)) / math.sqrt(len(scores))
    assert ces.standard_error == pytest.approx(expected, abs=1e-9)


@given(nps_answers, nps_answers)
def test_a_difference_is_symmetric_and_its_p_value_a_probability(
    a: list[int], b: list[int]
) -> None:
    ab, ba = compare(Nps.of(a), Nps.of(b)), compare(Nps.of(b), Nps.of(a))
    assert (ab is None) == (ba is None)
    if ab is not None and ba is not None:
        assert ab.difference == pytest.approx(-ba.difference)
        assert ab.p_value == pytest.approx(ba.p_value)
        assert 0 <= ab.p_value <= 1


def test_large_gaps_are_significant_and_small_ones_are_not() -> None:
    loved, hated = Nps(600, 200, 200), Nps(200, 200, 600)  # +40 against -40
    gap = compare(loved, hated)
    assert gap is not None and gap.significant and gap.difference == pytest.approx(80)
    close = compare(Nps(31, 40, 29), Nps(30, 40, 30))  # +2 against 0, 100 answers each
    assert close is not None and not close.significant


@pytest.mark.parametrize("score", [-1, 11, 7.5, float("nan"), True, "9"])
def test_answers_off_the_scale_are_refused_with_the_scale(score: object) -> None:
    with pytest.raises(ScoreOutOfRange, match="from 0 to 10"):
        nps_kind(score)  # type: ignore[arg-type]


def test_the_real_nps_files_ratings_are_our_classes(shared_data: Path) -> None:
    """The public NPS verbatims label each answer: our classes agree on every scored row."""
    with (shared_data / "nps-verbatims.csv").open(encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    scored = [r for r in rows if r["NPS_SCORE"].strip()]
    assert len(scored) > 2000 and len(scored) < len(rows)  # some rows carry no score
    for row in scored:
        assert nps_kind(int(row["NPS_SCORE"])) == row["NPS_RATING"].lower()
    nps = Nps.of(int(r["NPS_SCORE"]) for r in scored)
    assert nps.score is not None and nps.margin_of_error is not None
    assert nps.score < 0 < nps.margin_of_error < 5  # mostly detractors, a tight interval
