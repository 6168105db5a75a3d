"""Data protection through the HTTPS API (issue: prompt policies, encryption at rest, provenance,
tenant isolation), on the tiny model: TENANT's policy refuses an SSN, OTHER's redacts it and a client
name; nothing of the planted values reaches the audit tree, the service log, an error body or
/metrics; images are encrypted on disk and carry valid provenance; tenants cannot see each other."""

import hashlib
import hmac
import io
import json
import logging

import pytest
from conftest import TENANT
from PIL import Image
from test_api import FOOOCUS, OTHER, api, auth  # noqa: F401 - api is the fixture

from airlock.keys import load_verifier
from airlock.provenance import extract, verify

SSN = "219-09-9999"
CLIENT = "Globex"
PROMPT = f"a portrait for {CLIENT}, patient {SSN}"


def generate(running, key, **body):
    return running["client"].post(
        "/v1/generation/text-to-image", json={**FOOOCUS, **body}, headers=auth(running, key)
    )


def every_file(root):
    return [p for p in root.rglob("*") if p.is_file()]


def planted_anywhere(root, *needles: str) -> list[str]:
    return [
        f"{p.relative_to(root)}: {n}"
        for p in every_file(root)
        for n in needles
        if n.encode() in p.read_bytes()
    ]


@pytest.fixture(scope="module")
def redacted(api):  # noqa: F811 - the fixture imported above
    """One generation of PROMPT for OTHER (redact tenant), with the service log captured."""
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    logging.getLogger().addHandler(handler)
    try:
        response = generate(api, "other", prompt=PROMPT, image_seed=11)
    finally:
        logging.getLogger().removeHandler(handler)
    assert response.status_code == 200, response.text
    job_id = response.json()[0]["url"].split("/")[-2]
    return {"response": response, "job_id": job_id, "log": logs.getvalue()}


def test_a_block_rule_refuses_naming_the_rule_never_the_text(api):  # noqa: F811
    response = generate(api, "main", prompt=PROMPT)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "prompt_blocked" and "'ssn'" in body["detail"]
    assert SSN not in response.text and "219" not in response.text
    refused = [
        line
        for p in (api["work"] / "audit").rglob("generations.jsonl")
        for line in p.read_text().splitlines()
        if '"generation.refused"' in line
    ]
    assert refused and "prompt policy rule ssn" in refused[-1] and SSN not in refused[-1]


def test_the_planted_values_are_nowhere_but_in_the_full_prompt_store(api, redacted):  # noqa: F811
    work = api["work"]
    assert planted_anywhere(work / "audit", SSN) == []  # refused (TENANT) or redacted (OTHER)
    other = [
        line
        for p in (work / "audit").rglob("*.jsonl")
        for line in p.read_text().splitlines()
        if OTHER in line
    ]
    assert other and not [line for line in other if CLIENT in line]  # a client name only OTHER redacts
    assert planted_anywhere(work / "outputs", SSN, CLIENT) == []
    assert planted_anywhere(work / "prompts", SSN, CLIENT) == []  # encrypted there, not absent
    assert SSN not in redacted["log"] and CLIENT not in redacted["log"]
    metrics = api["client"].get("/metrics")
    assert SSN not in metrics.text and CLIENT not in metrics.text


def test_the_audit_record_holds_the_sanitized_prompt_and_the_full_ones_digest(api, redacted):  # noqa: F811
    records = [
        json.loads(line)
        for p in (api["work"] / "audit").rglob("generations.jsonl")
        for line in p.read_text().splitlines()
    ]
    mine = [r for r in records if r.get("output_ref", "") and redacted["job_id"] in str(r["output_ref"])]
    assert len(mine) == 1
    record = mine[0]
    assert "[REDACTED:ssn]" in record["prompt"] and "(CLIENT_A)" in record["prompt"]
    # Keyed with the host's secret: the plain SHA-256 (guessable around a redacted SSN) is nowhere.
    key = (api["work"] / "prompt-kek" / "digest.key").read_bytes()
    expected = hmac.new(key, PROMPT.encode(), hashlib.sha256).hexdigest()
    assert record["full_text_hmac_sha256"]["prompt"] == expected
    assert planted_anywhere(api["work"] / "audit", hashlib.sha256(PROMPT.encode()).hexdigest()) == []
    assert {f["rule"] for f in record["prompt_policy"]["findings"]} == {"ssn", "clients"}


def test_the_full_prompt_needs_audit_read_full_and_its_own_tenant(api, redacted):  # noqa: F811
    path = f"/v1/prompts/{redacted['job_id']}"
    assert api["client"].get(path, headers=auth(api, "other")).status_code == 403  # generate, jobs:read
    full = api["client"].get(path, headers=auth(api, "compliance"))
    assert full.status_code == 200 and full.json()["prompt"] == PROMPT
    elsewhere = api["client"].get(path, headers=auth(api, "compliance_main"))
    missing = api["client"].get("/v1/prompts/" + "0" * 24, headers=auth(api, "compliance_main"))
    assert elsewhere.status_code == missing.status_code == 404
    assert elsewhere.json()["code"] == missing.json()["code"]


def test_images_are_encrypted_at_rest_and_carry_valid_provenance(api, redacted):  # noqa: F811
    files = every_file(api["work"] / "outputs")
    assert files and not [p for p in files if b"\x89PNG" in p.read_bytes()]
    url = redacted["response"].json()[0]["url"]
    image = api["client"].get(url, headers=auth(api, "other"))
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    verdict = verify(image.content, [load_verifier(api["work"] / "keys")])
    assert verdict.valid, verdict.reasons
    record = extract(image.content)["record"]
    assert record["tenant"] == OTHER and record["seed"] == 11
    assert SSN not in str(record) and "[REDACTED:ssn]" in record["parameters"]["prompt"]
    sidecar = api["client"].get(url + "/provenance", headers=auth(api, "other"))
    assert sidecar.status_code == 200 and sidecar.json() == extract(image.content)
    assert verify(image.content, [load_verifier(api["work"] / "keys")], sidecar=sidecar.json()).valid
    assert api["client"].get(url + "/provenance", headers=auth(api, "main")).status_code == 404
    # One pixel changed: the provenance no longer holds.
    pixels = Image.open(io.BytesIO(image.content))
    pixels.putpixel((0, 0), tuple(255 - v for v in pixels.getpixel((0, 0))))
    altered = io.BytesIO()
    pixels.save(altered, format="PNG", pnginfo=None)
    assert not verify(altered.getvalue(), [load_verifier(api["work"] / "keys")]).valid


def test_another_tenants_outputs_jobs_and_history_read_as_missing(api, redacted):  # noqa: F811
    url = redacted["response"].json()[0]["url"]
    job_id = redacted["job_id"]
    client = api["client"]
    theirs = client.get(url, headers=auth(api, "main"))
    nobody = client.get(url.replace(job_id, "f" * 24), headers=auth(api, "main"))
    assert theirs.status_code == nobody.status_code == 404 and theirs.json() == nobody.json()
    query = client.get("/v1/generation/query-job", params={"job_id": job_id}, headers=auth(api, "main"))
    assert query.status_code == 404
    stop = client.post("/v1/generation/stop", params={"job_id": job_id}, headers=auth(api, "main"))
    assert stop.status_code == 404
    history = client.get("/v1/generation/job-history", headers=auth(api, "main")).json()
    assert job_id not in str(history)
    assert job_id in str(client.get("/v1/generation/job-history", headers=auth(api, "other")).json())


def test_another_tenants_lora_is_refused_like_a_missing_one(api):  # noqa: F811
    def ask(lora):
        return generate(api, "other", loras=[{"model_name": lora, "weight": 0.5}])

    theirs, missing = ask("brand_lora_v3"), ask("no_such_lora")  # brand_lora_v3 is TENANT's only
    assert theirs.status_code == missing.status_code and theirs.status_code in (404, 422)
    assert theirs.json()["code"] == missing.json()["code"]
    assert theirs.json()["detail"].replace("brand_lora_v3", "X") == missing.json()["detail"].replace(
        "no_such_lora", "X"
    )
    assert "brand_lora_v3" not in str(
        api["client"].get("/v1/engines/all-models", headers=auth(api, "compliance")).text
    )
    mine = generate(api, "main", loras=[{"model_name": "brand_lora_v3", "weight": 0.5}])
    assert mine.status_code == 200, mine.text
    assert TENANT  # the LoRA is restricted to TENANT in conftest.build_registry
