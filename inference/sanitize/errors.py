"""The two ways the prompt policy says no: a bad policy file, and a prompt a rule refuses."""

from __future__ import annotations

from airlock.errors import AirlockError


class PromptPolicyError(AirlockError, ValueError):
    """The prompt policy file is missing or invalid; the message names the file, tenant/rule and fix."""


class PromptBlocked(AirlockError):
    """A `block` rule matched. Carries the rule's name only, never the text that matched it.

    The message goes back to the client and into logs, so it must not repeat the sensitive text.
    """

    def __init__(self, rule: str, description: str, field: str = "prompt"):
        self.rule = rule
        self.description = description  # the rule's kind in words, from the policy, not the prompt
        self.field = field
        super().__init__(f"{field} refused by policy rule {rule!r} ({description}); remove it and retry")

    def __reduce__(self):  # Exception's default would re-call __init__ with the message alone
        return type(self), (self.rule, self.description, self.field)
