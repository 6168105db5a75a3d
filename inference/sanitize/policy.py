"""The prompt policy file (policies/prompts.yml): a default policy plus per-tenant policies.

Format (version 1)::

    version: 1
    default:                      # applies to every tenant, and alone to a tenant not listed
      model_input: original       # what the model gets: original (default) or sanitized
      rules:                      # checked in this order; the first matching `block` rule names the refusal
        - name: ssn               # lower-case letters, digits, '-', '_'
          detector: ssn           # a built-in: ssn email phone payment_card mrn dob ipv4
          action: block           # block | redact | allow
        - name: mrn
          detector: mrn
          pattern: '(?i)\\bMRN[:#\\s]*\\d{6,10}\\b'  # mrn only: the site's own regex (this is the default)
          action: redact
          placeholder: "[MRN]"    # optional; else [REDACTED:<rule name>]
    tenants:
      acme:                       # a tenant id, as in the API keys
        model_input: sanitized    # optional; else the default's
        rules:
          - name: ssn             # a default rule's name: override its action/placeholder/pattern
            action: redact
          - name: brands          # a new name: a new rule, checked after the default ones
            action: redact
            description: a brand name    # optional; for the refusal message of a block rule
            terms:                # matched case-insensitively, as whole words
              - Patagonia: premium outdoor apparel brand   # a term with its own replacement
              - Project Phoenix                            # a term that gets the rule's placeholder

A rule has exactly one of `detector` and `terms`. Loading fails closed: an unknown key, detector or
action, a bad regex, a duplicate rule, tenant, term or key is refused with the file, the tenant/rule
and the fix, never skipped (a typo must not silently switch a rule off).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from inference.sanitize.detectors import BUILTIN, mrn
from inference.sanitize.errors import PromptPolicyError
from inference.sanitize.screen import (
    ACTIONS,
    MODEL_INPUTS,
    TERMS,
    ModelInput,
    Rule,
    Screened,
    ScreenedRequest,
    screen,
)
from inference.sanitize.terms import TermList, normalize

VERSION = 1
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # the same ids as airlock.apikeys.TENANT
RULE_KEYS = ("name", "action", "detector", "terms", "pattern", "placeholder", "description")
OVERRIDE_KEYS = ("name", "action", "pattern", "placeholder", "description")
EXAMPLE = "the repository's policies/prompts.yml documents every field"


@dataclass(frozen=True)
class TenantPolicy:
    name: str  # the tenant id, or "default"
    model_input: ModelInput
    rules: tuple[Rule, ...]

    def check(self, text: str) -> Screened:
        return screen(self.rules, self.model_input, text)


@dataclass(frozen=True)
class PromptPolicy:
    path: Path
    sha256: str  # of the file's bytes, so an audit record can name the policy it applied
    default: TenantPolicy
    tenants: Mapping[str, TenantPolicy]  # the tenants the file lists (each with the default merged in)

    def for_tenant(self, tenant: str) -> TenantPolicy:
        """A tenant the file does not list gets the default policy."""
        return self.tenants.get(tenant, self.default)

    def check(self, tenant: str, text: str) -> Screened:
        return self.for_tenant(tenant).check(text)

    def check_request(self, tenant: str, prompt: str, negative_prompt: str = "") -> ScreenedRequest:
        policy = self.for_tenant(tenant)
        return ScreenedRequest(policy.check(prompt), policy.check(negative_prompt))


def load_policy(path: str | os.PathLike) -> PromptPolicy:
    """Read and validate the policy; PromptPolicyError says where it is wrong and how to fix it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PromptPolicyError(
            f"{path}: no prompt policy here; give the right path (the repository ships policies/prompts.yml)"
        ) from None
    except OSError as exc:
        raise PromptPolicyError(f"{path}: cannot read the prompt policy: {exc.strerror}") from exc
    try:
        data = yaml.load(raw, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PromptPolicyError(f"{path}: not valid YAML ({exc}); fix the syntax") from None
    return _Parser(path).policy(data, hashlib.sha256(raw).hexdigest())


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a repeated key (PyYAML keeps the last silently: a second `acme:`
    would replace the first tenant's rules without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}; keep one", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


class _Parser:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str, fix: str) -> NoReturn:
        raise PromptPolicyError(f"{self.path}: {where}: {problem}; {fix}")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()):
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {_kind(value)}", EXAMPLE)
        for key in value:
            if key not in allowed:
                self.fail(where, f"unknown key {key!r}", f"the keys here are {', '.join(allowed)}")
        for key in required:
            if key not in value:
                self.fail(where, f"{key} is missing", f"add it; {EXAMPLE}")
        return value

    def text(self, value: Any, where: str, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, f"{what} must be non-empty text, got {value!r}", "write it in quotes")
        return value

    def choice(self, value: Any, where: str, what: str, choices: tuple[str, ...]) -> Any:
        if value not in choices:
            self.fail(where, f"unknown {what} {value!r}", f"use one of {' | '.join(choices)}")
        return value

    def policy(self, data: Any, sha256: str) -> PromptPolicy:
        data = self.mapping(data, "(top level)", ("version", "default", "tenants"), ("version", "default"))
        if data["version"] != VERSION:
            self.fail("version", f"{data['version']!r} is not a known version", f"write version: {VERSION}")
        default = self.section(data["default"], "default", "default", None)
        tenants = data.get("tenants") or {}
        if not isinstance(tenants, dict):
            self.fail("tenants", f"must be a mapping of tenant id to policy, got {_kind(tenants)}", EXAMPLE)
        resolved = {}
        for tenant, section in tenants.items():
            if not isinstance(tenant, str) or not TENANT.match(tenant):
                self.fail(
                    f"tenants.{tenant}",
                    f"{tenant!r} is not a tenant id",
                    "use 1-63 lower-case letters, digits, '_' and '-' (as in the API keys)",
                )
            resolved[tenant] = self.section(section, f"tenants.{tenant}", tenant, default)
        return PromptPolicy(self.path, sha256, default, MappingProxyType(resolved))

    def section(self, value: Any, where: str, name: str, default: TenantPolicy | None) -> TenantPolicy:
        required = ("rules",) if default is None else ()
        value = self.mapping(value, where, ("model_input", "rules"), required)
        model_input = self.choice(
            value.get("model_input", "original" if default is None else default.model_input),
            f"{where}.model_input",
            "model_input",
            MODEL_INPUTS,
        )
        entries = value.get("rules", [])
        if not isinstance(entries, list):
            self.fail(f"{where}.rules", f"must be a list, got {_kind(entries)}", "one '- name: ...' per rule")
        rules = list(default.rules) if default is not None else []
        inherited = {rule.name: i for i, rule in enumerate(rules)}
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            label = f"{where}.rules[{i}]"
            if not isinstance(entry, dict):
                self.fail(label, f"must be a mapping, got {_kind(entry)}", "write '- name: ...' and its keys")
            rule_name = entry.get("name")
            if not isinstance(rule_name, str) or not NAME.match(rule_name):
                self.fail(
                    label,
                    f"name {rule_name!r} is missing or invalid",
                    "name it with lower-case letters, digits, '-' and '_', starting with a letter",
                )
            label = f"{label} ({rule_name!r})"
            if rule_name in seen:
                self.fail(label, "a second rule with this name", "give each rule its own name")
            seen.add(rule_name)
            if rule_name in inherited:  # a tenant overriding one of the default rules
                at = inherited[rule_name]
                rules[at] = self.override(entry, label, rules[at])
            else:
                rules.append(self.rule(entry, label))
        return TenantPolicy(name, model_input, tuple(rules))

    def rule(self, entry: dict, where: str) -> Rule:
        self.mapping(entry, where, RULE_KEYS, ("name", "action"))
        name = entry["name"]
        action = self.choice(entry["action"], f"{where}.action", "action", ACTIONS)
        if ("detector" in entry) == ("terms" in entry):
            self.fail(where, "needs exactly one of detector and terms", f"a rule detects one way; {EXAMPLE}")
        placeholder = self.text(entry.get("placeholder", f"[REDACTED:{name}]"), where, "placeholder")
        if "terms" in entry:
            if "pattern" in entry:
                self.fail(where, "pattern is for the mrn detector only", "list the words under terms")
            description = entry.get("description", f"a term on the {name!r} list")
            return Rule(
                name,
                TERMS,
                action,
                placeholder,
                self.text(description, where, "description"),
                self.terms(entry["terms"], f"{where}.terms"),
            )
        detector = self.choice(entry["detector"], f"{where}.detector", "detector", tuple(BUILTIN))
        matcher = BUILTIN[detector]
        if "pattern" in entry:
            matcher = self.pattern(entry["pattern"], where, detector)
        description = self.text(entry.get("description", matcher.description), where, "description")
        return Rule(name, detector, action, placeholder, description, matcher)

    def override(self, entry: dict, where: str, rule: Rule) -> Rule:
        for key in ("detector", "terms"):
            if key in entry:
                self.fail(
                    where,
                    f"overrides the default rule {rule.name!r} but sets {key}",
                    "a tenant may change a default rule's action, pattern, placeholder and description "
                    "only; to add a rule, give it a new name",
                )
        self.mapping(entry, where, OVERRIDE_KEYS)
        changes: dict[str, Any] = {}
        if "action" in entry:
            changes["action"] = self.choice(entry["action"], f"{where}.action", "action", ACTIONS)
        if "placeholder" in entry:
            changes["placeholder"] = self.text(entry["placeholder"], where, "placeholder")
        if "description" in entry:
            changes["description"] = self.text(entry["description"], where, "description")
        if "pattern" in entry:
            changes["matcher"] = self.pattern(entry["pattern"], where, rule.kind)
        if not changes:
            self.fail(
                where, "overrides nothing", "set action, pattern, placeholder or description, or drop it"
            )
        return replace(rule, **changes)

    def pattern(self, value: Any, where: str, detector: str):
        if detector != "mrn":
            self.fail(where, f"pattern is for the mrn detector only, not {detector}", "remove pattern")
        value = self.text(value, where, "pattern")
        try:
            compiled = re.compile(value)
        except re.error as exc:
            self.fail(f"{where}.pattern", f"not a valid regular expression ({exc})", "fix the regex")
        if compiled.fullmatch(""):
            self.fail(f"{where}.pattern", "matches empty text", "make it require at least one character")
        return mrn(value)

    def terms(self, value: Any, where: str) -> TermList:
        if not isinstance(value, list) or not value:
            got = "an empty list" if value == [] else _kind(value)
            self.fail(where, f"must be a non-empty list, got {got}", "one '- term' per line")
        terms: list[tuple[str, str | None]] = []
        seen: set[str] = set()
        for i, item in enumerate(value):
            label = f"{where}[{i}]"
            if isinstance(item, dict):  # "- Patagonia: premium outdoor apparel brand"
                if len(item) != 1:
                    self.fail(label, "a term with its replacement is one 'term: replacement' pair", EXAMPLE)
                ((term, replacement),) = item.items()
                self.text(replacement, label, "replacement")
            else:
                term, replacement = item, None
            self.text(term, label, "term")
            if normalize(term) in seen:
                self.fail(label, f"term {term!r} is listed twice (case and spacing do not count)", "keep one")
            seen.add(normalize(term))
            terms.append((term, replacement))
        return TermList(terms)
