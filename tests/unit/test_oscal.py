"""The OSCAL renderer: valid by NIST's schemas and trestle's models, deterministic, faithful to results."""

from __future__ import annotations

import json

import pytest
from evidence_sample import sample

from compliance.render import oscal

BUILDERS = [oscal.assessment_plan, oscal.assessment_results, oscal.poam]


def _result(doc: dict) -> dict:
    return doc["assessment-results"]["results"][0]


def _finding(doc: dict, token: str) -> dict:
    (finding,) = [f for f in _result(doc)["findings"] if f["target"]["target-id"] == token]
    return finding


def _all_pass() -> dict:
    results = sample()
    for check in results["checks"]:
        if check["status"] == "fail":
            check["status"], check["reason"] = "pass", "sshd -T: passwordauthentication no"
    for framework in results["frameworks"]:
        for control in framework["controls"]:
            control["checks"] = [
                {**c, "status": "pass"} if c["status"] == "fail" else c for c in control["checks"]
            ]
            if control["status"] == "fail":
                control["status"] = "pass"
    return results


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_documents_from_sample_are_valid(build):
    assert oscal.validate(build(sample())) == []


def test_control_tokens_are_oscal_tokens():
    assert oscal.control_token("soc2", "CC6.1") == "soc2-cc6.1"
    assert oscal.control_token("hipaa", "164.312(e)(1)") == "hipaa-164.312_e_1"
    assert oscal.control_token("nist800171", "3.13.6") == "nist800171-3.13.6"
    assert oscal.control_token("cmmc", "SC.L2-3.13.6") == "cmmc-sc.l2-3.13.6"


def test_reviewed_controls_list_every_control_and_keep_the_original_ids():
    results = sample()
    plan = oscal.assessment_plan(results)["assessment-plan"]
    for reviewed in (
        plan["reviewed-controls"],
        _result(oscal.assessment_results(results))["reviewed-controls"],
    ):
        selections = reviewed["control-selections"]
        tokens = [c["control-id"] for s in selections for c in s["include-controls"]]
        assert tokens == ["soc2-cc6.1", "soc2-cc6.6", "soc2-cc7.2", "hipaa-164.312_e_1"]
        assert "164.312(e)(1)" in selections[1]["remarks"]


def test_plan_has_an_activity_per_check_and_the_subjects():
    plan = oscal.assessment_plan(sample())["assessment-plan"]
    activities = plan["local-definitions"]["activities"]
    assert [a["title"] for a in activities] == [c["title"] for c in sample()["checks"]]
    items = {i["props"][0]["value"]: i["uuid"] for i in plan["local-definitions"]["inventory-items"]}
    assert set(items) == {"enclave", "cloud"}
    included = {s["subject-uuid"] for s in plan["assessment-subjects"][0]["include-subjects"]}
    assert included == set(items.values())
    resources = {r["uuid"] for r in plan["back-matter"]["resources"]}
    assert plan["import-ssp"]["href"].removeprefix("#") in resources


BREAKAGES = {
    "bad uuid": lambda d: d["assessment-results"].update(uuid="not-a-uuid"),
    "missing title": lambda d: d["assessment-results"]["metadata"].pop("title"),
    "invalid state": lambda d: _result(d)["findings"][0]["target"]["status"].update(state="partially"),
    "timestamp without zone": lambda d: _result(d).update(start="2026-12-04T05:59:58"),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_broken_documents_are_caught_by_both_validators(name):
    doc = oscal.assessment_results(sample())
    BREAKAGES[name](doc)
    problems = oscal.validate(doc)
    assert any(p.startswith("schema: ") for p in problems), problems
    assert any(p.startswith("trestle: ") for p in problems), problems


def test_an_empty_poam_is_caught_by_both_validators():
    doc = oscal.poam(sample())
    doc["plan-of-action-and-milestones"]["poam-items"] = []
    problems = oscal.validate(doc)
    assert any(p.startswith("schema: ") for p in problems)
    assert any(p.startswith("trestle: ") for p in problems)


def test_unknown_document_kind_is_a_problem():
    assert oscal.validate({"catalog": {}}) != []


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_same_results_give_identical_json(build):
    assert json.dumps(build(sample()), sort_keys=True) == json.dumps(build(sample()), sort_keys=True)


def test_a_changed_status_changes_the_finding_state():
    assert _finding(oscal.assessment_results(sample()), "soc2-cc6.1")["target"]["status"]["state"] == (
        "not-satisfied"
    )
    assert _finding(oscal.assessment_results(_all_pass()), "soc2-cc6.1")["target"]["status"]["state"] == (
        "satisfied"
    )


def test_failed_control_is_not_satisfied_and_has_a_poam_item_naming_the_check():
    results = sample()
    doc = oscal.assessment_results(results)
    failed = _finding(doc, "soc2-cc6.1")
    assert failed["target"]["status"] == {"state": "not-satisfied", "reason": "fail"}
    (observation,) = [o for o in _result(doc)["observations"] if o["title"] == "ssh_key_only on enclave"]
    assert failed["related-observations"] == [{"observation-uuid": observation["uuid"]}]

    poam = oscal.poam(results)["plan-of-action-and-milestones"]
    (item,) = poam["poam-items"]
    assert "CC6.1" in item["title"]
    assert "ssh_key_only" in item["description"]
    assert "passwordauthentication yes" in item["description"]
    assert {o["uuid"] for o in poam["observations"]} == {
        r["observation-uuid"] for r in item["related-observations"]
    }


def test_passed_control_is_satisfied():
    doc = oscal.assessment_results(sample())
    assert _finding(doc, "soc2-cc6.6")["target"]["status"] == {"state": "satisfied", "reason": "pass"}
    assert _finding(doc, "hipaa-164.312_e_1")["target"]["status"]["state"] == "satisfied"


def test_manual_and_not_applicable_controls_say_why():
    results = sample()
    results["frameworks"][1]["controls"][0]["status"] = "not_applicable"
    doc = oscal.assessment_results(results)
    manual = _finding(doc, "soc2-cc7.2")["target"]
    assert manual["status"]["state"] == "not-satisfied"
    assert manual["status"]["reason"] == "other"
    assert manual["status"]["remarks"].startswith("manual: Who reviews the audit log alerts")
    assert {"name": "status", "ns": oscal.NS, "value": "manual"} in manual["props"]
    na = _finding(doc, "hipaa-164.312_e_1")["target"]["status"]
    assert (na["state"], na["reason"]) == ("not-satisfied", "other")
    assert na["remarks"].startswith("not applicable: ")
    assert oscal.validate(doc) == []


def test_every_artifact_is_a_back_matter_resource_and_evidence_resolves():
    results = sample()
    doc = oscal.assessment_results(results)
    resources = {r["uuid"]: r for r in doc["assessment-results"]["back-matter"]["resources"]}
    by_path = {r["title"]: r for r in resources.values()}
    for artifact in results["artifacts"]:
        (rlink,) = by_path[artifact["path"]]["rlinks"]
        assert rlink == {
            "href": artifact["path"],
            "hashes": [{"algorithm": "SHA-256", "value": artifact["sha256"]}],
        }
    checks = {(c["id"], c["subject"]): c for c in results["checks"]}
    for observation in _result(doc)["observations"]:
        check = checks[tuple(observation["title"].split(" on "))]
        evidence = observation.get("relevant-evidence", [])
        assert [resources[e["href"].removeprefix("#")]["title"] for e in evidence] == check["evidence"]
        assert all(check["reason"] in e["description"] for e in evidence)


def test_observations_are_tests_collected_when_their_artifacts_were():
    results = sample()
    collected = {a["path"]: a["collected_at"] for a in results["artifacts"]}
    result = _result(oscal.assessment_results(results))
    by_title = {o["title"]: o for o in result["observations"]}
    for check in results["checks"]:
        observation = by_title[f"{check['id']} on {check['subject']}"]
        assert observation["methods"] == ["TEST"]
        expected = (
            max(collected[p] for p in check["evidence"]) if check["evidence"] else results["generated_at"]
        )
        assert observation["collected"] == expected
    assert result["start"] == min(collected.values())
    assert result["end"] == results["generated_at"]


def test_unknown_evidence_is_an_error():
    results = sample()
    results["checks"][0]["evidence"] = ["raw/enclave/missing.json"]
    with pytest.raises(ValueError, match=r"missing\.json"):
        oscal.assessment_results(results)


def test_all_passing_still_gives_a_valid_poam():
    doc = oscal.poam(_all_pass())
    assert oscal.validate(doc) == []
    (item,) = doc["plan-of-action-and-milestones"]["poam-items"]
    assert item["title"] == "No open items"
    assert "observations" not in doc["plan-of-action-and-milestones"]
