"""Deciding, from the file's columns and the user's options, where each value goes.

A plan is made once per file and checked completely before reading: every mistake that
can be seen from the header alone is reported here, naming what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cxloop.ingest.files_model import BAG_COLUMN, ImportInputError, ImportKind, fields_for

_LIST_LIMIT = 40
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class Binding:
    """One output value: read from a source column, or the same constant on every row."""

    column: str | None = None
    constant: str | None = None


@dataclass(frozen=True)
class Plan:
    kind: ImportKind
    fields: Mapping[str, Binding]  # canonical field -> binding; absent fields stay null
    bag: tuple[tuple[str, Binding], ...]  # properties / traits keys, in output order
    # A column named "properties" / "traits" holding objects (JSONL, Parquet structs):
    # its keys are merged into the bag instead of nesting the object under its own name.
    bag_base: str | None = None


def allowed_targets(kind: ImportKind) -> str:
    return ", ".join([*fields_for(kind), f"{BAG_COLUMN[kind]}.NAME"])


def bag_key(kind: ImportKind, target: str) -> str | None:
    """The key for ``properties.NAME`` / ``traits.NAME`` targets, else None."""
    prefix = BAG_COLUMN[kind] + "."
    if target.startswith(prefix) and len(target) > len(prefix):
        return target[len(prefix) :]
    return None


def check_target(kind: ImportKind, target: str) -> None:
    if target not in fields_for(kind) and bag_key(kind, target) is None:
        raise ImportInputError(
            target, f"is not a field of {kind}; allowed: {allowed_targets(kind)}"
        )


def _column_list(columns: Sequence[str]) -> str:
    shown = ", ".join(columns[:_LIST_LIMIT])
    more = len(columns) - _LIST_LIMIT
    return shown + (f" and {more} more" if more > 0 else "")


def make_plan(
    kind: ImportKind,
    columns: Sequence[str],
    mapping: Mapping[str, str],
    constants: Mapping[str, str],
    file_name: str,
) -> Plan:
    """Explicit ``--map`` first, then ``--set``, then columns named like a field map
    themselves; every column left over is kept in the properties / traits object."""
    bound: dict[str, Binding] = {}
    for source, target in mapping.items():
        check_target(kind, target)
        if source not in columns:
            raise ImportInputError(
                target,
                f"--map {source}={target}: {file_name} has no column {source!r}; "
                f"its columns are: {_column_list(columns)}",
            )
        if target in bound:
            raise ImportInputError(
                target, f"is mapped from both {bound[target].column!r} and {source!r}"
            )
        bound[target] = Binding(column=source)
    for target, value in constants.items():
        check_target(kind, target)
        if target in bound:
            raise ImportInputError(
                target, f"is given both by --map (column {bound[target].column!r}) and --set"
            )
        bound[target] = Binding(constant=value)
    mapped_sources = set(mapping)
    for target, column in _self_mapped(kind, columns, mapped_sources, bound):
        bound[target] = Binding(column=column)
        mapped_sources.add(column)
    base = BAG_COLUMN[kind]
    bag_base = base if base in columns and base not in mapped_sources else None
    if bag_base is not None:
        mapped_sources.add(bag_base)
    plan = Plan(
        kind=kind,
        fields={t: b for t, b in bound.items() if t in fields_for(kind)},
        bag=_bag(kind, columns, bound, mapped_sources),
        bag_base=bag_base,
    )
    _check_required(plan)
    return plan


def _self_mapped(
    kind: ImportKind, columns: Sequence[str], mapped: set[str], bound: Mapping[str, Binding]
) -> list[tuple[str, str]]:
    """(target, column) for columns named like a field: exactly, then as ``userId`` or
    ``Email`` (Segment's camelCase, spreadsheet capitals), exact names winning."""
    taken = set(bound)
    pairs: list[tuple[str, str]] = []
    for spelled in (lambda c: c, _snake):
        for column in columns:
            target = spelled(column)
            if column in mapped or target in taken:
                continue
            if target in fields_for(kind) or bag_key(kind, target) is not None:
                pairs.append((target, column))
                taken.add(target)
                mapped = mapped | {column}
    return pairs


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name.strip()).lower()


def _bag(
    kind: ImportKind,
    columns: Sequence[str],
    bound: Mapping[str, Binding],
    mapped_sources: set[str],
) -> tuple[tuple[str, Binding], ...]:
    """Mapped keys win over unmapped columns of the same name, so no key appears twice."""
    keyed = {b.column: bag_key(kind, t) for t, b in bound.items() if b.column is not None}
    mapped_keys = {key for key in keyed.values() if key is not None}
    entries: dict[str, Binding] = {}
    for column in columns:
        key = keyed.get(column)
        if key is not None:
            entries[key] = Binding(column=column)
        elif column not in mapped_sources and column not in mapped_keys:
            entries.setdefault(column, Binding(column=column))
    for target, binding in bound.items():
        key = bag_key(kind, target)
        if key is not None and binding.constant is not None:
            entries[key] = binding
    return tuple(entries.items())


def _check_required(plan: Plan) -> None:
    has = plan.fields.__contains__
    if plan.kind == "events":
        if not has("event"):
            raise ImportInputError(
                "event",
                "no event name: map a column with --map COLUMN=event "
                "or give one name for every row with --set event='Order Completed'",
            )
        if not has("timestamp"):
            raise ImportInputError(
                "timestamp", "no timestamp: map the column holding it with --map COLUMN=timestamp"
            )
        if not has("user_id") and not has("anonymous_id"):
            raise ImportInputError(
                "user_id",
                "no identity: map a column to user_id or anonymous_id with --map COLUMN=user_id",
            )
    elif not has("user_id") and not has("email"):
        raise ImportInputError(
            "user_id", "no identity: map a column to user_id or email with --map COLUMN=user_id"
        )
