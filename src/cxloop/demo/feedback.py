"""The demo's voice of the customer: surveys, answers, employee eNPS, notes and the state
of the follow-ups, drawn from the demo's own event history so that feedback agrees with
what happened.

Planted effects (the demo and its tests rely on them):

1. Late deliveries (more than 12 days from order to delivery) lower the delivery NPS by
   about two points, and technician tech-07's installations by about two and a half.
2. A case that ended negatively lowers the customer's later relationship NPS by about
   three and a half points; finishing onboarding raises it a little.
3. Support CSAT follows the case's outcome: mostly 4-5 after a positive resolution,
   mostly 1-2 after a negative one.
4. eNPS is lowest in delivery and customer service, the departments whose stages get
   the lowest customer NPS.

Every draw comes from a `random.Random` seeded by the demo seed and the customer's userId,
so the same demo always gives the same answers.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, select, update

from cxloop.feedback.responses import ResponseIn, record_response
from cxloop.feedback.surveys import SurveyIn, create_survey, list_surveys
from cxloop.service import cases, followups
from cxloop.service.timeline import NoteIn, add_note
from cxloop.store.models import CustomerIdentity, FollowUp

identities_t = cast(Table, CustomerIdentity.__table__)
followups_t = cast(Table, FollowUp.__table__)
LATE_DAYS = 12
BAD_TECHNICIAN = "tech-07"
ENPS_MEANS = {
    "marketing": 8.3,
    "sales": 7.6,
    "delivery": 6.1,
    "product": 8.1,
    "customer service": 5.9,
}
DETRACTOR_SAYS = {
    "late": [
        "The installation date slipped twice and nobody called me.",
        "Waited almost three weeks for the delivery.",
        "Delivery was late and badly planned.",
    ],
    "technician": [
        "The installer left a mess and the panel is crooked.",
        "Installation was sloppy, I had to call them back.",
    ],
    "case": [
        "Support never fixed my inverter problem.",
        "I had to call five times about the same issue.",
        "My complaint was closed without a solution.",
    ],
    "other": [
        "Too expensive for what it does.",
        "The app keeps logging me out.",
        "Billing is confusing and nobody explains it.",
    ],
}
PASSIVE_SAYS = [
    "Good product, but the delivery could be faster.",
    "Fine overall, the app is a bit confusing.",
    "Decent service, nothing special.",
]
PROMOTER_SAYS = [
    "Great installer, friendly and tidy.",
    "Love the savings on my energy bill!",
    "Support solved my problem quickly.",
    "Smooth from order to installation.",
    "Really helpful staff, I recommended you to my neighbour.",
]
CSAT_SAYS = {
    True: ["Quick and friendly help.", "Problem solved on the first call."],
    False: ["Still not fixed.", "Nobody took responsibility for my problem."],
}


@dataclass
class _Facts:
    order: datetime | None = None
    delivered: datetime | None = None
    installed: datetime | None = None
    onboarded: bool = False
    technician: str | None = None
    cancelled: datetime | None = None
    resolutions: list[tuple[datetime, bool]] = field(default_factory=list)  # (when, positive)


def _facts(messages: Iterable[dict[str, Any]]) -> dict[str, _Facts]:
    found: dict[str, _Facts] = {}
    for m in messages:
        user = m.get("userId")
        if m.get("type") != "track" or not user:
            continue
        facts = found.setdefault(user, _Facts())
        event, props = m.get("event"), m.get("properties") or {}
        at = datetime.fromisoformat(m["timestamp"])
        if event == "Order Completed" and facts.order is None:
            facts.order = at
        elif event == "Visit Scheduled":
            facts.technician = props.get("technician_id")
        elif event == "Delivery Completed" and facts.delivered is None:
            facts.delivered = at
        elif event == "Installation Completed" and facts.installed is None:
            facts.installed = at
        elif event == "Onboarding Completed":
            facts.onboarded = True
        elif event == "Case Resolved":
            facts.resolutions.append((at, props.get("resolution") != "negative"))
        elif event == "Subscription Cancelled" and facts.cancelled is None:
            facts.cancelled = at
    return found


def _nps(rng: random.Random, mean: float) -> int:
    return max(0, min(10, round(rng.gauss(mean, 1.5))))


def _comment(rng: random.Random, score: int, why: str) -> str | None:
    if rng.random() >= 0.65:
        return None
    if score <= 6:
        return rng.choice(DETRACTOR_SAYS[why])
    return rng.choice(PASSIVE_SAYS if score <= 8 else PROMOTER_SAYS)


def has_feedback(conn: Connection) -> bool:
    """Whether the demo's surveys are there already (they are loaded once per project)."""
    return any(s["name"] == "Delivery NPS" for s in list_surveys(conn))


def load_feedback(conn: Connection, messages: list[dict[str, Any]], *, seed: int) -> dict[str, int]:
    """Create the demo surveys and answers once (nothing if they exist), place the cases
    the events opened in their stages, open the follow-ups they call for, and move some
    follow-ups along as a team would have."""
    if has_feedback(conn):
        return {"responses": 0}
    now = datetime.now(UTC)
    surveys = {
        "delivery": create_survey(
            conn,
            SurveyIn(
                type="nps",
                name="Delivery NPS",
                stage="client-experience:delivery",
                touchpoint="Installation Completed",
            ),
        ),
        "purchase": create_survey(
            conn,
            SurveyIn(
                type="nps",
                name="Purchase NPS",
                stage="client-experience:engage",
                touchpoint="Order Completed",
            ),
        ),
        "relationship": create_survey(
            conn, SurveyIn(type="nps", name="Relationship NPS", stage="client-experience:use")
        ),
        "support": create_survey(
            conn,
            SurveyIn(
                type="csat",
                name="Support CSAT",
                stage="client-experience:support",
                touchpoint="Case Resolved",
            ),
        ),
        "onboarding": create_survey(
            conn, SurveyIn(type="ces", name="Onboarding effort", touchpoint="Onboarding Completed")
        ),
        "employees": create_survey(
            conn, SurveyIn(type="nps", name="Employee NPS", audience="employees")
        ),
    }
    owners = dict(
        conn.execute(
            select(identities_t.c.value, identities_t.c.customer_id).where(
                identities_t.c.kind == "user_id"
            )
        ).all()
    )
    answered = 0

    def answer(survey: str, customer: int, score: int, at: datetime, comment: str | None) -> None:
        nonlocal answered
        if at >= now:
            return
        body = ResponseIn(score=score, comment=comment, customer=str(customer), submitted_at=at)
        record_response(conn, surveys[survey]["id"], body, source="import", survey=surveys[survey])
        answered += 1

    for user, facts in sorted(_facts(messages).items()):
        customer = owners.get(user)
        if customer is None or facts.installed is None:
            continue
        rng = random.Random(f"cxloop-demo-feedback:{seed}:{user}")
        late = (
            facts.order is not None
            and facts.delivered is not None
            and facts.delivered - facts.order > timedelta(days=LATE_DAYS)
        )
        bad_install = facts.technician == BAD_TECHNICIAN
        if facts.order is not None and rng.random() < 0.35:
            score = _nps(rng, 7.9)
            at = facts.order + timedelta(hours=rng.randint(4, 48))
            answer("purchase", customer, score, at, _comment(rng, score, "other"))
        if rng.random() < 0.45:
            score = _nps(rng, 8.4 - 2.0 * late - 2.5 * bad_install)
            why = "technician" if bad_install else "late" if late else "other"
            at = facts.installed + timedelta(hours=rng.randint(20, 72))
            answer("delivery", customer, score, at, _comment(rng, score, why))
        if facts.onboarded and rng.random() < 0.5:
            effort = max(1, min(7, round(rng.gauss(5.6, 1.0))))
            at = facts.installed + timedelta(days=rng.randint(3, 10))
            answer("onboarding", customer, effort, at, None)
        for resolved, positive in facts.resolutions:
            if rng.random() < 0.6:
                score = rng.choice((4, 5, 5) if positive else (1, 1, 2, 3))
                text = rng.choice(CSAT_SAYS[positive]) if rng.random() < 0.5 else None
                answer("support", customer, score, resolved + timedelta(hours=20), text)
        at = facts.installed + timedelta(days=rng.randint(60, 120))
        if (facts.cancelled is None or at < facts.cancelled) and rng.random() < 0.6:
            bad_case = any(not positive and when < at for when, positive in facts.resolutions)
            score = _nps(rng, 8.1 - 3.5 * bad_case + 0.8 * facts.onboarded - 0.8 * late)
            why = "case" if bad_case else "late" if late else "other"
            answer("relationship", customer, score, at, _comment(rng, score, why))

    rng = random.Random(f"cxloop-demo-employees:{seed}")
    for department, mean in ENPS_MEANS.items():
        for _ in range(rng.randint(18, 32)):
            at = now - timedelta(days=rng.randint(1, 180), hours=rng.randint(0, 23))
            body = ResponseIn(score=_nps(rng, mean), department=department, submitted_at=at)
            record_response(
                conn, surveys["employees"]["id"], body, source="import", survey=surveys["employees"]
            )
            answered += 1

    placed = cases.restage(conn, model="client-experience")
    opened = followups.scan(conn, now=now)
    _work_on_followups(conn, now, seed)
    noted = _notes(conn, seed)
    return {"responses": answered, "cases_placed": placed, "notes": noted, **opened}


def _work_on_followups(conn: Connection, now: datetime, seed: int) -> None:
    """Most older follow-ups are done (with a note), some are in progress, the newest
    mostly open: what a working team's inbox looks like."""
    rng = random.Random(f"cxloop-demo-followups:{seed}")
    rows = conn.execute(
        select(followups_t.c.id, followups_t.c.due_at, followups_t.c.reason).order_by(
            followups_t.c.id
        )
    ).all()
    for row in rows:
        due = row.due_at if row.due_at.tzinfo else row.due_at.replace(tzinfo=UTC)
        roll = rng.random()
        old = due < now - timedelta(days=7)
        if (old and roll < 0.75) or (not old and roll < 0.15):
            opened = due - timedelta(hours=48)  # the cause; due within the 48-hour SLA
            closed = min(opened + timedelta(hours=rng.randint(2, 120)), now)
            note = {
                "detractor": "Called the customer, apologised and fixed the cause.",
                "negative_case": "Escalated to the team lead; sent a technician again.",
                "stalled": "Reached out with an offer; the customer is moving on.",
            }
            conn.execute(
                update(followups_t)
                .where(followups_t.c.id == row.id)
                .values(
                    status="done",
                    assignee=rng.choice(("Alex", "Sam", "Kim", "Lee")),
                    resolution_note=note.get(row.reason, "Done."),
                    closed_at=closed,
                    updated_at=closed,
                )
            )
        elif roll < 0.9:
            conn.execute(
                update(followups_t)
                .where(followups_t.c.id == row.id)
                .values(status="in_progress", assignee=rng.choice(("Alex", "Sam", "Kim")))
            )


def _notes(conn: Connection, seed: int) -> int:
    rng = random.Random(f"cxloop-demo-notes:{seed}")
    rows = conn.execute(
        select(followups_t.c.customer_id)
        .where(followups_t.c.reason == "negative_case")
        .order_by(followups_t.c.id)
        .limit(25)
    ).all()
    for row in rows:
        add_note(
            conn,
            int(row.customer_id),
            NoteIn(
                body=rng.choice(
                    (
                        "Called to apologise; offered a free service visit.",
                        "Customer prefers e-mail; do not call before 10:00.",
                        "Promised a callback from the installation team lead.",
                    )
                ),
                author=rng.choice(("Kim", "Sam")),
                department="customer service",
            ),
        )
    return len(rows)
