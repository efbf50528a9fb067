"""Looking at the top of a file: its format, its delimiter and its column names.

All of this runs before any row is read, so that a wrong ``--map`` or a file of an unknown
kind is refused at once instead of after minutes of loading.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cxloop.ingest.files_model import ImportFormat, ImportInputError

WHITESPACE = "whitespace"
SUFFIXES: dict[str, ImportFormat] = {
    ".csv": "delimited",
    ".tsv": "delimited",
    ".txt": "delimited",
    ".dat": "delimited",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
_CANDIDATES = (",", "\t", ";", "|")
# A value of a blank-separated line: a double-quoted run (which may hold blanks, and "" for
# a quote), or any run of non-blanks. The SQL that reads such files splits the same way.
BLANK_SEPARATED_VALUE = r'"(?:[^"]|"")*"|[^ \t]+'
_SAMPLE_BYTES = 1 << 16
_SAMPLE_LINES = 200
# Share of sampled rows that must have the header's column count for a delimiter to win;
# below 1.0 so that a few ragged rows (which become rejects) do not defeat the sniffer.
_CONSISTENCY = 0.8
_LOOSE_CONSISTENCY = 0.5


@dataclass(frozen=True)
class Dialect:
    """How to split a delimited file, and where its data starts."""

    delimiter: str  # one character, or WHITESPACE for runs of blanks
    columns: tuple[str, ...]
    skip_lines: int  # physical lines before the header line
    # Header names read otherwise than written (a repeated or empty name), said once in
    # the import's summary, since a second ``email`` column quietly becoming a trait
    # ``email_2`` is otherwise noticed only much later.
    renamed: tuple[str, ...] = ()


_BLANK_SEPARATED = re.compile(BLANK_SEPARATED_VALUE)


def split_blanks(line: str) -> list[str]:
    """The values of a blank-separated line, quotes taken off; blanks and a carriage
    return around the line are not part of it (as the SQL trims them)."""
    return [
        token[1:-1].replace('""', '"') if len(token) > 1 and token[0] == token[-1] == '"' else token
        for token in _BLANK_SEPARATED.findall(line.strip(" \t\r"))
    ]


def format_for(path: Path) -> ImportFormat:
    if not path.exists():
        raise ImportInputError("file", f"{path} does not exist")
    if path.is_dir():
        raise ImportInputError("file", f"{path} is a directory, not a file")
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SUFFIXES))
        raise ImportInputError(
            "file", f"cannot tell the format of {path.name} from its extension (known: {known})"
        )
    return fmt


def normalise_delimiter(value: str | None) -> str | None:
    """Accepts the spellings a shell user is likely to type for a tab."""
    if value is None:
        return None
    if value in ("\\t", "tab", "TAB"):
        return "\t"
    if value == WHITESPACE:
        return value
    if len(value) != 1:
        raise ImportInputError(
            "delimiter",
            f"{value!r} is not one character; give a single character such as ',' or ';', "
            f"or '{WHITESPACE}' for columns separated by runs of blanks",
        )
    if value in ('"', "\n", "\r"):
        raise ImportInputError("delimiter", f"{value!r} cannot be used as a delimiter")
    return value


def read_sample_lines(path: Path) -> list[str]:
    """The first lines of the file as text; a line cut by the sample size is dropped."""
    with path.open("rb") as handle:
        data = handle.read(_SAMPLE_BYTES)
        truncated = bool(handle.read(1))
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if truncated and len(lines) > 1:
        lines.pop()
    while lines and lines[-1] == "" and len(lines) > 1:
        lines.pop()
    return lines[:_SAMPLE_LINES]


def sniff_dialect(path: Path, delimiter: str | None, name: str | None = None) -> Dialect:
    """The header is the first non-blank line; its names are what ``--map`` refers to.
    ``name`` is what to call the file in errors when ``path`` is a copy of it."""
    lines = read_sample_lines(path)
    skip = next((i for i, line in enumerate(lines) if line.strip()), None)
    if skip is None:
        raise ImportInputError("file", f"{name or path.name} is empty; expected a header line")
    body = lines[skip:]
    if any("\x00" in line for line in body):
        raise ImportInputError(
            "file",
            f"{name or path.name} holds NUL bytes: it is not text, or it is UTF-16 "
            "without a byte-order mark (then give --encoding utf-16-le)",
        )
    chosen = delimiter if delimiter is not None else _sniff(body)
    if chosen == WHITESPACE:
        header = split_blanks(body[0])
    else:
        try:
            header = next(csv.reader([body[0]], delimiter=chosen, quotechar='"'))
        except csv.Error as error:
            raise ImportInputError(
                "file", f"the header line of {name or path.name} cannot be read: {error}"
            ) from error
    columns, renamed = _clean_header(header)
    return Dialect(chosen, columns, skip, renamed)


def _sniff(lines: Sequence[str]) -> str:
    """Picks the delimiter whose column count is steady and largest over the sample."""
    best: tuple[float, int, str] | None = None
    for candidate in _CANDIDATES:
        try:
            counts = [
                len(record)
                for record in csv.reader(io.StringIO("\n".join(lines)), delimiter=candidate)
                if record
            ]
        except csv.Error:  # e.g. a carriage return inside a field: not this delimiter
            continue
        score = _steadiness(counts)
        if score is not None and (best is None or score > best[:2]):
            best = (*score, candidate)
    if best is not None:
        return best[2]
    # No delimiter character makes a table: blank-separated words then do, if at least
    # half the lines agree with the header (the others become rejects, not a new guess).
    words = [len(split_blanks(line)) for line in lines if line.strip()]
    return WHITESPACE if _steadiness(words, _LOOSE_CONSISTENCY) is not None else ","


def _steadiness(counts: Sequence[int], minimum: float = _CONSISTENCY) -> tuple[float, int] | None:
    """(share of rows matching the header's column count, that count), if it is a table."""
    if not counts or counts[0] < 2:
        return None
    rows = counts[1:]
    share = sum(1 for n in rows if n == counts[0]) / len(rows) if rows else 1.0
    return (share, counts[0]) if share >= minimum else None


def _clean_header(names: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Trimmed, non-empty and unique names, since ``--map`` must be able to name each one;
    and a sentence for each name read otherwise than written.

    Names are unique ignoring case, as DuckDB compares them. Every name the header gives is
    kept for the column that gives it first, so a made-up name (``email_2``, ``column4``)
    never takes a name another column already has.
    """
    given = [raw.strip() for raw in names]
    taken = {name.casefold() for name in given if name}
    first: set[str] = set()
    cleaned: list[str] = []
    renamed: list[str] = []
    for index, name in enumerate(given, start=1):
        if name and name.casefold() not in first:
            first.add(name.casefold())
            cleaned.append(name)
            continue
        if name:
            earlier = next(c for c in cleaned if c.casefold() == name.casefold())
            base, counter, why = name, 2, f"a second {earlier!r}"
        else:
            base, counter, why = f"column{index}", 1, "it has no name"
        made = base if counter == 1 else f"{base}_{counter}"
        while made.casefold() in taken:
            counter += 1
            made = f"{base}_{counter}"
        taken.add(made.casefold())
        cleaned.append(made)
        renamed.append(f"column {index} is read as {made!r} ({why})")
    return tuple(cleaned), tuple(renamed)


def count_lines(path: Path) -> int:
    """Newline count in large blocks: cheap enough to size a progress bar up front."""
    lines = 0
    last = b""
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (1 if last not in (b"", b"\n") else 0)
