"""Load the demo history into a project, through the same pipeline as live traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select, update

from cxloop.demo.catalog import DEMO_DEPARTMENTS
from cxloop.domain.messages import from_dict, normalise
from cxloop.ingest.pipeline import IngestResult
from cxloop.project import Project
from cxloop.store.database import session_scope
from cxloop.store.keys import create_key
from cxloop.store.models import ApiKey, Customer, ImportRun

DEMO_WRITE_KEY = "demo write key"
DEMO_SECRET_KEY = "demo secret key"
CHUNK = 10_000


@dataclass(frozen=True)
class DemoSummary:
    customers: int
    events: int
    write_key: str
    secret_key: str
    loaded_now: bool
    survey_token: str | None = None
    admin_email: str = ""
    admin_password: str = ""


def load_demo(
    project: Project, *, customers: int = 5000, seed: int = 7, reset: bool = False
) -> DemoSummary:
    """Generate and ingest the demo (once per project), then issue fresh demo keys."""
    from cxloop.demo.generator import generate_messages

    label = f"demo:customers={customers},seed={seed}"
    with session_scope(project.sessions) as session:
        loaded = session.scalars(
            select(ImportRun).where(ImportRun.kind == "demo").order_by(ImportRun.id.desc())
        ).first()
    loaded_now = False
    messages: list[dict[str, Any]] | None = None
    if loaded is None or reset:
        started = datetime.now(UTC)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=False,
        ) as progress:
            task = progress.add_task("generating demo history", total=None)
            messages = generate_messages(customers=customers, seed=seed)
            progress.update(task, total=len(messages), description="loading demo events")
            total = IngestResult()
            received_at = datetime.now(UTC)
            for start in range(0, len(messages), CHUNK):
                chunk = [
                    normalise(from_dict(m), received_at=received_at)
                    for m in messages[start : start + CHUNK]
                ]
                total.add(project.pipeline.ingest(chunk, source="demo"))
                progress.update(task, advance=len(chunk))
        with session_scope(project.sessions) as session:
            session.add(
                ImportRun(
                    kind="demo",
                    path=label,
                    started_at=started,
                    finished_at=datetime.now(UTC),
                    rows_read=len(messages),
                    imported=total.stored,
                    updated=total.duplicates,
                    rejected=len(total.rejected),
                )
            )
        loaded_now = True
    _install_presets(project)
    _load_feedback(project, messages, customers=customers, seed=seed)
    _load_automations(project)
    write_key, secret_key = _fresh_keys(project)
    with project.engine.connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(Customer).where(Customer.merged_into_id.is_(None))
        ).scalar_one()
    admin_email, admin_password = _demo_admin(project)
    admin_email, admin_password = _demo_admin(project)
    return DemoSummary(
        count,
        project.events.count(),
        write_key,
        secret_key,
        loaded_now,
        _survey_token(project),
        admin_email,
        admin_password,
    )


def _install_presets(project: Project) -> None:
    """Every shipped lifecycle model the project lacks, with the demo's departments; one
    pass over the stored events then builds all their stage histories."""
    from cxloop.lifecycle import service
    from cxloop.lifecycle.spec import presets

    with project.engine.begin() as conn:
        installed = {m.key for m in service.installed_models(conn)}
        missing = [p.model for p in presets() if p.key not in installed]
        service.ensure_departments(conn, set(DEMO_DEPARTMENTS))
        for model in missing:
            service.apply_model(conn, model)
    if missing:
        project.stages.forget_models()
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), transient=False
        ) as progress:
            task = progress.add_task(
                f"stage histories of {len(missing)} lifecycle models",
                total=project.events.count(),
            )
            project.stages.rebuild(
                [m.key for m in missing], on_progress=lambda n: progress.update(task, advance=n)
            )


def _load_feedback(
    project: Project, messages: list[dict[str, Any]] | None, *, customers: int, seed: int
) -> None:
    """Surveys, answers, eNPS, placed cases and follow-ups, once per project (a project
    loaded before they existed gets them from its history generated again)."""
    from cxloop.demo.feedback import has_feedback, load_feedback
    from cxloop.demo.generator import generate_messages

    with project.engine.connect() as conn:
        if has_feedback(conn):
            return
    with Progress(TextColumn("{task.description}"), transient=False) as progress:
        progress.add_task("surveys, answers, cases and follow-ups", total=None)
        if messages is None:
            messages = generate_messages(customers=customers, seed=seed)
        with project.engine.begin() as conn:
            load_feedback(conn, messages, seed=seed)


def _load_automations(project: Project) -> None:
    from cxloop.demo.automations import load_automations

    with Progress(TextColumn("{task.description}"), transient=False) as progress:
        progress.add_task("staff, rules and their last 30 days of runs", total=None)
        load_automations(project)


DEMO_ADMIN = "admin@demo.example.com"


def _demo_admin(project: Project) -> tuple[str, str]:
    """The demo's admin, with a fresh password each run (only its hash is kept)."""
    from cxloop.store.users import create_user, list_users, new_password, set_password

    password = new_password()
    with project.engine.begin() as conn:
        if any(u["email"] == DEMO_ADMIN for u in list_users(conn)):
            set_password(conn, DEMO_ADMIN, password)
        else:
            create_user(conn, email=DEMO_ADMIN, role="admin", password=password, name="Demo Admin")
    return DEMO_ADMIN, password


def _survey_token(project: Project) -> str | None:
    """A fresh single-use link to the relationship survey, to try the survey page."""
    from cxloop.feedback.invites import create_invite
    from cxloop.feedback.surveys import list_surveys

    with project.engine.begin() as conn:
        found = [s for s in list_surveys(conn) if s["name"] == "Relationship NPS"]
        if not found:
            return None
        _invite, token = create_invite(conn, found[0]["id"], expires_days=14)
    return token


def _fresh_keys(project: Project) -> tuple[str, str]:
    """Keys are stored hashed, so the demo issues new ones each run and retires the old."""
    now = datetime.now(UTC)
    with session_scope(project.sessions) as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.name.in_([DEMO_WRITE_KEY, DEMO_SECRET_KEY]), ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        write_key, _ = create_key(session, "write", DEMO_WRITE_KEY)
        secret_key, _ = create_key(session, "secret", DEMO_SECRET_KEY)
    return write_key, secret_key
