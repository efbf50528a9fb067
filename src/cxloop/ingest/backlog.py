"""Stored batches that a listener failed on, kept on disk until it takes them.

The listeners of stored events (stage engine, cases, survey triggers, automation rules,
webhooks) run after the events are committed, so their failure cannot refuse the batch.
Without this, a listener that failed once (the app database locked or briefly away) would
never see that batch: its cases, surveys, rule runs and webhook deliveries would silently
not happen. Each failed batch is written as one Arrow IPC file per listener, fsynced and
renamed into place, and handed to that listener again, oldest first, before its next
batch, at start-up and every minute. The listeners are idempotent per occurrence, so a
batch they had half-taken is safe to hand them again.

A file's name carries its place in the order, how often the listener failed on it and
when it first failed (``000000000042.f3.t1764892800.arrow``), so that this survives a
restart. A batch the listener keeps failing on while it takes the ones after it is moved
to ``NAME/set-aside/`` (never deleted) once it is clearly the batch and not the database
at fault; see :func:`should_set_aside`. A file that cannot be read at all is set aside
at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
from sqlalchemy import exc as sa_exc

from cxloop.ingest.log import fsync_dir

log = logging.getLogger(__name__)
_MERGES = b"cxloop.merges"
_NAME = re.compile(r"^(\d+)\.f(\d+)\.t(\d+)\.arrow$")
SET_ASIDE = "set-aside"
# A crash while writing leaves a .partial file; one this old is never finished.
_PARTIAL_AGE_S = 60.0

# Errors that say the database or the disk is away, not that the batch is bad: a batch
# failing with them alone is only set aside after failing for a long while.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
    OSError,
)
POISON_AFTER_FAILURES = 3
TRANSIENT_AFTER_FAILURES = 10
TRANSIENT_AFTER_S = 3600.0
# A batch failing alone, left in place, is not tried again with each new batch for this
# long; the minute's sweep tries it again regardless.
RETRY_ALONE_AFTER_S = 30.0


def is_transient(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, TRANSIENT_ERRORS)


def should_set_aside(failures: int, first_failed: float, error: BaseException) -> bool:
    """Whether a batch the listener just failed on again, right after taking a later
    one, is set aside. One such failure can be chance (a lock held for a moment), so a
    batch goes after three failures with an error of its own, and after ten over an hour
    with an error that looks like the database (a lock, a lost connection)."""
    if failures < POISON_AFTER_FAILURES:
        return False
    if not is_transient(error):
        return True
    return failures >= TRANSIENT_AFTER_FAILURES and time.time() - first_failed >= TRANSIENT_AFTER_S


@dataclass(frozen=True)
class Kept:
    """One kept batch of one listener."""

    path: Path
    order: int
    failures: int
    first_failed: int  # unix seconds; 0 while it never failed (kept behind others)

    @classmethod
    def parse(cls, path: Path) -> Kept:
        match = _NAME.match(path.name)
        if match is None:  # written by an older cxloop: ordered before the rest, by name
            return cls(path, -1, 1, int(path.stat().st_mtime))
        order, failures, first_failed = (int(g) for g in match.groups())
        return cls(path, order, failures, first_failed)

    @property
    def sort_key(self) -> tuple[int, str]:
        return self.order, self.path.name


class ListenerBacklog:
    """One folder per listener under ``folder``; None keeps nothing (a failure is only
    logged), for stores opened without a project folder.

    The kept files are listed once when opened and then tracked in memory, so that a
    stored batch costs no folder listing; :meth:`refresh` lists a folder again (an
    operator may have moved a set-aside batch back)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._kept: dict[str, list[Kept]] = {}
        self._next: dict[str, int] = {}
        if folder is not None and folder.is_dir():
            for place in sorted(p for p in folder.iterdir() if p.is_dir()):
                self.refresh(place.name)

    # -- reading -------------------------------------------------------------------------

    def has(self, listener: str) -> bool:
        return bool(self._kept.get(listener))

    def pending(self, listener: str) -> list[Kept]:
        """This listener's kept batches, oldest first."""
        return list(self._kept.get(listener, ()))

    def counts(self) -> tuple[int, int]:
        """Kept batches waiting, and set aside, as on disk now."""
        if self.folder is None or not self.folder.is_dir():
            return 0, 0
        waiting = sum(1 for _ in self.folder.glob("*/*.arrow"))
        return waiting, sum(1 for _ in self.folder.glob(f"*/{SET_ASIDE}/*.arrow"))

    def refresh(self, listener: str) -> None:
        if self.folder is None:
            return
        place = self.folder / listener
        kept = sorted((Kept.parse(p) for p in place.glob("*.arrow")), key=lambda k: k.sort_key)
        self._kept[listener] = kept
        aside = [Kept.parse(p) for p in place.glob(f"{SET_ASIDE}/*.arrow")]
        self._next[listener] = max((k.order for k in kept + aside), default=0) + 1
        self._remove_partials(place)

    @staticmethod
    def load(path: Path) -> tuple[pa.Table, list[tuple[int, int]]]:
        with pa.OSFile(str(path)) as source, ipc.open_file(source) as reader:
            table = reader.read_all()
        metadata = dict(table.schema.metadata or {})
        merges = [(int(a), int(b)) for a, b in json.loads(metadata.pop(_MERGES, b"[]"))]
        return table.replace_schema_metadata(metadata or None), merges

    # -- writing -------------------------------------------------------------------------

    def keep(
        self,
        listener: str,
        rows: pa.Table,
        merges: list[tuple[int, int]],
        *,
        failed: bool = True,
    ) -> Kept | None:
        """Write the batch after this listener's others; ``failed`` when the listener
        failed on it (rather than it waiting behind others). None when there is no
        folder or the disk refused it (logged: the listener will not see this batch)."""
        if self.folder is None:
            return None
        place = self.folder / listener
        order = self._next.get(listener, 1)
        first_failed = int(time.time()) if failed else 0
        final = place / _file_name(order, int(failed), first_failed)
        partial = final.with_suffix(".partial")
        metadata = dict(rows.schema.metadata or {})
        metadata[_MERGES] = json.dumps(merges).encode()
        table = rows.replace_schema_metadata(metadata)
        try:
            _make_folder(place)
            with open(partial, "wb") as sink:
                with ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(partial, final)
            fsync_dir(place)
        except OSError:
            log.exception(
                "could not keep a batch of %d events for the %s listener", rows.num_rows, listener
            )
            partial.unlink(missing_ok=True)
            return None
        self._next[listener] = order + 1
        kept = Kept(final, order, int(failed), first_failed)
        self._kept.setdefault(listener, []).append(kept)
        return kept

    def failed(self, listener: str, kept: Kept) -> Kept:
        """Count one more failure on ``kept`` (in its name, so that a restart knows)."""
        first_failed = kept.first_failed or int(time.time())
        target = kept.path.with_name(_file_name(kept.order, kept.failures + 1, first_failed))
        if kept.order < 0:  # an older name: kept as it is, so that it stays first
            target = kept.path
        else:
            os.replace(kept.path, target)
            fsync_dir(target.parent)
        now = replace(kept, path=target, failures=kept.failures + 1, first_failed=first_failed)
        self._swap(listener, kept, now)
        return now

    def done(self, listener: str, kept: Kept) -> None:
        kept.path.unlink(missing_ok=True)
        self._swap(listener, kept, None)

    def set_aside(self, listener: str, kept: Kept) -> Path:
        """Out of the way of the listener's later batches, kept for an operator to look at
        (``set-aside`` holds no ``*.arrow`` the listener reads)."""
        folder = kept.path.parent / SET_ASIDE
        _make_folder(folder)
        target = folder / kept.path.name
        os.replace(kept.path, target)
        fsync_dir(kept.path.parent)
        self._swap(listener, kept, None)
        return target

    def _swap(self, listener: str, old: Kept, new: Kept | None) -> None:
        kept = self._kept.get(listener, [])
        at = next((i for i, k in enumerate(kept) if k.path == old.path), None)
        if at is None:
            return
        if new is None:
            del kept[at]
        else:
            kept[at] = new

    @staticmethod
    def _remove_partials(place: Path) -> None:
        for partial in place.glob("*.partial"):
            try:
                if time.time() - partial.stat().st_mtime > _PARTIAL_AGE_S:
                    partial.unlink()
                    log.warning("removed %s, left unfinished when cxloop stopped", partial)
            except OSError:
                continue  # gone already, or not ours to remove: harmless either way


def _file_name(order: int, failures: int, first_failed: int) -> str:
    return f"{order:012d}.f{failures}.t{first_failed}.arrow"


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents so that they survive a power cut."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_dir(created.parent)
