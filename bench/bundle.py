"""Transfer bundle speed, as a ratio measured in one run: `airlock bundle verify` vs. bare
hashlib.sha256 over the same bytes (goal: >= 0.8, i.e. verify within 20% of one raw SHA-256 pass,
although it hashes every member and the whole file, the bundle's content address, at once).

Builds a bundle of >= 1 GiB of seeded random data files under .cache/bench-bundle (deleted at the
end), then times each side several times, alternating, and keeps the best (these machines are noisy).
Run with: .venv/bin/python bench/bundle.py [GIB]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from airlock.bundle.build import build_bundle
from airlock.bundle.spec import load_spec
from airlock.bundle.verify import verify_bundle
from airlock.keys import init_keys, load_verifier

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".cache" / "bench-bundle"
FILE_BYTES = 128 << 20
ROUNDS = 3


def raw_sha256(path: Path) -> tuple[str, float]:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest(), time.perf_counter() - start


def make_inputs(gib: float) -> Path:
    data = WORK / "data"
    data.mkdir(parents=True)
    rng = np.random.default_rng(seed=20260101)
    count = max(1, round(gib * (1 << 30) / FILE_BYTES))
    for i in range(count):
        (data / f"blob-{i:03d}.bin").write_bytes(rng.bytes(FILE_BYTES))
    spec = {
        "name": "bench",
        "version": "1.0",
        "target": {"distribution": "debian-12", "architecture": "amd64", "python": "3.11"},
        "files": [{"src": f"data/{p.name}", "dest": f"data/{p.name}"} for p in sorted(data.iterdir())],
    }
    path = WORK / "bundle.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def main(gib: float) -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    try:
        spec = load_spec(make_inputs(gib))
        signer = init_keys(WORK / "keys")
        verifier = load_verifier(WORK / "keys")
        os.environ.setdefault("SOURCE_DATE_EPOCH", "1767225600")
        start = time.perf_counter()
        built = build_bundle(spec, WORK / "bench.tar", signer, creator="bench", cache=WORK / "cache")
        build_s = time.perf_counter() - start
        mb = built.size / 1e6
        print(f"bundle: {built.files} files, {mb:.0f} MB, built in {build_s:.2f} s ({mb / build_s:.0f} MB/s)")
        raw_best = verify_best = float("inf")
        for _ in range(ROUNDS):
            digest, raw_s = raw_sha256(built.path)
            start = time.perf_counter()
            report = verify_bundle(built.path, verifier)
            verify_s = time.perf_counter() - start
            if not report.ok or report.bundle_sha256 != digest:
                sys.exit(f"error: the benchmark bundle did not verify: {report.findings[:3]}")
            raw_best, verify_best = min(raw_best, raw_s), min(verify_best, verify_s)
        print(f"raw sha256:  {mb / raw_best:.0f} MB/s")
        print(f"verify:      {mb / verify_best:.0f} MB/s (every member + the whole file, one read)")
        ratio = raw_best / verify_best
        print(f"verify / raw sha256: {ratio:.2f} (goal >= 0.8) {'ok' if ratio >= 0.8 else 'BELOW GOAL'}")
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
