"""The `airlock` command: one noun per concern (`airlock lab up`, later `airlock audit verify`).

Exit codes scripts can trust: 0 ok, 1 a check failed, 2 usage error.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import typer

from airlock import __version__
from airlock.apikeys_cli import app as apikeys_app
from airlock.audit.cli import app as audit_app
from airlock.backup.cli import app as backup_app
from airlock.bundle.cli import app as bundle_app
from airlock.ca_cli import app as ca_app
from airlock.dr.cli import app as dr_app
from airlock.keys_cli import app as keys_app
from airlock.lab.cli import app as lab_app
from airlock.policy.cli import app as policy_app
from airlock.provenance.cli import app as provenance_app
from airlock.registry.cli import app as models_app
from airlock.store.cli import app as outputs_app

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
app.add_typer(policy_app, name="policy")
app.add_typer(bundle_app, name="bundle")
app.add_typer(outputs_app, name="outputs")
app.add_typer(provenance_app, name="provenance")
app.add_typer(backup_app, name="backup")
app.add_typer(dr_app, name="dr")
# Nouns from packages that build on airlock (`evidence` from compliance): found through their entry
# points, so airlock itself never imports them and works without them installed.
# A noun that cannot load must not take the others down (hosts run `airlock audit seal` from timers).


def _unavailable(name: str, exc: ImportError) -> typer.Typer:
    broken = typer.Typer(help=f"(not available here: {exc})")

    @broken.callback(invoke_without_command=True)
    def refuse() -> None:
        typer.echo(
            f"error: `airlock {name}` cannot load here ({exc}); install its extra: pip install "
            f"'airlock[{name}]'",
            err=True,
        )
        raise typer.Exit(2)

    return broken


for _plugin in importlib.metadata.entry_points(group="airlock.commands"):
    try:
        app.add_typer(_plugin.load(), name=_plugin.name)
    except ImportError as _exc:
        app.add_typer(_unavailable(_plugin.name, _exc), name=_plugin.name)


@app.command(epilog="Example: airlock version")
def version() -> None:
    """Print the Airlock version."""
    typer.echo(f"airlock {__version__}")


@app.command(epilog="Example: airlock serve --config /etc/airlock/airlock.toml")
def serve(
    config: Path = typer.Option(
        Path("/etc/airlock/airlock.toml"), help="Service config (TOML; AIRLOCK_* env vars override it)."
    ),
) -> None:
    """Run the HTTPS inference service (refuses an insecure config and names the setting to fix)."""
    # `airlock` never imports `inference` (dependencies flow one way): hand the process over instead.
    missing = [
        m for m in ("inference", "fastapi", "uvicorn", "diffusers") if importlib.util.find_spec(m) is None
    ]
    if missing:
        typer.echo(
            f"error: the service needs {', '.join(missing)}, not installed here; "
            "install with: pip install --no-index --require-hashes -r requirements.lock",
            err=True,
        )
        raise typer.Exit(2)
    os.execv(sys.executable, [sys.executable, "-m", "inference.api", "--config", str(config)])  # noqa: S606 - fixed argv


def main() -> None:
    app()


if __name__ == "__main__":
    main()
