"""The web page (/ui/) and the API it uses, over real TLS with the tiny model: strict headers, static
files without inline code or external URLs, sign-in through /v1/me, the generation options, a job's
real step progress and queue position, cancel, and the settings it re-runs (prompts as recorded)."""

import base64
import json
import re
import threading
import time
from html.parser import HTMLParser

import pytest
from conftest import TENANT
from test_api import FOOOCUS, OTHER, access_records, api, auth  # noqa: F401 - api is the fixture

from airlock.apikeys import hash_key
from inference.api.compat import FooocusRequest
from inference.engine.options import PRESETS
from inference.web import CSP, STATIC

SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # an XML namespace name in every .svg file, never fetched
FILES = sorted(p.name for p in STATIC.iterdir())
SSN, CLIENT = "219-09-9999", "Globex"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside each <script>."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def parse(text: str) -> Tags:
    tags = Tags()
    tags.feed(text)
    return tags


def query(api, job_id, key="main"):  # noqa: F811
    response = api["client"].get(
        "/v1/generation/query-job", params={"job_id": job_id}, headers=auth(api, key)
    )
    assert response.status_code == 200, response.text
    return response.json()


def submit(api, key="main", **body):  # noqa: F811
    response = api["client"].post(
        "/v1/generation/text-to-image",
        json={**FOOOCUS, "async_process": True, **body},
        headers=auth(api, key),
    )
    assert response.status_code == 200, response.text
    return response.json()


# ------------------------------------------------------------------ the page


def test_the_page_is_served_with_a_strict_csp_and_no_caching(api):  # noqa: F811
    client = api["client"]
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.content == (STATIC / "index.html").read_bytes()
    types = {"app.js": "text/javascript", "app.css": "text/css", "logo.svg": "image/svg+xml"}
    responses = [page, client.get("/ui"), client.get("/ui/no-such.js"), client.get("/ui/..%2Fapp.py")]
    responses += [client.get(f"/ui/{name}") for name in types]
    for response in responses:
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
    assert CSP == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    assert responses[1].status_code == 308 and responses[1].headers["location"] == "/ui/"
    assert responses[2].status_code == 404 and responses[3].status_code == 404
    for name, media_type in types.items():
        response = client.get(f"/ui/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
        assert response.content == (STATIC / name).read_bytes()


@pytest.mark.parametrize("name", FILES)
def test_static_files_have_no_inline_code_no_inline_style_and_no_external_url(name):
    text = (STATIC / name).read_text(encoding="utf-8")
    assert "http://" not in text.replace(SVG_NAMESPACE, "") and "https://" not in text
    if name.endswith((".html", ".svg")):
        tags = parse(text)
        assert "<style" not in text.lower()
        for tag, attrs in tags.tags:
            assert "style" not in attrs, f"{name}: <{tag} style=...>"
            assert not [a for a in attrs if a.startswith("on")], f"{name}: <{tag}> has an on... handler"
        assert all(not body.strip() for body in tags.scripts), f"{name}: inline script"
        assert all(attrs.get("src") for tag, attrs in tags.tags if tag == "script")
    if name.endswith(".js"):
        # No HTML from strings, no CSSOM styling, no persistent storage, nothing logged.
        for forbidden in (
            r"innerHTML",
            r"outerHTML",
            r"localStorage",
            r"\beval\(",
            r"document\.write",
            r"\.style\b",
        ):
            assert not re.search(forbidden, text), f"{name}: {forbidden}"
        assert "console." not in text
        assert "sessionStorage" in text and '"X-API-KEY"' in text
    if name.endswith(".css"):
        assert "@import" not in text and "url(" not in text and "@font-face" not in text


def test_every_src_and_href_in_the_page_is_relative_to_ui():
    tags = parse((STATIC / "index.html").read_text(encoding="utf-8"))
    links = [attrs[a] for _, attrs in tags.tags for a in ("src", "href") if a in attrs]
    assert links
    for link in links:
        assert not link.startswith("/") and ":" not in link, link  # no absolute path, scheme or //host
        assert link.startswith("#") or link in FILES, link


# ------------------------------------------------------------------ the API the page uses


def test_me_names_the_key_and_never_repeats_it(api, capfd):  # noqa: F811
    client = api["client"]
    me = client.get("/v1/me", headers=auth(api, "main"))
    assert me.status_code == 200
    body = me.json()
    assert body["tenant"] == TENANT and body["key_id"].startswith("ak_")
    assert body["permissions"] == ["generate", "jobs:read", "models:read"]
    assert set(body) == {"key_id", "tenant", "permissions"}
    # Any valid key may ask, whatever its permissions; none, a wrong or a revoked key may not.
    readonly = client.get("/v1/me", headers=auth(api, "readonly"))
    assert readonly.status_code == 200 and readonly.json()["permissions"] == ["models:read"]
    assert client.get("/v1/me").json()["code"] == "missing_key"
    wrong = client.get("/v1/me", headers={"X-API-KEY": "alk_" + "x" * 43})
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_key"
    assert client.get("/v1/me", headers=auth(api, "revoked")).status_code == 401
    key = api["keys"]["main"]
    for response in (me, readonly, wrong):
        assert key not in response.text and hash_key(key) not in response.text
    seen = {(r["key_id"], r["tenant"], r["status"]) for r in access_records(api) if r["path"] == "/v1/me"}
    assert {(body["key_id"], TENANT, 200), (None, None, 401)} <= seen  # audited like every request
    audit = [p.read_text() for p in (api["work"] / "audit").rglob("*") if p.is_file()]
    captured = capfd.readouterr()
    assert not [t for t in [*audit, captured.out, captured.err] if key in t or hash_key(key) in t]


def test_options_list_the_presets_ratios_and_limits(api):  # noqa: F811
    response = api["client"].get("/v1/engines/options", headers=auth(api, "main"))
    assert response.status_code == 200
    options = response.json()
    assert [(p["name"], p["steps"]) for p in options["performances"]] == [
        (p.name, p.steps) for p in PRESETS.values()
    ]
    assert options["default_performance"] == "Speed" and options["default_aspect_ratio"] == "1152*896"
    assert "1024*1024" in options["aspect_ratios"] and len(options["aspect_ratios"]) == 26
    assert (options["max_image_number"], options["min_side"], options["max_side"]) == (4, 64, 2048)
    assert "euler" in options["samplers"] and "karras" in options["schedulers"]
    # Like the styles: models:read ("other" has generate and jobs:read only).
    refused = api["client"].get("/v1/engines/options", headers=auth(api, "other"))
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_permission"


def test_a_job_reports_real_steps_and_queue_positions_and_a_queued_one_cancels(api):  # noqa: F811
    """The worker is held inside step 2 of 4 (the engine's own callback), so what query-job says
    while it runs is exact; two jobs queue behind it and are cancelled through the page's API."""
    engine = api["service"].engine
    original, at_step_two, release = engine.run_plans, threading.Event(), threading.Event()

    def held(plans, progress=None):
        def report(step, steps):
            progress(step, steps)
            if step == 2:
                at_step_two.set()
                release.wait(60)

        return original(plans, progress=report)

    engine.run_plans = held
    try:
        running = submit(api, image_seed=21)
        assert at_step_two.wait(60)
        during = query(api, running["job_id"])
        assert (during["job_stage"], during["job_step"], during["job_steps"]) == ("RUNNING", 2, 4)
        assert during["job_progress"] == 50 and during["job_queue_position"] == 0
        # OTHER redacts an SSN and a client name: the settings shown are the recorded (sanitized) ones.
        first = submit(api, "other", prompt=f"a portrait for {CLIENT}, patient {SSN}", image_seed=5)
        second = submit(api, "other", image_seed=6)
        assert first["job_stage"] == "WAITING" and first["job_queue_position"] == 1
        assert query(api, second["job_id"], "other")["job_queue_position"] == 2
        shown = query(api, first["job_id"], "other")
        assert SSN not in json.dumps(shown) and CLIENT not in json.dumps(shown)
        assert SSN not in json.dumps(first) and CLIENT not in json.dumps(first)
        settings = shown["job_request"]
        assert settings["prompt"] == "a portrait for (CLIENT_A), patient [REDACTED:ssn]"
        assert settings["image_seed"] == 5 and settings["performance_selection"] == "Lightning"
        FooocusRequest(**settings)  # a valid body to submit again as it is
        findings = shown["job_prompt_policy"]["findings"]
        assert {(f["rule"], f["action"]) for f in findings} == {("clients", "redact"), ("ssn", "redact")}
        # Cancel, as the page's button does: a queued job stops, the running one is not interrupted.
        stop = api["client"].post(
            "/v1/generation/stop", params={"job_id": first["job_id"]}, headers=auth(api, "other")
        )
        assert stop.status_code == 200 and stop.json()["job_stage"] == "ERROR"
        cancelled = query(api, first["job_id"], "other")
        assert cancelled["job_status"] == "cancelled by the client" and cancelled["job_result"] is None
        assert query(api, second["job_id"], "other")["job_queue_position"] == 1
        api["client"].post(
            "/v1/generation/stop", params={"job_id": second["job_id"]}, headers=auth(api, "other")
        )
        still = api["client"].post(
            "/v1/generation/stop", params={"job_id": running["job_id"]}, headers=auth(api, "main")
        )
        assert still.json()["job_stage"] == "RUNNING"
    finally:
        release.set()
        engine.run_plans = original
    steps = [during["job_step"]]
    for _ in range(600):
        done = query(api, running["job_id"])
        steps.append(done["job_step"])
        if done["job_stage"] != "RUNNING":
            break
        time.sleep(0.1)
    assert done["job_stage"] == "SUCCESS" and done["job_progress"] == 100 and done["job_queue_position"] == 0
    assert steps == sorted(steps) and steps[-1] == 4
    # What the page shows and downloads: the served bytes (signed provenance inside) and the sidecar.
    result = done["job_result"][0]
    image = api["client"].get(result["url"], headers=auth(api, "main"))
    assert image.content == base64.b64decode(result["base64"])
    provenance = api["client"].get(result["url"] + "/provenance", headers=auth(api, "main")).json()
    record = provenance["record"]
    assert record["model"]["name"] == "sd_xl_base_1.0" and str(record["seed"]) == result["seed"] == "21"
    assert record["parameters"]["steps"] == 4 and record["parameters"]["sampler"] == "euler"
    history = api["client"].get("/v1/generation/job-history", headers=auth(api, "main")).json()
    assert running["job_id"] in [j["job_id"] for j in history["history"]]


def test_without_credentials_the_page_holds_only_the_sign_in_form(api):  # noqa: F811
    # Last in this module: jobs of both tenants exist by now, so their ids could leak if the page held any.
    jobs = [
        j["job_id"]
        for key in ("main", "other")
        for j in api["client"].get("/v1/generation/job-history", headers=auth(api, key)).json()["history"]
    ]
    text = api["client"].get("/ui/").text
    tags = parse(text)
    ids = {attrs.get("id"): (tag, attrs) for tag, attrs in tags.tags}
    assert {"signin-form", "api-key", "signin-submit", "signin-error"} <= set(ids)
    key_field = ids["api-key"][1]
    assert key_field["type"] == "password" and "name" not in key_field  # a native submit sends nothing
    assert ids["signin-error"][1]["role"] == "alert"
    # The signed-in area exists only as an inert <template>, empty of data.
    before_template = text.split("<template", 1)[0]
    assert 'id="app"' not in before_template and 'id="signin-form"' in before_template
    styles = api["client"].get("/v1/engines/styles", headers=auth(api, "main")).json()
    assert styles and not [s for s in styles if s in text]
    assert TENANT not in text and OTHER not in text and not [j for j in jobs if j in text]
    assert not re.search(r"[0-9a-f]{24}", text)
    assert "ak_" not in text
