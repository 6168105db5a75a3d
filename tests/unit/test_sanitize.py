"""The prompt policy engine (inference/sanitize): detectors, term lists, tenants, loading."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from airlock.errors import AirlockError
from inference.sanitize import (
    Finding,
    PromptBlocked,
    PromptPolicyError,
    Screened,
    load_policy,
)
from inference.sanitize.detectors import BUILTIN, luhn, mrn

REPO = Path(__file__).resolve().parents[2]
SSN = "123-45-6789"


def found(detector: str, text: str) -> list[str]:
    """The texts a built-in detector matches (tests may look at them; the API never shows them)."""
    return [text[start:end] for start, end, _ in BUILTIN[detector].spans(text)]


def policy_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "prompts.yml"
    path.write_text("---\n" + textwrap.dedent(body))
    return path


def policy(tmp_path: Path, body: str):
    return load_policy(policy_file(tmp_path, body))


# Three tenants treat the same SSN three ways; `quiet` has the model read the sanitized text.
TENANTS = """\
    version: 1
    default:
      rules:
        - name: ssn
          detector: ssn
          action: block
        - name: email
          detector: email
          action: redact
    tenants:
      strict: {}
      lenient:
        rules:
          - name: ssn
            action: redact
            placeholder: "<ssn>"
      open:
        rules:
          - name: ssn
            action: allow
      quiet:
        model_input: sanitized
        rules:
          - name: ssn
            action: redact
"""


# --- detectors: true positives and near misses ------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("SSN 123-45-6789 on file", "123-45-6789"),
        ("ssn 123 45 6789.", "123 45 6789"),
        ("id:123456789", "123456789"),
        ("078-05-1120", "078-05-1120"),
        ("899-99-9999", "899-99-9999"),  # the highest valid area
    ],
)
def test_ssn_detected_with_dashes_spaces_or_nothing(text, expected):
    assert found("ssn", text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "900-12-3456",  # areas 900-999 are ITINs
        "999-12-3456",
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "123-45 6789",  # mixed separators: not one number
        "9123-45-6789",  # part of a longer run
        "123-45-67890",
        "1234567890",  # ten digits
        "4111 1111 1111 1111",  # a card, not an SSN inside it
    ],
)
def test_ssn_near_misses(text):
    assert found("ssn", text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mail jane.doe@example.com today", "jane.doe@example.com"),
        ("<j.smith+proofs@art-dept.example.co.uk>", "j.smith+proofs@art-dept.example.co.uk"),
        ("Ops@Example.ORG.", "Ops@Example.ORG"),
    ],
)
def test_email_detected(text, expected):
    assert found("email", text) == [expected]


@pytest.mark.parametrize(
    "text", ["follow @artist on the wall", "user@localhost", "name at example dot com", "a@b.c"]
)
def test_email_near_misses(text):
    assert found("email", text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("call (555) 123-4567 now", "(555) 123-4567"),
        ("call (555)123-4567", "(555)123-4567"),
        ("call 555-123-4567", "555-123-4567"),
        ("call 555.123.4567", "555.123.4567"),
        ("call 1-555-123-4567", "1-555-123-4567"),
        ("call +1 555 123 4567.", "+1 555 123 4567"),
        ("call +1 (555) 123-4567", "+1 (555) 123-4567"),
        ("London office +44 20 7946 0958", "+44 20 7946 0958"),
        ("whatsapp +15551234567", "+15551234567"),
    ],
)
def test_phone_detected_nanp_and_e164(text, expected):
    assert found("phone", text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "tiles of 512 768 1024 pixels",  # space-separated sizes
        "seed 5551234567",  # bare ten digits: seeds, not phones
        "call 123-4567",  # no area code
        "shot on 2024-01-15",
        "555-123.4567",  # mixed separators
        "+12 34",  # too short for E.164
    ],
)
def test_phone_near_misses(text):
    assert found("phone", text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("card 4111 1111 1111 1111 exp", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("card 4111111111111111", "4111111111111111"),
        ("amex 3782 822463 10005", "3782 822463 10005"),
        ("mc 5500000000000004.", "5500000000000004"),
    ],
)
def test_payment_card_detected_and_luhn_checked(text, expected):
    assert luhn(expected)
    assert found("payment_card", text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # 16 digits failing Luhn: not a card
        "4111111111111112",
        "411111111111",  # 12 digits: too short
        "0000 0000 0000 0000",  # passes Luhn, is no card
        "41111111111111111111111",  # 23 digits: no card inside a longer run
        "4111  1111 1111 1111",  # a double space breaks the number
    ],
)
def test_payment_card_near_misses(text):
    assert found("payment_card", text) == []


def test_mrn_default_pattern():
    assert found("mrn", "chart MRN: 12345678 and mrn#1234567") == ["MRN: 12345678", "mrn#1234567"]
    assert found("mrn", "MRN 12345, MRNA 1234567, MRN12345678901") == []  # too short, a word, too long


def test_mrn_pattern_is_configurable(tmp_path):
    p = policy(
        tmp_path,
        r"""
        version: 1
        default:
          rules:
            - name: mrn
              detector: mrn
              pattern: '\bPT-\d{5}\b'
              action: redact
        """,
    )
    assert p.check("x", "PT-12345 and MRN: 12345678").sanitized == "[REDACTED:mrn] and MRN: 12345678"
    assert [s[:2] for s in mrn(r"chart (?P<hit>\d{4})").spans("chart 1234")] == [(6, 10)]  # `hit` group


@pytest.mark.parametrize(
    "text, date",
    [
        ("DOB: 1980-04-12", "1980-04-12"),
        ("patient, born 04/12/1980, smiling", "04/12/1980"),
        ("date of birth 12.04.1980", "12.04.1980"),
        ("Birthday: April 12, 1980", "April 12, 1980"),
        ("born on 12 April 1980", "12 April 1980"),
        ("D.O.B. Apr. 3rd 1975", "Apr. 3rd 1975"),
        ("b-day card, born in Ohio on 4/12/80", "4/12/80"),
    ],
)
def test_dob_detects_the_date_after_a_cue(text, date):
    assert found("dob", text) == [date]  # only the date: the cue word stays in the text


@pytest.mark.parametrize(
    "text",
    [
        "poster for the 04/12/1980 concert",  # a date with no birth cue
        "reborn 1980-04-12",  # the cue must be a word of its own
        "a born-to-run poster, April 12, 1980",  # ... not part of a compound
        "born in a small coastal town far away, 1980-04-12",  # cue too far from the date
        "born 2024",  # a year is no date
        "born 13/13/1980",  # no such date
    ],
)
def test_dob_near_misses(text):
    assert found("dob", text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("host 10.0.0.1 answers", ["10.0.0.1"]),
        ("at 192.168.1.254.", ["192.168.1.254"]),
        ("range 10.231.1.0/24", ["10.231.1.0"]),
        ("8.8.8.8,255.255.255.255", ["8.8.8.8", "255.255.255.255"]),
    ],
)
def test_ipv4_detected(text, expected):
    assert found("ipv4", text) == expected


@pytest.mark.parametrize(
    "text",
    ["999.1.1.1", "256.1.1.1", "v1.2.3.4", "release 1.2.3.4.5", "01.2.3.4", "born 12.04.1980", "1.2.3"],
)
def test_ipv4_near_misses(text):
    assert found("ipv4", text) == []


def test_plain_art_prompts_have_no_findings():
    p = load_policy(REPO / "policies" / "prompts.yml")
    plain = (
        "a lighthouse at dusk, 35mm, f/1.8, ISO 100, 1/250s, 16:9, 1920x1080, 8k",
        "seed 1234567890, cfg 7.5, 30 steps, version 2.1.3, v1.0.0.1, sdxl 1.0",
        "Patagonian steppe at golden hour, guanacos, wide angle",
        "a 1980s arcade, neon, April 12, 1980 on the calendar, 3 cats born in spring",
    )
    for text in plain:
        assert p.check("acme", text).findings == (), text


# --- term lists -------------------------------------------------------------------------------------

TERMS = """\
    version: 1
    default:
      rules: []
    tenants:
      acme:
        model_input: sanitized
        rules:
          - name: brands
            action: redact
            terms:
              - Patagonia: premium outdoor apparel brand
              - Project Phoenix
          - name: locations
            action: redact
            placeholder: "[PLACE]"
            terms:
              - San Francisco HQ
              - San Francisco HQ lobby: modern office lobby
"""


def test_terms_match_case_insensitively_as_whole_words(tmp_path):
    p = policy(tmp_path, TERMS)
    # "Patagonian" is another word (the region's adjective), so it stays; "PATAGONIA's" is the brand.
    screened = p.check("acme", "PATAGONIA's jacket on the Patagonian steppe, not patagonias")
    assert (
        screened.sanitized
        == "premium outdoor apparel brand's jacket on the Patagonian steppe, not patagonias"
    )
    assert [(f.rule, f.kind, f.start, f.end) for f in screened.findings] == [("brands", "terms", 0, 9)]


def test_terms_multiword_own_replacement_or_placeholder(tmp_path):
    p = policy(tmp_path, TERMS)
    text = "project\n  PHOENIX in the San Francisco HQ lobby and at San Francisco HQ"
    assert p.check("acme", text).sanitized == (
        "[REDACTED:brands] in the modern office lobby and at [PLACE]"  # longest term wins at one position
    )
    assert p.check("acme", "Project Phoenixes").findings == ()  # word boundary at the end too


def test_terms_are_per_tenant(tmp_path):
    p = policy(tmp_path, TERMS)
    assert p.check("other", "Patagonia").sanitized == "Patagonia"
    assert p.check("acme", "Patagonia").sanitized == "premium outdoor apparel brand"


# --- tenants, actions, model input ------------------------------------------------------------------


def test_same_prompt_blocked_redacted_or_allowed_per_tenant(tmp_path):
    p = policy(tmp_path, TENANTS)
    text = f"portrait for {SSN}, mail a@example.com"
    strict, lenient, open_ = (p.check(t, text) for t in ("strict", "lenient", "open"))
    assert strict.blocked_by == "ssn"
    assert lenient.blocked_by is None
    assert lenient.sanitized == "portrait for <ssn>, mail [REDACTED:email]"
    assert open_.blocked_by is None
    assert open_.sanitized == f"portrait for {SSN}, mail [REDACTED:email]"  # allow: reported, kept
    assert [(f.rule, f.action) for f in open_.findings] == [("ssn", "allow"), ("email", "redact")]


def test_unknown_tenant_gets_the_default_policy(tmp_path):
    p = policy(tmp_path, TENANTS)
    assert set(p.tenants) == {"strict", "lenient", "open", "quiet"}
    assert p.check("nobody", SSN).blocked_by == "ssn"
    assert p.for_tenant("nobody") is p.default


def test_model_input_original_by_default_or_sanitized(tmp_path):
    p = policy(tmp_path, TENANTS)
    text = f"mail a@example.com about {SSN}"
    lenient = p.check("lenient", text)
    assert lenient.model_text == text  # default: the model still gets the original
    assert lenient.sanitized == "mail [REDACTED:email] about <ssn>"
    quiet = p.check("quiet", text)
    assert quiet.model_text == quiet.sanitized == "mail [REDACTED:email] about [REDACTED:ssn]"


def test_blocked_text_is_still_redacted_for_the_log(tmp_path):
    screened = policy(tmp_path, TENANTS).check("strict", f"x {SSN} y")
    assert (screened.blocked_by, screened.sanitized) == ("ssn", "x [REDACTED:ssn] y")


def test_blocked_by_is_the_first_block_rule_in_policy_order(tmp_path):
    p = policy(
        tmp_path,
        """
        version: 1
        default:
          rules:
            - name: card
              detector: payment_card
              action: block
            - name: ssn
              detector: ssn
              action: block
        """,
    )
    assert p.check("t", f"{SSN} then 4111 1111 1111 1111").blocked_by == "card"


def test_tenant_rules_inherit_defaults_in_order_and_add_after(tmp_path):
    p = policy(
        tmp_path,
        """
        version: 1
        default:
          rules:
            - {name: ssn, detector: ssn, action: block}
            - {name: email, detector: email, action: redact}
        tenants:
          acme:
            rules:
              - {name: clients, terms: [Initech], action: block, description: a client name}
              - {name: email, placeholder: "[mail]"}
        """,
    )
    rules = p.tenants["acme"].rules
    assert [(r.name, r.action, r.placeholder) for r in rules] == [
        ("ssn", "block", "[REDACTED:ssn]"),
        ("email", "redact", "[mail]"),
        ("clients", "block", "[REDACTED:clients]"),
    ]
    assert [r.name for r in p.default.rules] == ["ssn", "email"]  # the default is untouched


# --- overlaps and replacement -------------------------------------------------------------------------

OVERLAP = """\
    version: 1
    default:
      rules:
        - {name: codename, terms: [Project Phoenix], action: redact, placeholder: "[CODE]"}
        - {name: city, terms: [Phoenix, Phoenix Labs], action: redact, placeholder: "[CITY]"}
        - {name: email, detector: email, action: redact}
        - {name: known, terms: [ops], action: allow}
"""


def test_overlap_earliest_longest_wins_and_absorbs_the_tail(tmp_path):
    p = policy(tmp_path, OVERLAP)
    assert p.check("t", "see Project Phoenix now").sanitized == "see [CODE] now"
    # "Phoenix Labs" starts inside "Project Phoenix" and runs past it: its tail is replaced too.
    assert p.check("t", "see Project Phoenix Labs now").sanitized == "see [CODE] now"
    assert p.check("t", "see Phoenix Labs now").sanitized == "see [CITY] now"  # longest at one start


def test_replacement_keeps_the_text_around_it(tmp_path):
    p = policy(tmp_path, OVERLAP)
    text = "«Phoenix»,a@example.com;Phoenix\tü ops@example.com."
    screened = p.check("t", text)
    assert screened.sanitized == "«[CITY]»,[REDACTED:email];[CITY]\tü [REDACTED:email]."
    # An allow match inside a redacted one neither stops nor splits the redaction.
    assert [f.rule for f in screened.findings] == ["city", "email", "city", "email", "known"]


# --- never the matched text ------------------------------------------------------------------------


def test_prompt_blocked_message_names_the_rule_never_the_text(tmp_path):
    screened = policy(tmp_path, TENANTS).check("strict", f"for {SSN}")
    with pytest.raises(PromptBlocked) as caught:
        screened.raise_if_blocked()
    error = caught.value
    assert isinstance(error, AirlockError)
    assert str(error) == (
        "prompt refused by policy rule 'ssn' (a US social security number); remove it and retry"
    )
    assert error.rule == "ssn"
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert (copy.rule, str(copy)) == ("ssn", str(error))
    assert SSN not in repr(error) + str(error) + repr(copy)


def test_findings_and_screened_never_show_the_matched_text(tmp_path):
    p = policy(tmp_path, TENANTS)
    text = f"mail secret.person@example.com about {SSN}"
    for tenant in ("strict", "lenient", "open"):
        screened = p.check(tenant, text)
        assert screened.findings
        shown = repr(screened) + str(screened) + "".join(repr(f) + str(f) for f in screened.findings)
        assert "secret.person" not in shown
        if tenant != "open":  # `open` allows the SSN: its sanitized text keeps it by design
            assert SSN not in shown
    assert Finding.__dataclass_fields__.keys() == {"rule", "kind", "action", "start", "end"}
    assert "model_text" not in repr(p.check("lenient", text))  # it is the original text here


def test_check_request_screens_prompt_and_negative_prompt(tmp_path):
    p = policy(tmp_path, TENANTS)
    request = p.check_request("strict", "a@example.com at the beach", f"no {SSN}")
    assert request.prompt.sanitized == "[REDACTED:email] at the beach"
    assert request.negative_prompt.sanitized == "no [REDACTED:ssn]"
    assert request.blocked_by == "ssn"
    with pytest.raises(PromptBlocked, match=r"^negative_prompt refused by policy rule 'ssn'") as caught:
        request.raise_if_blocked()
    assert SSN not in str(caught.value)
    fine = p.check_request("lenient", "beach", f"no {SSN}")
    fine.raise_if_blocked()
    assert (fine.blocked_by, fine.negative_prompt.model_text) == (None, f"no {SSN}")


def test_clean_text_is_returned_unchanged(tmp_path):
    screened = policy(tmp_path, TENANTS).check("strict", "a red fox in snow")
    assert screened == Screened("a red fox in snow", "a red fox in snow", (), None)


# --- the shipped policy -----------------------------------------------------------------------------


def test_shipped_policy_loads_and_applies_the_seed_table():
    p = load_policy(REPO / "policies" / "prompts.yml")
    assert {"demo_tenant", "acme"} <= set(p.tenants)
    acme = p.check("acme", "Patagonia shell, Project Phoenix, San Francisco HQ lobby, for Initech")
    assert acme.model_text == (
        "premium outdoor apparel brand shell, sleek handheld device with matte finish, "
        "modern office lobby, for (CLIENT_B)"
    )
    assert p.check("acme", f"x {SSN}").blocked_by is None  # acme redacts SSNs
    assert p.check("someone", f"x {SSN}").blocked_by == "ssn"
    assert p.check("demo_tenant", "node 10.0.0.1").sanitized == "node 10.0.0.1"
    assert p.check("someone", "node 10.0.0.1").sanitized == "node [REDACTED:ipv4]"
    assert p.check("someone", "card 4111 1111 1111 1111").blocked_by == "payment_card"


# --- load errors name the file, the place and the fix ---------------------------------------------

BASE = textwrap.dedent(
    """\
    version: 1
    default:
      rules:
        - name: ssn
          detector: ssn
          action: block
    """
)


@pytest.mark.parametrize(
    "body, expected",
    [
        (BASE + "extra: 1\n", ["(top level)", "unknown key 'extra'", "the keys here are"]),
        (BASE.replace("version: 1", "version: 2"), ["version", "write version: 1"]),
        (BASE.replace("action: block", "acton: block"), ["default.rules[0] ('ssn')", "'acton'"]),
        (
            BASE.replace("detector: ssn", "detector: passport"),
            ["rules[0] ('ssn').detector", "'passport'", "ipv4"],
        ),
        (
            BASE.replace("action: block", "action: deny"),
            ["rules[0] ('ssn').action", "block | redact | allow"],
        ),
        (
            BASE + "      pattern: 'x'\n",
            ["default.rules[0] ('ssn')", "pattern is for the mrn detector only", "remove pattern"],
        ),
        (
            BASE.replace("detector: ssn", "detector: mrn") + "      pattern: 'MRN(\\d+'\n",
            ["default.rules[0] ('ssn').pattern", "not a valid regular expression", "fix the regex"],
        ),
        (
            BASE.replace("detector: ssn", "detector: mrn") + "      pattern: '\\d*'\n",
            ["rules[0] ('ssn').pattern", "matches empty text"],
        ),
        (BASE + "      terms: [a]\n", ["rules[0] ('ssn')", "exactly one of detector and terms"]),
        (
            BASE.replace("      detector: ssn\n", ""),
            ["rules[0] ('ssn')", "exactly one of detector and terms"],
        ),
        (
            BASE + "    - name: ssn\n      detector: email\n      action: redact\n",
            ["rules[1] ('ssn')", "its own name"],
        ),
        (BASE + "  model_input: raw\n", ["default.model_input", "original | sanitized"]),
        (
            BASE + "  model_input: original\n  model_input: sanitized\n",
            ["duplicate key 'model_input'", "line"],
        ),
        (BASE + "tenants:\n  Acme: {}\n", ["tenants.Acme", "not a tenant id"]),
        (
            BASE + "tenants:\n  acme:\n    rules:\n      - {name: ssn, action: nope}\n",
            ["tenants.acme.rules[0] ('ssn').action"],
        ),
        (
            BASE + "tenants:\n  acme:\n    rules:\n      - {name: ssn, terms: [x]}\n",
            ["tenants.acme.rules[0] ('ssn')", "overrides the default rule 'ssn' but sets terms", "new name"],
        ),
        (
            BASE + "tenants:\n  acme:\n    rules:\n      - {name: ssn}\n",
            ["tenants.acme.rules[0]", "overrides nothing"],
        ),
        (
            BASE + "tenants:\n  acme:\n    rules:\n      - {name: b, action: redact, terms: [Acme, ACME]}\n",
            ["tenants.acme.rules[0] ('b').terms[1]", "listed twice"],
        ),
        (
            BASE + "tenants:\n  acme:\n    rules:\n      - {name: b, action: redact, terms: [yes]}\n",
            ["terms[0]", "term must be non-empty text, got True", "quotes"],
        ),
        (
            BASE + "tenants:\n  acme:\n    rules:\n      - {name: b, action: redact, terms: []}\n",
            ["terms", "non-empty list, got an empty list"],
        ),
        (BASE.replace("name: ssn", "name: SSN rule"), ["default.rules[0]", "'SSN rule'", "lower-case"]),
        (BASE + "  : [\n", ["not valid YAML"]),
    ],
)
def test_policy_errors_name_the_file_the_place_and_the_fix(tmp_path, body, expected):
    path = policy_file(tmp_path, body)
    with pytest.raises(PromptPolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message


def test_missing_policy_file_is_a_clear_error(tmp_path):
    with pytest.raises(PromptPolicyError, match=r"no prompt policy here.*policies/prompts\.yml"):
        load_policy(tmp_path / "absent.yml")
