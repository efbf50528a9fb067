"""The automation commands as a person runs them, on a demo project: a rule created from
a YAML file (refused first for a misspelt variable and for a loop), shown as the YAML it
was written in, changed from that text, turned off and on; the demo's run history;
webhook targets checked; staff listed; the audit log naming the command line's user."""

from __future__ import annotations

import getpass
from pathlib import Path

from cxloop.settings import Settings
from tests.test_cli import cx, cx_json

RULE = """\
name: Review request
description: Three days after a delivery worth 50 or more, ask how it went.
trigger:
  on: event
  event: Order Delivered
  where:
    - {field: total, op: gte, value: 50}
conditions:
  rules:
    - {kind: trait, field: plan, op: equals, value: pro}
timing:
  delay: 3d
actions:
  - type: email
    subject: "How is your {{ event.properties.item }}, {{ customer.first_name }}?"
    text: |
      Hello {{ customer.first_name }},
      your {{ event.properties.item }} arrived {{ event.timestamp | when('%-d %B') }}.
"""


def test_a_rule_from_a_file_is_checked_shown_changed_and_toggled(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    s = embedded_settings
    cx(s, "demo", "--customers", "80", "--no-serve")
    path = tmp_path / "rule.yaml"

    path.write_text(RULE.replace("customer.first_name }}?", "customer.frist_name }}?"))
    refused = cx(s, "automations", "create", "--file", str(path), check=False)
    assert refused.returncode == 2
    assert "actions.0.subject" in refused.stderr and "frist_name" in refused.stderr
    looping = tmp_path / "loop.yaml"
    looping.write_text(
        "name: Loop\ntrigger: {on: case_opened}\nactions:\n  - {type: case, subject: again}\n"
    )
    refused = cx(s, "automations", "create", "--file", str(looping), check=False)
    assert refused.returncode == 2 and "loop" in refused.stderr

    path.write_text(RULE)
    cx(s, "automations", "create", "--file", str(path))
    listed = {r["name"]: r for r in cx_json(s, "automations", "list")}
    assert listed["Review request"]["enabled"] is True
    assert {"Pre-visit notice", "Detractor call-back", "Win-back e-mail"} <= set(listed)

    # `show` prints the rule as YAML; that text, edited, is what `update` takes.
    shown = cx(s, "automations", "show", "Review request").stdout
    assert shown.startswith("# rule ") and ", enabled, version 1;" in shown.splitlines()[0]
    assert "\nname: Review request\n" in shown and "delay: 3d" in shown and "text: |" in shown
    path.write_text(shown.replace("How is your", "How do you like your"))
    cx(s, "automations", "update", "Review request", "--file", str(path))
    changed = cx_json(s, "automations", "show", "Review request")
    subject = changed["actions"][0]["subject"]
    assert subject == "How do you like your {{ event.properties.item }}, {{ customer.first_name }}?"
    assert changed["version"] == 2 and changed["timing"]["delay"] == "3d"
    assert changed["conditions"]["rules"][0]["value"] == "pro"

    cx(s, "automations", "disable", "Review request")
    assert not cx_json(s, "automations", "show", "Review request")["enabled"]
    cx(s, "automations", "enable", "Review request")
    assert cx_json(s, "automations", "show", "Review request")["enabled"]
    missing = cx(s, "automations", "enable", "Nope", check=False)
    assert missing.returncode != 0 and "Nope" in missing.stderr

    # The demo's rules come with their history.
    history = cx_json(s, "automations", "runs", "--limit", "500")
    assert history and {r["rule"] for r in history} <= set(listed)
    one = history[0]["rule"]
    runs = cx_json(s, "automations", "runs", one, "--limit", "500")
    assert {r["rule"] for r in runs} == {one}
    assert len(runs) == sum(r["rule"] == one for r in history)
    done = cx_json(s, "automations", "runs", "--status", "done", "--limit", "200")
    assert done and all(r["status"] == "done" for r in done)
    assert cx_json(s, "automations", "runs", "Review request") == []
    bad = cx(s, "automations", "runs", "--status", "sleeping", check=False)
    assert bad.returncode == 2 and "status" in bad.stderr

    # Webhook targets: http(s) only, and not the private network unless allowed.
    ftp = cx(
        s, "webhooks", "create", "a", "--url", "ftp://x.test/h", "--topic", "event", check=False
    )
    assert ftp.returncode == 2 and "http" in ftp.stderr
    local = cx(
        s, "webhooks", "create", "b", "--url", "http://10.1.2.3/h", "--topic", "event", check=False
    )
    assert local.returncode == 2 and "CXLOOP_WEBHOOKS_ALLOW_PRIVATE" in local.stderr
    assert len(cx_json(s, "staff", "list")) == 12

    entries = cx_json(s, "audit", "--entity", "rule")
    summaries = [e["summary"] for e in entries]
    assert "rule Review request changed" in summaries
    assert "rule Review request created" in summaries
    assert {e["actor"] for e in entries if "Review request" in e["summary"]} == {
        f"cli:{getpass.getuser()}"
    }
