"""Departments and installed lifecycle models: what the CLI and the API call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, func, or_, select, update

from cxloop.customers.service import user_ids
from cxloop.domain.lifecycle import LifecycleModel
from cxloop.domain.values import as_utc, iso_utc
from cxloop.lifecycle.engine import StageEngine
from cxloop.store import audit
from cxloop.store.models import Department, LifecycleModelRow, LifecycleState, StageTransition

departments_t = cast(Table, Department.__table__)
models_t = cast(Table, LifecycleModelRow.__table__)
states_t = cast(Table, LifecycleState.__table__)
transitions_t = cast(Table, StageTransition.__table__)


class NotFound(LookupError):
    """A named thing does not exist; ``field`` says which input named it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Conflict(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# -- departments ----------------------------------------------------------------------------


def clean_department_name(name: str, field: str = "name") -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ValueError(f"{field}: must not be empty")
    if len(cleaned) > 120:
        raise ValueError(f"{field}: longer than 120 characters")
    return cleaned


def list_departments(conn: Connection) -> list[dict[str, Any]]:
    """Departments with the stages they own across installed models."""
    owned: dict[str, list[str]] = {}
    for model in installed_models(conn):
        for stage in model.stages:
            if stage.owner:
                owned.setdefault(stage.owner.lower(), []).append(f"{model.key}:{stage.key}")
    rows = conn.execute(select(departments_t).order_by(departments_t.c.name)).all()
    return [
        {
            "id": row.id,
            "name": row.name,
            "stages": owned.get(row.name.lower(), []),
            "followup_sla_hours": row.followup_sla_hours,
            "created_at": as_utc(row.created_at),
        }
        for row in rows
    ]


def create_department(conn: Connection, name: str) -> dict[str, Any]:
    name = clean_department_name(name)
    if _department_id(conn, name) is not None:
        raise Conflict("name", f"a department named {name!r} exists")
    now = datetime.now(UTC)
    new_id = conn.execute(
        departments_t.insert().values(name=name, created_at=now, updated_at=now)
    ).inserted_primary_key
    assert new_id is not None
    audit.record(conn, None, "created", "department", new_id[0], f"department {name} created")
    return {
        "id": new_id[0],
        "name": name,
        "stages": [],
        "followup_sla_hours": 48,
        "created_at": now,
    }


MAX_SLA_HOURS = 24 * 365


def set_followup_sla(conn: Connection, name: str, hours: int) -> dict[str, Any]:
    """How long the department has to act on a follow-up (new follow-ups are due then)."""
    found = department_id(conn, name, "name")
    if not 1 <= hours <= MAX_SLA_HOURS:
        raise ValueError(f"hours: must be 1 to {MAX_SLA_HOURS}, not {hours}")
    conn.execute(
        update(departments_t)
        .where(departments_t.c.id == found)
        .values(followup_sla_hours=hours, updated_at=datetime.now(UTC))
    )
    audit.record(
        conn,
        None,
        "changed",
        "department",
        found,
        f"department {name}: follow-ups due after {hours} hours",
    )
    return next(d for d in list_departments(conn) if d["id"] == found)


def rename_department(conn: Connection, old: str, new: str) -> dict[str, Any]:
    """Rename; stages that name the department as owner follow the new name."""
    new = clean_department_name(new, "new_name")
    found = _department_id(conn, old)
    if found is None:
        raise NotFound("name", f"no department named {old!r}")
    other = _department_id(conn, new)
    if other is not None and other != found:
        raise Conflict("new_name", f"a department named {new!r} exists")
    now = datetime.now(UTC)
    current = conn.execute(
        select(departments_t.c.name).where(departments_t.c.id == found)
    ).scalar_one()
    conn.execute(
        update(departments_t).where(departments_t.c.id == found).values(name=new, updated_at=now)
    )
    for row in conn.execute(select(models_t.c.id, models_t.c.definition)).all():
        definition = dict(row.definition)
        changed = False
        stages = []
        for stage in definition.get("stages", []):
            if str(stage.get("owner", "")).lower() == current.lower():
                stage = {**stage, "owner": new}
                changed = True
            stages.append(stage)
        if changed:
            conn.execute(
                update(models_t)
                .where(models_t.c.id == row.id)
                .values(definition={**definition, "stages": stages}, updated_at=now)
            )
    audit.record(
        conn, None, "changed", "department", found, f"department {current} renamed to {new}"
    )
    return next(d for d in list_departments(conn) if d["id"] == found)


def ensure_departments(conn: Connection, names: set[str]) -> list[str]:
    """Create the departments a model names that do not exist yet; returns those created."""
    created = []
    for name in sorted(names):
        if _department_id(conn, name) is None:
            create_department(conn, name)
            created.append(clean_department_name(name))
    return created


def _department_id(conn: Connection, name: str) -> int | None:
    cleaned = " ".join(name.split())
    # SQLite's lower() folds only ASCII letters: the exact name must match there too.
    row = conn.execute(
        select(departments_t.c.id)
        .where(
            or_(
                departments_t.c.name == cleaned,
                func.lower(departments_t.c.name) == cleaned.lower(),
            )
        )
        .order_by((departments_t.c.name == cleaned).desc())
    ).first()
    return int(row[0]) if row else None


def department_id(conn: Connection, name: str | None, field: str = "department") -> int | None:
    """The id of a named department (None for no name); an unknown name is an error."""
    if name is None:
        return None
    found = _department_id(conn, name)
    if found is None:
        raise NotFound(field, f"no department named {name!r}")
    return found


# -- models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    key: str
    version: int
    created: bool
    departments_created: list[str]


def apply_model(conn: Connection, model: LifecycleModel) -> Applied:
    """Install or replace a model in the caller's transaction (all or nothing). A new
    version may not leave out a stage that a rule, an active survey trigger or a segment
    still names (a 409 ``conflict`` on ``stages``)."""
    owners = {s.owner for s in model.stages if s.owner}
    created_departments = ensure_departments(conn, owners)
    # Owners are stored as the department's own spelling.
    canonical = {d["name"].lower(): d["name"] for d in list_departments(conn)}
    stages = [
        s.model_copy(update={"owner": canonical.get(s.owner.lower(), s.owner)}) if s.owner else s
        for s in model.stages
    ]
    model = model.model_copy(update={"stages": tuple(stages)})
    definition = model.model_dump(mode="json")
    now = datetime.now(UTC)
    row = conn.execute(
        select(models_t.c.id, models_t.c.version, models_t.c.definition).where(
            models_t.c.key == model.key
        )
    ).first()
    if row is not None:
        # Lazily, as in delete_model: the rules that name stages import this module.
        from cxloop.automations.usage import refuse_dropping_stages

        before = LifecycleModel.model_validate(row.definition)
        kept = {s.key for s in model.stages}
        refuse_dropping_stages(conn, model.key, [s.key for s in before.stages if s.key not in kept])
    if row is None:
        conn.execute(
            models_t.insert().values(
                key=model.key,
                name=model.name,
                definition=definition,
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
        audit.record(
            conn,
            None,
            "created",
            "model",
            model.key,
            f"lifecycle model {model.key} installed ({len(model.stages)} stages)",
        )
        return Applied(model.key, 1, True, created_departments)
    conn.execute(
        update(models_t)
        .where(models_t.c.id == row.id)
        .values(name=model.name, definition=definition, version=row.version + 1, updated_at=now)
    )
    audit.record(
        conn,
        None,
        "changed",
        "model",
        model.key,
        f"lifecycle model {model.key} changed (version {row.version + 1})",
    )
    return Applied(model.key, row.version + 1, False, created_departments)


def installed_models(conn: Connection) -> list[LifecycleModel]:
    rows = conn.execute(select(models_t.c.definition).order_by(models_t.c.key)).all()
    return [LifecycleModel.model_validate(r.definition) for r in rows]


def get_model(conn: Connection, key: str) -> tuple[int, LifecycleModel, int]:
    """(id, model, version) of an installed model."""
    row = conn.execute(
        select(models_t.c.id, models_t.c.definition, models_t.c.version).where(
            models_t.c.key == key
        )
    ).first()
    if row is None:
        known = ", ".join(m.key for m in installed_models(conn)) or "none installed"
        raise NotFound("model", f"no lifecycle model {key!r} (installed: {known})")
    return int(row.id), LifecycleModel.model_validate(row.definition), int(row.version)


def list_models(conn: Connection) -> list[dict[str, Any]]:
    """Installed models with how many customers stand in each stage now."""
    out = []
    for row in conn.execute(select(models_t).order_by(models_t.c.key)).all():
        model = LifecycleModel.model_validate(row.definition)
        counts: dict[str, int] = dict(
            conn.execute(
                select(states_t.c.stage, func.count())
                .where(states_t.c.model_id == row.id, states_t.c.stage.is_not(None))
                .group_by(states_t.c.stage)
            ).all()
        )
        out.append(
            {
                "key": model.key,
                "name": model.name,
                "version": row.version,
                "backward": model.backward,
                "stages": [
                    {
                        "key": s.key,
                        "name": s.name,
                        "owner": s.owner,
                        "target_days": s.target_days,
                        "current": int(counts.get(s.key, 0)),
                    }
                    for s in model.stages
                ],
                "updated_at": as_utc(row.updated_at),
            }
        )
    return out


def delete_model(conn: Connection, key: str) -> None:
    """Refused while a rule, an active survey trigger or a segment still names the model;
    the check lives with the rules (``automations.usage``), which import this module."""
    from cxloop.automations.usage import refuse_if_used

    model_id, _model, _version = get_model(conn, key)
    refuse_if_used(conn, "model", key)
    conn.execute(transitions_t.delete().where(transitions_t.c.model_id == model_id))
    conn.execute(states_t.delete().where(states_t.c.model_id == model_id))
    conn.execute(models_t.delete().where(models_t.c.id == model_id))
    audit.record(conn, None, "deleted", "model", key, f"lifecycle model {key} removed")


# -- a customer's stages --------------------------------------------------------------------


def customer_stages(conn: Connection, customer_id: int) -> list[dict[str, Any]]:
    """Per installed model: the current stage, the cycle, and the full stage history."""
    out = []
    for row in conn.execute(select(models_t).order_by(models_t.c.key)).all():
        model = LifecycleModel.model_validate(row.definition)
        names = {s.key: s.name for s in model.stages}
        state = conn.execute(
            select(states_t).where(
                states_t.c.model_id == row.id, states_t.c.customer_id == customer_id
            )
        ).first()
        history = conn.execute(
            select(transitions_t)
            .where(transitions_t.c.model_id == row.id, transitions_t.c.customer_id == customer_id)
            .order_by(transitions_t.c.seq)
        ).all()
        out.append(
            {
                "model": model.key,
                "model_name": model.name,
                "stage": state.stage if state else None,
                "stage_name": names.get(state.stage) if state and state.stage else None,
                "entered_at": as_utc(state.entered_at) if state else None,
                "cycle": state.cycle if state else 0,
                "history": [
                    {
                        "cycle": t.cycle,
                        "kind": t.kind,
                        "return": t.kind == "enter" and t.cycle > 1,
                        "from_stage": t.from_stage,
                        "to_stage": t.to_stage,
                        "at": as_utc(t.at),
                        "message_id": t.message_id,
                        "event": t.event,
                        "reason": t.reason,
                        "skipped": list(t.skipped or []),
                    }
                    for t in history
                ],
            }
        )
    return out


def stalled(
    conn: Connection,
    model_key: str,
    *,
    stage: str | None = None,
    as_of: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Customers who have stood in a stage longer than its target time, longest first,
    per stage: the work list for the department that owns the stage."""
    model_id, model, _version = get_model(conn, model_key)
    if stage is not None and stage not in {s.key for s in model.stages}:
        raise NotFound("stage", f"{model_key} has no stage {stage!r}")
    if not 1 <= limit <= 10_000:
        raise ValueError("limit: must be between 1 and 10000")
    as_of = as_of or datetime.now(UTC)
    out = []
    for item in model.stages:
        if item.target_days is None or (stage is not None and item.key != stage):
            continue
        cutoff = as_of - timedelta(days=item.target_days)
        where = (
            states_t.c.model_id == model_id,
            states_t.c.stage == item.key,
            states_t.c.entered_at < cutoff,
        )
        total = conn.execute(select(func.count()).select_from(states_t).where(*where)).scalar_one()
        rows = conn.execute(
            select(states_t.c.customer_id, states_t.c.entered_at)
            .where(*where)
            .order_by(states_t.c.entered_at, states_t.c.customer_id)
            .limit(limit)
        ).all()
        users = user_ids(conn, [r.customer_id for r in rows])
        customers = []
        for row in rows:
            entered = as_utc(row.entered_at)
            assert entered is not None
            customers.append(
                {
                    "customer_id": row.customer_id,
                    "user_id": users.get(row.customer_id),
                    "entered_at": entered,
                    "days_in_stage": round((as_of - entered).total_seconds() / 86400, 1),
                }
            )
        out.append(
            {
                "stage": item.key,
                "name": item.name,
                "owner": item.owner,
                "target_days": item.target_days,
                "total": int(total),
                "customers": customers,
            }
        )
    return out


def uninstall_model(engine: Engine, stages: StageEngine, key: str) -> None:
    """Remove a model, its stage histories and their copy in the event store."""
    with engine.begin() as conn:
        model_id, _model, _version = get_model(conn, key)
        delete_model(conn, key)
    stages.forget_models()
    stages.mirror.write(model_id, None, [])


def install_model(engine: Engine, stages: StageEngine, model: LifecycleModel) -> dict[str, Any]:
    """Install or replace a model (one transaction), then build its stage histories."""
    with engine.begin() as conn:
        applied = apply_model(conn, model)
    stages.forget_models()
    built = stages.rebuild([applied.key])
    return {
        "key": applied.key,
        "version": applied.version,
        "created": applied.created,
        "departments_created": applied.departments_created,
        "customers": built.customers,
        "transitions": built.transitions,
    }


def installed_with_ids(conn: Connection) -> list[tuple[int, LifecycleModel]]:
    """Installed models with their row ids, in key order: read once by loops that place
    many customers."""
    rows = conn.execute(select(models_t.c.id, models_t.c.definition).order_by(models_t.c.key)).all()
    return [(int(r.id), LifecycleModel.model_validate(r.definition)) for r in rows]


def stage_at(
    conn: Connection,
    customer_id: int,
    model_key: str | None,
    moment: datetime,
    installed: list[tuple[int, LifecycleModel]] | None = None,
) -> tuple[str | None, str | None, str | None]:
    """Where a customer stood at ``moment``: the model (``model_key``, else the first
    installed model the customer is in), the stage (from the newest move at or before
    it), and the stage's owning department. ``installed`` is ``installed_with_ids``,
    passed by callers that place many customers."""
    models = installed_with_ids(conn) if installed is None else installed
    if model_key is not None and model_key not in {m.key for _, m in models}:
        raise NotFound("model", f"no lifecycle model {model_key!r}")
    for model_id, model in models:
        if model_key is not None and model.key != model_key:
            continue
        last = conn.execute(
            select(transitions_t.c.kind, transitions_t.c.to_stage)
            .where(
                transitions_t.c.model_id == model_id,
                transitions_t.c.customer_id == customer_id,
                transitions_t.c.at <= moment,
            )
            .order_by(transitions_t.c.at.desc(), transitions_t.c.seq.desc())
            .limit(1)
        ).first()
        if last is None or last.kind == "exit" or last.to_stage is None:
            continue
        owner = next((s.owner for s in model.stages if s.key == last.to_stage), None)
        return model.key, last.to_stage, owner
    return None, None, None


def current_stages(conn: Connection, customer_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Where each of a page of customers stands now, per installed model (models where the
    customer has no current stage are left out): one query for the page, not one per
    customer and model."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    models = {model_id: model for model_id, model in installed_with_ids(conn)}
    rows = conn.execute(
        select(states_t.c.customer_id, states_t.c.model_id, states_t.c.stage, states_t.c.entered_at)
        .where(states_t.c.customer_id.in_(ids), states_t.c.stage.is_not(None))
        .order_by(states_t.c.customer_id)
    ).all()
    found: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for row in rows:
        model = models.get(int(row.model_id))
        if model is None:
            continue
        names = {s.key: s.name for s in model.stages}
        found[int(row.customer_id)].append(
            {
                "model": model.key,
                "model_name": model.name,
                "stage": row.stage,
                "stage_name": names.get(row.stage, row.stage),
                "entered_at": as_utc(row.entered_at),
            }
        )
    for stages in found.values():
        stages.sort(key=lambda s: str(s["model"]))
    return found


def move_key(model: str, move: Any) -> str:
    """What a stage move is, for keying what it sets off: not its row id, because a
    rebuild writes the same moves again as new rows."""
    return (
        f"stage:{model}:{move.customer_id}:{move.cycle}:{move.kind}:{move.to_stage}:"
        f"{iso_utc(move.at)}"
    )


def moves_since(conn: Connection, position: int, *, batch: int = 5000) -> list[Any]:
    """Stage moves recorded after the id ``position``, oldest first, each with its
    model's key as ``model`` (what the scans of rules and webhooks read)."""
    t = transitions_t.c
    return list(
        conn.execute(
            select(transitions_t, models_t.c.key.label("model"))
            .join(models_t, models_t.c.id == t.model_id)
            .where(t.id > position)
            .order_by(t.id)
            .limit(batch)
        )
    )
