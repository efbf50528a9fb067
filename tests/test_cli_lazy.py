"""The command tree loads a command's module when the command runs: what `cxloop --help`
lists must match the commands themselves, and each must still be there."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cxloop.cli.lazy import LazyCommand
from cxloop.cli.main import LAZY_COMMANDS, LAZY_GROUPS, CxloopGroup, app

LAZY = [*LAZY_COMMANDS, *LAZY_GROUPS]


def _first_paragraph(text: str) -> str:
    return " ".join(re.split(r"\n\s*\n", text.strip())[0].split())


@pytest.mark.parametrize("lazy", LAZY, ids=[c.name for c in LAZY])
def test_each_listed_line_is_the_commands_own_help(lazy: LazyCommand) -> None:
    command = lazy.build()
    assert command.name == lazy.name
    assert _first_paragraph(command.help or "") == " ".join(lazy.help.split())


@pytest.mark.parametrize("lazy", LAZY, ids=[c.name for c in LAZY])
def test_each_command_answers_its_help(lazy: LazyCommand) -> None:
    result = CliRunner().invoke(app, [lazy.name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"Usage: cxloop {lazy.name}" in result.output
    assert " ".join(lazy.help.split())[:40] in " ".join(result.output.split())
    assert "--show-completion" not in result.output  # as before: the root offers none


def test_commands_registered_by_a_loader_are_registered_once() -> None:
    from cxloop.cli import analytics, imports

    for _ in range(3):
        assert CliRunner().invoke(app, ["import", "--help"]).exit_code == 0
        assert CliRunner().invoke(app, ["export", "--help"]).exit_code == 0
    imported = [c.name for c in imports.app.registered_commands]
    exported = [c.name for c in analytics.export_app.registered_commands]
    assert imported.count("project") == 1
    assert sorted(exported) == ["customers", "events", "parquet", "project"]


def test_the_root_help_lists_every_command_without_loading_them() -> None:
    probe = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from cxloop.cli.main import app\n"
        "out = CliRunner().invoke(app, ['--help'], env={'COLUMNS': '200'}).output\n"
        "loaded = [m for m in ('cxloop.cli.analytics', 'cxloop.cli.imports', 'sqlglot')"
        " if m in sys.modules]\n"
        "print(json.dumps({'out': out, 'loaded': loaded}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["loaded"] == []
    listed = re.findall(r"^│ ([a-z][a-z-]*) ", shown["out"], flags=re.MULTILINE)
    assert listed == CxloopGroup.order
    assert set(listed) >= {c.name for c in LAZY} | {"init", "serve", "demo", "config"}


def test_a_mistyped_command_gets_suggestions_among_all_commands() -> None:
    result = CliRunner().invoke(app, ["stat"])
    assert result.exit_code == 2
    assert "Did you mean 'stats'" in result.output
