"""Text files in encodings other than UTF-8: named with ``--encoding``, or told by a BOM.

Every reader downstream (the sniffer, DuckDB's CSV reader, the JSONL decoder) reads UTF-8,
so a file in another encoding is rewritten once as UTF-8 into a temporary file and read
from there. Bytes the named encoding does not define are written back unchanged, so the
rows holding them stay invalid UTF-8 and become rejects naming the row, instead of
failing the whole file or being silently replaced.
"""

from __future__ import annotations

import codecs
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cxloop.ingest.files_model import ImportInputError

_CHUNK_CHARS = 1 << 20
# A UTF-16 byte-order mark is how spreadsheet programs mark their "Unicode text" exports;
# a UTF-8 one needs no rewriting (the readers skip it).
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class TextEncoding:
    """An encoding checked to exist and to be text; ``name`` is Python's canonical name."""

    name: str

    @property
    def label(self) -> str:
        return self.name.upper() if self.name.startswith("utf") else self.name

    @property
    def needs_rewrite(self) -> bool:
        return self.name not in ("utf-8", "utf-8-sig")


UTF8 = TextEncoding("utf-8")


def check_encoding(value: str | None) -> TextEncoding | None:
    """None when not given; otherwise the canonical encoding, or an error naming it."""
    if value is None:
        return None
    if not value.strip():
        raise ImportInputError("encoding", "is empty; give a name such as utf-8 or cp1252")
    try:
        name = codecs.lookup(value.strip()).name
        "".encode(name)  # binary codecs such as base64 exist but are not text encodings
    except LookupError as error:
        raise ImportInputError(
            "encoding",
            f"{value!r} is not a known text encoding (e.g. utf-8, latin-1, cp1252, utf-16)",
        ) from error
    return TextEncoding(name)


def file_encoding(path: Path, given: TextEncoding | None) -> TextEncoding:
    """The encoding given, else UTF-16 when the file starts with its byte-order mark."""
    if given is not None:
        return given
    with path.open("rb") as handle:
        head = handle.read(2)
    return TextEncoding("utf-16") if head in _UTF16_BOMS else UTF8


def as_utf8(path: Path, encoding: TextEncoding) -> Path:
    """A temporary UTF-8 copy of ``path`` (the caller removes it); line ends kept as they
    are, so row numbers and quoted line breaks mean the same as in the original."""
    handle, name = tempfile.mkstemp(prefix="cxloop-import-", suffix=path.suffix)
    target = Path(name)
    try:
        with (
            os.fdopen(handle, "w", encoding="utf-8", errors="surrogateescape", newline="") as out,
            path.open(encoding=encoding.name, errors="surrogateescape", newline="") as source,
        ):
            while text := source.read(_CHUNK_CHARS):
                out.write(text)
    except UnicodeError as error:
        target.unlink(missing_ok=True)
        raise ImportInputError(
            "encoding", f"{path.name} is not {encoding.label} text: {error}"
        ) from error
    except OSError as error:
        target.unlink(missing_ok=True)
        raise ImportInputError(
            "file", f"cannot rewrite {path.name} as UTF-8: {error.strerror or error}"
        ) from error
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def open_csv_text(path: Path, given: str | None) -> tuple[TextIO, TextEncoding]:
    """For the small importers that read with the ``csv`` module (survey answers,
    benchmarks): the file opened in the encoding given (``--encoding``), else UTF-16 when
    it starts with that byte-order mark, else UTF-8 (its own mark skipped). Read it
    through :func:`decoded`, so that a byte the encoding lacks names the fix."""
    encoding = file_encoding(path, check_encoding(given))
    name = "utf-8-sig" if encoding == UTF8 else encoding.name
    return path.open(encoding=name, newline=""), encoding


def decoded(handle: TextIO, path: Path, encoding: TextEncoding) -> Iterator[str]:
    try:
        yield from handle
    except UnicodeDecodeError as error:
        raise ImportInputError(
            "--encoding",
            f"{path.name} is not {encoding.label} text ({error.reason}); name its encoding, "
            "e.g. --encoding cp1252",
        ) from None
