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
