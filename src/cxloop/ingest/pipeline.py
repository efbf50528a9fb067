"""The ingestion pipeline: identity resolution in the app database, then one columnar append.

Order matters for "a 200 means durably stored": customers and identities are committed
first, then the events; only then is the batch acknowledged. A crash in between leaves a
customer without events (harmless; the client retries and the events arrive) but never an
event without a customer. Moving a merged customer's events is recorded as a to-do in the
same transaction as the merge and finished after the append, or at the next start-up.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    Table,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from cxloop.domain.messages import Message, MessageError, Rejected
from cxloop.domain.traits import TYPED_FIELDS, split_traits
from cxloop.domain.values import as_utc
from cxloop.events.base import EVENTS_ARROW_SCHEMA, AppendResult, EventStore, utc_datetimes
from cxloop.ingest.backlog import ListenerBacklog
from cxloop.ingest.handing import Listener, Listeners
from cxloop.ingest.identity import (
    ANON,
    USER,
    IdentityClaim,
    IdentityPlan,
    IdentityPlanner,
    Key,
    claim_keys,
    plan_single_keys,
)
from cxloop.ingest.overlap import OverlappedAppend
from cxloop.ingest.rows import messages_table
from cxloop.store import audit
from cxloop.store.bulk import bulk_insert, driver_rows, insert_driver_rows
from cxloop.store.models import Customer, CustomerIdentity, CustomerMerge, RejectedMessage

log = logging.getLogger(__name__)
T = TypeVar("T")
_encode_json = msgspec.json.Encoder(order="sorted").encode

customers_t = cast(Table, Customer.__table__)
identities_t = cast(Table, CustomerIdentity.__table__)
merges_t = cast(Table, CustomerMerge.__table__)
rejected_t = cast(Table, RejectedMessage.__table__)

_IN_CHUNK = 500
_CACHE_LIMIT = 2_000_000
_SEEN_LIMIT = 1_000_000
_SEEN_GRANULARITY = timedelta(minutes=1)


@dataclass
class IngestResult:
    accepted: int = 0
    stored: int = 0
    duplicates: int = 0
    customers_created: int = 0
    merges: int = 0
    rejected: list[MessageError] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.accepted += other.accepted
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.customers_created += other.customers_created
        self.merges += other.merges
        self.rejected.extend(other.rejected)


@dataclass
class CustomerUpsert:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rows: int = 0


@dataclass(frozen=True)
class RealIds:
    """The real ids a batch's new customers got, keyed by the plan's provisional numbers;
    called with any customer number, it answers the real one."""

    created: dict[int, int]

    def __call__(self, customer: int) -> int:
        return self.created.get(customer, customer)


@dataclass
class _Profile:
    """Trait updates of one customer within a batch, newest value last."""

    typed: dict[str, Any] = field(default_factory=dict)
    free: dict[str, Any] = field(default_factory=dict)


class IngestPipeline:
    """Owns the identity cache; one batch at a time (the process is the only writer)."""

    def __init__(
        self, engine: Engine, events: EventStore, *, backlog_dir: Path | None = None
    ) -> None:
        self.engine = engine
        self.events = events
        self._owner: dict[Key, int] = {}
        self._identified: set[int] = set()
        self._seen: dict[int, tuple[datetime, datetime]] = {}
        self._seen_learned: dict[int, tuple[datetime, datetime]] = {}
        self._lock = threading.Lock()
        self._overlap = OverlappedAppend(events)
        # Called after each stored batch with its rows and the merges it caused, by name.
        self._listeners = Listeners(backlog_dir)

    # -- public entry points -------------------------------------------------------------

    def ingest(
        self, messages: Sequence[Message], rejects: Sequence[Rejected] = (), *, source: str
    ) -> IngestResult:
        """Resolve, store and acknowledge one batch of valid messages (plus refused ones)."""
        unique = _first_of_each_id(messages)
        claims = [_claim(m) for m in unique]
        with self._lock:
            plan, owner = self._plan(claims)
            now = datetime.now(UTC)
            bounds = _bounds(plan.customer_of, [m.timestamp for m in unique])
            profiles = _profiles(unique, plan.customer_of)
            result = IngestResult(accepted=len(messages))
            result.duplicates = len(messages) - len(unique)

            def table_for(real: RealIds) -> pa.Table:
                return messages_table(unique, [real(c) for c in plan.customer_of], source)

            def write(conn: Connection, real: RealIds) -> list[tuple[int, int, int]]:
                self._write_identities(conn, plan, real, bounds, now)
                self._write_profiles(conn, profiles, real, now)
                self._write_rejects(conn, rejects, source, now)
                return self._write_merges(conn, plan, real, unique, now, owner)

            appended, moves, real, stored = self._store(plan, table_for, write)
            self._finish_moves(moves)
            self._notify(stored, moves)
            self._commit_cache(owner, plan, real)
        result.stored = appended.inserted
        result.duplicates += appended.duplicates
        result.customers_created = len(plan.new_customers) - len(
            [m for m in plan.merges if m.loser < 0]
        )
        result.merges = len(moves)
        result.rejected = [r.error for r in rejects]
        return result

    def ingest_table(self, table: pa.Table, *, source: str) -> IngestResult:
        """Bulk path for imported track events: identities resolved per distinct pair.

        ``table`` has the event columns except customer_id and the JSON columns other than
        properties; thousands of rows of one customer cost one identity look-up.
        """
        if table.num_rows == 0:
            return IngestResult()
        user = pc.fill_null(table["user_id"], "")
        anon = pc.fill_null(table["anonymous_id"], "")
        # One text key per (userId, anonymousId) pair: grouping and looking rows up by a
        # single column is much cheaper than a two-column join. The userId's length leads,
        # so no two pairs share a key whatever characters the ids hold.
        size = pc.cast(pc.binary_length(user), pa.string())
        key = pc.binary_join_element_wise(size, user, anon, ":")
        pairs = (
            pa.table({"k": key, "u": user, "a": anon, "ts": table["timestamp"]})
            .group_by(["k"], use_threads=False)
            .aggregate([("u", "first"), ("a", "first"), ("ts", "min"), ("ts", "max")])
            .rename_columns(["k", "u", "a", "ts_min", "ts_max"])
        )
        users, anons = pairs["u"].to_pylist(), pairs["a"].to_pylist()
        with self._lock:
            named = (pc.not_equal(pairs["u"], ""), pc.not_equal(pairs["a"], ""))
            if not pc.all(pc.xor(*named)).as_py():
                claims = [
                    IdentityClaim("track", user_id=u or None, anonymous_id=a or None)
                    for u, a in zip(users, anons, strict=True)
                ]
                plan, owner = self._plan(claims)
            else:  # one identity a row: nothing to link or merge
                keys = [(USER, u) if u else (ANON, a) for u, a in zip(users, anons, strict=True)]
                owner = self._owners(set(keys))
                plan = plan_single_keys(keys, owner)
            now = datetime.now(UTC)
            seen = _customer_bounds(plan.customer_of, pairs["ts_min"], pairs["ts_max"])
            known = seen.filter(pc.greater_equal(seen["customer"], 0))
            bounds = dict(
                zip(
                    known["customer"].to_pylist(),
                    zip(
                        cast(list[datetime], utc_datetimes(known["lo"])),  # never null here
                        cast(list[datetime], utc_datetimes(known["hi"])),
                        strict=True,
                    ),
                    strict=True,
                )
            )

            def table_for(real: RealIds) -> pa.Table:
                pair_customers = pa.array([real(c) for c in plan.customer_of], pa.int64())
                position = pc.index_in(key, value_set=pairs["k"])
                with_ids = table.append_column("customer_id", pc.take(pair_customers, position))
                return _complete_event_columns(with_ids, source, now)

            def write(conn: Connection, real: RealIds) -> list[tuple[int, int, int]]:
                _insert_new_customers(conn, seen.filter(pc.less(seen["customer"], 0)), real, now)
                _insert_new_identities(conn, plan, real, now)
                self._write_seen(conn, bounds, real)
                return self._write_merges(conn, plan, real, [], now, owner)

            appended, moves, real, stored = self._store(plan, table_for, write)
            self._finish_moves(moves)
            self._notify(stored, moves)
            self._commit_cache(owner, plan, real)
        return IngestResult(
            accepted=table.num_rows,
            stored=appended.inserted,
            duplicates=appended.duplicates,
            customers_created=len(plan.new_customers)
            - len([m for m in plan.merges if m.loser < 0]),
            merges=len(moves),
        )

    def upsert_customers(self, table: pa.Table, *, source: str) -> CustomerUpsert:
        """Create or update customer profiles from imported rows.

        Rows find their customer by userId, else by e-mail. Only values a row gives change:
        an empty cell never erases what is known. A row identical to what is stored counts
        as unchanged, so importing the same file twice changes nothing. Each created or
        changed profile is also recorded as an ``identify`` event carrying the row's values
        (as Segment's own CSV upload does), so the timeline shows it and lifecycle rules
        on traits see it like any identify call.
        """
        rows = table.to_pylist()
        if not rows:
            return CustomerUpsert()
        claims = [
            IdentityClaim("identify", user_id=r.get("user_id"), email=r.get("email")) for r in rows
        ]
        with self._lock:
            plan, owner = self._plan(claims)
            now = datetime.now(UTC)
            created = set(plan.new_customers) - {m.loser for m in plan.merges}
            with self.engine.begin() as conn:
                real = self._allocate(conn, plan)
                self._write_identities(conn, plan, real, {}, now)
                desired = _desired_profiles(rows, [real(c) for c in plan.customer_of])
                changed = _apply_profiles(conn, desired, now)
            new_ids = {real(c) for c in created}
            user_of = {real(plan.customer_of[i]): r.get("user_id") for i, r in enumerate(rows)}
            recorded = _profile_events(desired, changed | new_ids, user_of, source, now)
            if recorded.num_rows:
                self.events.append(recorded)
                self._notify(recorded, [])
            self._commit_cache(owner, plan, real)
        return CustomerUpsert(
            created=len(new_ids),
            updated=len(changed - new_ids),
            unchanged=len(set(desired) - changed - new_ids),
            rows=len(rows),
        )

    def _store(
        self,
        plan: IdentityPlan,
        table_for: Callable[[RealIds], pa.Table],
        write: Callable[[Connection, RealIds], T],
    ) -> tuple[AppendResult, T, RealIds, pa.Table]:
        """Allocate the new customers' ids, then append the events while the app database
        writes and commits (see ingest/overlap.py: the events commit only after it)."""
        with self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                real = self._allocate(conn, plan)

                def write_and_commit() -> T:
                    value = write(conn, real)
                    transaction.commit()
                    return value

                table = table_for(real)
                appended, value = self._overlap.run(table, write_and_commit)
            except BaseException:
                if transaction.is_active:
                    transaction.rollback()
                raise
        return appended, value, real, table

    def close(self) -> None:
        self._overlap.close()

    def healthy(self) -> bool:
        """Both stores answer: a failure now is about the data, not an outage."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
            self.events.ping()
        except Exception:
            return False
        return True

    def quarantine(
        self, messages: Sequence[Message], rejects: Sequence[Rejected], *, source: str, why: str
    ) -> None:
        """Keep messages that cannot be stored in rejected_messages, with the reason.

        They were acknowledged, so they must not vanish; but one message the stores refuse
        must not stop everything behind it either.
        """
        kept = [
            Rejected(
                MessageError(-1, "message", f"could not be stored: {why}"[:2000], m.message_id),
                _message_json(m),
            )
            for m in messages
        ]
        with self._lock, self.engine.begin() as conn:
            self._write_rejects(conn, [*rejects, *kept], source, datetime.now(UTC))

    def forget_customer(self, customer_id: int) -> None:
        """Drop cached identities of a customer merged away outside the pipeline."""
        with self._lock:
            for key in [k for k, c in self._owner.items() if c == customer_id]:
                del self._owner[key]
            self._identified.discard(customer_id)

    def recover(self) -> int:
        """Finish event moves of merges that a crash interrupted; returns how many."""
        with self.engine.connect() as conn:
            pending = conn.execute(
                select(merges_t.c.id, merges_t.c.from_customer_id, merges_t.c.into_customer_id)
                .where(merges_t.c.events_moved.is_(False))
                .order_by(merges_t.c.id)
            ).all()
        if pending:
            log.info("finishing %d interrupted customer merges", len(pending))
        moves = [(row[0], row[1], row[2]) for row in pending]
        self._finish_moves(moves)
        if moves:
            self._notify(None, moves)
        return len(pending)

    def listen(self, name: str, listener: Listener) -> None:
        """Call ``listener`` after each stored batch; ``name`` keeps its backlog apart."""
        self._listeners.listen(name, listener)

    @property
    def backlog(self) -> ListenerBacklog:
        return self._listeners.backlog

    def catch_up(self) -> int:
        """Hand each listener the batches it failed on before; how many it took. Never
        raises (see :class:`Listeners`)."""
        with self._lock:
            return self._listeners.catch_up()

    def _notify(self, rows: pa.Table | None, moves: Sequence[tuple[int, int, int]]) -> None:
        """Tell listeners (the stage engine, cases, triggers, rules, webhooks) what was
        stored. Their failure must not undo or refuse stored events, nor be forgotten:
        the batch is kept in the backlog and handed to that listener again. Never raises,
        since the events are committed already."""
        if not self._listeners.named:
            return
        merges = [(loser, survivor) for _, loser, survivor in moves]
        table = rows if rows is not None else EVENTS_ARROW_SCHEMA.empty_table()
        if table.num_rows == 0 and not merges:
            return
        self._listeners.notify(table, merges)

    # -- identity planning ---------------------------------------------------------------

    def _owners(self, keys: set[Key]) -> dict[Key, int]:
        """The customers owning ``keys``, from the cache or the app database."""
        missing = [k for k in keys if k not in self._owner]
        owner = {k: self._owner[k] for k in keys if k in self._owner}
        if missing:
            with self.engine.connect() as conn:
                owner.update(_load_owners(conn, missing))
        return owner

    def _plan(self, claims: Sequence[IdentityClaim]) -> tuple[IdentityPlan, dict[Key, int]]:
        owner = self._owners(claim_keys(claims))
        unknown = {c for c in owner.values() if c not in self._identified}
        identified = set(self._identified)
        if unknown:
            with self.engine.connect() as conn:
                identified.update(_load_identified(conn, unknown))
        planner = IdentityPlanner(owner, identified)
        for index, claim in enumerate(claims):
            planner.add(index, claim)
        return planner.finish(), owner

    # -- writes ---------------------------------------------------------------------------

    def _allocate(self, conn: Connection, plan: IdentityPlan) -> RealIds:
        """Real ids for the plan's new customers (merged-away newcomers get none)."""
        losers = {m.loser for m in plan.merges}
        to_create = [c for c in plan.new_customers if c not in losers]
        if not to_create:
            return RealIds({})
        ids = _allocate_customer_ids(conn, len(to_create))
        return RealIds(dict(zip(to_create, ids, strict=True)))

    def _write_identities(
        self,
        conn: Connection,
        plan: IdentityPlan,
        real: RealIds,
        bounds: dict[int, tuple[datetime, datetime]],
        now: datetime,
    ) -> None:
        created = real.created
        if created:
            empty: dict[str, Any] = {}
            bulk_insert(
                conn,
                customers_t,
                ("id", "traits", "created_at", "updated_at", "first_seen", "last_seen"),
                [
                    (
                        customer_id,
                        empty,
                        bounds[c][0] if c in bounds else now,
                        now,
                        bounds[c][0] if c in bounds else None,
                        bounds[c][1] if c in bounds else None,
                    )
                    for c, customer_id in created.items()
                ],
            )
        _insert_new_identities(conn, plan, real, now)
        self._write_seen(conn, bounds, real)

    def _write_seen(
        self, conn: Connection, bounds: dict[int, tuple[datetime, datetime]], real: Any
    ) -> None:
        widening = self._seen_to_write(bounds, real)
        if widening:
            _update_seen(conn, widening)

    def _seen_to_write(
        self, bounds: dict[int, tuple[datetime, datetime]], real: Any
    ) -> dict[int, tuple[datetime, datetime]]:
        """The first/last-seen changes worth a write.

        ``_seen`` holds bounds known to lie inside the stored ones. A batch of an active
        customer whose events fall inside them (last seen at most a minute later) needs no
        write: last seen is kept to the minute, and most rewrites of customer rows go away.
        """
        widening: dict[int, tuple[datetime, datetime]] = {}
        learned: dict[int, tuple[datetime, datetime]] = {}
        for customer, (lo, hi) in bounds.items():
            if customer < 0:
                learned[real(customer)] = (lo, hi)  # created with exactly these bounds
                continue
            known = self._seen.get(customer)
            if known is not None and lo >= known[0] and hi <= known[1] + _SEEN_GRANULARITY:
                continue
            widening[customer] = (lo, hi)
            learned[customer] = (
                (lo, hi) if known is None else (min(lo, known[0]), max(hi, known[1]))
            )
        # Learned only once the transaction commits (see _commit_cache): a failed batch is
        # retried, and its retry must write again.
        self._seen_learned = learned
        return widening

    def _write_profiles(
        self, conn: Connection, profiles: dict[int, _Profile], real: Any, now: datetime
    ) -> None:
        if not profiles:
            return
        ids = {real(c): p for c, p in profiles.items()}
        typed_fields = sorted({f for p in ids.values() for f in p.typed})
        columns = [
            customers_t.c.id,
            customers_t.c.traits,
            *(customers_t.c[f] for f in typed_fields),
        ]
        current = {
            row.id: row
            for chunk in _chunks(list(ids), _IN_CHUNK)
            for row in conn.execute(select(*columns).where(customers_t.c.id.in_(chunk)))
        }
        # One executemany per set of named fields: the others keep their stored value.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for customer, profile in ids.items():
            row = current.get(customer)
            stored = (row.traits or {}) if row is not None else {}
            traits = {**stored, **profile.free}
            if row is not None and _unchanged(row, stored, traits, profile.typed):
                # Clients identify on every page load with the same traits: nothing to write.
                continue
            named = tuple(sorted(profile.typed))
            groups.setdefault(named, []).append(
                {
                    "b_id": customer,
                    "b_traits": traits,
                    "b_updated_at": now,
                    **{f"b_{f}": profile.typed[f] for f in named},
                }
            )
        for named, rows in groups.items():
            stmt = (
                update(customers_t)
                .where(customers_t.c.id == bindparam("b_id"))
                .values(
                    traits=bindparam("b_traits"),
                    updated_at=bindparam("b_updated_at"),
                    **{f: bindparam(f"b_{f}") for f in named},
                )
            )
            conn.execute(stmt, rows)

    def _write_rejects(
        self, conn: Connection, rejects: Sequence[Rejected], source: str, now: datetime
    ) -> None:
        if not rejects:
            return
        conn.execute(
            insert(rejected_t),
            [
                {
                    "received_at": now,
                    "source": source,
                    "batch_index": r.error.index,
                    "message_id": _no_nul(r.error.message_id),
                    "field": _no_nul(r.error.field),
                    "reason": _no_nul(r.error.reason),
                    "payload": _no_nul(r.payload[:65536]),
                }
                for r in rejects
            ],
        )

    def _write_merges(
        self,
        conn: Connection,
        plan: IdentityPlan,
        real: Any,
        messages: Sequence[Message],
        now: datetime,
        owner: dict[Key, int],
    ) -> list[tuple[int, int, int]]:
        """Merge persisted customers; returns (merge id, loser, survivor) to move events.

        Every identity the loser had in the database now names the survivor; ``owner``
        learns that, so the cache never hands out a merged-away customer.
        """
        moves: list[tuple[int, int, int]] = []
        for merge in plan.merges:
            if merge.loser < 0:
                continue
            survivor = real(merge.survivor)
            message_id = messages[merge.message_index].message_id if messages else None
            merge_id, moved = merge_customers(
                conn, merge.loser, survivor, reason=merge.reason, message_id=message_id, now=now
            )
            for key in moved:
                owner[key] = survivor
            moves.append((merge_id, merge.loser, survivor))
        return moves

    def _finish_moves(self, moves: Iterable[tuple[int, int, int]]) -> None:
        for merge_id, loser, survivor in moves:
            moved = self.events.move_customers({loser: survivor})
            with self.engine.begin() as conn:
                conn.execute(
                    update(merges_t)
                    .where(merges_t.c.id == merge_id)
                    .values(events_moved=True, events_moved_count=moved)
                )

    def _commit_cache(self, owner: dict[Key, int], plan: IdentityPlan, real: Any) -> None:
        """Remember what this batch committed: only real ids of surviving customers.

        ``owner`` holds the loaded identities (and moved ones, re-pointed by merges) plus the
        planner's raw claims; the claims are taken from the plan, resolved through merges.
        """
        if len(self._owner) > _CACHE_LIMIT:
            self._owner.clear()
            self._identified.clear()
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.clear()
        self._seen.update(self._seen_learned)
        self._seen_learned = {}
        for key, customer in owner.items():
            if key not in plan.new_identities and customer >= 0:
                self._owner[key] = customer
        for key, customer in plan.new_identities.items():
            self._owner[key] = real(customer)
        for merge in plan.merges:
            self._identified.discard(merge.loser)
        self._identified.update(real(c) for c in plan.identified)


def merge_customers(
    conn: Connection,
    loser: int,
    survivor: int,
    *,
    reason: str,
    message_id: str | None,
    now: datetime,
) -> tuple[int, list[Key]]:
    """Fold ``loser`` into ``survivor`` in the app database and record the merge.

    The survivor keeps its own values; the loser fills the gaps. The loser's row stays,
    pointing at the survivor, so old ids in links and reports still resolve.
    """
    rows = {
        row.id: row
        for row in conn.execute(select(customers_t).where(customers_t.c.id.in_([loser, survivor])))
    }
    if loser not in rows or survivor not in rows:
        raise LookupError(f"customer {loser if loser not in rows else survivor} does not exist")
    lost, kept = rows[loser], rows[survivor]
    if reason == "manual":  # automatic merges are recorded in customer_merges alone
        audit.record(
            conn,
            None,
            "merged",
            "merge",
            survivor,
            f"customer {loser} merged into customer {survivor}",
        )
    moved = conn.execute(
        update(identities_t)
        .where(identities_t.c.customer_id == loser)
        .values(customer_id=survivor)
        .returning(identities_t.c.kind, identities_t.c.value)
    ).all()
    values: dict[str, Any] = {
        f: getattr(kept, f) if getattr(kept, f) is not None else getattr(lost, f)
        for f in TYPED_FIELDS
    }
    values["traits"] = {**(lost.traits or {}), **(kept.traits or {})}
    values["first_seen"] = _min(kept.first_seen, lost.first_seen)
    values["last_seen"] = _max(kept.last_seen, lost.last_seen)
    values["created_at"] = _min(kept.created_at, lost.created_at)
    values["updated_at"] = now
    conn.execute(update(customers_t).where(customers_t.c.id == survivor).values(**values))
    conn.execute(
        update(customers_t).where(customers_t.c.id == loser).values(merged_into_id=survivor)
    )
    conn.execute(
        update(customers_t)
        .where(customers_t.c.merged_into_id == loser)
        .values(merged_into_id=survivor)
    )
    result = conn.execute(
        insert(merges_t).returning(merges_t.c.id),
        {
            "from_customer_id": loser,
            "into_customer_id": survivor,
            "reason": reason,
            "message_id": message_id,
            "details": {"identities": [f"{k}:{v}" for k, v in moved]},
            "merged_at": now,
            "events_moved": False,
        },
    )
    return int(result.scalar_one()), [(k, v) for k, v in moved]


def _message_json(message: Message) -> str:
    return msgspec.json.encode(msgspec.structs.asdict(message)).decode(errors="replace")


def _profile_events(
    desired: dict[int, dict[str, Any]],
    customers: set[int],
    user_of: dict[int, str | None],
    source: str,
    now: datetime,
) -> pa.Table:
    """One identify event per created or changed profile, with the values the file gave.

    Its id hashes the customer and those values, so a replayed import stores it once; its
    time is the row's created_at when the file has one (a profile's first appearance).
    """
    messages = []
    ids = []
    for customer in sorted(customers):
        values = desired[customer]
        traits = {k: v for k, v in values.items() if k not in ("traits", "created_at")}
        traits.update(values["traits"])
        digest = hashlib.md5(_encode_json([customer, traits]), usedforsecurity=False).hexdigest()
        created = as_utc(values.get("created_at"))
        messages.append(
            Message(
                type="identify",
                message_id=f"imp-profile-{digest}",
                user_id=user_of.get(customer),
                anonymous_id=None,
                event=None,
                name=None,
                timestamp=created or now,
                original_timestamp=created,
                sent_at=None,
                received_at=now,
                channel=None,
                properties=None,
                traits=traits,
                context=None,
                integrations=None,
                group_id=None,
                previous_id=None,
            )
        )
        ids.append(customer)
    return messages_table(messages, ids, source)


def _desired_profiles(
    rows: Sequence[dict[str, Any]], customers: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Per customer, the values the imported rows give (later rows win)."""
    desired: dict[int, dict[str, Any]] = {}
    for row, customer in zip(rows, customers, strict=True):
        values = desired.setdefault(customer, {"traits": {}})
        for name in (*TYPED_FIELDS, "created_at"):
            value = row.get(name)
            if value is not None and value != "":
                values[name] = value
        extra = row.get("traits")
        if extra:
            decoded = msgspec.json.decode(extra) if isinstance(extra, str) else extra
            values["traits"].update({k: v for k, v in decoded.items() if v is not None})
    return desired


def _apply_profiles(
    conn: Connection, desired: dict[int, dict[str, Any]], now: datetime
) -> set[int]:
    """Write the values that differ from what is stored; returns the customers changed."""
    current: dict[int, Any] = {}
    for chunk in _chunks(list(desired), _IN_CHUNK):
        for found in conn.execute(select(customers_t).where(customers_t.c.id.in_(chunk))):
            current[found.id] = found
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    changed: set[int] = set()
    for customer, values in desired.items():
        row = current.get(customer)
        if row is None:
            continue
        traits = {**(row.traits or {}), **values["traits"]}
        update_values: dict[str, Any] = {}
        if traits != (row.traits or {}):
            update_values["traits"] = traits
        for name, value in values.items():
            if name == "traits":
                continue
            stored = getattr(row, name)
            if name == "created_at":
                stored = as_utc(stored)
            if stored != value:
                update_values[name] = value
        if not update_values:
            continue
        changed.add(customer)
        named = tuple(sorted(update_values))
        groups.setdefault(named, []).append(
            {
                "b_id": customer,
                "b_updated_at": now,
                **{f"b_{k}": v for k, v in update_values.items()},
            }
        )
    for named, params in groups.items():
        conn.execute(
            update(customers_t)
            .where(customers_t.c.id == bindparam("b_id"))
            .values(
                updated_at=bindparam("b_updated_at"), **{k: bindparam(f"b_{k}") for k in named}
            ),
            params,
        )
    return changed


def _first_of_each_id(messages: Sequence[Message]) -> list[Message]:
    seen: set[str] = set()
    unique = []
    for m in messages:
        if m.message_id not in seen:
            seen.add(m.message_id)
            unique.append(m)
    return unique


def _claim(m: Message) -> IdentityClaim:
    email = m.traits.get("email") if m.type == "identify" else None
    return IdentityClaim(
        m.type,
        user_id=m.user_id,
        anonymous_id=m.anonymous_id,
        email=email.strip() if isinstance(email, str) and "@" in email else None,
        previous_id=m.previous_id,
    )


def _bounds(
    customers: Sequence[int], times: Sequence[datetime]
) -> dict[int, tuple[datetime, datetime]]:
    bounds: dict[int, tuple[datetime, datetime]] = {}
    for customer, ts in zip(customers, times, strict=True):
        known = bounds.get(customer)
        if known is None:
            bounds[customer] = (ts, ts)
        elif ts < known[0]:
            bounds[customer] = (ts, known[1])
        elif ts > known[1]:
            bounds[customer] = (known[0], ts)
    return bounds


def _customer_bounds(
    customers: Sequence[int], lows: pa.ChunkedArray, highs: pa.ChunkedArray
) -> pa.Table:
    """First and last event time of each customer of an imported table, as Arrow: for a
    hundred thousand new customers, Python date-times cost more than their SQL insert."""
    return (
        pa.table({"customer": pa.array(customers, pa.int64()), "lo": lows, "hi": highs})
        .group_by(["customer"], use_threads=False)
        .aggregate([("lo", "min"), ("hi", "max")])
        .rename_columns(["customer", "lo", "hi"])
    )


def _insert_new_customers(conn: Connection, bounds: pa.Table, real: RealIds, now: datetime) -> None:
    """The new customers of an imported table, first seen when their first event happened.

    The seen cache (see ``_seen_to_write``) does not learn their bounds: that would take
    Python date-times for every new customer, the cost this write avoids. The price is one
    set-based update of first/last seen when such a customer shows up again in a later
    chunk of a file over a million rows, or in live events of the server that imported.
    """
    if bounds.num_rows == 0:
        return
    ids = pa.array([real(c) for c in bounds["customer"].to_pylist()], pa.int64())
    rows = pa.table(
        {
            "id": ids,
            "created_at": bounds["lo"],
            "first_seen": bounds["lo"],
            "last_seen": bounds["hi"],
        }
    )
    prepared = driver_rows(conn.dialect, customers_t, rows, {"traits": {}, "updated_at": now})
    insert_driver_rows(conn, customers_t, prepared)


def _insert_new_identities(
    conn: Connection, plan: IdentityPlan, real: RealIds, now: datetime
) -> None:
    bulk_insert(
        conn,
        identities_t,
        ("customer_id", "kind", "value"),
        [(real(c), kind, value) for (kind, value), c in plan.new_identities.items()],
        constants={"created_at": now},
    )


def _profiles(messages: Sequence[Message], customers: Sequence[int]) -> dict[int, _Profile]:
    """Trait updates per customer; bad typed values were already reported to the sender."""
    profiles: dict[int, _Profile] = {}
    ordered = sorted(
        (i for i, m in enumerate(messages) if m.type == "identify" and m.traits),
        key=lambda i: messages[i].timestamp,
    )
    for i in ordered:
        typed, free, _problems = split_traits(messages[i].traits)
        profile = profiles.setdefault(customers[i], _Profile())
        profile.typed.update(typed)
        profile.free.update(free)
    return profiles


def _allocate_customer_ids(conn: Connection, count: int) -> list[int]:
    """Ids for new customers, so they can be inserted in one executemany.

    PostgreSQL hands them out from the table's sequence (safe with other writers). SQLite
    continues after the highest id inside the writing transaction; the project has one
    writer (see docs/architecture.md), and a clash would fail the batch, never mix people.
    """
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('customers', 'id')) "
                "FROM generate_series(1, :n)"
            ),
            {"n": count},
        )
        return sorted(int(r[0]) for r in rows)
    start = conn.execute(select(func.coalesce(func.max(customers_t.c.id), 0))).scalar_one()
    return list(range(int(start) + 1, int(start) + 1 + count))


def _load_owners(conn: Connection, keys: Sequence[Key]) -> dict[Key, int]:
    """Owners of the keys, one indexed look-up per kind (the index is on kind, value)."""
    found: dict[Key, int] = {}
    by_kind: dict[str, list[str]] = {}
    for kind, value in keys:
        by_kind.setdefault(kind, []).append(value)
    for kind, values in by_kind.items():
        for chunk in _chunks(sorted(values), _IN_CHUNK):
            for value, customer in conn.execute(
                select(identities_t.c.value, identities_t.c.customer_id).where(
                    identities_t.c.kind == kind, identities_t.c.value.in_(chunk)
                )
            ):
                found[(kind, value)] = customer
    return found


def _load_identified(conn: Connection, customers: Iterable[int]) -> set[int]:
    identified: set[int] = set()
    for chunk in _chunks(sorted(customers), _IN_CHUNK):
        identified.update(
            conn.execute(
                select(identities_t.c.customer_id)
                .where(identities_t.c.kind == USER, identities_t.c.customer_id.in_(chunk))
                .distinct()
            ).scalars()
        )
    return identified


_seen_t = Table(
    "cx_seen_bounds",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("lo", DateTime(timezone=True)),
    Column("hi", DateTime(timezone=True)),
    prefixes=["TEMPORARY"],
)


def _update_seen(conn: Connection, bounds: dict[int, tuple[datetime, datetime]]) -> None:
    """Widen first/last seen of existing customers with one set-based UPDATE.

    The bounds go to a temporary table in one executemany; a row-by-row UPDATE costs a
    statement per customer, which dominated large imports.
    """
    if not bounds:
        return
    _seen_t.create(conn, checkfirst=True)
    conn.execute(_seen_t.delete())
    conn.execute(insert(_seen_t), [{"id": c, "lo": lo, "hi": hi} for c, (lo, hi) in bounds.items()])
    c = customers_t.c
    conn.execute(
        update(customers_t)
        .where(c.id == _seen_t.c.id)
        .values(
            first_seen=case(
                (or_(c.first_seen.is_(None), _seen_t.c.lo < c.first_seen), _seen_t.c.lo),
                else_=c.first_seen,
            ),
            last_seen=case(
                (or_(c.last_seen.is_(None), _seen_t.c.hi > c.last_seen), _seen_t.c.hi),
                else_=c.last_seen,
            ),
        )
    )
    conn.execute(_seen_t.delete())


def _complete_event_columns(table: pa.Table, source: str, now: datetime) -> pa.Table:
    """Add the columns an imported track row lacks, in the event store's layout."""

    n = table.num_rows
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for fld in EVENTS_ARROW_SCHEMA:
        if fld.name in table.column_names:
            columns[fld.name] = table[fld.name].cast(fld.type)
        elif fld.name == "received_at":
            columns[fld.name] = pa.repeat(pa.scalar(now, fld.type), n)
        elif fld.name == "source":
            columns[fld.name] = pa.repeat(pa.scalar(source, fld.type), n)
        elif fld.name == "type":
            columns[fld.name] = pa.repeat(pa.scalar("track", fld.type), n)
        else:
            columns[fld.name] = pa.nulls(n, fld.type)
    return pa.table(columns, schema=EVENTS_ARROW_SCHEMA)


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    a, b = as_utc(a), as_utc(b)
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    a, b = as_utc(a), as_utc(b)
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _unchanged(
    row: Any, stored: dict[str, Any], traits: dict[str, Any], typed: dict[str, Any]
) -> bool:
    """Whether writing would change nothing. Compared as JSON text and by type, so that
    ``true`` replacing ``1`` (equal in Python) still counts as a change."""
    for name, value in typed.items():
        old = getattr(row, name)
        if type(old) is not type(value) or old != value:
            return False
    return traits == stored and _encode_json(traits) == _encode_json(stored)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "ANON",
    "USER",
    "CustomerUpsert",
    "IngestPipeline",
    "IngestResult",
    "Rejected",
    "merge_customers",
]


def _no_nul(text: str | None) -> str | None:
    """Text PostgreSQL can store: a refused body may hold NUL characters (a raw 0x00 byte
    decoded), which a text column refuses; they are kept visible as U+FFFD instead."""
    return None if text is None else text.replace("\x00", "\ufffd")
