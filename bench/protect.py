"""Cost of the service's data protection, as ratios measured in one run.

- sanitizer: 10,000 generated prompts (fixed seed; mostly plain art prompts, some carrying SSNs,
  emails, phone numbers, cards, dates of birth, addresses or a tenant's brand and client names),
  each screened as prompt + negative prompt under the default policy and under the `acme` tenant of
  policies/prompts.yml. Goal: p99 < 1 ms per prompt.

- image: signing the provenance record and embedding it, plus encrypting the image into the output
  store (AES-256-GCM, data key wrapped by the tenant's KEK), for one 1024x1024 PNG from the tiny
  model, as a fraction of that image's generation time on this CPU (a GPU generates faster, so the
  fraction there is larger; the absolute cost is printed too).

Run with `make bench`, or `.venv/bin/python bench/protect.py [--count N] [--policy FILE]`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from inference.sanitize import load_policy  # noqa: E402 - after the path, so it runs from a checkout

SEED = 20260315
GOAL_P99_MS = 1.0
TENANTS = ("(default)", "acme")  # a tenant the file does not list gets the default policy

SUBJECTS = (
    "a lighthouse on a rocky coast",
    "a red fox in fresh snow",
    "a ceramic teapot on a linen cloth",
    "an astronaut riding a horse",
    "a minimalist living room with a reading chair",
    "a trail runner on a mountain ridge",
    "a bowl of ramen with steam rising",
    "a vintage motorcycle in a garage",
    "a glass perfume bottle on wet stone",
    "an old library with tall ladders",
)
STYLES = (
    "golden hour, soft rim light, 85mm lens, shallow depth of field",
    "studio lighting, high-key, seamless white background, product photography",
    "oil painting, impasto, muted palette, in the style of the old masters",
    "cinematic, volumetric fog, anamorphic flare, 35mm film grain",
    "flat vector illustration, pastel colors, clean lines",
    "isometric 3d render, octane, subsurface scattering, 8k",
    "watercolor on cold-press paper, loose brush strokes",
)
EXTRAS = (
    "Composition: centered, generous negative space.",
    "Materials: matte, brushed metal, recycled paper.",
    "Mood: calm, premium, energetic.",
    "Avoid: logos, readable text, specific brand identifiers.",
    "version 2.1.3, seed notes for the art director",
    "1024x1024, 30 steps, cfg 7",
)
NEGATIVES = ("", "blurry, lowres, watermark", "text, logo, extra fingers, jpeg artifacts")
# Sensitive values a careless brief might carry (all test values: 555 numbers, example.com, test cards).
SENSITIVE = (
    lambda r: f"for customer SSN {r.choice(['123-45-6789', '078-05-1120', '219 09 9999'])}",
    lambda r: f"send proofs to {r.choice(['jane.doe', 'art.dept', 'j.smith+proofs'])}@example.com",
    lambda r: f"call {r.choice(['(555) 123-4567', '555-867-5309', '+1 555 123 4567', '+44 20 7946 0958'])}",
    lambda r: f"billed to {r.choice(['4111 1111 1111 1111', '5500-0000-0000-0004', '378282246310005'])}",
    lambda r: f"patient MRN: {r.randrange(10**6, 10**9)}",
    lambda r: f"portrait of the client, born {r.choice(['1980-04-12', '04/12/1980', 'April 12, 1980'])}",
    lambda r: (
        f"render node {r.randrange(1, 255)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
    ),
    lambda r: f"{r.choice(['Patagonia', 'Project Phoenix', 'Initech', 'Globex Corporation'])} campaign",
    lambda r: "hero shot in the San Francisco HQ lobby",
)


def prompts(count: int, seed: int = SEED) -> list[tuple[str, str]]:
    """(prompt, negative prompt) pairs; about one in four carries a sensitive value."""
    rng = random.Random(seed)  # noqa: S311 - repeatable test prompts, not secrets
    pairs = []
    for _ in range(count):
        parts = [rng.choice(SUBJECTS), rng.choice(STYLES)]
        parts += rng.sample(EXTRAS, rng.randrange(3))
        if rng.random() < 0.25:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(SENSITIVE)(rng))
        pairs.append((", ".join(parts), rng.choice(NEGATIVES)))
    return pairs


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def sanitizer_section(policy_path: Path, count: int) -> bool:
    """Screen every prompt under each tenant; print latency and throughput; True when the goal is met."""
    policy = load_policy(policy_path)
    pairs = prompts(count)
    print(f"sanitizer: {count} prompts (+ negative prompts), policy {policy_path.name}")
    met = True
    for tenant in TENANTS:
        for prompt, negative in pairs[:200]:  # warm up (regex caches, allocator)
            policy.check_request(tenant, prompt, negative)
        latencies = []
        findings = blocked = 0
        clock = time.perf_counter_ns
        started = clock()
        for prompt, negative in pairs:
            t0 = clock()
            screened = policy.check_request(tenant, prompt, negative)
            latencies.append((clock() - t0) / 1e6)
            findings += len(screened.prompt.findings) + len(screened.negative_prompt.findings)
            blocked += screened.blocked_by is not None
        total_s = (clock() - started) / 1e9
        latencies.sort()
        p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        ok = p99 < GOAL_P99_MS
        met &= ok
        print(
            f"  {tenant:<10} p50 {p50 * 1000:7.1f} us  p99 {p99 * 1000:7.1f} us  "
            f"max {latencies[-1] * 1000:7.1f} us  mean {statistics.fmean(latencies) * 1000:6.1f} us  "
            f"{count / total_s:9.0f} prompts/s  ({findings} findings, {blocked} blocked)  "
            f"goal p99 < {GOAL_P99_MS:g} ms: {'met' if ok else 'MISSED'}"
        )
    return met


def image_section() -> None:
    """Provenance (sign + embed) and encryption at rest for one 1024x1024 PNG vs generating it."""
    import tempfile

    from airlock.offline import force_offline

    force_offline()
    from airlock.audit import AuditLog
    from airlock.keys import init_keys, load_verifier
    from airlock.provenance import attach
    from airlock.registry import Registry, import_model
    from airlock.registry.tiny import make_tiny
    from airlock.store import FileKeks, OutputStore
    from inference.engine.engine import Engine, EngineSettings
    from inference.engine.request import GenerationRequest

    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp, AuditLog(Path(tmp) / "audit") as audit:
        work = Path(tmp)
        signer = init_keys(work / "keys")
        verifier = load_verifier(work / "keys")
        import_model(
            work / "registry",
            make_tiny(work / "tiny")["base"],
            name="sd_xl_base_1.0",
            version="1.0",
            kind="base",
            approved_by="bench",
            signer=signer,
            verifier=verifier,
            audit=audit,
        )
        engine = Engine(Registry(work / "registry", verifier), audit, EngineSettings(egress_guard=False))
        request = GenerationRequest(
            prompt="a lighthouse", aspect_ratio="1024*1024", performance="Speed", seed=1
        )
        engine.generate(request)  # warm: the pipeline loads once
        generate_s = statistics.median(timed(lambda: engine.generate(request)) for _ in range(3))
        image = engine.generate(request)[0]
        store = OutputStore(work / "outputs", FileKeks(work / "kek"), audit)
        meta = image.metadata
        counter = iter(range(1_000_000))

        def protect() -> None:
            data, _signed = attach(
                image.data,
                image.format,
                signer,
                model=meta["base_model"],
                parameters={"prompt": meta["prompt"], "steps": meta["steps"]},
                seed=image.seed,
                tenant="bench",
                api_key_id="bench",
            )
            store.put("bench", f"img-{next(counter)}", data, {"format": image.format})

        protect()  # warm: the tenant's first KEK is created here
        protect_s = statistics.median(timed(protect) for _ in range(20))
        print(
            f"image: provenance + encryption per 1024x1024 PNG ({len(image.data) / 1e6:.1f} MB) / its "
            f"generation (tiny model, CPU, Speed): {protect_s / generate_s:.4f}  "
            f"({protect_s * 1000:.1f} ms vs {generate_s:.2f} s)"
        )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--policy", type=Path, default=ROOT / "policies" / "prompts.yml")
    args = parser.parse_args(argv)
    met = sanitizer_section(args.policy, args.count)
    image_section()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
