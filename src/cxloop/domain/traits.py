"""Which traits are typed customer fields, and how their values are checked.

Identify traits and imported customer columns share these names, so a trait called
``gender`` lands in the typed column whether it came from an SDK or from a CSV file.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

TYPED_FIELDS = (
    "name",
    "email",
    "gender",
    "birth_year",
    "age_band",
    "education",
    "city",
    "region",
    "country",
    "profession",
    "relationship_status",
    "income_band",
    "channel",
)
# Segment's reserved traits that carry the same meaning under another name.
ALIASES = {
    "firstName": None,
    "lastName": None,
    "birthday": "birth_year",
    "age": None,
    "title": "profession",
    "acquisition_channel": "channel",
    "income": "income_band",
    "marital_status": "relationship_status",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_GENDERS = {"f": "female", "female": "female", "m": "male", "male": "male"}


def normalise_gender(value: str) -> str:
    text = value.strip().lower()
    return _GENDERS.get(text, text)


def age_band_for(age: int) -> str:
    """Bands used across reports; wide enough to keep segments readable."""
    for upper, label in (
        (17, "<18"),
        (24, "18-24"),
        (34, "25-34"),
        (44, "35-44"),
        (54, "45-54"),
        (64, "55-64"),
    ):
        if age <= upper:
            return label
    return "65+"


def split_traits(
    traits: dict[str, Any], *, now: datetime | None = None
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, str]]]:
    """Typed fields, free-form traits, and (field, reason) problems for values kept as traits.

    A bad typed value (a birth year of "soon") does not refuse the whole message: the value is
    kept as a free trait and the problem is reported, so nothing the customer said is lost.
    """
    typed: dict[str, Any] = {}
    free: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    year_now = (now or datetime.now(UTC)).year
    for key, value in traits.items():
        if value is None:
            continue
        field = key if key in TYPED_FIELDS else ALIASES.get(key)
        if field is None:
            if key == "firstName" or key == "lastName":
                free[key] = value
                continue
            if key == "age" and isinstance(value, int | float) and 0 < value < 130:
                typed.setdefault("age_band", age_band_for(int(value)))
                typed.setdefault("birth_year", year_now - int(value))
            free[key] = value
            continue
        try:
            typed[field] = _typed_value(field, value, year_now)
        except ValueError as exc:
            problems.append((f"traits.{key}", str(exc)))
            free[key] = value
    if "name" not in typed and ("firstName" in traits or "lastName" in traits):
        full = " ".join(str(traits[k]) for k in ("firstName", "lastName") if traits.get(k))
        if full:
            typed["name"] = full[:200]
    return typed, free, problems


def _typed_value(field: str, value: Any, year_now: int) -> Any:
    if field == "birth_year":
        if isinstance(value, str) and len(value) >= 4 and value[:4].isdigit():
            value = int(value[:4])
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"birth year must be a year, got {value!r}")
        year = int(value)
        if not 1900 <= year <= year_now:
            raise ValueError(f"birth year must be between 1900 and {year_now}, got {year}")
        return year
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"must be text, got {type(value).__name__}")
    text = str(value).strip()
    if field == "email":
        if not _EMAIL.match(text):
            raise ValueError(f"{text!r} is not an e-mail address")
        return text.lower()[:320]
    if field == "gender":
        return normalise_gender(text)[:40]
    return text[:200]
