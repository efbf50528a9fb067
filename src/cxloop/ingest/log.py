"""The ingestion log: where an accepted batch becomes durable before it is acknowledged.

Appending a batch to a file and fsyncing it is the cheapest durable write there is; the
identity resolution and columnar append that follow can then work on large batches, at
their own pace, from memory. A crash loses nothing: on start-up, every record past the last
applied one is replayed (replays are harmless: events are idempotent on ``messageId``).

Files: ``<dir>/<first sequence number>.log``; records are ``length, crc32, sequence``
followed by a msgpack payload. A torn last record (the crash hit mid-write) is cut off.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import msgspec

from cxloop.domain.messages import Message, Rejected

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<IIQ")
SEGMENT_BYTES = 64 * 1024 * 1024


@dataclass
class LogRecord:
    """One acknowledged request: its valid messages and its refused ones."""

    source: str
    messages: list[Message]
    rejects: list[Rejected]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(LogRecord)


class IngestLog:
    """Append-only, fsynced record files with a persisted 'applied up to' mark."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._applied_file = directory / "applied"
        self.applied = self._read_applied()
        segments = self._segments()
        self.last_seq = self.applied
        self._fh: int | None = None
        self._size = 0
        # Older segments exist (so an applied mark may free some): list the folder only then.
        self._older_segments = len(segments) > 1
        if segments:
            last_path = segments[-1][1]
            end, last = _scan_end(last_path)
            if end < last_path.stat().st_size:
                log.warning("ingestion log %s: cutting a torn record at byte %d", last_path, end)
                with last_path.open("r+b") as fh:
                    fh.truncate(end)
                    os.fsync(fh.fileno())
            # Sequence numbers grow across segments: the newest segment holds the last one,
            # unless it is empty (then the next one to write is its first).
            self.last_seq = max(self.last_seq, last if last is not None else segments[-1][0] - 1)

    # -- writing -----------------------------------------------------------------------------

    def append(self, records: Sequence[LogRecord]) -> int:
        """Write and fsync ``records``; returns the sequence number of the last one."""
        if not records:
            return self.last_seq
        chunks = []
        seq = self.last_seq
        for record in records:
            seq += 1
            payload = _encoder.encode(record)
            chunks.append(_HEADER.pack(len(payload), zlib.crc32(payload), seq))
            chunks.append(payload)
        data = b"".join(chunks)
        fd = self._file_for(self.last_seq + 1)
        _write_all(fd, data)
        os.fdatasync(fd)
        self._size += len(data)
        self.last_seq = seq
        return seq

    def _file_for(self, first_seq: int) -> int:
        if self._fh is not None and self._size < self.segment_bytes:
            return self._fh
        if self._fh is not None:
            os.close(self._fh)
            self._older_segments = True
        path = self.directory / f"{first_seq:020d}.log"
        self._fh = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fh).st_size
        fsync_dir(self.directory)
        return self._fh

    # -- applying ------------------------------------------------------------------------------

    def mark_applied(self, seq: int) -> None:
        """Remember progress and drop segments that are wholly applied."""
        if seq <= self.applied:
            return
        self.applied = seq
        tmp = self._applied_file.with_suffix(".tmp")
        tmp.write_text(str(seq))
        os.replace(tmp, self._applied_file)
        if not self._older_segments:
            return
        segments = self._segments()
        for (_first, path), (next_first, _) in pairwise(segments):
            if next_first - 1 <= seq:
                path.unlink(missing_ok=True)
        self._older_segments = len(self._segments()) > 1

    def pending(self) -> Iterator[tuple[int, LogRecord]]:
        """Records written but not yet applied, oldest first (start-up recovery)."""
        for _first, path in self._segments():
            for seq, payload in _records(path):
                if seq > self.applied:
                    yield seq, _decoder.decode(payload)

    def close(self) -> None:
        if self._fh is not None:
            os.close(self._fh)
            self._fh = None

    # -- helpers -------------------------------------------------------------------------------

    def _segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob("*.log"):
            try:
                found.append((int(path.stem), path))
            except ValueError:
                continue
        return sorted(found)

    def _read_applied(self) -> int:
        try:
            return int(self._applied_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0


def _records(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        data = fh.read()
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc, seq = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            return
        yield seq, payload
        offset = start + length


def _scan_end(path: Path) -> tuple[int, int | None]:
    """Byte offset after the last whole record, and that record's sequence number."""
    end = 0
    last: int | None = None
    for seq, payload in _records(path):
        end += _HEADER.size + len(payload)
        last = seq
    return end, last


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    """Make a file created or renamed in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
