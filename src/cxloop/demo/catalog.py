"""The touchpoints of the demo company, a seller of home-energy systems.

The demo generator may only emit event and page names listed here, so that presets, journey
maps and documentation built on the demo data can rely on one authoritative list. Each entry
says which channel it usually happens on, which lifecycle stage it typically marks (the
buyer lifecycle of DOMAIN.md extended with delivery, use, support and exit) and which
department owns it, so the demo can be mapped onto any of the shipped lifecycle presets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

StageHint = Literal[
    "awareness",
    "consideration",
    "decision",
    "purchase",
    "delivery",
    "use",
    "support",
    "retention",
    "advocacy",
    "exit",
]
Department = Literal["marketing", "sales", "delivery", "product", "customer service"]
Channel = Literal["web", "email", "store", "phone", "on-site", "field service"]
TouchpointKind = Literal["track", "page"]

DEMO_DEPARTMENTS: Final[tuple[Department, ...]] = (
    "marketing",
    "sales",
    "delivery",
    "product",
    "customer service",
)

DEMO_CHANNELS: Final[tuple[Channel, ...]] = (
    "web",
    "email",
    "store",
    "phone",
    "on-site",
    "field service",
)


@dataclass(frozen=True, slots=True)
class Touchpoint:
    """One kind of event at which a demo customer meets the brand.

    `channel` is only the usual channel: some touchpoints (orders, support contacts,
    onboarding) also happen on other channels, and the message's `properties["channel"]`
    is what counts.
    """

    name: str
    description: str
    channel: Channel
    stage_hint: StageHint
    department: Department
    kind: TouchpointKind = "track"


def _page(name: str, description: str, stage: StageHint, department: Department) -> Touchpoint:
    return Touchpoint(name, description, "web", stage, department, "page")


DEMO_TOUCHPOINTS: Final[tuple[Touchpoint, ...]] = (
    # Awareness — marketing
    Touchpoint(
        "Ad Clicked", "Clicked a paid search or social ad.", "web", "awareness", "marketing"
    ),
    Touchpoint(
        "Email Opened",
        "Opened a newsletter, nurture or service email.",
        "email",
        "awareness",
        "marketing",
    ),
    Touchpoint("Email Clicked", "Followed a link in an email.", "email", "awareness", "marketing"),
    Touchpoint(
        "Event Attended",
        "Met the brand at a home show, trade fair or open day.",
        "on-site",
        "awareness",
        "marketing",
    ),
    _page("Home", "Viewed the home page.", "awareness", "marketing"),
    _page("Blog", "Read a blog article about saving energy.", "awareness", "marketing"),
    # Consideration — marketing
    _page("Product", "Viewed a product page.", "consideration", "marketing"),
    _page("Pricing", "Viewed prices and plans.", "consideration", "marketing"),
    Touchpoint(
        "Signed Up",
        "Created an account to save a configuration.",
        "web",
        "consideration",
        "marketing",
    ),
    Touchpoint("Store Visited", "Visited a showroom.", "store", "consideration", "sales"),
    # Decision — sales
    Touchpoint("Demo Requested", "Asked for a consultation or demo.", "web", "decision", "sales"),
    Touchpoint(
        "Sales Call", "Talked to a sales advisor on the phone.", "phone", "decision", "sales"
    ),
    Touchpoint(
        "Demo Attended",
        "Saw a live demo, usually at home or on the premises.",
        "on-site",
        "decision",
        "sales",
    ),
    Touchpoint("Quote Sent", "Received a written quote.", "email", "decision", "sales"),
    # Purchase — sales
    _page("Checkout", "Opened the online checkout.", "purchase", "sales"),
    Touchpoint(
        "Order Completed",
        "Bought a system or an accessory (web, store or phone).",
        "web",
        "purchase",
        "sales",
    ),
    # Delivery — delivery
    Touchpoint(
        "Visit Scheduled", "A technician visit was booked.", "field service", "delivery", "delivery"
    ),
    Touchpoint(
        "Delivery Completed", "The system was delivered.", "field service", "delivery", "delivery"
    ),
    Touchpoint(
        "Installation Completed",
        "The technician finished the installation.",
        "field service",
        "delivery",
        "delivery",
    ),
    Touchpoint(
        "Onboarding Completed",
        "Finished the guided set-up (on-site or online).",
        "on-site",
        "delivery",
        "delivery",
    ),
    # Use — product
    Touchpoint("Product Used", "Opened the energy app or portal.", "web", "use", "product"),
    Touchpoint("Feature Used", "Used one feature of the app.", "web", "use", "product"),
    Touchpoint(
        "First Value Reached",
        "Received the first savings report: the first success.",
        "web",
        "use",
        "product",
    ),
    _page("Account", "Managed the account online.", "use", "product"),
    # Support — customer service
    Touchpoint(
        "Support Contacted",
        "Asked customer service for help.",
        "phone",
        "support",
        "customer service",
    ),
    Touchpoint("Case Opened", "A support case was opened.", "phone", "support", "customer service"),
    Touchpoint(
        "Case Resolved",
        "A support case was closed, positively or negatively.",
        "phone",
        "support",
        "customer service",
    ),
    _page("Help Center", "Read a help article.", "support", "customer service"),
    # Retention, advocacy and exit
    Touchpoint(
        "Subscription Renewed",
        "The service plan was renewed and paid.",
        "web",
        "retention",
        "customer service",
    ),
    Touchpoint(
        "Referral Sent", "Recommended the brand to a friend.", "email", "advocacy", "marketing"
    ),
    Touchpoint(
        "Review Posted", "Posted a public review with a 1-5 rating.", "web", "advocacy", "marketing"
    ),
    Touchpoint(
        "Subscription Cancelled",
        "Cancelled the contract, with a reason.",
        "phone",
        "exit",
        "customer service",
    ),
)

DEMO_EVENT_NAMES: Final[frozenset[str]] = frozenset(
    t.name for t in DEMO_TOUCHPOINTS if t.kind == "track"
)
DEMO_PAGE_NAMES: Final[frozenset[str]] = frozenset(
    t.name for t in DEMO_TOUCHPOINTS if t.kind == "page"
)


def touchpoint(name: str) -> Touchpoint:
    """Look a touchpoint up by name; a KeyError means the name is not part of the demo."""
    for item in DEMO_TOUCHPOINTS:
        if item.name == name:
            return item
    raise KeyError(name)
