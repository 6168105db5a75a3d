"""The web page in a real browser: Debian's headless Chromium (offline flags, no name resolution) against
the service on the tiny model, over TLS. Sign in, generate with a style and a preset, see the image and
its provenance and download the signed bytes, cancel a queued job, another tenant's history stays
invisible, a blocked prompt's notice; every request the page made went to the service itself.
Screenshots of the main screens land in .cache/test-artifacts/ui/ (`make screenshots` copies them to
docs/screenshots/ for the README).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from browser import chromium, screenshot
from test_api import api, auth  # noqa: F401 - api is the fixture

from airlock.apikeys import create_key
from airlock.audit import AuditLog
from airlock.ca import init_ca, issue

SSN = "219-09-9999"
PAGE_TIMEOUT = 180  # seconds: a 1024x1024 image on the tiny model, 2 CPU cores shared with other tests


@pytest.fixture(scope="module")
def site(api):  # noqa: F811
    """The service (test_api's) plus a key for the second tenant with what the page needs."""
    with AuditLog(api["work"] / "audit") as audit:
        other, _ = create_key(
            api["work"] / "apikeys.json",
            tenant="tenant_health_b",
            permissions=["generate", "jobs:read", "models:read"],
            created_by="browser-tests",
            audit=audit,
        )
    origin = f"https://127.0.0.1:{api['port']}"
    with chromium(origin, api["service"].settings.server.tls_cert) as (context, recorder):
        yield {**api, "origin": origin, "context": context, "recorder": recorder, "other_key": other}


@pytest.fixture
def page(site):
    page = site["context"].new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(site["origin"] + "/ui/")
    yield page
    page.close()
    assert violations == [], violations


def wait_for(check, what: str, timeout: float = PAGE_TIMEOUT, page=None):
    """Poll from Python: the page's CSP (script-src 'self') refuses Playwright's string predicates."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    shown = ""
    if page is not None:  # what the page said instead, and a picture of it
        screenshot(page, "timeout")
        shown = " | ".join(f"{s}: {page.locator(s).text_content()!r}" for s in ("#progress", "#error"))
    raise AssertionError(f"timed out waiting for {what}; {shown}")


def sign_in(page, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#signin-submit")
    page.wait_for_selector("#app", timeout=30_000)
    page.wait_for_selector("#performance option", state="attached", timeout=30_000)


def progress(page) -> str:
    return page.locator("#progress").text_content() or ""


def test_without_credentials_the_page_is_the_sign_in_form_and_nothing_else(page):
    assert page.locator("#signin-form").is_visible()
    assert page.locator("#app").count() == 0
    screenshot(page, "01-sign-in")
    page.fill("#api-key", "alk_not_a_real_key")
    page.click("#signin-submit")
    error = page.locator("#signin-error")
    wait_for(error.is_visible, "the sign-in error")
    assert error.text_content().strip() and page.locator("#app").count() == 0
    assert "alk_not_a_real_key" not in page.url


def test_sign_in_generate_with_a_style_and_a_preset_and_download_the_signed_image(site, page):
    styles = site["client"].get("/v1/engines/styles", headers=auth(site, "main")).json()
    style = styles[0]
    sign_in(page, site["keys"]["main"])
    assert "tenant" in page.locator("#whoami").text_content().lower()
    assert page.evaluate("() => Object.keys(sessionStorage).length") >= 1
    assert site["keys"]["main"] not in page.evaluate("() => JSON.stringify(localStorage)")
    page.fill("#prompt", "a lighthouse on a cliff at dawn")
    page.fill("#style-search", style[:6])
    page.check(f'#style-list input[name="style"][value="{style}"]')
    page.select_option("#performance", "Lightning")
    page.uncheck("#seed-random")
    page.fill("#seed", "42")
    screenshot(page, "02-generate")
    page.click("#generate")
    figure = wait_for(lambda: page.locator("#gallery figure.result").count() > 0, "the result", page=page)
    assert figure
    provenance = page.locator("#gallery figure.result dl.provenance").first.text_content()
    assert (
        "42" in provenance and "sd_xl_base_1.0" in provenance and "Lightning" in progress(page) + provenance
    )
    screenshot(page, "03-result", show="#gallery figure.result")
    with page.expect_download() as download:
        page.locator("#gallery figure.result a.download").first.click()
    saved = download.value.path().read_bytes()
    job = page.locator("#history li.history-item").first.get_attribute("data-job-id")
    served = site["client"].get(f"/v1/outputs/{job}/0", headers=auth(site, "main"))
    assert served.status_code == 200 and saved == served.content  # the bytes with the signed provenance
    record = (
        site["client"].get(f"/v1/outputs/{job}/0/provenance", headers=auth(site, "main")).json()["record"]
    )
    assert record["seed"] == 42 and style in record["parameters"]["styles"]


def test_a_queued_job_is_cancelled_from_the_page(site, page):
    """The worker is held inside a job submitted through the API, so the page's job must wait."""
    engine = site["service"].engine
    original, busy, release = engine.run_plans, threading.Event(), threading.Event()

    def held(plans, progress=None):
        busy.set()
        release.wait(120)
        return original(plans, progress=progress)

    engine.run_plans = held
    try:
        site["client"].post(
            "/v1/generation/text-to-image",
            headers=auth(site, "main"),
            json={
                "prompt": "ahead in the queue",
                "performance_selection": "Lightning",
                "async_process": True,
            },
        )
        assert busy.wait(60)
        sign_in(page, site["keys"]["main"])
        page.fill("#prompt", "a job to cancel")
        page.click("#generate")
        wait_for(lambda: "queue position 1" in progress(page), "queue position 1")
        screenshot(page, "04-queued", show="#progress")
        page.click("#cancel")
        wait_for(lambda: "cancelled" in progress(page), "the cancellation")
    finally:
        release.set()
        engine.run_plans = original


def test_another_tenants_history_stays_invisible(site, page):
    mine = site["client"].get("/v1/generation/job-history", headers=auth(site, "main")).json()
    main_jobs = {j["job_id"] for j in mine["queue"] + mine["history"]}
    assert main_jobs  # the tests above made some
    sign_in(page, site["other_key"])
    page.click("#history-refresh")
    time.sleep(1)
    shown = {li.get_attribute("data-job-id") for li in page.locator("#history li.history-item").all()}
    assert not shown & main_jobs
    assert not any(job in page.content() for job in main_jobs)
    screenshot(page, "05-other-tenant", show="#history")


def test_a_blocked_prompt_shows_the_rule_never_the_text(site, page):
    sign_in(page, site["keys"]["main"])  # this tenant's policy blocks SSNs
    page.fill("#prompt", f"a chart for patient {SSN}")
    page.click("#generate")
    notice = page.locator("#policy-notice")
    wait_for(notice.is_visible, "the policy notice", timeout=30)
    assert "ssn" in notice.text_content() and SSN not in notice.text_content()
    assert page.locator("#gallery figure.result").count() == 0
    screenshot(page, "06-blocked", show="#policy-notice")


PINNED_TO = """
import sys
from pathlib import Path
from browser import chromium
with chromium(sys.argv[1], Path(sys.argv[2])) as (context, _):
    try:
        context.new_page().goto(sys.argv[1] + "/ui/")
        print("loaded")
    except Exception as exc:
        print(type(exc).__name__, exc)
"""


def test_the_browser_refuses_a_service_whose_key_is_not_the_pinned_one(site, tmp_path):
    """The pin is what lets the test's Chromium in: pinned to another key, the same page fails.
    (Its own process: one Playwright per thread, and this module's is running.)"""
    stranger, _ = issue(init_ca(tmp_path / "ca"), ["127.0.0.1"], tmp_path / "tls")
    here = Path(__file__).parent
    for cert, expected in ((stranger, "ERR_CERT"), (site["service"].settings.server.tls_cert, "loaded")):
        run = subprocess.run(
            [sys.executable, "-c", PINNED_TO, site["origin"], str(cert)],
            capture_output=True,
            text=True,
            cwd=here,
            env={**os.environ, "PYTHONPATH": str(here)},
            timeout=120,
        )
        assert expected in run.stdout, run.stdout + run.stderr


def test_every_request_the_pages_made_went_to_the_service(site):
    """Last in this module: the recorder has seen every page above (fonts, icons, scripts, API calls)."""
    urls = site["recorder"].urls
    assert any(u.endswith("/ui/app.js") for u in urls) and any("/v1/generation/query-job" in u for u in urls)
    assert site["recorder"].foreign() == []
