"""The `airlock` command: one noun per concern (`airlock lab up`, later `airlock audit verify`).

Exit codes scripts can trust: 0 ok, 1 a check failed, 2 usage error.
"""

from __future__ import annotations

import typer

from airlock import __version__
from airlock.apikeys_cli import app as apikeys_app
from airlock.audit.cli import app as audit_app
from airlock.ca_cli import app as ca_app
from airlock.keys_cli import app as keys_app
from airlock.lab.cli import app as lab_app
from airlock.registry.cli import app as models_app

app = typer.Typer(
    help="Airlock: air-gapped SDXL image generation for regulated environments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # no tracebacks with local variables in front of users
    epilog="Example: airlock lab up && airlock lab status",
)
app.add_typer(lab_app, name="lab")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(models_app, name="models")
app.add_typer(apikeys_app, name="apikeys")
app.add_typer(ca_app, name="ca")


@app.command(epilog="Example: airlock version")
def version() -> None:
    """Print the Airlock version."""
    typer.echo(f"airlock {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
