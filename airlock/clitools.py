"""What every `airlock` noun's CLI shares: the consoles and the one way to fail."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


def fail(exc: Exception | str, code: int = 1) -> NoReturn:
    """Print a one-line error (no traceback) and exit: 1 a check failed, 2 usage error."""
    err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
