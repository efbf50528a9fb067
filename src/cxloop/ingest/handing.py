"""Handing stored batches to the listeners, and to each the batches it failed on before.

The listeners (stage engine, cases, survey triggers, automation rules, webhooks) run after
the events are committed. A batch a listener fails on is kept (:mod:`cxloop.ingest.backlog`)
and handed again before its next batch, at start-up and by the minute's sweep.

The hard part is telling a bad batch from a listener that is failing on everything (its
database away or locked), since only the first should ever be set aside. A failure is
counted against a batch only when the listener takes another batch *later in the same
pass* and then fails on this one again, handed it right after: it was working both times.
Two failures in a row look like the listener failing, so the pass stops trying the old
batches in order and probes with the newest one (the batch just stored, or the newest
kept): if the listener takes it, the two are handed again as above and the pass goes on;
if not, nothing counts and the rest waits. A new
batch is always tried, so two bad batches at the head never hold the others back; listeners
may see batches out of order, which they allow (each is idempotent per occurrence, and the
stage engine refolds a customer handed an older event). A batch whose failure counted rests
a while (skipped by the passes of new batches, not by the sweep), so that it does not cost a
failing call with every batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from cxloop.ingest.backlog import (
    RETRY_ALONE_AFTER_S,
    UNREADABLE_ERRORS,
    Kept,
    ListenerBacklog,
    should_set_aside,
)

log = logging.getLogger(__name__)

Merges = list[tuple[int, int]]
# Told each stored batch's rows and the (loser, survivor) merges it caused.
Listener = Callable[[pa.Table, Merges], object]
# What handing one batch came to: taken, failed with this error, or nothing to hand
# (another process took it, or it cannot be read and was set aside or left to rest).
Outcome = bool | Exception | None


@dataclass(frozen=True)
class _Fresh:
    """The batch just stored, not kept anywhere yet."""

    rows: pa.Table
    merges: Merges


class Listeners:
    """The listeners of stored events by name, with the batches each still has to take.
    Callers serialise the calls (the pipeline's lock or its applier thread)."""

    def __init__(self, backlog_dir: Path | None) -> None:
        self.backlog = ListenerBacklog(backlog_dir)
        self.named: list[tuple[str, Listener]] = []
        self._resting: dict[Path, float] = {}  # kept batch -> monotonic time it may go again

    def listen(self, name: str, listener: Listener) -> None:
        self.named.append((name, listener))

    def notify(self, rows: pa.Table, merges: Merges) -> None:
        """Hand every listener the stored batch. Never raises: the events are committed."""
        for name, listener in self.named:
            try:
                self._pass(name, listener, _Fresh(rows, merges), sweep=False)
            except Exception:
                log.exception(
                    "the %s listener's batch of %d events was neither taken nor kept",
                    name,
                    rows.num_rows,
                )

    def catch_up(self) -> int:
        """Hand each listener the batches it failed on before, also those resting (after
        listing its folder again: an operator may have moved a set-aside batch back); how
        many it took. Never raises: a failure here is logged and tried again later."""
        taken = 0
        for name, listener in self.named:
            try:
                self.backlog.refresh(name)
                taken += self._pass(name, listener, None, sweep=True)
            except Exception:
                log.exception("could not hand the %s listener its kept batches", name)
        waiting = {k.path for name, _ in self.named for k in self.backlog.pending(name)}
        self._resting = {p: t for p, t in self._resting.items() if p in waiting}
        return taken

    # -- one pass over a listener's batches -----------------------------------------------

    def _pass(self, name: str, listener: Listener, fresh: _Fresh | None, *, sweep: bool) -> int:
        """The kept batches (oldest first, then ``fresh``) handed to ``listener``; how
        many kept ones it took. See the module's docstring for the rules."""
        now = time.monotonic()
        queue = [
            k for k in self.backlog.pending(name) if sweep or self._resting.get(k.path, 0.0) <= now
        ]
        doubtful: list[tuple[Kept, Exception]] = []  # failures since it last took one
        taken = 0
        try:
            while True:
                probing = len(doubtful) >= 2
                kept: Kept | None = None
                if queue and not probing:
                    kept = queue.pop(0)
                    outcome = self._hand(name, listener, kept)
                elif fresh is not None:
                    outcome = self._offer(name, listener, fresh)
                    fresh = None
                elif queue:  # the sweep probes with the newest kept batch
                    kept = queue.pop()
                    outcome = self._hand(name, listener, kept)
                else:
                    break
                if outcome is True:
                    taken += kept is not None
                    taken += self._retry(name, listener, [failed for failed, _ in doubtful])
                    doubtful = []
                elif isinstance(outcome, Exception):
                    if probing or kept is None:
                        break  # failing on everything, it seems: nothing counts, the rest waits
                    doubtful.append((kept, outcome))
        finally:
            if fresh is not None:  # whatever went wrong with the old ones, not this one
                self._offer(name, listener, fresh)
        if taken:
            log.info("the %s listener took %d kept batches", name, taken)
        return taken

    def _retry(self, name: str, listener: Listener, doubtful: list[Kept]) -> int:
        """The listener just took a batch: hand the ones it failed on right before once
        more; how many it took. A failure now is the batch's own and counts, and ends the
        retry: the next one, failing too, could be the outage back."""
        taken = 0
        for kept in doubtful:
            outcome = self._hand(name, listener, kept)
            if outcome is True:
                taken += 1
            elif isinstance(outcome, Exception):
                self._judge(name, kept, outcome)
                break
        return taken

    def _offer(self, name: str, listener: Listener, fresh: _Fresh) -> Outcome:
        """Hand the batch just stored; kept for later if the listener fails on it."""
        try:
            listener(fresh.rows, fresh.merges)
        except Exception as error:
            kept = self.backlog.keep(name, fresh.rows, fresh.merges)
            log.exception(
                "the %s listener failed on a stored batch of %d events; %s",
                name,
                fresh.rows.num_rows,
                f"kept in {kept.path} to hand it again" if kept else "it is not kept",
            )
            return error
        return True

    def _hand(self, name: str, listener: Listener, kept: Kept) -> Outcome:
        """Never raises: a kept batch the disk will not let us tidy (set aside, count,
        remove once taken) stays where it is, is logged, and holds back no other."""
        try:
            return self._hand_kept(name, listener, kept)
        except Exception:
            log.exception("could not tidy the %s listener's kept batch %s", name, kept.path)
            return None

    def _hand_kept(self, name: str, listener: Listener, kept: Kept) -> Outcome:
        try:
            rows, merges = self.backlog.load(kept.path)
        except FileNotFoundError as error:
            if kept.path.is_symlink():
                self._unreadable(name, kept, error)  # a link to nowhere
            else:  # taken by another process of the project
                self.backlog.forget(name, kept)
                self._resting.pop(kept.path, None)
            return None
        except OSError as error:
            if error.errno is None:  # pyarrow's own: not an Arrow file, or not a file
                self._unreadable(name, kept, error)
            else:  # the system cannot read it now (permissions, I/O): counted, it rests
                log.warning("cannot read the kept batch %s: %s", kept.path, error)
                self._judge(name, kept, error)
            return None
        except UNREADABLE_ERRORS as error:
            self._unreadable(name, kept, error)
            return None
        try:
            listener(rows, merges)
        except Exception as error:
            log.warning("the %s listener failed again on %s: %s", name, kept.path.name, error)
            return error
        self.backlog.done(name, kept)
        self._resting.pop(kept.path, None)
        return True

    def _unreadable(self, name: str, kept: Kept, error: BaseException) -> None:
        self._resting.pop(kept.path, None)
        aside = self.backlog.set_aside(name, kept)
        log.error(
            "a kept batch of the %s listener cannot be read (%s); set aside as %s",
            name,
            error,
            aside,
        )

    def _judge(self, name: str, kept: Kept, error: Exception) -> None:
        """Count a failure that was the batch's own: it rests, or goes aside for good.
        Never raises (a disk refusing the rename is logged; the batch stays)."""
        try:
            self._count(name, kept, error)
        except Exception:
            log.exception("could not count a failure on the kept batch %s", kept.path)

    def _count(self, name: str, kept: Kept, error: Exception) -> None:
        self._resting.pop(kept.path, None)
        counted = self.backlog.failed(name, kept)
        if counted is None:
            return  # another process took it meanwhile
        if not should_set_aside(counted.failures, counted.first_failed, error):
            self._resting[counted.path] = time.monotonic() + RETRY_ALONE_AFTER_S
            return
        aside = self.backlog.set_aside(name, counted)
        if aside is None:
            return
        log.error(
            "the %s listener failed %d times on one kept batch while it took others "
            "(last: %s); set aside as %s (move it back into %s to hand it again)",
            name,
            counted.failures,
            error,
            aside,
            aside.parent.parent,
        )
