"""Relative importance of drivers of one outcome, with bootstrap confidence intervals.

Relative weights (Johnson, 2000) split a linear model's R² among correlated drivers:
the drivers are replaced by their closest orthogonal counterparts, the outcome is regressed
on those, and each driver gets back the share of R² of the counterparts it is made of.
Unlike raw coefficients the shares stay sensible when drivers move together (a customer
happy with delivery is often happy with installation), they are never negative, and they
add up to R², so "delivery explains 31 % of what we can explain" is a fair sentence.

A driver measured for only some customers (a touchpoint not everyone passes) counts at
its mean for the others, so it adds nothing for them: its importance is what it explains
across all customers, and a touchpoint few pass weighs less, as it does for the outcome as
a whole. (Pairwise-complete correlations would read each touchpoint among its own
customers, but two touchpoints few customers share then give a matrix no data could have,
and R² runs to 1.) The direction (raises or lowers the outcome) is the sign of the
standardised regression coefficient from the same correlations.

Confidence intervals come from resampling customers with replacement and recomputing
everything; a driver is *significant* when its coefficient's interval excludes zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
_EPS = 1e-12
_TOLERANCE = 1e-8  # eigenvalues below this share of the largest count as zero


@dataclass(frozen=True)
class Fit:
    """One fit: R², each driver's share of it (0..1, summing to 1) and its coefficient."""

    r_squared: float
    shares: Floats
    coefficients: Floats


@dataclass(frozen=True)
class Importance:
    fit: Fit
    r_squared_ci: tuple[float, float]
    share_ci: Floats  # (drivers, 2): the 2.5 and 97.5 percentiles
    coefficient_ci: Floats
    resamples: int


def correlations(values: Floats) -> Floats:
    """The correlation matrix of the columns, a missing value (NaN) taken at its column's
    mean, so it adds nothing to any covariance; 0 for a column that does not vary."""
    means = np.nanmean(values, axis=0)
    filled = np.where(np.isnan(values), means, values) - means
    scale = np.sqrt((filled * filled).sum(axis=0))
    scale[scale < _EPS] = np.inf
    unit = filled / scale
    corr = unit.T @ unit
    np.fill_diagonal(corr, 1.0)
    return np.asarray(np.clip(corr, -1.0, 1.0), dtype=np.float64)


def relative_weights(corr: Floats) -> Fit:
    """Johnson's relative weights from the correlation matrix of [outcome, drivers...]."""
    rxx, rxy = corr[1:, 1:], corr[1:, 0]
    values, vectors = np.linalg.eigh(rxx)
    # Directions the drivers do not span (drivers that move exactly together) are left
    # out, as a pseudo-inverse does, rather than blown up by dividing by nearly zero.
    kept = values > _TOLERANCE * max(float(values.max()), _EPS)
    values = np.where(kept, values, 0.0)
    inverse_root = np.where(kept, 1.0 / np.sqrt(np.where(kept, values, 1.0)), 0.0)
    root = vectors @ np.diag(np.sqrt(values)) @ vectors.T  # the drivers from orthogonal parts
    beta_orthogonal = vectors @ np.diag(inverse_root) @ vectors.T @ rxy
    raw = (root**2) @ (beta_orthogonal**2)
    r_squared = float(min(max(raw.sum(), 0.0), 1.0))
    shares = raw / raw.sum() if raw.sum() > _EPS else np.zeros_like(raw)
    coefficients = vectors @ np.diag(inverse_root**2) @ vectors.T @ rxy
    return Fit(r_squared=r_squared, shares=shares, coefficients=coefficients)


def importance(
    outcome: Floats, drivers: Floats, *, resamples: int = 200, seed: int = 0
) -> Importance:
    """The fit on all rows and its bootstrap intervals. ``outcome`` has no missing values;
    ``drivers`` (rows, drivers) may hold NaN where a driver was not measured."""
    data = np.column_stack([outcome, drivers])
    fit = relative_weights(correlations(data))
    rng = np.random.default_rng(seed)
    rows = len(outcome)
    r2 = np.empty(resamples)
    shares = np.empty((resamples, drivers.shape[1]))
    coefficients = np.empty_like(shares)
    for b in range(resamples):
        sample = data[rng.integers(0, rows, rows)]
        again = relative_weights(correlations(sample))
        r2[b], shares[b], coefficients[b] = again.r_squared, again.shares, again.coefficients
    low, high = 2.5, 97.5
    return Importance(
        fit=fit,
        r_squared_ci=(float(np.percentile(r2, low)), float(np.percentile(r2, high))),
        share_ci=np.percentile(shares, [low, high], axis=0).T,
        coefficient_ci=np.percentile(coefficients, [low, high], axis=0).T,
        resamples=resamples,
    )
