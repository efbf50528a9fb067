"""Ready-made rules a team starts from: the pre-visit notice, the detractor call-back and
the win-back e-mail. Each is an ordinary rule (saved, checked and audited like any other)
that can be changed after it is installed."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from cxloop.domain.automations import RuleIn


def _template(name: str) -> str:
    return (files("cxloop.automations") / "preset_templates" / name).read_text(encoding="utf-8")


def pre_visit(
    *,
    name: str = "Pre-visit notice",
    event: str = "Visit Scheduled",
    staff_property: str = "technician_id",
    time_property: str = "scheduled_at",
    lead: str = "24h",
) -> RuleIn:
    """Before a field visit (``event`` carrying the technician's id and the time), tell
    the customer who is coming, ``lead`` ahead, with the technician's photo and bio."""
    setter = f"{{% set time_property = {time_property!r} %}}"
    return RuleIn.model_validate(
        {
            "name": name,
            "description": f"Tells the customer who is coming, {lead} before each {event}.",
            "trigger": {
                "on": "event",
                "event": event,
                "where": [
                    {"field": staff_property, "op": "exists"},
                    {"field": time_property, "op": "exists"},
                ],
            },
            "timing": {"before": lead, "of": time_property},
            "actions": [
                {
                    "type": "email",
                    "subject": "Your visit: {{ staff.name }} is coming",
                    "text": setter + _template("pre_visit.txt"),
                    "html": setter + _template("pre_visit.html"),
                    "staff_from": staff_property,
                }
            ],
        }
    )


def detractor_callback(
    *,
    name: str = "Detractor call-back",
    department: str | None = None,
    model: str | None = None,
    score: int = 6,
) -> RuleIn:
    """A detractor's answer opens a call-back case and thanks them for being frank."""
    case: dict[str, Any] = {
        "type": "case",
        "subject": "Call back: scored {{ response.score }}",
        "category": "detractor",
    }
    if department:
        case["department"] = department
    if model:
        case["model"] = model  # the case is filed under the customer's stage in it
    return RuleIn.model_validate(
        {
            "name": name,
            "description": f"An NPS answer of {score} or less opens a call-back case.",
            "trigger": {"on": "response", "measure": "nps", "score": {"op": "lte", "value": score}},
            "actions": [
                case,
                {
                    "type": "email",
                    "subject": "Thank you for telling us",
                    "text": "Hello {{ customer.first_name or 'there' }},\n\nThank you for your "
                    "honest answer. Someone from our team will call you within two "
                    "working days to put it right.\n",
                },
            ],
            "once_per_customer_days": 30,
        }
    )


def win_back(*, name: str = "Win-back e-mail", model: str, delay: str = "7d") -> RuleIn:
    """``delay`` after a customer leaves ``model``'s lifecycle, an e-mail asks them back,
    unless they came back first."""
    return RuleIn.model_validate(
        {
            "name": name,
            "description": f"{delay} after a customer leaves, an e-mail asks them back.",
            "trigger": {"on": "stage_exited", "model": model},
            "timing": {"delay": delay},
            "conditions": {"rules": [{"kind": "trait", "field": "email", "op": "exists"}]},
            "actions": [
                {
                    "type": "email",
                    "subject": "We miss you, {{ customer.first_name or 'friend' }}",
                    "text": "Hello {{ customer.first_name or 'there' }},\n\nIt has been a while. "
                    "Here is 15% off your next order: WELCOMEBACK15.\n",
                },
                {"type": "set_trait", "trait": "win_back_sent", "value": "{{ now[:10] }}"},
            ],
            "once_per_customer_days": 90,
        }
    )


PRESETS = ("pre-visit", "detractor-callback", "win-back")


def build(
    which: str,
    *,
    model: str | None = None,
    lead: str | None = None,
    event: str | None = None,
    department: str | None = None,
) -> RuleIn:
    """A preset by name, with the options each takes."""
    if which == "pre-visit":
        return pre_visit(lead=lead or "24h", event=event or "Visit Scheduled")
    if which == "detractor-callback":
        return detractor_callback(department=department, model=model)
    if which == "win-back":
        if model is None:
            raise ValueError("model: the win-back preset needs the lifecycle model customers leave")
        return win_back(model=model)
    raise ValueError(f"preset: must be one of {', '.join(PRESETS)}, not {which!r}")
