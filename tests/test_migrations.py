"""One Alembic history for SQLite and PostgreSQL that matches the models exactly."""

from __future__ import annotations

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
