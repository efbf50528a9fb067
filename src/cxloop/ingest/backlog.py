"""Stored batches that a listener failed on, kept on disk until it takes them.

The listeners of stored events (stage engine, cases, survey triggers, automation rules,
webhooks) run after the events are committed, so their failure cannot refuse the batch.
Without this, a listener that failed once (the app database locked or briefly away) would
never see that batch: its cases, surveys, rule runs and webhook deliveries would silently
not happen. Each failed batch is written as one Arrow IPC file per listener, fsynced and
renamed into place, and handed to that listener again, oldest first, before its next
batch, at start-up and every minute. The listeners are idempotent per occurrence, so a
batch they had half-taken is safe to hand them again. A batch the listener alone cannot
take, while it takes the ones after it, is moved to ``NAME/set-aside/``, never deleted.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from cxloop.ingest.log import fsync_dir

log = logging.getLogger(__name__)
_MERGES = b"cxloop.merges"


class ListenerBacklog:
    """One folder per listener under ``folder``; None keeps nothing (a failure is only
    logged), for stores opened without a project folder."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._sequence = itertools.count()

    def keep(self, listener: str, rows: pa.Table, merges: list[tuple[int, int]]) -> Path | None:
        if self.folder is None:
            return None
        place = self.folder / listener
        place.mkdir(parents=True, exist_ok=True)
        # Time first, so that names sort oldest first; the sequence parts equal times.
        final = place / f"{time.time_ns():020d}-{next(self._sequence):06d}.arrow"
        partial = final.with_suffix(".partial")
        metadata = dict(rows.schema.metadata or {})
        metadata[_MERGES] = json.dumps(merges).encode()
        table = rows.replace_schema_metadata(metadata)
        with open(partial, "wb") as sink:
            with ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(partial, final)
        fsync_dir(place)
        return final

    def pending(self, listener: str) -> list[Path]:
        """This listener's kept batches, oldest first."""
        if self.folder is None or not (self.folder / listener).is_dir():
            return []
        return sorted((self.folder / listener).glob("*.arrow"))

    def count(self) -> int:
        if self.folder is None or not self.folder.is_dir():
            return 0
        return sum(1 for _ in self.folder.glob("*/*.arrow"))

    @staticmethod
    def load(path: Path) -> tuple[pa.Table, list[tuple[int, int]]]:
        with pa.OSFile(str(path)) as source, ipc.open_file(source) as reader:
            table = reader.read_all()
        metadata = dict(table.schema.metadata or {})
        merges = [(int(a), int(b)) for a, b in json.loads(metadata.pop(_MERGES, b"[]"))]
        return table.replace_schema_metadata(metadata or None), merges

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)

    @staticmethod
    def set_aside(path: Path) -> Path:
        """Out of the way of the listener's later batches, kept for an operator to look at
        (``set-aside`` holds no ``*.arrow`` the listener reads)."""
        folder = path.parent / "set-aside"
        folder.mkdir(exist_ok=True)
        target = folder / path.name
        os.replace(path, target)
        fsync_dir(path.parent)
        return target

    def counts(self) -> tuple[int, int]:
        """Kept batches waiting, and set aside."""
        if self.folder is None or not self.folder.is_dir():
            return 0, 0
        return self.count(), sum(1 for _ in self.folder.glob("*/set-aside/*.arrow"))
