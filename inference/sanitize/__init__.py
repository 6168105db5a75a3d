"""Prompt policy: find sensitive values in prompts, then block, redact or allow them per tenant.

    policy = load_policy("policies/prompts.yml")
    screened = policy.check_request(tenant, prompt, negative_prompt)
    screened.raise_if_blocked()                 # PromptBlocked names the rule, never the text
    model_gets = screened.prompt.model_text     # original or sanitized, as the tenant says
    audit_gets = screened.prompt.sanitized      # every block/redact match replaced

The file format is documented in inference/sanitize/policy.py and policies/prompts.yml. Modules:
detectors (built-in regexes), terms (term lists), screen (matching and replacement), policy (loading).
"""

from inference.sanitize.errors import PromptBlocked, PromptPolicyError
from inference.sanitize.policy import PromptPolicy, TenantPolicy, load_policy
from inference.sanitize.screen import Finding, Screened, ScreenedRequest

__all__ = [
    "Finding",
    "PromptBlocked",
    "PromptPolicy",
    "PromptPolicyError",
    "Screened",
    "ScreenedRequest",
    "TenantPolicy",
    "load_policy",
]
