"""Engine speed on the tiny random-weight SDXL (CPU), as ratios measured in one run.

- overhead: `Engine.generate` (plan, verified model, scheduler, LoRA state, PNG with metadata) vs the
  bare diffusers pipeline on the same model and request (goal <= 1.05);
- batching: 8 compatible one-image requests through `generate_many` (one pipeline call) vs one by one.
Run with `make bench`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from airlock.offline import force_offline

force_offline()

import diffusers  # noqa: E402
import torch  # noqa: E402

from airlock.audit import AuditLog  # noqa: E402
from airlock.keys import init_keys, load_verifier  # noqa: E402
from airlock.registry import Registry, import_model  # noqa: E402
from airlock.registry.tiny import make_tiny  # noqa: E402
from inference.engine.engine import Engine, EngineSettings  # noqa: E402
from inference.engine.options import scheduler_spec  # noqa: E402
from inference.engine.request import GenerationRequest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REQUEST = GenerationRequest(prompt="a lighthouse at dusk", width=64, height=64, seed=3, performance="Speed")


def main() -> None:
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        work = Path(tmp)
        tiny = make_tiny(work / "tiny")
        signer = init_keys(work / "keys")
        verifier = load_verifier(work / "keys")
        with AuditLog(work / "audit") as audit:
            import_model(
                work / "registry",
                tiny["base"],
                name="sd_xl_base_1.0",
                version="1.0",
                kind="base",
                approved_by="bench",
                signer=signer,
                verifier=verifier,
                audit=audit,
            )
            engine = Engine(Registry(work / "registry", verifier), audit, EngineSettings(egress_guard=False))

            bare = diffusers.StableDiffusionXLPipeline.from_pretrained(
                tiny["base"], use_safetensors=True, local_files_only=True
            )
            bare.set_progress_bar_config(disable=True)
            cls, config, _ = scheduler_spec("dpmpp_2m_sde_gpu", "karras")
            bare.scheduler = getattr(diffusers, cls).from_config(bare.scheduler.config, **config)

            def run_bare() -> None:
                bare(
                    prompt=REQUEST.prompt,
                    width=64,
                    height=64,
                    num_inference_steps=30,
                    guidance_scale=7.0,
                    generator=torch.Generator("cpu").manual_seed(3),
                )

            def run_engine() -> None:
                engine.generate(REQUEST)

            run_bare(), run_engine()  # warm both
            bare_times, engine_times = [], []
            for _ in range(7):  # interleaved, so drift on this noisy machine hits both alike
                bare_times.append(timed(run_bare))
                engine_times.append(timed(run_engine))
            engine_ms, bare_ms = statistics.median(engine_times) * 1000, statistics.median(bare_times) * 1000
            print(
                f"engine / bare diffusers, same tiny model and request: {engine_ms / bare_ms:.3f}  "
                f"(goal <= 1.05; median {engine_ms:.0f} vs {bare_ms:.0f} ms)"
            )

            jobs = [
                (REQUEST.model_copy(update={"seed": s, "prompt": f"a lighthouse, variant {s}"}), None)
                for s in range(8)
            ]
            batched = min(timed(lambda: engine.generate_many(jobs)) for _ in range(3))
            single = min(timed(lambda: [engine.generate(r, t) for r, t in jobs]) for _ in range(3))
            print(
                f"8 requests one by one / batched into one call: {single / batched:.2f}x  "
                f"({single:.2f} s vs {batched:.2f} s)"
            )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
