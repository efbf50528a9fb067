"""Noticing occurrences of triggers and turning each into a run.

Event triggers are matched by an ingestion listener on every stored batch (the batch is
in memory: a name filter in Arrow, then the rules' property conditions on the few rows
left). Everything else is read by the job worker's scans from cursors: stage moves,
answers, the activity outbox (cases, follow-ups), follow-ups whose due time passed, and
cron ticks. A run is unique on (rule, occurrence), so a replayed batch, a rescan or a
second worker never starts one twice, and its ``automation.run`` job is queued in the
same transaction as the run row.

Occurrences from before a rule was enabled (less ``GRACE`` for events that arrive late)
never fire it: turning on a win-back rule must not mail everyone who ever left, and an
imported history is not news.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, cast

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from croniter import croniter
from sqlalchemy import Connection, Engine, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from cxloop.domain.automations import MAX_CHAIN, RuleDefinition, minutes_in
from cxloop.domain.values import bounded_key, iso_utc, utc
from cxloop.lifecycle.service import move_key, moves_since, transitions_t
from cxloop.store import activity, jobs
from cxloop.store.models import Automation, AutomationRun, FollowUp, Survey, SurveyResponse

log = logging.getLogger(__name__)
rules_t = cast(Table, Automation.__table__)
runs_t = cast(Table, AutomationRun.__table__)
followups_t = cast(Table, FollowUp.__table__)
responses_t = cast(Table, SurveyResponse.__table__)
surveys_t = cast(Table, Survey.__table__)
RUN_JOB = "automation.run"
TICK_JOB = "automation.tick"
GRACE = timedelta(hours=1)


class ActiveRule:
    """An enabled rule with its parsed definition."""

    def __init__(self, row: Any) -> None:
        self.id = int(row.id)
        self.name: str = row.name
        self.enabled_at: datetime = utc(row.enabled_at)
        self.definition = RuleDefinition.model_validate(row.definition)

    @property
    def on(self) -> str:
        return self.definition.trigger.on


def active_rules(conn: Connection, *kinds: str) -> list[ActiveRule]:
    """The enabled rules (of ``kinds``), parsed. The ingestion listener asks on every
    batch, so the parsed rules are kept per database and read again only when a cheap
    fingerprint of the table (rows, last change, last id) moves."""
    fingerprint = tuple(
        conn.execute(
            select(func.count(), func.max(rules_t.c.updated_at), func.max(rules_t.c.id))
        ).one()
    )
    key = str(conn.engine.url)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is None or cached[0] != fingerprint:
        rows = conn.execute(select(rules_t).where(rules_t.c.enabled).order_by(rules_t.c.id)).all()
        parsed = []
        for row in rows:
            try:
                parsed.append(ActiveRule(row))
            except ValueError:
                log.exception("rule %s no longer parses; it is left alone", row.name)
        cached = (fingerprint, parsed)
        with _cache_lock:
            _cache[key] = cached
    return [r for r in cached[1] if not kinds or r.on in kinds]


_cache: dict[str, tuple[tuple[Any, ...], list[ActiveRule]]] = {}
_cache_lock = threading.Lock()


def _due(
    rule: ActiveRule, moment: datetime, trigger: dict[str, Any], as_of: datetime | None = None
) -> tuple[datetime, str | None]:
    """When the actions run, or why the run is skipped (no time to run before)."""
    timing = rule.definition.timing
    if timing.before is None:
        return moment + timedelta(minutes=minutes_in(timing.delay, "delay")), None
    raw = ((trigger.get("event") or {}).get("properties") or {}).get(timing.of or "")
    try:
        at = utc(datetime.fromisoformat(str(raw).replace("Z", "+00:00")))
    except (TypeError, ValueError):
        return moment, f"skipped: the event has no time in property {timing.of!r} ({raw!r})"
    if at <= (as_of or datetime.now(UTC)):
        return moment, f"skipped: {timing.of} ({iso_utc(at)}) has passed"
    return max(at - timedelta(minutes=minutes_in(timing.before, "before")), moment), None


def start_run(
    conn: Connection,
    rule: ActiveRule,
    customer_id: int,
    occurrence: str,
    moment: datetime,
    trigger: dict[str, Any],
    chain: list[int] | None = None,
    as_of: datetime | None = None,
) -> bool:
    """Record a run of ``rule`` for this occurrence and queue it; False when there is one
    already or the occurrence is too old for the rule. ``as_of`` judges "has the time
    passed" at another moment than now (replaying history)."""
    found = run_values(rule, customer_id, occurrence, moment, trigger, chain, as_of)
    return found is not None and start_runs(conn, [found]) == 1


def run_values(
    rule: ActiveRule,
    customer_id: int,
    occurrence: str,
    moment: datetime,
    trigger: dict[str, Any],
    chain: list[int] | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any] | None:
    """The row of a run of ``rule`` for this occurrence, or None when the occurrence is
    from before the rule was enabled."""
    moment = utc(moment)
    if moment < rule.enabled_at - GRACE:
        return None
    chain = list(chain or [])
    due, skipped = _due(rule, moment, trigger, as_of)
    if rule.id in chain:
        skipped = f"stopped: its own action caused this occurrence (rules {chain}); a loop"
    elif len(chain) >= MAX_CHAIN:
        skipped = f"stopped: {len(chain)} rules in a row caused this occurrence ({chain})"
    now = datetime.now(UTC)
    return {
        "automation_id": rule.id,
        "customer_id": customer_id,
        "occurrence": bounded_key(occurrence, 300),
        "trigger": trigger,
        "chain": [*chain, rule.id],
        "status": "skipped" if skipped else "scheduled",
        "outcome": skipped,
        "due_at": due,
        "created_at": now,
        "finished_at": now if skipped else None,
    }


def start_runs(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert runs (rows from ``run_values``) in one statement, skipping those recorded
    before, and queue the job of each new scheduled one in another; how many are new."""
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    found = conn.execute(
        dialect.insert(runs_t)
        .on_conflict_do_nothing(index_elements=["automation_id", "occurrence"])
        .returning(runs_t.c.id, runs_t.c.automation_id, runs_t.c.occurrence),
        rows,
    ).all()
    due = {
        (r["automation_id"], r["occurrence"]): r["due_at"]
        for r in rows
        if r["status"] == "scheduled"
    }
    queued = [
        jobs.NewJob(RUN_JOB, {"run_id": int(f.id)}, due[key], f"{RUN_JOB}:{f.id}")
        for f in found
        if (key := (int(f.automation_id), f.occurrence)) in due
    ]
    jobs.enqueue_many(conn, queued)
    return len(found)


# -- events (the ingestion listener) -------------------------------------------------------


def on_events(engine: Engine, rows: pa.Table, *, replay: bool = False) -> int:
    """Start the runs of event rules for a stored batch. With ``replay`` (history loaded
    after the rules), each event is judged as of its own time."""
    if rows.num_rows == 0:
        return 0
    with engine.connect() as conn:
        rules = active_rules(conn, "event")
    if not rules:
        return 0
    names = pa.array(sorted({r.definition.trigger.event or "" for r in rules}), pa.string())
    hits = rows.filter(pc.is_in(rows["event"], value_set=names))
    hits = hits.filter(pc.equal(hits["type"], "track"))
    if hits.num_rows == 0:
        return 0
    wanted: list[dict[str, Any]] = []
    columns = ["customer_id", "timestamp", "message_id", "event", "properties"]
    with engine.begin() as conn:
        for row in hits.select(columns).to_pylist():
            if row["customer_id"] is None:
                continue
            props = _properties(row["properties"])
            for rule in rules:
                trigger = rule.definition.trigger
                if trigger.event != row["event"] or not all(c.holds(props) for c in trigger.where):
                    continue
                data = {
                    "kind": "event",
                    "event": {
                        "name": row["event"],
                        "properties": props,
                        "timestamp": iso_utc(row["timestamp"]),
                        "message_id": row["message_id"],
                    },
                }
                found = run_values(
                    rule,
                    int(row["customer_id"]),
                    f"event:{row['message_id']}",
                    row["timestamp"],
                    data,
                    as_of=row["timestamp"] if replay else None,
                )
                if found is not None:
                    wanted.append(found)
        return start_runs(conn, wanted)


def _properties(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        found = msgspec.json.decode(raw or b"{}")
    except msgspec.DecodeError:
        return {}
    return found if isinstance(found, dict) else {}


# -- scans (the job worker) ---------------------------------------------------------------


def scan(conn: Connection, zone: tzinfo, *, now: datetime | None = None, batch: int = 5000) -> int:
    """Every scan; how many runs they started (cron ticks, read in the project's time
    zone, count as one each)."""
    now = now or datetime.now(UTC)
    rules = active_rules(conn)
    return (
        _scan_stages(conn, rules, batch)
        + _scan_responses(conn, rules, batch)
        + _scan_activity(conn, rules, now, batch)
        + _scan_overdue(conn, rules, now, batch)
        + _queue_ticks(conn, rules, now, zone)
    )


def _scan_stages(conn: Connection, rules: list[ActiveRule], batch: int) -> int:
    name = "automations:stages"
    wanted = [r for r in rules if r.on in ("stage_entered", "stage_exited")]
    if not wanted:
        jobs.skip_to_end(conn, name, transitions_t)
        return 0
    rows = moves_since(conn, jobs.read_cursor(conn, name), batch=batch)
    started = 0
    for row in rows:
        for rule in wanted:
            trigger = rule.definition.trigger
            if trigger.model != row.model:
                continue
            if rule.on == "stage_entered":
                hit = row.kind != "exit" and row.to_stage == trigger.stage
            elif trigger.stage is None:
                hit = row.kind == "exit"
            else:
                hit = row.from_stage == trigger.stage and row.to_stage != trigger.stage
            if not hit:
                continue
            data = {
                "kind": rule.on,
                "stage": {
                    "model": row.model,
                    "kind": row.kind,
                    "from_stage": row.from_stage,
                    "to_stage": row.to_stage,
                    "stage": trigger.stage,
                    "cycle": row.cycle,
                    "at": iso_utc(row.at),
                    "event": row.event,
                    "reason": row.reason,
                },
            }
            key = move_key(row.model, row)
            started += start_run(conn, rule, int(row.customer_id), key, row.at, data)
    if rows:
        jobs.save_cursor(conn, name, int(rows[-1].id))
    return started


def _scan_responses(conn: Connection, rules: list[ActiveRule], batch: int) -> int:
    name = "automations:responses"
    wanted = [r for r in rules if r.on == "response"]
    if not wanted:
        jobs.skip_to_end(conn, name, responses_t)
        return 0
    r, s = responses_t.c, surveys_t.c
    rows = conn.execute(
        select(responses_t, s.kind.label("measure"))
        .join(surveys_t, s.id == r.survey_id)
        .where(r.id > jobs.read_cursor(conn, name))
        .order_by(r.id)
        .limit(batch)
    ).all()
    started = 0
    for row in rows:
        if row.customer_id is None:
            continue
        for rule in wanted:
            trigger = rule.definition.trigger
            if trigger.survey is not None and trigger.survey != row.survey_id:
                continue
            if trigger.measure is not None and trigger.measure != row.measure:
                continue
            if trigger.score is not None and (
                row.score is None or not trigger.score.holds(float(row.score))
            ):
                continue
            data = {
                "kind": "response",
                "response": {
                    "id": int(row.id),
                    "survey_id": int(row.survey_id),
                    "measure": row.measure,
                    "score": row.score,
                    "choice": row.choice,
                    "comment": row.comment or "",
                    "touchpoint": row.touchpoint,
                    "submitted_at": iso_utc(row.submitted_at),
                },
            }
            started += start_run(
                conn, rule, int(row.customer_id), f"response:{row.id}", row.submitted_at, data
            )
    if rows:
        jobs.save_cursor(conn, name, int(rows[-1].id))
    return started


def _scan_activity(conn: Connection, rules: list[ActiveRule], now: datetime, batch: int) -> int:
    name = "automations:activity"
    wanted = [r for r in rules if r.on in ("case_opened", "case_resolved", "followup_overdue")]
    if not wanted:
        jobs.skip_to_end(conn, name, activity.activity_t)
        return 0
    rows = activity.since(conn, jobs.read_cursor(conn, name), batch=batch)
    started = 0
    for row in rows:
        if row.customer_id is None:
            continue
        data = dict(row.data)
        for rule in wanted:
            trigger = rule.definition.trigger
            if rule.on == "case_opened" and row.kind == "case.opened":
                started += start_run(
                    conn,
                    rule,
                    int(row.customer_id),
                    f"case:{row.ref_id}:opened",
                    row.at,
                    {"kind": rule.on, "case": data},
                    row.chain,
                )
            elif rule.on == "case_resolved" and row.kind == "case.resolved":
                if trigger.outcome is None or trigger.outcome == data.get("outcome"):
                    started += start_run(
                        conn,
                        rule,
                        int(row.customer_id),
                        f"case:{row.ref_id}:resolved",
                        row.at,
                        {"kind": rule.on, "case": data},
                        row.chain,
                    )
            elif rule.on == "followup_overdue" and row.kind == "followup.created":
                due = datetime.fromisoformat(str(data["due_at"]))
                if utc(due) <= now:  # born overdue (its cause is older than the SLA)
                    started += _overdue(conn, rule, data, row.chain)
    if rows:
        jobs.save_cursor(conn, name, int(rows[-1].id))
    return started


FOLLOWUP_KEYS = (
    "id",
    "customer_id",
    "department_id",
    "reason",
    "summary",
    "status",
    "due_at",
    "stage_model",
    "stage",
)
# What templates can read of each kind of trigger; the preview of a rule uses these shapes.
SAMPLES: dict[str, dict[str, Any]] = {
    "stage": {
        "model": "",
        "kind": "enter",
        "from_stage": None,
        "to_stage": "",
        "stage": "",
        "cycle": 1,
        "at": "",
        "event": "",
        "reason": None,
    },
    "response": {
        "id": 0,
        "survey_id": 0,
        "measure": "nps",
        "score": 0,
        "choice": None,
        "comment": "",
        "touchpoint": None,
        "submitted_at": "",
    },
    "case": {
        "id": 0,
        "customer_id": 0,
        "subject": "",
        "channel": None,
        "category": None,
        "stage": None,
        "department": None,
        "status": "open",
        "assignee": None,
        "outcome": None,
        "resolution_note": None,
        "source": "api",
        "opened_at": "",
        "first_response_at": None,
        "resolved_at": None,
        "timeline": "",
    },
    "followup": dict.fromkeys(FOLLOWUP_KEYS, ""),
}


def _overdue(conn: Connection, rule: ActiveRule, followup: dict[str, Any], chain: Any) -> int:
    trigger = rule.definition.trigger
    if trigger.department is not None:
        from cxloop.lifecycle.service import department_id

        if followup.get("department_id") != department_id(conn, trigger.department):
            return 0
    followup = {k: followup.get(k) for k in FOLLOWUP_KEYS}
    due = utc(datetime.fromisoformat(str(followup["due_at"])))
    return start_run(
        conn,
        rule,
        int(followup["customer_id"]),
        f"followup:{followup['id']}:overdue",
        max(due, rule.enabled_at),
        {"kind": rule.on, "followup": followup},
        chain,
    )


def _scan_overdue(conn: Connection, rules: list[ActiveRule], now: datetime, batch: int) -> int:
    """Follow-ups whose due time passed since the last scan (the cursor is a time, in
    microseconds since the epoch)."""
    name = "automations:overdue"
    wanted = [r for r in rules if r.on == "followup_overdue"]
    until = int(now.timestamp() * 1_000_000)
    position = jobs.read_cursor(conn, name)
    if not wanted or not position:
        jobs.save_cursor(conn, name, until)
        return 0
    since = datetime.fromtimestamp(position / 1_000_000, UTC)
    f = followups_t.c
    rows = conn.execute(
        select(followups_t)
        .where(f.status != "done", f.due_at > since, f.due_at <= now)
        .order_by(f.due_at, f.id)
        .limit(batch)
    ).all()
    started = 0
    for row in rows:
        followup = {
            "id": int(row.id),
            "customer_id": int(row.customer_id),
            "department_id": row.department_id,
            "reason": row.reason,
            "summary": row.summary,
            "status": row.status,
            "due_at": iso_utc(row.due_at),
            "stage_model": row.stage_model,
            "stage": row.stage,
        }
        for rule in wanted:
            started += _overdue(conn, rule, followup, None)
    last = utc(rows[-1].due_at) if len(rows) == batch else now
    jobs.save_cursor(conn, name, int(last.timestamp() * 1_000_000))
    return started


def _queue_ticks(conn: Connection, rules: list[ActiveRule], now: datetime, zone: tzinfo) -> int:
    """The latest due tick of each cron rule, keyed by rule and tick (queued once)."""
    queued = 0
    for rule in rules:
        cron = rule.definition.trigger.cron
        if rule.on != "schedule" or cron is None:
            continue
        tick = utc(croniter(cron, now.astimezone(zone)).get_prev(datetime))
        if tick < rule.enabled_at:
            continue
        key = f"{TICK_JOB}:{rule.id}:{iso_utc(tick)}"
        payload = {"rule_id": rule.id, "tick": iso_utc(tick)}
        queued += jobs.enqueue(conn, TICK_JOB, payload, key=key, run_at=tick) is not None
    return queued


def run_tick(engine: Engine, job: jobs.ClaimedJob) -> tuple[str, dict[str, Any]]:
    """A cron tick: one run per member of the rule's segment (keyed by tick, so a retry
    after a crash starts only the runs not started yet)."""
    from cxloop.segments import members_t, segments_t

    with engine.begin() as conn:
        row = conn.execute(select(rules_t).where(rules_t.c.id == job.payload["rule_id"])).first()
        if row is None or not row.enabled:
            return "skipped: the rule is gone or disabled", job.payload
        rule = ActiveRule(row)
        tick = datetime.fromisoformat(job.payload["tick"])
        members = (
            conn.execute(
                select(members_t.c.customer_id)
                .join(segments_t, segments_t.c.id == members_t.c.segment_id)
                .where(segments_t.c.name == rule.definition.trigger.segment)
                .order_by(members_t.c.customer_id)
            )
            .scalars()
            .all()
        )
        data = {"kind": "schedule", "tick": job.payload["tick"]}
        started = sum(
            start_run(conn, rule, int(c), f"tick:{job.payload['tick']}", tick, data)
            for c in members
        )
    return f"tick {job.payload['tick']}: {started} runs for {len(members)} members", job.payload
