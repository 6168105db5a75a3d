"""The lock file is what the venv, CI and the transfer bundle install from (--require-hashes)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def locked() -> dict[str, tuple[str, list[str]]]:
    text = ROOT.joinpath("requirements.lock").read_text()
    entries = {}
    for block in re.split(r"\n(?=[a-z0-9])", text.split("\n", 3)[3]):
        name, version = block.split(" ", 1)[0].split("==")
        entries[name] = (version, re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_locked_package_is_pinned_with_a_sha256():
    entries = locked()
    assert len(entries) > 100
    assert all(hashes for _version, hashes in entries.values())


def test_every_direct_requirement_is_in_the_lock():
    entries = locked()
    for line in ROOT.joinpath("requirements.in").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name = normalise(re.split(r"[\[=<>~!]", line)[0])
            assert name in entries, f"{name} is in requirements.in but not locked: run `make lock`"


def test_known_good_ml_set_is_pinned():
    entries = locked()
    assert entries["torch"][0].split("+")[0] == "2.13.0"
    assert entries["diffusers"][0] == "0.42.1"
    assert entries["transformers"][0] == "5.23.0"
    assert entries["peft"][0] == "0.21.2"
    assert entries["safetensors"][0] == "0.8.0"
