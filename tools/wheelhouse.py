"""Build the service wheelhouse: what a GPU host needs to run Airlock, as hash-pinned wheels.

The host installs from it with `pip install --no-index --require-hashes` (role `airlock_runtime`), so
nothing is fetched inside the enclave. The wheels are the subset of requirements.lock that the
service's own packages need (its transitive closure, read from the metadata of this venv), plus the
Airlock wheel itself. The transfer-bundle issue replaces this folder with the bundle's wheels.

Usage: python tools/wheelhouse.py OUT_DIR
Writes OUT_DIR/wheelhouse.tar holding requirements.lock (the pinned subset), the wheels, and
SHA256SUMS; the tar is rebuilt only when its inputs changed, so its bytes (and Ansible's copy) are stable.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# What runs on a GPU host: the airlock CLI, the engine and the HTTPS service (not Ansible, Pulumi, tests).
RUNTIME_ROOTS = (
    "typer",
    "rich",
    "pyyaml",
    "cryptography",
    "jinja2",
    "httpx",
    "pydantic-settings",
    "fastapi",
    "uvicorn",
    "uvloop",
    "httptools",
    "redis",
    "torch",
    "torchsde",
    "diffusers",
    "transformers",
    "peft",
    "safetensors",
    "accelerate",
    "pip",  # the host's venv is made --without-pip (Debian's python3 has no ensurepip): pip comes from here
)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# The hosts' interpreter (Debian 12's python3), which markers like `python_full_version < "3.11.3"` see.
TARGET_PYTHON = {"python_version": "3.11", "python_full_version": "3.11.2", "extra": ""}


def closure(roots: tuple[str, ...]) -> set[str]:
    """Every distribution the roots need on the hosts' Linux/CPython 3.11.2, by the installed metadata."""
    seen: set[str] = set()
    todo = [normalize(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(TARGET_PYTHON):
                todo.append(normalize(req.name))
    return seen


def lock_entries(lock: Path) -> dict[str, str]:
    """name -> the full entry (pin plus hash lines) of requirements.lock."""
    entries: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", lock.read_text()):
        if block.startswith("#") or not block.strip():
            continue
        entries[normalize(block.split("==")[0])] = block.rstrip() + "\n"
    return entries


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(out: Path) -> None:
    entries = lock_entries(ROOT / "requirements.lock")
    needed = closure(RUNTIME_ROOTS)
    missing = sorted(needed - entries.keys())
    if missing:
        sys.exit(f"error: the service needs {', '.join(missing)}, missing from requirements.lock: make lock")
    subset = "".join(entries[name] for name in sorted(needed))
    out.mkdir(parents=True, exist_ok=True)
    stage = out / "stage"
    tarball = out / "wheelhouse.tar"
    stamp = out / "inputs.sha256"
    source = sorted(p for d in ("airlock", "inference") for p in (ROOT / d).rglob("*") if p.is_file())
    inputs = hashlib.sha256(subset.encode())
    for path in [ROOT / "pyproject.toml", *source]:
        if "__pycache__" not in path.parts:
            inputs.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    if tarball.exists() and stamp.exists() and stamp.read_text() == inputs.hexdigest():
        print(f"{tarball}: up to date")
        return
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    (stage / "requirements.lock").write_text(
        "# The service's subset of requirements.lock (tools/wheelhouse.py); install with\n"
        "# pip install --no-index --find-links . --require-hashes --no-deps -r requirements.lock\n" + subset
    )
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "download", "--quiet", "--no-deps", "--require-hashes", "-r", "requirements.lock", "-d", "."],
        cwd=stage,
        check=True,
    )
    subprocess.run(
        [*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(stage), str(ROOT)],
        check=True,
    )
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    files = sorted(p.name for p in stage.iterdir() if p.name != "SHA256SUMS")
    (stage / "SHA256SUMS").write_text("".join(f"{sha256(stage / f)}  {f}\n" for f in files))
    partial = out / "wheelhouse.tar.partial"
    with tarfile.open(partial, "w") as tar:  # fixed order, owner and times: same inputs, same bytes
        for name in ["SHA256SUMS", *files]:
            info = tar.gettarinfo(stage / name, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            with open(stage / name, "rb") as fh:
                tar.addfile(info, fh)
    partial.replace(tarball)
    stamp.write_text(inputs.hexdigest())
    shutil.rmtree(stage)
    print(f"{tarball}: {len(files) - 1} wheels, {tarball.stat().st_size / 2**20:.0f} MiB")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
