"""Pages refuse input that no form of theirs sends, on every backend, with a page that
names the field: PostgreSQL cannot store or compare text holding NUL, so without the
check a crafted form would reach a service and fail there as a server error."""

from __future__ import annotations

from fastapi.testclient import TestClient

from cxloop.project import open_database
from cxloop.settings import Settings
from cxloop.store.users import create_user
from cxloop.web.app import create_app

PASSWORD = "correct horse battery"


def _admin(settings: Settings) -> None:
    engine = open_database(settings)
    try:
        with engine.begin() as conn:
            create_user(conn, email="admin@example.com", role="admin", password=PASSWORD)
    finally:
        engine.dispose()


def test_pages_refuse_nul_in_forms_queries_and_sign_in(settings: Settings) -> None:
    _admin(settings)
    with TestClient(create_app(settings), follow_redirects=False) as http:
        refused = http.post("/login", data={"email": "admin@example.com\x00", "password": "x"})
        assert refused.status_code == 400
        assert "NUL" in refused.text

        signed_in = http.post("/login", data={"email": "admin@example.com", "password": PASSWORD})
        assert signed_in.status_code == 303, signed_in.text
        home = http.get("/")
        csrf = home.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]

        query = http.get("/customers", params={"q": "ann\x00"}, headers={"Accept": "text/html"})
        assert query.status_code == 400
        assert "q: must not contain the NUL character" in query.text

        form = http.post("/settings/departments", data={"csrf_token": csrf, "name": "Sales\x00"})
        assert form.status_code == 400
        assert "name: must not contain the NUL character" in form.text

        # the same form without the NUL goes through, so the refusal is about the value
        made = http.post("/settings/departments", data={"csrf_token": csrf, "name": "Sales"})
        assert made.status_code in (200, 303), made.text
        listed = http.get("/settings/departments", follow_redirects=True)
        assert "Sales" in listed.text


def test_a_page_says_when_its_saved_segment_does_not_exist(settings: Settings) -> None:
    _admin(settings)
    with TestClient(create_app(settings), follow_redirects=False) as http:
        http.post("/login", data={"email": "admin@example.com", "password": PASSWORD})
        page = http.get(
            "/insights/purchases", params={"segment": "segment", "value": "Nobody"},
            headers={"Accept": "text/html"},
        )  # fmt: skip
        assert page.status_code == 200
        assert "no saved segment &#39;Nobody&#39;" in page.text
        assert 'id="e-value"' in page.text
        api = http.get("/api/v1/insights/purchases", params={"where": "segment=Nobody"})
        assert api.status_code == 404 and "no saved segment" in api.text
