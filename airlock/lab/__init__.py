"""The disposable local lab: real systemd hosts in network namespaces (see DESIGN.md, "The local lab")."""


class LabError(RuntimeError):
    """A lab operation failed; the message says what and what to do."""
