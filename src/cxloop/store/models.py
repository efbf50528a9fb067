"""ORM models of the app database; the Alembic history in ``migrations/`` must match them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Customer(Base):
    """A person or account the company serves; merged customers point at their survivor."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    gender: Mapped[str | None] = mapped_column(String(40))
    birth_year: Mapped[int | None] = mapped_column(Integer)
    age_band: Mapped[str | None] = mapped_column(String(40))
    education: Mapped[str | None] = mapped_column(String(80))
    city: Mapped[str | None] = mapped_column(String(120))
    region: Mapped[str | None] = mapped_column(String(120))
    country: Mapped[str | None] = mapped_column(String(80))
    profession: Mapped[str | None] = mapped_column(String(120))
    relationship_status: Mapped[str | None] = mapped_column(String(40))
    income_band: Mapped[str | None] = mapped_column(String(40))
    channel: Mapped[str | None] = mapped_column(String(80))
    traits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    merged_into_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )

    identities: Mapped[list[CustomerIdentity]] = relationship(
        back_populates="customer", order_by="CustomerIdentity.id"
    )

    __table_args__ = (
        Index("ix_customers_last_seen", "last_seen"),
        Index("ix_customers_email", "email"),
    )


class CustomerIdentity(Base):
    """One identifier of a customer: a userId, an anonymousId or an e-mail address."""

    __tablename__ = "customer_identities"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    customer: Mapped[Customer] = relationship(back_populates="identities")

    __table_args__ = (UniqueConstraint("kind", "value", name="uq_customer_identities_kind_value"),)


class CustomerMerge(Base):
    """Audit record of a merge, and the to-do of moving the loser's events in the event store."""

    __tablename__ = "customer_merges"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    from_customer_id: Mapped[int] = mapped_column(BigId, index=True)
    into_customer_id: Mapped[int] = mapped_column(BigId, index=True)
    reason: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    merged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    events_moved: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    events_moved_count: Mapped[int | None] = mapped_column(BigInteger)


class ApiKey(Base):
    """A write key (tracking API) or secret key (REST API); only its SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RejectedMessage(Base):
    """A message refused by ingestion or import, kept with the reason for inspection."""

    __tablename__ = "rejected_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    source: Mapped[str] = mapped_column(String(120))
    batch_index: Mapped[int | None] = mapped_column(Integer)
    message_id: Mapped[str | None] = mapped_column(String(200))
    field: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)


class ImportRun(Base):
    """One `cxloop import` of a file: what it read, stored and rejected."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    path: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rows_read: Mapped[int] = mapped_column(BigInteger, default=0)
    imported: Mapped[int] = mapped_column(BigInteger, default=0)
    updated: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)


class Department(Base):
    """A team that owns lifecycle stages (and later their follow-ups and cases)."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    # How long the department has to act on a follow-up (its service-level agreement).
    followup_sla_hours: Mapped[int] = mapped_column(Integer, default=48, server_default="48")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LifecycleModelRow(Base):
    """An installed lifecycle model; ``definition`` is the validated model as JSON."""

    __tablename__ = "lifecycle_models"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LifecycleState(Base):
    """Where the stage fold stands for one customer in one model (see domain.lifecycle)."""

    __tablename__ = "lifecycle_state"

    model_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("lifecycle_models.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    cycle: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str | None] = mapped_column(String(63))
    entered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_activity: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_ts: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_message_id: Mapped[str | None] = mapped_column(String(200))
    swept_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    traits: Mapped[dict[str, Any]] = mapped_column(JSON)
    next_seq: Mapped[int] = mapped_column(Integer)
    inactive_exits: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_lifecycle_state_model_id_stage", "model_id", "stage"),)


class StageTransition(Base):
    """One move of a customer in a model: an entry, a move forward or back, or an exit.

    ``seq`` orders a customer's moves within a model (several can share a timestamp).
    """

    __tablename__ = "stage_transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("lifecycle_models.id", ondelete="CASCADE")
    )
    customer_id: Mapped[int] = mapped_column(BigId)
    seq: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))
    from_stage: Mapped[str | None] = mapped_column(String(63))
    to_stage: Mapped[str | None] = mapped_column(String(63))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    message_id: Mapped[str | None] = mapped_column(String(200))
    event: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(200))
    skipped: Mapped[list[str]] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("model_id", "customer_id", "seq", name="uq_stage_transitions_model_id"),
    )


class Survey(Base):
    """A question put to customers or employees, tied to where in the journey it is asked:
    a lifecycle stage (``stage_model``/``stage``) and/or a touchpoint (an event name)."""

    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # nps, csat, ces or custom
    name: Mapped[str] = mapped_column(String(200), unique=True)
    question: Mapped[str] = mapped_column(Text)
    ask_why: Mapped[bool] = mapped_column(Boolean, default=True)  # an optional free-text "why"
    # Custom surveys: a rating scale (low..high) or a list of choices.
    scale_low: Mapped[int | None] = mapped_column(Integer)
    scale_high: Mapped[int | None] = mapped_column(Integer)
    choices: Mapped[list[str] | None] = mapped_column(JSON)
    stage_model: Mapped[str | None] = mapped_column(String(63))
    stage: Mapped[str | None] = mapped_column(String(63))
    touchpoint: Mapped[str | None] = mapped_column(String(200))
    audience: Mapped[str] = mapped_column(String(16))  # customers or employees
    department_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("departments.id", ondelete="RESTRICT")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SurveyResponse(Base):
    """One answer to a survey, with where in the journey it was given (copied from the
    survey unless the answer names its own touchpoint) and who gave it."""

    __tablename__ = "survey_responses"
    __table_args__ = (
        Index("ix_survey_responses_survey_id_submitted_at", "survey_id", "submitted_at"),
        # Scores per month and per touchpoint read these alone, in order (bench/feedback.py).
        Index(
            "ix_survey_responses_survey_id_score_submitted_at", "survey_id", "score", "submitted_at"
        ),
        Index(
            "ix_survey_responses_touchpoint_score_survey_id",
            "touchpoint",
            "score",
            "survey_id",
            "submitted_at",
        ),
        UniqueConstraint("survey_id", "import_key", name="uq_survey_responses_import_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    survey_id: Mapped[int] = mapped_column(BigId, ForeignKey("surveys.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    department_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("departments.id", ondelete="SET NULL")
    )
    score: Mapped[int | None] = mapped_column(Integer)
    choice: Mapped[str | None] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    sentiment: Mapped[float | None] = mapped_column(Float)  # of the comment, -1 to +1
    touchpoint: Mapped[str | None] = mapped_column(String(200))
    stage_model: Mapped[str | None] = mapped_column(String(63))
    stage: Mapped[str | None] = mapped_column(String(63))
    source: Mapped[str] = mapped_column(String(16))  # api, page or import
    # Imports: the row's content hash and occurrence, so a file imported twice is stored once.
    import_key: Mapped[str | None] = mapped_column(String(80))
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ScoreBenchmark(Base):
    """A published score to compare ours with: an industry's or a named competitor's,
    always with its source. cxloop ships none; users import the ones they trust."""

    __tablename__ = "score_benchmarks"
    __table_args__ = (
        UniqueConstraint("measure", "scope", "name", name="uq_score_benchmarks_measure"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    measure: Mapped[str] = mapped_column(String(8))  # nps, enps, csat or ces
    scope: Mapped[str] = mapped_column(String(16))  # industry or competitor
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(Text)
    as_of: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """One unit of deferred work (a survey to send, a scan to run): durable, retried with
    backoff, and run once per ``idempotency_key`` however often it is asked for."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_run_at", "status", "run_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))  # queued, running, done or failed
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ScanCursor(Base):
    """How far a periodic scan (stage entries for triggers, detractors for follow-ups) has
    read its source table, so each row is looked at once."""

    __tablename__ = "scan_cursors"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)


class SurveyTrigger(Base):
    """Send a survey some time after a customer does something: an event, entering a
    stage, or having a support case resolved; no customer more than once per ``cap_days``."""

    __tablename__ = "survey_triggers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    survey_id: Mapped[int] = mapped_column(BigId, ForeignKey("surveys.id", ondelete="CASCADE"))
    fires_on: Mapped[str] = mapped_column(String(16))  # event, stage or case_resolved
    event: Mapped[str | None] = mapped_column(String(200))
    stage_model: Mapped[str | None] = mapped_column(String(63))
    stage: Mapped[str | None] = mapped_column(String(63))
    delay_minutes: Mapped[int] = mapped_column(Integer)
    cap_days: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(10))  # email or in_app
    expires_days: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SurveyInvite(Base):
    """A single-use link to answer a survey; only the token's SHA-256 is kept."""

    __tablename__ = "survey_invites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    survey_id: Mapped[int] = mapped_column(BigId, ForeignKey("surveys.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    trigger_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("survey_triggers.id", ondelete="SET NULL")
    )
    case_id: Mapped[int | None] = mapped_column(BigId)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(10))  # email, link or in_app
    email: Mapped[str | None] = mapped_column(String(320))
    touchpoint: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_id: Mapped[int | None] = mapped_column(BigId)


class SupportCase(Base):
    """A customer's request for help, from opening to a positive or negative resolution,
    with the stage the customer stood in when it was opened."""

    __tablename__ = "support_cases"
    __table_args__ = (Index("ix_support_cases_status_opened_at", "status", "opened_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(40))
    category: Mapped[str | None] = mapped_column(String(80))
    stage_model: Mapped[str | None] = mapped_column(String(63))
    stage: Mapped[str | None] = mapped_column(String(63))
    department_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("departments.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(12))  # open, in_progress or resolved
    assignee: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(String(10))  # positive or negative
    resolution_note: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(10))  # api, cli or event
    message_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    # The help desk's own id (a ``case_id`` property), to match its later events.
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_response_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FollowUp(Base):
    """Someone must act on this customer: a detractor, a case that ended badly, a customer
    stalled in a stage. Owned by the stage's department, due by its SLA."""

    __tablename__ = "followups"
    __table_args__ = (
        Index("ix_followups_department_id_status", "department_id", "status"),
        Index("ix_followups_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    department_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("departments.id", ondelete="SET NULL")
    )
    # detractor, negative_case, stalled, churn_risk or manual
    reason: Mapped[str] = mapped_column(String(20))
    # What caused it ("response:12", "case:3", "stalled:MODEL:CUSTOMER:ENTERED"): one each.
    source_key: Mapped[str] = mapped_column(String(200), unique=True)
    response_id: Mapped[int | None] = mapped_column(BigId)
    case_id: Mapped[int | None] = mapped_column(BigId)
    stage_model: Mapped[str | None] = mapped_column(String(63))
    stage: Mapped[str | None] = mapped_column(String(63))
    summary: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))  # open, in_progress or done
    assignee: Mapped[str | None] = mapped_column(String(200))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Segment(Base):
    """A saved, rule-based group of customers. Its members are computed when it is saved
    or refreshed and kept in ``segment_members``, so every report can filter by it with
    one indexed subquery (``where segment=NAME``)."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    members: Mapped[int] = mapped_column(BigInteger, default=0)
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SegmentMember(Base):
    __tablename__ = "segment_members"

    segment_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True)


class ReportSchedule(Base):
    """A department's weekly report e-mail: when it goes out (the project's time zone) and
    to whom (its own list, or else the department's users)."""

    __tablename__ = "report_schedules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    department_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("departments.id", ondelete="CASCADE"), unique=True
    )
    model: Mapped[str | None] = mapped_column(String(63))
    weekday: Mapped[int] = mapped_column(Integer)  # 0 is Monday
    hour: Mapped[int] = mapped_column(Integer)
    recipients: Mapped[list[str] | None] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CustomerNote(Base):
    """A note any department leaves on a customer, shown in the unified timeline."""

    __tablename__ = "customer_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    department_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("departments.id", ondelete="SET NULL")
    )
    author: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A person who signs in to the web app; only the argon2 hash of the password is kept."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(12))  # admin, analyst or member
    department_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("departments.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UserSession(Base):
    """A signed-in browser: only a hash of the cookie's token is kept, so a copy of the
    database cannot be used to sign in; signing out deletes the row."""

    __tablename__ = "user_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Activity(Base):
    """What happened in the app database that rules and webhooks react to (a case opened
    or resolved, a follow-up created), written in the same transaction as the change so
    that a scan reading it by id never misses one. ``chain`` lists the rules whose actions
    caused it, which bounds rules that would trigger each other."""

    __tablename__ = "activity"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))  # case.opened, case.resolved, followup.created
    customer_id: Mapped[int | None] = mapped_column(BigId)
    ref_id: Mapped[int | None] = mapped_column(BigId)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    chain: Mapped[list[int] | None] = mapped_column(JSON)


class Automation(Base):
    """A rule: when its trigger happens to a customer who meets its conditions, after its
    delay, its actions run (``definition`` is ``domain.automations.RuleDefinition``)."""

    __tablename__ = "automations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Occurrences before this moment (less a grace for late events) never fire.
    enabled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AutomationRun(Base):
    """One firing of a rule for one customer and one occurrence of its trigger; unique on
    (rule, occurrence), so the same occurrence never runs twice."""

    __tablename__ = "automation_runs"
    __table_args__ = (
        UniqueConstraint("automation_id", "occurrence", name="uq_automation_runs_automation_id"),
        Index("ix_automation_runs_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    automation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("automations.id", ondelete="CASCADE")
    )
    customer_id: Mapped[int] = mapped_column(BigId, index=True)
    occurrence: Mapped[str] = mapped_column(String(300))
    trigger: Mapped[dict[str, Any]] = mapped_column(JSON)
    chain: Mapped[list[int] | None] = mapped_column(JSON)
    # scheduled, running, done, skipped or failed
    status: Mapped[str] = mapped_column(String(12))
    outcome: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AutomationStep(Base):
    """One action of a run, run as its own job: what it did, or why it did not."""

    __tablename__ = "automation_steps"
    __table_args__ = (UniqueConstraint("run_id", "position", name="uq_automation_steps_run_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigId, ForeignKey("automation_runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12))  # queued, done, skipped or failed
    outcome: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookEndpoint(Base):
    """A receiver of signed JSON payloads, subscribed to topics; disabled by itself after
    too many failures in a row."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))  # whsec_…, needed to sign
    topics: Mapped[list[str]] = mapped_column(JSON)
    events: Mapped[list[str] | None] = mapped_column(JSON)  # event names, for topic "event"
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    failures_in_row: Mapped[int] = mapped_column(Integer, default=0)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One payload for one endpoint: its id (the ``webhook-id`` header, the same on every
    attempt so receivers can drop repeats) and where it stands."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "source_key", name="uq_webhook_deliveries_endpoint_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    uid: Mapped[str] = mapped_column(String(40), unique=True)
    source_key: Mapped[str] = mapped_column(String(300))
    topic: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12))  # pending, delivered, failed, skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: the log receivers and admins read."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)


class StaffMember(Base):
    """Someone customers meet (a field technician): shown in pre-visit notices. ``ref`` is
    the id events carry (a ``technician_id`` property)."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    bio: Mapped[str | None] = mapped_column(Text)
    department_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("departments.id", ondelete="SET NULL")
    )
    photo: Mapped[bytes | None] = mapped_column(LargeBinary)
    photo_type: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """Who changed what and when: written in the transaction of the change itself."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity_at", "entity", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(40))  # created, changed, deleted, …
    entity: Mapped[str] = mapped_column(String(40))  # model, rule, user, key, merge, …
    entity_id: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SegmentAddition(Base):
    """A customer put into a segment by hand or by a rule: kept across refreshes."""

    __tablename__ = "segment_additions"

    segment_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(String(200))
