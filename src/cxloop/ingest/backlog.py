"""Stored batches that a listener failed on, kept on disk until it takes them.

The listeners of stored events (stage engine, cases, survey triggers, automation rules,
webhooks) run after the events are committed, so their failure cannot refuse the batch.
Without this, a listener that failed once (the app database locked or briefly away) would
never see that batch: its cases, surveys, rule runs and webhook deliveries would silently
not happen. Each failed batch is written as one Arrow IPC file per listener, fsynced and
placed without ever replacing another file, and handed to that listener again, oldest
first, before its next batch, at start-up and every minute. The listeners are idempotent
per occurrence, so a batch they had half-taken is safe to hand them again.

A file's name carries its place in the order, how often the listener failed on it *alone*
(while taking other batches: :mod:`cxloop.ingest.handing` decides) and when it first did
(``000000000042.f3.t1764892800.arrow``), so that a restart keeps both. Failures while the
listener fails on everything (its database is away) say nothing about the batch and are
not counted. A batch with enough lone failures (:func:`should_set_aside`) is moved to
``NAME/set-aside/``, never deleted; a file that cannot be decoded is set aside at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

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
TRANSIENT_AFTER_FAILURES = 20
TRANSIENT_AFTER_S = 86_400.0
# A batch failing alone, left in place, is not tried again with each new batch for this
# long; the minute's sweep tries it regardless.
RETRY_ALONE_AFTER_S = 30.0
# What a kept file that cannot be decoded raises (a truncated or foreign file); pyarrow
# also raises a plain OSError without an errno for a damaged file, which the caller tells
# from the system's own errors by that errno.
UNREADABLE_ERRORS: tuple[type[BaseException], ...] = (
    pa.ArrowException,
    ValueError,
    TypeError,
    KeyError,
)
Moved = Literal["moved", "exists", "gone"]


def is_transient(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, TRANSIENT_ERRORS)


def should_set_aside(lone_failures: int, first_failed: float, error: BaseException) -> bool:
    """Whether a batch the listener failed on alone again is set aside. One such failure
    can be chance (a lock held for a moment, a race), so a batch goes after three with an
    error of its own; with one that looks like the database, which a lock coming and going
    can fake, only after twenty over a day (until then it rests and holds back nothing)."""
    if lone_failures < POISON_AFTER_FAILURES:
        return False
    if not is_transient(error):
        return True
    return (
        lone_failures >= TRANSIENT_AFTER_FAILURES
        and time.time() - first_failed >= TRANSIENT_AFTER_S
    )


@dataclass(frozen=True)
class Kept:
    """One kept batch of one listener."""

    path: Path
    order: int
    failures: int  # lone failures: the listener took other batches meanwhile
    first_failed: int  # unix seconds of the first lone failure; 0 before it

    @classmethod
    def parse(cls, path: Path) -> Kept | None:
        match = _NAME.match(path.name)
        if match is None:
            return None
        order, failures, first_failed = (int(g) for g in match.groups())
        return cls(path, order, failures, first_failed)


class ListenerBacklog:
    """One folder per listener under ``folder``; None keeps nothing (a failure is only
    logged), for stores opened without a project folder.

    The kept files are listed once when opened and then tracked in memory, so that a
    stored batch costs no folder listing; :meth:`refresh` lists a folder again (an
    operator may have moved a set-aside batch back). Nothing here raises on opening: a
    folder that cannot be read is logged and read again at the next refresh."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._kept: dict[str, list[Kept]] = {}
        self._next: dict[str, int] = {}
        if folder is None:
            return
        try:
            places = sorted(p.name for p in folder.iterdir() if p.is_dir())
        except FileNotFoundError:
            return
        except OSError:
            log.exception("cannot read the listener backlog in %s", folder)
            return
        for name in places:
            self.refresh(name)

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
        """List the listener's folder again. Never raises: an unreadable folder is logged
        and keeps what was known of it."""
        if self.folder is None:
            return
        place = self.folder / listener
        try:
            kept, strangers = _listing(place)
            aside = [k for k in map(Kept.parse, place.glob(f"{SET_ASIDE}/*.arrow")) if k]
            self._next[listener] = max((k.order for k in kept + aside), default=0) + 1
            self._kept[listener] = kept
            for stranger in strangers:  # a name of an older cxloop: after the others
                self._adopt(listener, stranger)
            _remove_partials(place)
        except OSError:
            log.exception("cannot read the %s listener's backlog in %s", listener, place)

    @staticmethod
    def load(path: Path) -> tuple[pa.Table, list[tuple[int, int]]]:
        with pa.OSFile(str(path)) as source, ipc.open_file(source) as reader:
            table = reader.read_all()
        metadata = dict(table.schema.metadata or {})
        merges = [(int(a), int(b)) for a, b in json.loads(metadata.pop(_MERGES, b"[]"))]
        return table.replace_schema_metadata(metadata or None), merges

    # -- writing -------------------------------------------------------------------------

    def keep(self, listener: str, rows: pa.Table, merges: list[tuple[int, int]]) -> Kept | None:
        """Write the batch after this listener's others. None when there is no folder or
        the disk refused it (logged: the listener will not see this batch)."""
        if self.folder is None:
            return None
        place = self.folder / listener
        partial = place / f"{os.getpid()}-{uuid.uuid4().hex}.partial"
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
            kept = self._place(listener, partial, failures=0, first_failed=0)
        except OSError:
            log.exception(
                "could not keep a batch of %d events for the %s listener", rows.num_rows, listener
            )
            partial.unlink(missing_ok=True)
            return None
        self._kept.setdefault(listener, []).append(kept)
        return kept

    def failed(self, listener: str, kept: Kept) -> Kept | None:
        """Count one more lone failure on ``kept`` (in its name, so that a restart knows);
        None when the file is gone (another process took it)."""
        first_failed = kept.first_failed or int(time.time())
        counted = replace(kept, failures=kept.failures + 1, first_failed=first_failed)
        target = kept.path.with_name(_file_name(kept.order, counted.failures, first_failed))
        moved = _move_new(kept.path, target)
        if moved == "gone":
            self.forget(listener, kept)
            return None
        if moved == "moved":
            _sync(target.parent)
            counted = replace(counted, path=target)
        # else another process counted it under that name: counted here in memory only
        self._swap(listener, kept, counted)
        return counted

    def done(self, listener: str, kept: Kept) -> None:
        kept.path.unlink(missing_ok=True)
        self.forget(listener, kept)

    def forget(self, listener: str, kept: Kept) -> None:
        """No longer track ``kept`` (taken, set aside, or gone from the disk)."""
        self._swap(listener, kept, None)

    def set_aside(self, listener: str, kept: Kept) -> Path | None:
        """Out of the way of the listener's later batches, kept for an operator to look at
        (``set-aside`` holds no ``*.arrow`` the listener reads); None when the file is
        gone (another process took it)."""
        folder = kept.path.parent / SET_ASIDE
        _make_folder(folder)
        target: Path | None = folder / kept.path.name
        while target is not None and (moved := _move_new(kept.path, target)) != "moved":
            if moved == "gone":
                target = None
            else:
                target = folder / f"{kept.path.stem}-{uuid.uuid4().hex[:8]}.arrow"
        _sync(kept.path.parent)
        self.forget(listener, kept)
        return target

    def _place(self, listener: str, source: Path, *, failures: int, first_failed: int) -> Kept:
        """Give ``source`` the next free name in the order; an existing file is never
        replaced, so two processes keeping batches at once both keep theirs."""
        order = self._next.get(listener, 1)
        while True:
            target = source.parent / _file_name(order, failures, first_failed)
            moved = _move_new(source, target)
            if moved == "moved":
                break
            if moved == "gone":
                raise FileNotFoundError(f"{source} went while it was being kept")
            order += 1
        self._next[listener] = order + 1
        _sync(source.parent)
        return Kept(target, order, failures, first_failed)

    def _adopt(self, listener: str, stranger: Path) -> None:
        try:
            kept = self._place(listener, stranger, failures=0, first_failed=0)
        except FileNotFoundError:
            return  # taken in by another process meanwhile
        except OSError:
            log.exception("cannot rename the kept batch %s", stranger)
            return
        self._kept.setdefault(listener, []).append(kept)

    def _swap(self, listener: str, old: Kept, new: Kept | None) -> None:
        kept = self._kept.get(listener, [])
        at = next((i for i, k in enumerate(kept) if k.path == old.path), None)
        if at is None:
            return
        if new is None:
            del kept[at]
        else:
            kept[at] = new


def _listing(place: Path) -> tuple[list[Kept], list[Path]]:
    """The folder's kept batches in order, and ``*.arrow`` files of other names."""
    kept: list[Kept] = []
    strangers: list[Path] = []
    for path in sorted(place.glob("*.arrow")):
        found = Kept.parse(path)
        if found is None:
            strangers.append(path)
        else:
            kept.append(found)
    kept.sort(key=lambda k: (k.order, -k.failures, k.path.name))
    return _without_second_names(kept), strangers


def _without_second_names(kept: list[Kept]) -> list[Kept]:
    """A crash between the two steps of a rename leaves one file under two names (same
    order, different counts): the name with the most failures stays, the other goes."""
    unique: list[Kept] = []
    for item in kept:
        first = unique[-1] if unique else None
        if first is not None and first.order == item.order and _same_file(first, item):
            item.path.unlink(missing_ok=True)
            continue
        unique.append(item)
    return unique


def _same_file(a: Kept, b: Kept) -> bool:
    """Two names of one file (not a link pointing at the other)."""
    try:
        first, second = os.lstat(a.path), os.lstat(b.path)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _file_name(order: int, failures: int, first_failed: int) -> str:
    return f"{order:012d}.f{failures}.t{first_failed}.arrow"


def _move_new(source: Path, target: Path) -> Moved:
    """Rename ``source`` to ``target`` unless ``target`` exists ("exists"), or ``source``
    is gone, moved or removed by another process ("gone"). A hard link and an unlink, so
    that no file is ever replaced. When ``source`` went between the two, the batch may
    have another name still (another process moved it too): then ours goes, so that it
    keeps one name; if ours is its last name, it stays, since the batch must not be lost
    (at worst it is handed twice)."""
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        return "exists"
    except OSError:
        if not os.path.lexists(source):
            return "gone"
        if os.path.lexists(target):  # no hard links here: as close as a rename gets
            return "exists"
        try:
            os.replace(source, target)
        except FileNotFoundError:
            return "gone"
        return "moved"
    try:
        os.unlink(source)
    except FileNotFoundError:
        if os.lstat(target).st_nlink > 1:
            target.unlink(missing_ok=True)
            return "gone"
    return "moved"


def _sync(folder: Path) -> None:
    """fsync a folder after a rename in it; the rename happened, so a failure only means
    it may not survive a power cut, which is logged rather than undone."""
    try:
        fsync_dir(folder)
    except OSError:
        log.warning("could not fsync %s", folder, exc_info=True)


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents so that they survive a power cut."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_dir(created.parent)


def _remove_partials(place: Path) -> None:
    for partial in place.glob("*.partial"):
        try:
            if time.time() - partial.stat().st_mtime > _PARTIAL_AGE_S:
                partial.unlink()
                log.warning("removed %s, left unfinished when cxloop stopped", partial)
        except OSError:
            continue  # gone already, or not ours to remove: harmless either way
