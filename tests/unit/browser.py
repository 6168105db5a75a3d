"""Headless Chromium for the web page's tests: Debian's own `chromium` driven by Playwright (no browser
download), started with every background service off and name resolution closed, and a recorder of
every request the pages make, so a test can assert that all of them went to the service itself.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / ".cache" / "test-artifacts" / "ui"

# Chromium's own traffic (updates, metrics, safe browsing, translate, sync...) off, and no name can
# resolve, so even a forgotten feature cannot reach anything: the page talks to 127.0.0.1 only.
OFFLINE_FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@dataclass
class Recorder:
    origin: str
    urls: list[str] = field(default_factory=list)

    def __call__(self, request) -> None:
        self.urls.append(request.url)

    def foreign(self) -> list[str]:
        """Requests to anything but the service (blob: and data: URLs stay in the page)."""
        own = urlsplit(self.origin)
        return [
            u
            for u in self.urls
            if urlsplit(u).scheme not in ("blob", "data")
            and (urlsplit(u).scheme, urlsplit(u).netloc) != (own.scheme, own.netloc)
        ]


@contextmanager
def chromium(origin: str):
    """(browser context, recorder): a fresh profile trusting nothing but the service's own origin."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=OFFLINE_FLAGS)
        # The service's certificate is from the test's own CA, which this fresh profile does not hold.
        context = browser.new_context(
            ignore_https_errors=True, viewport={"width": 1366, "height": 768}, service_workers="block"
        )
        recorder = Recorder(origin)
        context.on("request", recorder)
        try:
            yield context, recorder
        finally:
            context.close()
            browser.close()


def screenshot(page, name: str, show: str = "header") -> Path:
    """The laptop-sized viewport with `show` scrolled into it, saved as a test artifact
    (.cache/test-artifacts/ui/; `make screenshots` copies them to docs/screenshots/). Not full-page:
    Chromium's full-page capture resizes the view, and the next click can then land on nothing."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.locator(show).first.scroll_into_view_if_needed()
    page.screenshot(path=str(path))
    return path
