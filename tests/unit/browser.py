"""Headless Chromium for the web page's tests: Debian's own `chromium` driven by Playwright (no browser
download), started with every background service off and name resolution closed, and a recorder of
every request the pages make, so a test can assert that all of them went to the service itself.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

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


def spki_pin(cert_path: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): how Chromium names the one key it may trust unverified."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@contextmanager
def chromium(origin: str, server_cert: Path):
    """(browser context, recorder): a fresh profile that accepts the service's own key and no other
    certificate error (it holds no store for the test's CA: the service's key is pinned instead)."""
    from playwright.sync_api import sync_playwright

    pin = f"--ignore-certificate-errors-spki-list={spki_pin(server_cert)}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*OFFLINE_FLAGS, pin])
        context = browser.new_context(viewport={"width": 1366, "height": 768}, service_workers="block")
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
