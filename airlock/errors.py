"""The one exception family the CLI turns into a clear message and exit code 1."""


class AirlockError(Exception):
    """Something the user can fix; the message says what happened and what to do."""
