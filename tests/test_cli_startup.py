"""What the command tree and the modules every command opens load is paid by `cxloop
--help` and by each import or report alike. Model-training and statistics libraries (about
two seconds together) must load only in the commands that use them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "scipy", "pandas")


def _loaded_after(code: str, modules: tuple[str, ...] = HEAVY) -> list[str]:
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


# Every command's module, as the command tree loads them one by one when they run.
WHOLE_TREE = (
    "from cxloop.cli.main import LAZY_COMMANDS, LAZY_GROUPS\n"
    "for command in [*LAZY_COMMANDS, *LAZY_GROUPS]:\n"
    "    command.build()"
)


def test_the_command_tree_loads_no_heavy_library() -> None:
    assert _loaded_after(WHOLE_TREE) == []


def test_the_http_client_loads_only_to_reach_a_server_or_send_a_webhook() -> None:
    assert _loaded_after(f"{WHOLE_TREE}\nimport cxloop.project", ("httpx",)) == []
    assert _loaded_after("import cxloop.web.app", ("httpx",)) == []


def test_the_web_app_loads_no_heavy_library() -> None:
    assert _loaded_after("import cxloop.web.app") == []


def test_the_insight_modules_load_their_libraries_only_when_they_compute() -> None:
    assert _loaded_after("import cxloop.insights.churn, cxloop.insights.retarget") == []
    assert _loaded_after("import cxloop.feedback.themes") == []


def test_the_probe_reports_a_library_that_is_loaded() -> None:
    assert _loaded_after("import scipy.stats") == ["scipy"]
