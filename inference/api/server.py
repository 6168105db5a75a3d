"""Run the service: `python -m inference.api [--config /etc/airlock/airlock.toml]`.

Refuses to start with an insecure configuration (each problem names its setting and the fix),
serves TLS 1.3 only (optionally mutual TLS), loads the default model in the lifespan (not at
import), and on shutdown finishes the running batch and fails the waiting jobs with audit records.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import uvicorn

from airlock.audit import AuditLog
from airlock.ca import server_context
from airlock.errors import AirlockError
from airlock.keys import load_signer, load_verifier
from airlock.provenance import attach
from airlock.registry import Registry
from airlock.store import FileKeks, OutputStore
from airlock.store.digest import digest_key
from inference.api.app import Service, create_app
from inference.auth import Authenticator, RedisBuckets, TokenBuckets
from inference.engine.engine import Engine, EngineSettings
from inference.queue import Job, JobQueue
from inference.sanitize import load_policy
from inference.settings import ServiceSettings


def build_service(settings: ServiceSettings) -> Service:
    audit = AuditLog(settings.paths.audit_root)
    registry = Registry(settings.paths.registry, load_verifier(settings.paths.trust_key))
    cfg = settings.engine
    engine = Engine(
        registry,
        audit,
        EngineSettings(
            default_base_model=cfg.default_base_model,
            styles_dirs=tuple(cfg.styles_dirs),
            device=cfg.device,
            dtype=cfg.dtype,
            single_file_config=cfg.single_file_config,
            optimize=cfg.optimize,
            min_side=settings.limits.min_side,
            max_side=settings.limits.max_side,
            egress_allowed_cidrs=tuple(cfg.egress_allowed_cidrs),
            egress_allowed_domains=tuple(cfg.egress_allowed_domains),
        ),
    )

    policy = load_policy(settings.paths.prompt_policy)
    signer = load_signer(settings.paths.signing_key)
    paths = settings.paths
    outputs = OutputStore(paths.outputs, FileKeks(paths.output_keys), audit)
    prompts = OutputStore(paths.prompts, FileKeks(paths.prompt_keys), audit)
    prompt_digest_key = digest_key(paths.prompt_keys)

    def record(job: Job) -> None:
        """Sign each image's provenance, then the generations record of the job; if either fails, the
        images are withheld. The prompts recorded are the screened ones (metadata shows them too)."""
        meta = job.images[0].metadata
        recorded = job.context.get("recorded", {})
        parameters = {
            k: meta[k]
            for k in (
                "performance",
                "width",
                "height",
                "steps",
                "guidance_scale",
                "sampler",
                "scheduler",
                "styles",
                "loras",
                "refiner",
            )
        }
        for image in job.images:
            image.data, image.provenance = attach(
                image.data,
                image.format,
                signer,
                model=meta["base_model"],
                parameters=parameters
                | {
                    "prompt": meta["prompt"],
                    "negative_prompt": meta["negative_prompt"],
                    "full_text_hmac_sha256": recorded.get("full_text_hmac_sha256"),
                },
                seed=image.seed,
                tenant=job.tenant,
                api_key_id=job.key_id,
                loras=meta["loras"],
                refiner=meta["refiner"],
            )
        # Encrypted at rest before anyone can fetch them; the full prompts go to their own store.
        for index, image in enumerate(job.images):
            outputs.put(
                job.tenant,
                f"{job.id}-{index}",
                image.data,
                # The provenance record again, as the image's sidecar (GET .../provenance).
                {
                    "job": job.id,
                    "index": index,
                    "format": image.format,
                    "seed": image.seed,
                    "provenance": image.provenance,
                },
            )
        prompts.put(job.tenant, job.id, json.dumps(job.context.get("full", {})).encode(), {"job": job.id})
        audit.append(
            "generations",
            "generation.completed",
            outcome="success",
            key_id=job.key_id,
            tenant=job.tenant,
            prompt=meta["prompt"],
            negative_prompt=meta["negative_prompt"],
            model=meta["base_model"],
            output_ref=f"outputs:{job.tenant}/{job.id}-0..{len(job.images) - 1}",
            duration_ms=job.duration_ms(),
            parameters=parameters | {"seeds": [i.seed for i in job.images]},
            images=[
                {"seed": i.seed, "pixels_sha256": i.provenance["record"]["image"]["pixels_sha256"]}
                for i in job.images
            ],
            **{k: recorded[k] for k in ("full_text_hmac_sha256", "prompt_policy") if k in recorded},
        )

    queue = JobQueue(
        engine,
        audit,
        max_queued=settings.limits.max_queued,
        max_batch=settings.limits.max_batch,
        on_done=record,
    )
    limits = settings.limits
    limiter = (
        RedisBuckets.from_url(limits.redis_url, ca_cert=limits.redis_ca)
        if limits.redis_url
        else TokenBuckets()
    )
    authenticator = Authenticator(
        settings.paths.apikeys,
        limiter,
        default_rate=settings.limits.default_rate,
        tenant_rate=settings.limits.tenant_rate,
    )
    return Service(
        settings,
        engine,
        queue,
        authenticator,
        audit,
        registry,
        policy,
        signer,
        outputs,
        prompts,
        prompt_digest_key,
    )


def make_server(service: Service) -> uvicorn.Server:
    server = service.settings.server
    config = uvicorn.Config(
        create_app(service),
        host=server.host,
        port=server.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        ssl_certfile=str(server.tls_cert),
        ssl_keyfile=str(server.tls_key),
    )
    config.load()
    config.ssl = server_context(server.tls_cert, server.tls_key, client_ca=server.client_ca)  # TLS 1.3 only
    return uvicorn.Server(config)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.api", description=__doc__)
    parser.add_argument("--config", type=Path, help="service config (default /etc/airlock/airlock.toml)")
    args = parser.parse_args()
    if args.config:
        os.environ["AIRLOCK_CONFIG"] = str(args.config)
    try:
        settings = ServiceSettings()
        problems = settings.insecure_problems()
        if problems:
            print("refusing to start with an insecure configuration:", *problems, sep="\n  ", file=sys.stderr)
            return 2
        service = build_service(settings)
    except (AirlockError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler that
    # was there before it; a no-op one lets the cleanup below run and the exit status say "clean".
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        make_server(service).run()
    finally:
        service.queue.shutdown()
        with contextlib.suppress(AirlockError):
            service.audit.close()
    return 0
