import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from airlock import __version__
from airlock.cli import app

runner = CliRunner()


def all_commands(command=None, path=()):
    """Every command and group of the CLI, as argument paths."""
    command = command or typer.main.get_command(app)
    yield list(path)
    for name, sub in getattr(command, "commands", {}).items():
        yield from all_commands(sub, (*path, name))


COMMANDS = list(all_commands())


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "airlock")
def test_every_help_shows_an_example(command):
    assert len(COMMANDS) > 20  # lab, keys, audit, models and their commands
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Example: " in result.output


def test_version_prints_the_installed_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"airlock {__version__}"
    assert __version__ != "0.0.0+unknown"


def test_usage_errors_exit_2():
    assert runner.invoke(app, ["no-such-noun"]).exit_code == 2
    assert runner.invoke(app, ["lab", "up", "--boot-timeout", "soon"]).exit_code == 2
    result = runner.invoke(app, ["lab", "ssh", "no-such-host"])
    assert result.exit_code == 2
    assert "no lab host named 'no-such-host'" in result.output


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "airlock.cli", "version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("airlock ")


HOST_WITHOUT_EVIDENCE_PACKAGES = """
import sys
for name in ("jsonschema", "regex", "trestle"):  # what a GPU host's venv (airlock[engine,service]) lacks
    sys.modules[name] = None
from airlock.cli import main
sys.argv = ["airlock", *sys.argv[1:]]
main()
"""


def host_cli(*args):
    return subprocess.run(
        [sys.executable, "-c", HOST_WITHOUT_EVIDENCE_PACKAGES, *args], capture_output=True, text=True
    )


def test_a_host_without_the_evidence_packages_keeps_a_working_cli():
    assert host_cli("version").returncode == 0
    assert host_cli("audit", "--help").returncode == 0
    refused = host_cli("evidence", "build", "--inventory", "inventory/lab")
    assert refused.returncode == 2
    assert "evidence packs need jsonschema" in refused.stderr and "Traceback" not in refused.stderr
