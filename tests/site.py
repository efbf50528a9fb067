"""A demo project served by a real `cxloop serve` process, with one user per role, and
Debian's chromium driven by Playwright: what the browser tests share.

The site is built once per test worker (the demo generator with 500
customers), so every page has data to show. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxloop.settings import Settings
from cxloop.store.database import make_engine
from cxloop.store.users import create_user

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"
USERS = {
    "admin": ("admin@site.example.com", None),
    "analyst": ("analyst@site.example.com", None),
    "member": ("support@site.example.com", "customer service"),
}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Site:
    url: str
    settings: Settings
    secret_key: str
    write_key: str

    def email(self, role: str) -> str:
        return USERS[role][0]


def load_demo(settings: Settings, env: dict[str, str], cxloop: str, customers: int = 500) -> str:
    """Run the demo loader; its output (keys, a survey link) is returned."""
    done = subprocess.run(
        [cxloop, "demo", "--customers", str(customers), "--no-serve"],
        env=env, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    engine = make_engine(settings.effective_database_url)
    try:
        with engine.begin() as conn:
            for role, (email, department) in USERS.items():
                create_user(conn, email=email, role=role, password=PASSWORD, department=department)
    finally:
        engine.dispose()
    return done.stdout


def key_from(output: str, label: str) -> str:
    for line in output.splitlines():
        if line.strip().startswith(label):
            return line.split(":", 1)[1].strip().split()[0]
    raise AssertionError(f"the demo did not print its {label}:\n{output}")


def launch_chromium(playwright: Any) -> Any:
    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("Debian's chromium is missing: `make test` installs it")
    return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)


def sign_in(page: Any, site: Site, role: str) -> None:
    page.goto(f"{site.url}/login")
    page.get_by_label("E-mail").fill(site.email(role))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.url}/")


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
