"""A year of Segment-spec messages from a made-up home-energy company, reproducible to the byte.

Demos, screenshots, benchmarks and tests need data that looks like a real tracking feed —
anonymous visitors, identity merges, silent drop-off, cases, renewals, cancellations — and
that contains patterns the analytics are supposed to find. Every person gets a private
`random.Random` derived from the seed and the person's index, so the same arguments always
give the same output and person N is the same whatever the number of customers.

Each person is drawn with demographics, then walked through awareness → consideration →
decision → purchase → delivery → use (with support, retention and advocacy) until they drop
off, cancel, or the window ends. Drop-off before the purchase is silent, as in real life;
cancellations after it always carry a reason.

Planted effects (tests and demos rely on them; change them only together):

1. Acquisition channel drives conversion. Of everyone reached, referral and store leads
   buy five to seven times as often as web and email leads (about 42% against 6-8%; rates
   per channel in `_STAGE_RATES`). Among identified profiles the gap stays wide because email
   leads are identified from the start while most web visitors never identify. Store and
   phone leads also decide faster (`_DECISION_DAYS`).
2. Income drives conversion and spend. The decision → purchase rate is scaled by
   `_INCOME_PURCHASE` (0.6 for "<25k" up to 1.25 for "200k+"); higher incomes buy the
   bigger systems, richer plans and more accessories. Customers under 25k also cancel more,
   giving "price" as the reason.
3. Bad support makes customers leave. A negatively resolved case adds a large monthly
   cancellation hazard (reason "poor support"), lowers review ratings and stops referrals.
4. Technician tech-07 does poor installations: their customers open more installation
   cases in the first month, and those cases end negatively about half of the time.
5. Onboarding leads to first success. Customers with "Onboarding Completed" almost always
   reach "First Value Reached", within days; the others reach it less often and weeks
   later. Customers without a first success use the app less, cancel more ("missing
   feature", "no longer needed") and rarely recommend the brand.
6. Younger customers use more features: about 2 "Feature Used" per app session under 35,
   about 1 from 35 to 54 and about 0.5 from 55.
7. Support demand peaks right after installation ("I Have It, Now What?").
8. Controls: gender and relationship status have no effect on anything, so a correct
   analysis finds no difference there.

Rhythms: offices, showrooms and technicians work on weekdays and Saturdays in office hours;
web visits peak in the evening; app use follows a weekly rhythm (weekdays busier).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

Message = dict[str, Any]
Ids = dict[str, str]
_Record = tuple[int, int, int, Message]
_T = TypeVar("_T")

_DAY: Final = 86_400
_WINDOW_DAYS: Final = 365
_START_SPREAD_DAYS: Final = 350
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _table(pairs: tuple[tuple[_T, float], ...], size: int = 1000) -> tuple[_T, ...]:
    """Expand weights into a lookup table: one `random()` call per weighted pick."""
    total = sum(weight for _, weight in pairs)
    out: list[_T] = []
    for value, weight in pairs:
        out.extend([value] * max(1, round(size * weight / total)))
    return tuple(out)


def _pick(rng: random.Random, table: tuple[_T, ...]) -> _T:
    return table[int(rng.random() * len(table))]


# --- demographics ---------------------------------------------------------------------------

_ACQUISITION: Final = _table(
    (
        ("web", 0.42),
        ("email", 0.14),
        ("referral", 0.10),
        ("store", 0.14),
        ("phone", 0.08),
        ("on-site", 0.12),
    )
)
_GENDER: Final = _table((("female", 0.49), ("male", 0.48), ("non-binary", 0.03)))
_AGE_BANDS: Final = _table(
    (
        ((18, 24), 0.10),
        ((25, 34), 0.22),
        ((35, 44), 0.22),
        ((45, 54), 0.19),
        ((55, 64), 0.15),
        ((65, 80), 0.12),
    )
)
_EDUCATION: Final = _table(
    (
        ("secondary", 0.25),
        ("vocational", 0.25),
        ("bachelor", 0.28),
        ("master", 0.17),
        ("doctorate", 0.05),
    )
)
_EDUCATION_INCOME: Final = {
    "secondary": 0.0,
    "vocational": 0.3,
    "bachelor": 0.7,
    "master": 1.1,
    "doctorate": 1.3,
}
_INCOME_BANDS: Final = ("<25k", "25-50k", "50-100k", "100-200k", "200k+")
_PROFESSIONS: Final = {
    "secondary": ("retail worker", "driver", "administrative assistant", "warehouse worker"),
    "vocational": ("electrician", "nurse", "chef", "mechanic", "hairdresser"),
    "bachelor": (
        "teacher",
        "accountant",
        "software developer",
        "marketing manager",
        "civil servant",
    ),
    "master": ("engineer", "consultant", "architect", "pharmacist", "product manager"),
    "doctorate": ("physician", "researcher", "professor", "chemist"),
}
_RELATIONSHIP: Final = {
    "young": _table((("single", 0.75), ("partnered", 0.20), ("married", 0.05))),
    "adult": _table((("single", 0.35), ("partnered", 0.30), ("married", 0.32), ("divorced", 0.03))),
    "middle": _table(
        (
            ("single", 0.15),
            ("partnered", 0.15),
            ("married", 0.55),
            ("divorced", 0.14),
            ("widowed", 0.01),
        )
    ),
    "senior": _table(
        (
            ("single", 0.10),
            ("partnered", 0.08),
            ("married", 0.55),
            ("divorced", 0.15),
            ("widowed", 0.12),
        )
    ),
}
_LOCATIONS: Final = _table(
    (
        (("Germany", "Bavaria", "Munich"), 0.10),
        (("Germany", "Berlin", "Berlin"), 0.10),
        (("Germany", "Hamburg", "Hamburg"), 0.06),
        (("Germany", "North Rhine-Westphalia", "Cologne"), 0.07),
        (("France", "Île-de-France", "Paris"), 0.11),
        (("France", "Auvergne-Rhône-Alpes", "Lyon"), 0.05),
        (("Netherlands", "North Holland", "Amsterdam"), 0.08),
        (("Netherlands", "South Holland", "Rotterdam"), 0.05),
        (("Netherlands", "Utrecht", "Utrecht"), 0.04),
        (("Spain", "Community of Madrid", "Madrid"), 0.08),
        (("Spain", "Catalonia", "Barcelona"), 0.07),
        (("Italy", "Lombardy", "Milan"), 0.07),
        (("Italy", "Lazio", "Rome"), 0.06),
        (("Ireland", "Leinster", "Dublin"), 0.06),
    )
)
_FIRST_NAMES: Final = {
    "female": (
        "Anna",
        "Marie",
        "Sophie",
        "Laura",
        "Emma",
        "Julia",
        "Lucia",
        "Sara",
        "Chiara",
        "Claire",
        "Ines",
        "Aoife",
        "Eva",
        "Lotte",
        "Hannah",
    ),
    "male": (
        "Lukas",
        "Jan",
        "Thomas",
        "Pierre",
        "Louis",
        "Daan",
        "Pablo",
        "Javier",
        "Marco",
        "Luca",
        "Sean",
        "Conor",
        "Felix",
        "Hugo",
        "Bram",
    ),
    "non-binary": ("Alex", "Sam", "Robin", "Charlie", "Kim", "Noa", "Andrea", "Jules"),
}
_LAST_NAMES: Final = {
    "Germany": ("Muller", "Schmidt", "Schneider", "Fischer", "Weber", "Wagner", "Becker"),
    "France": ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Petit", "Durand"),
    "Netherlands": ("de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser"),
    "Spain": ("Garcia", "Fernandez", "Gonzalez", "Rodriguez", "Lopez", "Martinez"),
    "Italy": ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano"),
    "Ireland": ("Murphy", "Kelly", "O'Sullivan", "Walsh", "Byrne", "Ryan"),
}
_COMPANY_SIZES: Final = _table((("1", 0.45), ("2-10", 0.35), ("11-50", 0.15), ("51-200", 0.05)))
_EMAIL_DOMAINS: Final = ("example.com", "example.org", "example.net")


@dataclass(frozen=True, slots=True)
class _Profile:
    user_id: str
    email: str
    name: str
    gender: str
    birth_year: int
    age: int
    education: str
    country: str
    region: str
    city: str
    profession: str
    relationship_status: str
    income: int
    channel: str
    company_size: str | None

    def traits(self) -> dict[str, Any]:
        traits: dict[str, Any] = {
            "email": self.email,
            "name": self.name,
            "gender": self.gender,
            "birth_year": self.birth_year,
            "education": self.education,
            "city": self.city,
            "region": self.region,
            "country": self.country,
            "profession": self.profession,
            "relationship_status": self.relationship_status,
            "income_band": _INCOME_BANDS[self.income],
            "channel": self.channel,
        }
        if self.company_size is not None:
            traits["company_size"] = self.company_size
        return traits


def _income(rng: random.Random, education: str, age: int) -> int:
    """Income rises with education and peaks in mid-career, as in the population at large."""
    age_bonus = (
        -0.7 if age < 25 else -0.2 if age < 35 else 0.3 if age < 55 else 0.2 if age < 65 else -0.2
    )
    mean = 1.1 + _EDUCATION_INCOME[education] + age_bonus
    return min(4, max(0, round(rng.gauss(mean, 0.9))))


def _profession(rng: random.Random, education: str, age: int) -> str:
    if age >= 66 and rng.random() < 0.8:
        return "retired"
    if age < 23 and rng.random() < 0.6:
        return "student"
    return rng.choice(_PROFESSIONS[education])


def _relationship(rng: random.Random, age: int) -> str:
    group = "young" if age < 25 else "adult" if age < 35 else "middle" if age < 55 else "senior"
    return _pick(rng, _RELATIONSHIP[group])


def _draw_profile(rng: random.Random, index: int, year: int) -> _Profile:
    gender = _pick(rng, _GENDER)
    low, high = _pick(rng, _AGE_BANDS)
    age = rng.randint(low, high)
    education = _pick(rng, _EDUCATION)
    if age < 22 and education in ("master", "doctorate"):
        education = "bachelor"
    country, region, city = _pick(rng, _LOCATIONS)
    first = rng.choice(_FIRST_NAMES[gender])
    last = rng.choice(_LAST_NAMES[country])
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    return _Profile(
        user_id=f"cust-{index + 1:06d}",
        email=f"{local}.{index + 1}@{rng.choice(_EMAIL_DOMAINS)}",
        name=f"{first} {last}",
        gender=gender,
        birth_year=year - age,
        age=age,
        education=education,
        country=country,
        region=region,
        city=city,
        profession=_profession(rng, education, age),
        relationship_status=_relationship(rng, age),
        income=_income(rng, education, age),
        channel=_pick(rng, _ACQUISITION),
        company_size=_pick(rng, _COMPANY_SIZES) if rng.random() < 0.2 else None,
    )


# --- journey parameters ---------------------------------------------------------------------

# (awareness → consideration, consideration → decision, decision → purchase) per channel.
_STAGE_RATES: Final = {
    "web": (0.50, 0.45, 0.40),
    "email": (0.45, 0.50, 0.40),
    "referral": (0.80, 0.75, 0.80),
    "store": (0.85, 0.75, 0.75),
    "phone": (0.80, 0.70, 0.65),
    "on-site": (0.75, 0.65, 0.60),
}
_INCOME_PURCHASE: Final = (0.6, 0.85, 1.0, 1.15, 1.25)
_DECISION_DAYS: Final = {
    "web": 21,
    "email": 18,
    "referral": 12,
    "store": 6,
    "phone": 7,
    "on-site": 10,
}
# (name, price, path) — products by income band, poorest first.
_PRODUCTS: Final = (
    ("Smart Thermostat", 249.0, "/products/smart-thermostat"),
    ("Solar Starter Kit", 5400.0, "/products/solar-starter-kit"),
    ("Battery Storage", 6200.0, "/products/battery-storage"),
    ("Heat Pump", 8900.0, "/products/heat-pump"),
)
_PRODUCT_BY_INCOME: Final = (
    _table(((0, 0.8), (1, 0.15), (3, 0.05))),
    _table(((0, 0.55), (1, 0.3), (2, 0.05), (3, 0.1))),
    _table(((0, 0.3), (1, 0.35), (2, 0.15), (3, 0.2))),
    _table(((0, 0.15), (1, 0.3), (2, 0.25), (3, 0.3))),
    _table(((0, 0.1), (1, 0.25), (2, 0.3), (3, 0.35))),
)
_ACCESSORIES: Final = (
    ("Sensor Pack", 79.0),
    ("Filter Set", 39.0),
    ("Extra Panel", 450.0),
    ("Smart Plug", 29.0),
)
_PLAN_PRICES: Final = {"basic": 9.9, "plus": 19.9, "pro": 39.9}
_PLAN_BY_INCOME: Final = (
    _table((("basic", 0.8), ("plus", 0.2))),
    _table((("basic", 0.6), ("plus", 0.35), ("pro", 0.05))),
    _table((("basic", 0.35), ("plus", 0.45), ("pro", 0.2))),
    _table((("basic", 0.2), ("plus", 0.45), ("pro", 0.35))),
    _table((("basic", 0.1), ("plus", 0.4), ("pro", 0.5))),
)
_CAMPAIGNS: Final = (  # by month, January first
    "winter-savings",
    "winter-savings",
    "spring-heat-pump",
    "spring-heat-pump",
    "solar-summer",
    "solar-summer",
    "solar-summer",
    "back-to-school",
    "autumn-smart-home",
    "autumn-smart-home",
    "black-friday",
    "winter-savings",
)
_AD_SOURCES: Final = _table(
    (
        (("google", "cpc"), 0.45),
        (("facebook", "social"), 0.2),
        (("instagram", "social"), 0.15),
        (("youtube", "video"), 0.1),
        (("linkedin", "social"), 0.1),
    )
)
_FEATURES: Final = _table(
    (
        ("energy dashboard", 0.3),
        ("usage alerts", 0.15),
        ("tariff optimiser", 0.15),
        ("automation rules", 0.12),
        ("remote control", 0.15),
        ("savings report", 0.08),
        ("export report", 0.05),
    )
)
_PLATFORMS: Final = ("ios", "android", "browser")
_TECHNICIANS: Final = 12
_BAD_TECHNICIAN: Final = "tech-07"
_EARLY_TOPICS: Final = _table((("installation", 0.5), ("how-to", 0.3), ("app", 0.2)))
_LATER_TOPICS: Final = _table(
    (("billing", 0.25), ("app", 0.3), ("hardware fault", 0.25), ("how-to", 0.2))
)
_SUPPORT_CHANNELS: Final = _table((("phone", 0.5), ("email", 0.25), ("web", 0.25)))
_BASE_REASONS: Final = _table(
    (("no longer needed", 0.4), ("moved to competitor", 0.35), ("price", 0.25))
)
_NO_VALUE_REASONS: Final = _table((("missing feature", 0.6), ("no longer needed", 0.4)))

# Hour-of-day weights (UTC; the demo markets are UTC+0 to UTC+2).
_WEB_HOURS: Final = _table(
    (
        (6, 1),
        (7, 2),
        (8, 3),
        (9, 4),
        (10, 4),
        (11, 4),
        (12, 5),
        (13, 4),
        (14, 4),
        (15, 4),
        (16, 4),
        (17, 5),
        (18, 6),
        (19, 7),
        (20, 7),
        (21, 5),
        (22, 3),
    ),
    200,
)
_OFFICE_HOURS: Final = _table(
    ((7, 3), (8, 5), (9, 6), (10, 6), (11, 4), (12, 5), (13, 6), (14, 6), (15, 5), (16, 3)), 200
)
_FIELD_HOURS: Final = _table(
    ((6, 3), (7, 5), (8, 5), (9, 5), (10, 4), (11, 2), (12, 5), (13, 5), (14, 4)), 200
)
_APP_HOURS: Final = _table(
    ((5, 3), (6, 6), (7, 4), (11, 3), (16, 4), (17, 6), (18, 7), (19, 6), (20, 4), (21, 2)), 200
)
# Chance of an app session per weekday (Monday first): busier on weekdays.
_SESSION_ODDS: Final = (0.82, 0.80, 0.80, 0.78, 0.70, 0.45, 0.40)
# Chance of one more "Feature Used" after each one, by age: mean = p / (1 - p).
_FEATURE_ODDS: Final = ((35, 0.67), (55, 0.52), (200, 0.34))


def _weekday(day: int) -> int:
    """Monday = 0; day 0 of the Unix epoch was a Thursday."""
    return (day + 3) % 7


class _Clock:
    """Turns epoch seconds into ISO strings quickly: formatting dominates otherwise."""

    def __init__(self, end: datetime) -> None:
        self.end_ts = int(end.timestamp())
        start_ts = self.end_ts - _WINDOW_DAYS * _DAY
        self.first_day = -(-start_ts // _DAY)
        self.end_day = self.end_ts // _DAY
        self._prefixes: dict[int, str] = {}

    def iso(self, ts: int) -> str:
        day, rest = divmod(ts, _DAY)
        prefix = self._prefixes.get(day)
        if prefix is None:
            prefix = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
            self._prefixes[day] = prefix
        hour, rest = divmod(rest, 3600)
        minute, second = divmod(rest, 60)
        return f"{prefix}{hour:02d}:{minute:02d}:{second:02d}Z"


# --- one person's journey -------------------------------------------------------------------


class _Journey:
    """Walks one person through the lifecycle, appending their messages to a shared list.

    Stage methods take the day the stage starts and return the day the next one starts, or
    None when the person drops off or leaves.
    """

    def __init__(
        self,
        index: int,
        rng: random.Random,
        profile: _Profile,
        clock: _Clock,
        tag: str,
        out: list[_Record],
    ) -> None:
        self.index = index
        self.rng = rng
        self.p = profile
        self.clock = clock
        self.out = out
        self.id_prefix = f"demo-{tag}-{index + 1:06d}-"
        self.seq = 0
        self.identified = False
        self.device: str | None = None
        self.device_linked = False
        self.linked: list[str] = []
        self.platforms: dict[str, str] = {}
        self.product = 0
        self.plan = "basic"
        self.orders = 0
        self.cases = 0
        self.technician = ""
        self.onboarded = False
        self.first_value = False
        self.negative_case = False
        self.reviewed = False

    # -- low-level emitters

    def _emit(self, ts: int, kind: str, ids: Ids, body: dict[str, Any]) -> None:
        if ts >= self.clock.end_ts:
            return
        self.seq += 1
        msg: Message = {
            "type": kind,
            "messageId": f"{self.id_prefix}{self.seq:05d}",
            "timestamp": self.clock.iso(ts),
        }
        msg.update(ids)
        msg.update(body)
        self.out.append((ts, self.index, self.seq, msg))

    def _track(self, ts: int, event: str, props: dict[str, Any], ids: Ids) -> None:
        self._emit(ts, "track", ids, {"event": event, "properties": props})

    def _server(self) -> Ids:
        """Ids for events recorded by back-office systems, which only know the customer."""
        return {"userId": self.p.user_id}

    def _web(self) -> Ids:
        """Ids as a browser or app sends them: the user id only once the device is linked."""
        if self.device is None:
            self._new_device()
        assert self.device is not None
        if self.device_linked:
            return {"userId": self.p.user_id, "anonymousId": self.device}
        return {"anonymousId": self.device}

    def _new_device(self) -> None:
        self.device = f"anon-{self.rng.getrandbits(64):016x}"
        self.device_linked = False
        self.platforms[self.device] = _PLATFORMS[int(self.rng.random() * 3)]

    def _page(self, ts: int, name: str, path: str, **extra: Any) -> None:
        props: dict[str, Any] = {
            "channel": "web",
            "path": path,
            "url": f"https://www.example.com{path}",
            **extra,
        }
        self._emit(ts, "page", self._web(), {"name": name, "properties": props})

    def _at(self, day: int, hours: tuple[int, ...]) -> int:
        return day * _DAY + _pick(self.rng, hours) * 3600 + int(self.rng.random() * 3600)

    def _office(self, day: int) -> int:
        """Offices, showrooms and technicians are closed on Sundays."""
        if _weekday(day) == 6:
            day += 1
        return self._at(day, _OFFICE_HOURS)

    def _gap(self, mean_days: float) -> int:
        return 1 + int(self.rng.expovariate(1.0 / mean_days))

    def _later(self, ts: int, low: int = 20, high: int = 240) -> int:
        return ts + self.rng.randint(low, high)

    # -- identity

    def _identify(self, ts: int, traits: dict[str, Any]) -> None:
        """Identify, linking the current device if it is still anonymous."""
        ids = self._server()
        if self.device is not None and not self.device_linked:
            ids["anonymousId"] = self.device
            self.device_linked = True
            self.linked.append(self.device)
        self.identified = True
        self._emit(ts, "identify", ids, {"traits": traits})

    def _alias(self, ts: int) -> None:
        assert self.device is not None
        self._emit(ts, "alias", self._server(), {"previousId": self.device})
        self.device_linked = True
        self.linked.append(self.device)

    def _login(self, ts: int) -> int:
        """Known customers are linked to their device when they sign in on it."""
        if self.device is None:
            self._new_device()
        if not self.device_linked:
            self._identify(ts, {"email": self.p.email})
            return self._later(ts, 5, 60)
        return ts

    # -- awareness

    def _awareness(self, day: int) -> int | None:
        channel = self.p.channel
        if channel in ("web", "referral"):
            for _ in range(1 + int(self.rng.random() * 3)):
                self._landing(day, channel)
                day += self._gap(3)
        elif channel == "email":
            self._email_lead(day)
        else:
            self._offline_lead(day)
        if self.rng.random() >= _STAGE_RATES[channel][0]:
            return None
        return day + self._gap(4)

    def _landing(self, day: int, channel: str) -> None:
        ts = self._at(day, _WEB_HOURS)
        if channel == "web":
            source, medium = _pick(self.rng, _AD_SOURCES)
            campaign = _CAMPAIGNS[(_EPOCH + timedelta(days=day)).month - 1]
            self._track(
                ts,
                "Ad Clicked",
                {"channel": "web", "campaign": campaign, "source": source, "medium": medium},
                self._web(),
            )
            ts = self._later(ts, 2, 10)
            self._page(ts, "Home", "/", utm_source=source, utm_campaign=campaign)
        else:
            self._page(ts, "Home", "/", utm_source="referral", referrer="friend")
        if self.rng.random() < 0.5:
            self._page(self._later(ts), "Blog", "/blog/how-to-cut-your-energy-bill")

    def _email_lead(self, day: int) -> None:
        ts = self._at(day, _OFFICE_HOURS)
        self._identify(ts, self.p.traits())
        self._email(self._later(ts, 600, 20_000), "welcome-series", clicked=0.6)

    def _email(self, ts: int, campaign: str, clicked: float) -> None:
        """An opened email; a click lands on the site and identifies the browser."""
        props = {
            "channel": "email",
            "campaign": campaign,
            "email_id": f"em-{campaign}-{self.index + 1}",
        }
        self._track(ts, "Email Opened", props, self._server())
        if self.rng.random() >= clicked:
            return
        ts = self._later(ts, 5, 120)
        self._track(ts, "Email Clicked", props, self._server())
        self._page(self._later(ts, 2, 8), "Home", "/", utm_source="email", utm_campaign=campaign)
        self._login(self._later(ts, 10, 20))

    def _offline_lead(self, day: int) -> None:
        ts = self._office(day)
        self._identify(ts, self.p.traits())
        ts = self._later(ts, 1, 30)
        if self.p.channel == "store":
            self._store_visit(ts, "browse")
        elif self.p.channel == "phone":
            self._track(
                ts,
                "Sales Call",
                {
                    "channel": "phone",
                    "direction": "inbound",
                    "duration_minutes": self.rng.randint(3, 25),
                },
                self._server(),
            )
        else:
            self._track(
                ts,
                "Event Attended",
                {"channel": "on-site", "event_name": f"Home & Energy Fair {self.p.city}"},
                self._server(),
            )

    def _store_visit(self, ts: int, purpose: str) -> None:
        self._track(
            ts,
            "Store Visited",
            {"channel": "store", "store": f"{self.p.city} showroom", "purpose": purpose},
            self._server(),
        )

    # -- consideration

    def _consideration(self, day: int) -> int | None:
        self.product = _pick(self.rng, _PRODUCT_BY_INCOME[self.p.income])
        for _ in range(1 + int(self.rng.random() * 3)):
            self._browse(day)
            day += self._gap(3)
        if self.identified and self.rng.random() < 0.6:
            self._email(self._at(day, _OFFICE_HOURS), "nurture", clicked=0.4)
        if self.p.channel == "store" and self.rng.random() < 0.5:
            self._store_visit(self._office(day + 1), "advice")
        if not self.identified and self.rng.random() < 0.25:
            self._sign_up(day + 1)
        if self.identified and self.rng.random() < 0.1:
            self._track(
                self._office(day + 2),
                "Support Contacted",
                {"channel": "phone", "topic": "pre-sales question"},
                self._server(),
            )
        if self.rng.random() >= _STAGE_RATES[self.p.channel][1]:
            return None
        return day + 2 + self._gap(6)

    def _browse(self, day: int) -> None:
        ts = self._at(day, _WEB_HOURS)
        name, _, path = _PRODUCTS[self.product]
        self._page(ts, "Product", path, product=name)
        if self.rng.random() < 0.7:
            self._page(self._later(ts, 30, 400), "Pricing", "/pricing")

    def _sign_up(self, day: int) -> None:
        ts = self._at(day, _WEB_HOURS)
        self._identify(ts, self.p.traits())
        self._track(
            self._later(ts, 1, 5), "Signed Up", {"channel": "web", "method": "email"}, self._web()
        )

    # -- decision

    def _decision(self, day: int) -> int | None:
        self._first_contact(day)
        day += self._gap(3)
        if self.rng.random() < 0.7:
            self._track(
                self._office(day),
                "Sales Call",
                {
                    "channel": "phone",
                    "direction": "outbound",
                    "duration_minutes": self.rng.randint(5, 40),
                },
                self._server(),
            )
        if self.p.channel != "on-site" and self.rng.random() < 0.4:
            self._track(
                self._office(day + 1),
                "Demo Attended",
                {
                    "channel": "on-site" if self.rng.random() < 0.7 else "web",
                    "product": _PRODUCTS[self.product][0],
                },
                self._server(),
            )
        day += 1 + self._gap(4)
        name, price, _ = _PRODUCTS[self.product]
        self._track(
            self._office(day),
            "Quote Sent",
            {
                "channel": "email",
                "quote_id": f"q-{self.index + 1:06d}",
                "product": name,
                "amount": price,
                "currency": "EUR",
            },
            self._server(),
        )
        rate = _STAGE_RATES[self.p.channel][2] * _INCOME_PURCHASE[self.p.income]
        if self.rng.random() >= min(rate, 0.95):
            return None
        return day + 1 + self._gap(_DECISION_DAYS[self.p.channel])

    def _first_contact(self, day: int) -> None:
        channel = self.p.channel
        if channel == "store":
            self._store_visit(self._office(day), "consultation")
        elif channel == "phone":
            self._track(
                self._office(day),
                "Sales Call",
                {
                    "channel": "phone",
                    "direction": "inbound",
                    "duration_minutes": self.rng.randint(5, 30),
                },
                self._server(),
            )
        elif channel == "on-site":
            self._track(
                self._office(day),
                "Demo Attended",
                {"channel": "on-site", "product": _PRODUCTS[self.product][0]},
                self._server(),
            )
        else:
            ts = self._at(day, _WEB_HOURS)
            if not self.identified:
                self._identify(ts, self.p.traits())
            ts = self._login(ts)
            self._track(
                self._later(ts, 1, 10),
                "Demo Requested",
                {"channel": "web", "product": _PRODUCTS[self.product][0]},
                self._web(),
            )

    # -- purchase

    def _purchase(self, day: int) -> int | None:
        channel = self._order_channel()
        name, price, _ = _PRODUCTS[self.product]
        quantity = 1 + int(self.rng.random() * 3) if self.product == 0 else 1
        ts = self._order(day, channel, name, price, quantity)
        self.plan = _pick(self.rng, _PLAN_BY_INCOME[self.p.income])
        self._identify(self._later(ts, 60, 600), {"plan": self.plan})
        if self.rng.random() < (0.08 if self.p.income == 0 else 0.04):
            reason = "price" if self.rng.random() < 0.5 else _pick(self.rng, _BASE_REASONS)
            self._cancel(self._office(day + self._gap(3)), reason, "before delivery")
            return None
        return ts // _DAY + 1 + int(self.rng.random() * 3)

    def _order_channel(self) -> str:
        roll = self.rng.random()
        if self.p.channel == "store":
            return "store" if roll < 0.8 else "web"
        if self.p.channel == "phone":
            return "phone" if roll < 0.7 else "web"
        return "web" if roll < 0.7 else "phone" if roll < 0.9 else "store"

    def _order(self, day: int, channel: str, product: str, price: float, quantity: int) -> int:
        self.orders += 1
        props: dict[str, Any] = {
            "channel": channel,
            "order_id": f"ord-{self.index + 1:06d}-{self.orders}",
            "revenue": round(price * quantity, 2),
            "currency": "EUR",
            "product": product,
            "quantity": quantity,
        }
        if channel != "web":
            ts = self._office(day)
            self._track(ts, "Order Completed", props, self._server())
            return ts
        ts = self._login(self._at(day, _WEB_HOURS))
        self._page(ts, "Checkout", "/checkout")
        ts = self._later(ts, 60, 600)
        self._track(ts, "Order Completed", props, self._web())
        return ts

    def _cancel(self, ts: int, reason: str, stage: str) -> None:
        self._track(
            ts,
            "Subscription Cancelled",
            {
                "channel": "phone" if self.rng.random() < 0.6 else "web",
                "reason": reason,
                "plan": self.plan,
                "stage": stage,
            },
            self._server(),
        )

    # -- delivery

    def _delivery(self, day: int) -> int | None:
        self.technician = f"tech-{1 + int(self.rng.random() * _TECHNICIANS):02d}"
        ts = self._office(day)
        visit_day = day + 4 + int(self.rng.random() * 14)
        visit = self._at(visit_day + (_weekday(visit_day) == 6), _FIELD_HOURS)
        product = _PRODUCTS[self.product][0]
        base = {"channel": "field service", "technician_id": self.technician}
        self._track(
            ts,
            "Visit Scheduled",
            {
                **base,
                "scheduled_at": self.clock.iso(visit),
                "visit_type": "delivery and installation",
            },
            self._server(),
        )
        self._track(visit, "Delivery Completed", {**base, "product": product}, self._server())
        minutes = self.rng.randint(60, 300)
        installed = visit + minutes * 60
        self._track(
            installed,
            "Installation Completed",
            {**base, "product": product, "duration_minutes": minutes},
            self._server(),
        )
        # The technician signs the customer in to the app before leaving, so every later
        # app event can carry both ids.
        self._login(self._later(installed, 300, 1800))
        day = visit // _DAY + 1
        if self.rng.random() < 0.7:
            self._onboarding(day + int(self.rng.random() * 10))
        return day

    def _onboarding(self, day: int) -> None:
        self.onboarded = True
        if self.rng.random() < 0.4:
            self._track(
                self._office(day),
                "Onboarding Completed",
                {"channel": "on-site", "technician_id": self.technician},
                self._server(),
            )
            return
        ts = self._login(self._at(day, _APP_HOURS))
        self._track(ts, "Onboarding Completed", {"channel": "web"}, self._web())

    # -- use, support, retention, advocacy

    def _use(self, start: int) -> None:
        first_value = self._first_value_day(start)
        period = 365 if self.rng.random() < 0.35 else 30
        next_bill = start + period
        next_month = start + 30
        second_device = start + 10 + int(self.rng.random() * 200) if self.rng.random() < 0.3 else -1
        for day in range(start, self.clock.end_day):
            if day >= next_month:  # first, so nothing else happens on the day someone leaves
                next_month += 30
                if self._monthly(day, day - start):
                    return
            early = day - start < 30
            odds = _SESSION_ODDS[_weekday(day)] * (1.0 if self.first_value else 0.6)
            if self.rng.random() < odds:
                self._session(day, day >= first_value >= 0 and not self.first_value)
            if self.rng.random() < self._case_hazard(early):
                self._support_case(day, early)
            if day >= next_bill:
                next_bill += period
                self._renew(day, period)
            if day == second_device:  # last, so no earlier event that day uses the new device
                self._second_device(day)

    def _first_value_day(self, start: int) -> int:
        if self.onboarded and self.rng.random() < 0.92:
            return start + 2 + int(self.rng.random() * 10)
        if not self.onboarded and self.rng.random() < 0.55:
            return start + 10 + int(self.rng.random() * 30)
        return -1

    def _use_device(self) -> None:
        if len(self.linked) > 1:
            self.device = self.linked[int(self.rng.random() * len(self.linked))]
            self.device_linked = True

    def _session(self, day: int, reaches_value: bool) -> None:
        self._use_device()
        ts = self._login(self._at(day, _APP_HOURS))
        ids = self._web()
        assert self.device is not None
        platform = self.platforms[self.device]
        self._track(
            ts,
            "Product Used",
            {
                "channel": "web",
                "platform": platform,
                "session_minutes": 1 + int(self.rng.random() * 15),
            },
            ids,
        )
        more = next(odds for limit, odds in _FEATURE_ODDS if self.p.age < limit)
        while self.rng.random() < more:
            ts = self._later(ts, 10, 180)
            self._track(
                ts,
                "Feature Used",
                {"channel": "web", "platform": platform, "feature": _pick(self.rng, _FEATURES)},
                ids,
            )
        if reaches_value:
            self.first_value = True
            self._track(
                self._later(ts),
                "First Value Reached",
                {"channel": "web", "milestone": "first savings report"},
                ids,
            )

    def _second_device(self, day: int) -> None:
        """A new phone or laptop: anonymous at first, then linked by a sign-in or an alias."""
        self._new_device()
        ts = self._at(day, _WEB_HOURS)
        self._page(ts, "Help Center", "/help/getting-started")
        ts = self._later(ts, 30, 300)
        if self.rng.random() < 0.6:
            self._identify(ts, {"email": self.p.email})
        else:
            self._alias(ts)
        self._page(self._later(ts, 5, 60), "Account", "/account")

    def _case_hazard(self, early: bool) -> float:
        hazard = 0.004
        if early:
            hazard *= 3.0
            if self.technician == _BAD_TECHNICIAN:
                hazard *= 2.5
        return hazard

    def _support_case(self, day: int, early: bool) -> None:
        topic = _pick(self.rng, _EARLY_TOPICS if early else _LATER_TOPICS)
        channel = _pick(self.rng, _SUPPORT_CHANNELS)
        ts = self._at(day, _OFFICE_HOURS)
        ids = self._web() if channel == "web" and self.device_linked else self._server()
        self._track(ts, "Support Contacted", {"channel": channel, "topic": topic}, ids)
        if self.rng.random() >= 0.8:
            return
        self.cases += 1
        case = {
            "channel": channel,
            "case_id": f"case-{self.index + 1:06d}-{self.cases}",
            "topic": topic,
        }
        self._track(self._later(ts, 30, 900), "Case Opened", case, self._server())
        negative = self.rng.random() < self._negative_odds(topic)
        resolved = self._resolution_time(ts, negative)
        self._track(
            resolved,
            "Case Resolved",
            {
                **case,
                "resolution": "negative" if negative else "positive",
                "hours_to_resolution": round((resolved - ts) / 3600, 1),
            },
            self._server(),
        )
        if negative:
            self.negative_case = True
            if not self.reviewed and self.rng.random() < 0.3:
                self._review(resolved // _DAY + 1 + int(self.rng.random() * 5))

    def _resolution_time(self, opened: int, negative: bool) -> int:
        """Cases are closed in office hours; failed ones drag on for days or weeks."""
        hours = self.rng.randint(72, 480) if negative else self.rng.randint(1, 96)
        resolved = self._office((opened + hours * 3600) // _DAY)
        if resolved <= opened + 600:
            resolved = opened + 600 + int(self.rng.random() * 7200)
        return resolved

    def _negative_odds(self, topic: str) -> float:
        if topic == "installation" and self.technician == _BAD_TECHNICIAN:
            return 0.55
        return 0.3 if topic == "billing" else 0.18

    def _monthly(self, day: int, tenure: int) -> bool:
        """Once a month: maybe leave, buy again, read the newsletter or recommend us."""
        reason = self._cancel_reason()
        if reason is not None:
            self._cancel(self._office(day), reason, "use")
            return True
        if self.rng.random() < 0.02 + 0.01 * self.p.income:
            product, price = self.rng.choice(_ACCESSORIES)
            self._order(day, self._order_channel(), product, price, 1 + int(self.rng.random() * 2))
        if self.rng.random() < 0.5:
            self._email(self._at(day, _OFFICE_HOURS), "newsletter", clicked=0.15)
        if tenure >= 45:
            self._advocacy(day + 1)
        return False

    def _cancel_reason(self) -> str | None:
        """Competing monthly risks; the one that fires names the reason."""
        risks: list[tuple[float, str | None]] = [
            (0.015, None),
            (0.08 if self.negative_case else 0.0, "poor support"),
            (0.0 if self.first_value else 0.03, "no value"),
            (0.015 if self.p.income == 0 else 0.0, "price"),
        ]
        roll = self.rng.random()
        for risk, reason in risks:
            if roll < risk:
                if reason is None:
                    return _pick(self.rng, _BASE_REASONS)
                if reason == "no value":
                    return _pick(self.rng, _NO_VALUE_REASONS)
                return reason
            roll -= risk
        return None

    def _advocacy(self, day: int) -> None:
        happy = self.first_value and not self.negative_case
        if happy and self.rng.random() < 0.1:
            self._track(
                self._at(day, _WEB_HOURS),
                "Referral Sent",
                {"channel": "email", "referral_code": f"ref-{self.index + 1:06d}"},
                self._server(),
            )
        if not self.reviewed and self.rng.random() < (0.07 if happy else 0.03):
            self._review(day)

    def _review(self, day: int) -> None:
        self.reviewed = True
        roll = self.rng.random()
        if self.negative_case:
            rating = 1 if roll < 0.5 else 2 if roll < 0.85 else 3
        elif self.first_value:
            rating = 5 if roll < 0.55 else 4 if roll < 0.9 else 3
        else:
            rating = 4 if roll < 0.3 else 3 if roll < 0.75 else 2
        ts = self._login(self._at(day, _WEB_HOURS))
        self._track(
            ts,
            "Review Posted",
            {"channel": "web", "rating": rating, "product": _PRODUCTS[self.product][0]},
            self._web(),
        )

    def _renew(self, day: int, period: int) -> None:
        price = _PLAN_PRICES[self.plan] * (10 if period == 365 else 1)
        self._track(
            self._at(day, _OFFICE_HOURS),
            "Subscription Renewed",
            {
                "channel": "web",
                "plan": self.plan,
                "billing_period": "yearly" if period == 365 else "monthly",
                "revenue": round(price, 2),
                "currency": "EUR",
            },
            self._server(),
        )

    def run(self, start: int) -> None:
        stages = (
            self._awareness,
            self._consideration,
            self._decision,
            self._purchase,
            self._delivery,
        )
        day: int | None = start
        for stage in stages:
            assert day is not None
            day = stage(day)
            if day is None or day >= self.clock.end_day:
                return
        assert day is not None
        self._use(day)


# --- public entry point ---------------------------------------------------------------------


def _default_end() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def generate_messages(
    customers: int = 5000, seed: int = 7, end: datetime | None = None
) -> list[dict[str, Any]]:
    """Segment-spec messages (plain dicts, JSON-serialisable) sorted by timestamp.

    The history covers the 365 days before `end` (a timezone-aware datetime, default: today
    at 00:00 UTC). The same (customers, seed, end) always gives the same messages.
    """
    if customers < 0:
        raise ValueError("customers must not be negative")
    if end is None:
        end = _default_end()
    elif end.tzinfo is None or end.utcoffset() is None:
        raise ValueError("end must be timezone-aware")
    end = end.astimezone(UTC)
    clock = _Clock(end)
    tag = hashlib.blake2b(f"{seed}|{clock.end_ts}".encode(), digest_size=4).hexdigest()
    records: list[_Record] = []
    for index in range(customers):
        rng = random.Random(f"cxloop-demo:{seed}:{index}")
        profile = _draw_profile(rng, index, end.year)
        start = clock.first_day + int(rng.random() * _START_SPREAD_DAYS)
        _Journey(index, rng, profile, clock, tag, records).run(start)
    # (timestamp, person, sequence) is unique, so the message dicts are never compared.
    records.sort(key=lambda record: (record[0], record[1], record[2]))
    return [record[3] for record in records]
