"""The disposable local lab: real systemd hosts in network namespaces (see DESIGN.md, "The local lab")."""

from airlock.errors import AirlockError


class LabError(AirlockError):
    """A lab operation failed; the message says what and what to do."""
