"""One Alembic history for SQLite and PostgreSQL that matches the models exactly."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cxloop.settings import Settings
from cxloop.store.database import (
    HEAD_REVISION,
    current_revision,
    head_revision,
    make_engine,
    migrate,
    stored_revision,
)
from cxloop.store.models import Base


def test_migrations_create_exactly_the_models(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrate_is_idempotent_and_keeps_data(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url)
    try:
        migrate(engine)
        from cxloop.store.database import make_sessionmaker, session_scope
        from cxloop.store.keys import create_key, list_keys

        with session_scope(make_sessionmaker(engine)) as session:
            create_key(session, "write", "kept")
        migrate(engine)
        with session_scope(make_sessionmaker(engine)) as session:
            assert [k.name for k in list_keys(session)] == ["kept"]
        tables = set(inspect(engine).get_table_names())
        assert {"customers", "customer_identities", "customer_merges", "api_keys"} <= tables
    finally:
        engine.dispose()


def test_the_known_head_is_the_newest_migration(settings: Settings) -> None:
    """Commands skip loading Alembic when the stored revision is HEAD_REVISION: it must
    name the newest migration, or a new migration would never run."""
    assert head_revision() == HEAD_REVISION
    engine = make_engine(settings.effective_database_url)
    try:
        assert stored_revision(engine) is None
        migrate(engine)
        assert stored_revision(engine) == HEAD_REVISION
        migrate(engine)  # current: nothing to do
        assert current_revision(engine) == HEAD_REVISION
    finally:
        engine.dispose()


def test_stage_survey_sends_keyed_by_row_id_are_rekeyed_by_the_move(settings: Settings) -> None:
    """Before 0012 a stage-entry survey send was keyed by the move's row id, which a
    rebuild of the stage history changes: the upgrade keys them as cxloop does now."""
    from types import SimpleNamespace

    from alembic import command
    from sqlalchemy import insert, select

    from cxloop.domain.values import bounded_key
    from cxloop.lifecycle.service import move_key
    from cxloop.store.database import alembic_config
    from cxloop.store.models import Job, LifecycleModelRow, StageTransition

    engine = make_engine(settings.effective_database_url)
    at = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    try:
        config = alembic_config(settings.effective_database_url)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0011")
        models, moves, jobs = (t.__table__ for t in (LifecycleModelRow, StageTransition, Job))
        with engine.begin() as conn:
            model_id = conn.execute(
                insert(models)
                .values(key="b2b", name="B2B", definition={}, version=1, created_at=at,
                        updated_at=at)
                .returning(models.c.id)
            ).scalar_one()  # fmt: skip
            move_id = conn.execute(
                insert(moves)
                .values(model_id=model_id, customer_id=42, seq=1, cycle=1, kind="enter",
                        to_stage="onboarding", at=at, skipped=[])
                .returning(moves.c.id)
            ).scalar_one()  # fmt: skip
            olds = [f"survey.send:7:transition:{move_id}", "survey.send:7:transition:999"]
            if engine.dialect.name == "sqlite":  # which kept keys longer than the column
                olds.append("survey.send:7:" + "m" * 250)
            for key in olds:
                conn.execute(
                    insert(jobs).values(kind="survey.send", payload={}, status="done", run_at=at,
                                        attempts=1, max_attempts=8, idempotency_key=key,
                                        created_at=at)
                )  # fmt: skip
        migrate(engine)
        with engine.connect() as conn:
            keys = sorted(conn.execute(select(jobs.c.idempotency_key)).scalars())
        move = SimpleNamespace(customer_id=42, cycle=1, kind="enter", to_stage="onboarding", at=at)
        # The second names a move no longer there: nothing says what it was, so it stays.
        expected = [f"survey.send:7:{move_key('b2b', move)}", "survey.send:7:transition:999"]
        if engine.dialect.name == "sqlite":  # fitted as cxloop now looks for it
            expected.append(bounded_key("survey.send:7:" + "m" * 250))
        assert keys == sorted(expected)
    finally:
        engine.dispose()
