"""An empty answer in ``--format csv`` is still a CSV: its header and no rows, so a script
that reads the file (or a spreadsheet that opens it) sees the columns it expects instead of
a blank line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from cxloop.cli.output import Format, emit, fields_of
from cxloop.customers.schemas import CustomerOut, EventOut, RejectedOut
from cxloop.feedback.triggers import TRIGGER_FIELDS
from cxloop.insights.churn import AT_RISK_FIELDS
from cxloop.insights.drivers import DRIVER_FIELDS
from cxloop.insights.purchases import RFM_SEGMENT_FIELDS
from cxloop.insights.retarget import VALUE_FIELDS
from cxloop.settings import Settings
from tests.test_cli import cx

EMPTY_LISTS = {
    "customers list": fields_of(CustomerOut),
    "events list": fields_of(EventOut),
    "rejected list": fields_of(RejectedOut),
    "triggers list": TRIGGER_FIELDS,
    "insights drivers": DRIVER_FIELDS,
    "insights retarget client-experience": ("attribute", *VALUE_FIELDS),
    "insights purchases": RFM_SEGMENT_FIELDS,
    "insights churn client-experience": AT_RISK_FIELDS,
    # These named their columns already; they stay that way.
    "cases list": None,
    "followups list": None,
    "segments list": None,
    "automations runs": None,
}


@pytest.fixture(scope="module")
def empty_project(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("empty") / ".cxloop"
    settings = Settings(home=home)
    cx(settings, "init")
    cx(settings, "lifecycle", "apply", "client-experience")
    return settings


@pytest.mark.parametrize("command", list(EMPTY_LISTS))
def test_an_empty_list_in_csv_is_its_header_alone(empty_project: Settings, command: str) -> None:
    done = cx(empty_project, *command.split(), "--format", "csv")
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert len(rows) == 1, done.stdout
    [header] = rows
    assert header and all(header), f"{command}: no header in {done.stdout!r}"
    expected = EMPTY_LISTS[command]
    if expected is not None:
        assert tuple(header) == expected


def test_no_lifecycle_model_in_csv_is_the_header_alone(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / ".cxloop")
    done = cx(settings, "lifecycle", "list", "--format", "csv")
    assert done.stdout == "model,stage,name,owner,target_days,current\n"


def test_an_empty_table_says_none_under_its_title(capsys: pytest.CaptureFixture[str]) -> None:
    emit([], Format.table, title="converts best (significant)")
    assert capsys.readouterr().out == "converts best (significant): none\n"
    emit([], Format.table, fields=("segment", "buyers"), title="RFM segments")
    shown = capsys.readouterr().out
    assert "RFM segments" in shown and "segment" in shown and "buyers" in shown
    emit([], Format.csv, fields=("segment", "buyers"))
    assert capsys.readouterr().out == "segment,buyers\n"
