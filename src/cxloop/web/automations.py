"""REST API of automations: rules and their runs, presets, webhook endpoints and their
delivery log, staff profiles and photos, and the audit log.

Changing any of them needs the admin role (a rule sends e-mail in the company's name);
reading rules and runs is open to every signed-in user, while webhook secrets and the
audit log are for admins only. Changes run on the writer thread, and each writes its
audit entry in its own transaction.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from cxloop.automations import presets, rules, staff, webhooks
from cxloop.domain.automations import RuleIn
from cxloop.domain.values import MAX_INT
from cxloop.store import audit
from cxloop.web.auth import Admin, Caller, Who
from cxloop.web.errors import refuse_nul
from cxloop.web.state import written

router = APIRouter(prefix="/api/v1", tags=["automations"], dependencies=[Depends(refuse_nul)])
RuleName = Annotated[str, Path(min_length=1, max_length=120)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Before = Annotated[int | None, Query(ge=1, le=MAX_INT)]
RunStatus = Literal["scheduled", "running", "done", "skipped", "failed"]


@router.get("/automations")
def list_rules(state: Caller) -> list[dict[str, Any]]:
    """Every rule with its trigger, conditions, timing, actions and run counts."""
    with state.project.engine.connect() as conn:
        return rules.list_rules(conn)


@router.post("/automations", status_code=201)
async def create_rule(
    state: Admin,
    who: Who,
    body: RuleIn,
    preview_customer: Annotated[str | None, Query(max_length=320)] = None,
) -> dict[str, Any]:
    """Save a rule. What it names must exist and its templates must render for a real
    customer (``preview_customer``, else the latest one its trigger happened to)."""
    events, zone = state.project.events, state.project.settings.timezone
    return await written(
        state,
        lambda conn: rules.save_rule(
            conn, events, body, who.name, preview_customer=preview_customer, timezone=zone
        ),
    )


@router.post("/automations/preview")
async def preview_rule(
    state: Admin, body: RuleIn, customer: Annotated[str | None, Query(max_length=320)] = None
) -> dict[str, Any]:
    """What the rule's actions would send to a real customer, without saving it."""
    events, zone = state.project.events, state.project.settings.timezone
    return await written(
        state, lambda conn: rules.preview(conn, events, body, customer, timezone=zone)
    )


@router.post("/automations/presets/{preset}", status_code=201)
async def install_preset(
    state: Admin,
    who: Who,
    preset: Literal["pre-visit", "detractor-callback", "win-back"],
    model: Annotated[str | None, Query(max_length=63, description="win-back: the model")] = None,
    lead: Annotated[str | None, Query(max_length=20, description="pre-visit: 24h …")] = None,
    event: Annotated[str | None, Query(max_length=200, description="pre-visit: the event")] = None,
    department: Annotated[str | None, Query(max_length=120)] = None,
) -> dict[str, Any]:
    """Install a ready-made rule (an ordinary rule afterwards)."""
    body = presets.build(preset, model=model, lead=lead, event=event, department=department)
    events, zone = state.project.events, state.project.settings.timezone
    return await written(
        state, lambda conn: rules.save_rule(conn, events, body, who.name, timezone=zone)
    )


@router.get("/automations/{name}")
def get_rule(state: Caller, name: RuleName) -> dict[str, Any]:
    with state.project.engine.connect() as conn:
        return rules.get_rule(conn, name)


@router.put("/automations/{name}")
async def replace_rule(
    state: Admin,
    who: Who,
    name: RuleName,
    body: RuleIn,
    preview_customer: Annotated[str | None, Query(max_length=320)] = None,
) -> dict[str, Any]:
    events, zone = state.project.events, state.project.settings.timezone
    return await written(
        state,
        lambda conn: rules.save_rule(
            conn,
            events,
            body,
            who.name,
            replace=name,
            preview_customer=preview_customer,
            timezone=zone,
        ),
    )


@router.post("/automations/{name}/enable")
async def enable_rule(state: Admin, who: Who, name: RuleName) -> dict[str, Any]:
    """Enable a rule; what happened while it was off does not fire it."""
    return await written(state, lambda conn: rules.set_enabled(conn, name, True, who.name))


@router.post("/automations/{name}/disable")
async def disable_rule(state: Admin, who: Who, name: RuleName) -> dict[str, Any]:
    """Disable a rule; its runs not yet due are skipped when they come up."""
    return await written(state, lambda conn: rules.set_enabled(conn, name, False, who.name))


@router.delete("/automations/{name}", status_code=204)
async def delete_rule(state: Admin, who: Who, name: RuleName) -> Response:
    await written(state, lambda conn: rules.delete_rule(conn, name, who.name))
    return Response(status_code=204)


@router.get("/automation-runs")
def list_runs(
    state: Caller,
    rule: Annotated[str | None, Query(max_length=120)] = None,
    status: RunStatus | None = None,
    customer: Annotated[str | None, Query(max_length=320)] = None,
    limit: Limit = 50,
    before: Before = None,
) -> list[dict[str, Any]]:
    """Runs, newest first: the trigger, the customer, each action's outcome."""
    with state.project.engine.connect() as conn:
        return rules.list_runs(
            conn, rule=rule, status=status, customer=customer, limit=limit, before=before
        )


# -- webhooks -----------------------------------------------------------------------------


@router.get("/webhooks")
def list_webhooks(state: Admin) -> list[dict[str, Any]]:
    with state.project.engine.connect() as conn:
        return webhooks.list_endpoints(conn)


@router.post("/webhooks", status_code=201)
async def create_webhook(state: Admin, who: Who, body: webhooks.WebhookIn) -> dict[str, Any]:
    """Register an endpoint. The answer carries its signing secret; keep it."""
    settings = state.project.settings
    return await written(
        state, lambda conn: webhooks.create_endpoint(conn, body, settings, who.name)
    )


@router.get("/webhooks/{name}")
def get_webhook(state: Admin, name: RuleName) -> dict[str, Any]:
    with state.project.engine.connect() as conn:
        return webhooks.get_endpoint(conn, name, with_secret=True)


@router.post("/webhooks/{name}/enable")
async def enable_webhook(state: Admin, who: Who, name: RuleName) -> dict[str, Any]:
    return await written(state, lambda conn: webhooks.set_enabled(conn, name, True, who.name))


@router.post("/webhooks/{name}/disable")
async def disable_webhook(state: Admin, who: Who, name: RuleName) -> dict[str, Any]:
    return await written(state, lambda conn: webhooks.set_enabled(conn, name, False, who.name))


@router.post("/webhooks/{name}/rotate-secret")
async def rotate_webhook_secret(state: Admin, who: Who, name: RuleName) -> dict[str, Any]:
    return await written(state, lambda conn: webhooks.rotate_secret(conn, name, who.name))


@router.delete("/webhooks/{name}", status_code=204)
async def delete_webhook(state: Admin, who: Who, name: RuleName) -> Response:
    await written(state, lambda conn: webhooks.delete_endpoint(conn, name, who.name))
    return Response(status_code=204)


@router.get("/webhook-deliveries")
def list_deliveries(
    state: Admin,
    webhook: Annotated[str | None, Query(max_length=120)] = None,
    status: Literal["pending", "delivered", "failed", "skipped"] | None = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    """The delivery log, newest first, with every attempt's status code or error."""
    with state.project.engine.connect() as conn:
        return webhooks.list_deliveries(conn, endpoint=webhook, status=status, limit=limit)


@router.post("/webhook-deliveries/{delivery_id}/resend")
async def resend_delivery(
    state: Admin, who: Who, delivery_id: Annotated[int, Path(ge=1, le=MAX_INT)]
) -> dict[str, Any]:
    """Send a delivery again (same ``webhook-id``, so receivers can drop a repeat)."""
    return await written(state, lambda conn: webhooks.resend(conn, delivery_id, who.name))


# -- staff --------------------------------------------------------------------------------

StaffRef = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/staff")
def list_staff(state: Caller) -> list[dict[str, Any]]:
    with state.project.engine.connect() as conn:
        return staff.list_staff(conn)


@router.post("/staff", status_code=201)
async def save_staff(state: Admin, who: Who, body: staff.StaffIn) -> dict[str, Any]:
    """Create a staff member, or change the one with this ``ref``."""
    return await written(state, lambda conn: staff.save_staff(conn, body, who.name))


@router.get("/staff/{ref}")
def get_staff(state: Caller, ref: StaffRef) -> dict[str, Any]:
    with state.project.engine.connect() as conn:
        return staff.get_staff(conn, ref)


@router.delete("/staff/{ref}", status_code=204)
async def delete_staff(state: Admin, who: Who, ref: StaffRef) -> Response:
    await written(state, lambda conn: staff.delete_staff(conn, ref, who.name))
    return Response(status_code=204)


@router.put("/staff/{ref}/photo")
async def upload_photo(state: Admin, who: Who, ref: StaffRef, request: Request) -> dict[str, Any]:
    """The photo as the request body (JPEG, PNG, GIF or WebP, at most 10 MB); it is
    checked, scaled to 512 px and stripped of its metadata."""
    data = await request.body()
    return await written(state, lambda conn: staff.set_photo(conn, ref, data, who.name))


@router.get("/staff/{ref}/photo")
def get_photo(state: Caller, ref: StaffRef) -> Response:
    with state.project.engine.connect() as conn:
        data, kind = staff.photo(conn, ref)
    return Response(data, media_type=kind, headers={"cache-control": "private, max-age=300"})


# -- audit --------------------------------------------------------------------------------


@router.get("/audit")
def audit_log(
    state: Admin,
    entity: Annotated[str | None, Query(max_length=40)] = None,
    actor: Annotated[str | None, Query(max_length=320)] = None,
    limit: Limit = 100,
    before: Before = None,
) -> list[dict[str, Any]]:
    """Who changed what and when, newest first (``before``: an entry's id, to page)."""
    with state.project.engine.connect() as conn:
        return audit.entries(conn, entity=entity, actor=actor, limit=limit, before=before)
