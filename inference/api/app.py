"""The FastAPI application: Fooocus-API and AUTOMATIC1111 endpoints, auth, audit, limits.

Every request is authenticated (X-API-KEY or Authorization: Bearer), rate limited, and recorded in
`api_access` with its key id (never the key); when that record cannot be written the response is
replaced by 503 (fail closed). Every image handed out has a `generations` record first. Errors are
one-line JSON (`detail`, `code`): no tracebacks. No Swagger/ReDoc pages (they load scripts from CDNs).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError

from airlock import __version__
from airlock.audit import AuditLog
from airlock.errors import AirlockError
from airlock.keys import Signer
from airlock.registry import Registry
from airlock.store import OutputNotFound, OutputStore, OutputTampered
from airlock.store.digest import keyed_digest
from inference.api.compat import A1111_SAMPLERS, A1111Request, FooocusRequest
from inference.auth import Authenticator, AuthError, Principal, extract_key
from inference.engine.engine import Engine
from inference.engine.options import (
    ASPECT_RATIOS,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_PRESET,
    PRESETS,
    SAMPLERS,
    SCHEDULERS,
    OptionError,
)
from inference.engine.request import GenerationRequest
from inference.queue import Job, JobQueue, JobState, QueueClosed, QueueFull, UnknownJob
from inference.sanitize import PromptBlocked, PromptPolicy
from inference.settings import ServiceSettings
from inference.web import mount_ui


class ErrorBody(BaseModel):
    """Every refusal and failure: one line saying what and what to do, and a stable code."""

    detail: str
    code: str


ERRORS = {status: {"model": ErrorBody} for status in (401, 403, 404, 413, 422, 429, 500, 503)}

STAGES = {
    JobState.QUEUED: "WAITING",
    JobState.RUNNING: "RUNNING",
    JobState.DONE: "SUCCESS",
    JobState.FAILED: "ERROR",
    JobState.CANCELLED: "ERROR",
}


@dataclass
class Service:
    settings: ServiceSettings
    engine: Engine
    queue: JobQueue
    authenticator: Authenticator
    audit: AuditLog
    registry: Registry
    policy: PromptPolicy  # screens every prompt before it is logged, stored or generated
    signer: Signer  # signs each image's provenance record
    outputs: OutputStore  # every image, encrypted under its tenant's KEK
    prompts: OutputStore  # the full prompts, for holders of audit:read-full
    digest_key: bytes  # HMAC key of the full prompts' digests in the audit log


OUTPUT_ID = re.compile(r"[0-9a-f]{24}")  # job ids (JobQueue: secrets.token_hex(12))


def error(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


def create_app(service: Service) -> FastAPI:
    settings, audit = service.settings, service.audit

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        try:  # the model loads here, not at import; a failure leaves /readyz saying why
            await run_in_threadpool(service.engine.warm)
        except (AirlockError, OSError) as exc:
            print(f"default model not loaded: {exc}", file=sys.stderr)
        # An audit log that cannot record the start stops it (uvicorn exits): fail closed from the start.
        await run_in_threadpool(
            audit.append,
            "system_events",
            "service.started",
            outcome="success",
            component="service",
            version=__version__,
            mutual_tls=settings.server.client_ca is not None,
            rate_limits="redis" if settings.limits.redis_url else "in-process",
            models_loaded=service.engine.loaded_models(),
        )
        yield
        # Requests have drained; finish the running batch, fail (and audit) what still waits.
        await run_in_threadpool(service.queue.shutdown)
        await run_in_threadpool(
            audit.append, "system_events", "service.stopped", outcome="success", component="service"
        )

    app = FastAPI(
        title="Airlock",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        responses=ERRORS,
    )
    responses: collections.Counter[int] = collections.Counter()  # status -> count, for /metrics

    @app.middleware("http")
    async def record_access(request: Request, call_next: Callable) -> Response:
        started = time.perf_counter()
        request.state.key_id, request.state.tenant = None, None
        length = request.headers.get("content-length")
        if length and (not length.isdigit() or int(length) > settings.limits.max_body_bytes):
            response = error(
                413, "body_too_large", f"request body: at most {settings.limits.max_body_bytes} bytes"
            )
        else:
            response = await call_next(request)
        try:
            # The record is queued for the writer's next group commit; awaiting its future holds no
            # thread, so many requests share one fsync.
            await asyncio.wrap_future(
                audit.submit(
                    "api_access",
                    "api.request",
                    outcome="success" if response.status_code < 400 else "failure",
                    key_id=request.state.key_id,
                    tenant=request.state.tenant,
                    method=request.method,
                    path=request.url.path,
                    status=response.status_code,
                    client=request.client.host if request.client else None,
                    duration_ms=round((time.perf_counter() - started) * 1000),
                )
            )
        except AirlockError:
            response = error(
                503, "audit_unavailable", "the audit log cannot record this request, so it is refused"
            )
        responses[response.status_code] += 1
        return response

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        request.state.key_id = exc.key_id
        return error(exc.status, exc.code, exc.message, exc.headers())

    @app.exception_handler(QueueFull)
    async def queue_full(_: Request, exc: QueueFull) -> JSONResponse:
        return error(429, "QUEUE_IS_FULL", str(exc), {"Retry-After": "5"})

    @app.exception_handler(QueueClosed)
    async def queue_closed(_: Request, exc: QueueClosed) -> JSONResponse:
        return error(503, "shutting_down", str(exc), {"Retry-After": "30"})

    @app.exception_handler(UnknownJob)
    async def unknown_job(_: Request, exc: UnknownJob) -> JSONResponse:
        return error(404, "unknown_job", str(exc).strip("'\""))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(ValidationError)
    async def invalid_translation(_: Request, exc: ValidationError) -> JSONResponse:
        # A client body that parsed but does not make a valid engine request is still the client's error.
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(OutputNotFound)
    async def no_output(_: Request, exc: OutputNotFound) -> JSONResponse:
        return error(404, "unknown_output", "no such output for this tenant")

    @app.exception_handler(OutputTampered)
    async def tampered(_: Request, exc: OutputTampered) -> JSONResponse:
        # The store has audited it; the client learns only that this object cannot be served.
        return error(500, "integrity_error", "this output failed its integrity check and is withheld")

    @app.exception_handler(PromptBlocked)
    async def prompt_blocked(_: Request, exc: PromptBlocked) -> JSONResponse:
        return error(422, "prompt_blocked", str(exc))  # names the rule, never the matched text

    @app.exception_handler(AirlockError)
    async def refused(_: Request, exc: AirlockError) -> JSONResponse:
        return error(422, "refused", str(exc))

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        return error(500, "internal_error", "internal error; the operator's log has the details")

    def principal(operation: str | None) -> Callable:
        def dependency(request: Request) -> Principal:
            who = service.authenticator.authenticate(extract_key(request.headers), operation)
            request.state.key_id, request.state.tenant = who.key_id, who.tenant
            return who

        return Depends(dependency)

    any_key = principal(None)
    may_generate = principal("generate")
    may_read_jobs = principal("jobs:read")
    may_read_models = principal("models:read")
    may_read_full = principal("audit:read-full")

    def check_limits(req: GenerationRequest) -> GenerationRequest:
        limits = settings.limits
        if req.image_number > limits.max_image_number:
            raise OptionError(f"image_number: at most {limits.max_image_number}")
        if len(req.prompt) > limits.max_prompt_chars or len(req.negative_prompt) > limits.max_prompt_chars:
            raise OptionError(f"prompt: at most {limits.max_prompt_chars} characters")
        return req

    def check_url(field: str, url: str | None) -> None:
        """Input images and webhooks by URL would make the service fetch or post: SSRF and egress."""
        if url and (urlparse(url).hostname or "") not in settings.internal_url_hosts:
            allowed = ", ".join(settings.internal_url_hosts) or "none configured"
            raise OptionError(f"{field}: only internal hosts are allowed ({allowed})")

    def screen(req: GenerationRequest, who: Principal) -> dict:
        """The prompts through the tenant's policy: a block rule refuses (audited, no text but the
        sanitized one); otherwise what the model gets, what the records show, and the full texts'
        digests (the full texts themselves go only to the separately permissioned prompt store)."""
        screened = service.policy.check_request(who.tenant, req.prompt, req.negative_prompt)
        findings = [
            {"field": field, "rule": f.rule, "action": f.action}
            for field, part in (("prompt", screened.prompt), ("negative_prompt", screened.negative_prompt))
            for f in part.findings
        ]
        recorded = {
            "prompt": screened.prompt.sanitized,
            "negative_prompt": screened.negative_prompt.sanitized,
            # Keyed (airlock/store/digest.py): a plain hash would let a log reader guess redacted values.
            "full_text_hmac_sha256": {
                "prompt": keyed_digest(service.digest_key, req.prompt),
                "negative_prompt": keyed_digest(service.digest_key, req.negative_prompt),
            },
            "prompt_policy": {"sha256": service.policy.sha256, "findings": findings},
        }
        if screened.blocked_by is not None:
            audit.append(
                "generations",
                "generation.refused",
                outcome="failure",
                key_id=who.key_id,
                tenant=who.tenant,
                model={
                    "name": req.base_model or settings.engine.default_base_model,
                    "version": None,
                    "checksum": None,
                },
                parameters={},
                output_ref=None,
                duration_ms=0,
                reason=f"prompt policy rule {screened.blocked_by}",
                **recorded,
            )
            screened.raise_if_blocked()
        return {
            "model_request": req.model_copy(
                update={
                    "prompt": screened.prompt.model_text,
                    "negative_prompt": screened.negative_prompt.model_text,
                }
            ),
            "recorded": recorded,
            "full": {"prompt": req.prompt, "negative_prompt": req.negative_prompt},
        }

    def submit(req: GenerationRequest, who: Principal) -> Job:
        screened = screen(check_limits(req), who)
        recorded = screened["recorded"]
        return service.queue.submit(
            screened["model_request"],
            who.tenant,
            who.key_id,
            recorded=(recorded["prompt"], recorded["negative_prompt"]),
            context={"recorded": recorded, "full": screened["full"]},
        )

    async def run(req: GenerationRequest, who: Principal, wait: bool) -> Job:
        job = await run_in_threadpool(submit, req, who)
        if wait:
            await run_in_threadpool(job.done.wait)
            if job.unrecorded:
                raise HTTPException(
                    503, "the audit log cannot record this generation, so no image is returned"
                )
            if job.state != JobState.DONE:
                raise HTTPException(500, f"generation failed: {job.error}")
        return job

    def fooocus_results(job: Job, request: Request, require_base64: bool) -> list[dict]:
        return [
            {
                "base64": base64.b64encode(img.data).decode() if require_base64 else None,
                "url": str(request.url_for("output", job_id=job.id, index=i)),
                "seed": str(img.seed),
                "finish_reason": "SUCCESS",
            }
            for i, img in enumerate(job.images)
        ]

    def job_settings(job: Job) -> dict:
        """The job's request in Fooocus' field names, to run it again; the prompts as recorded
        (sanitized), never as the model got them."""
        req, recorded = job.request, job.context.get("recorded", {})
        advanced = {"sampler_name": req.sampler, "scheduler_name": req.scheduler}
        return {
            "prompt": recorded.get("prompt"),
            "negative_prompt": recorded.get("negative_prompt"),
            "style_selections": req.styles,
            "performance_selection": req.performance,
            "aspect_ratios_selection": f"{job.plan.width}*{job.plan.height}",
            "image_number": req.image_number,
            "image_seed": req.seed,
            "guidance_scale": req.guidance_scale,
            "base_model_name": req.base_model,
            "refiner_model_name": req.refiner or "None",
            "refiner_switch": req.refiner_switch,
            "loras": [{"model_name": c.name, "weight": c.weight} for c in req.loras],
            "advanced_params": {k: v for k, v in advanced.items() if v},
            "save_extension": req.output_format,
        }

    def fooocus_job(job: Job, request: Request, require_base64: bool = False) -> dict:
        policy = job.context.get("recorded", {}).get("prompt_policy", {})
        progress = round(100 * job.step / job.steps) if job.state == JobState.RUNNING else 0
        return {
            "job_id": job.id,
            "job_type": "Text to Image",
            "job_stage": STAGES[job.state],
            "job_progress": 100 if job.finished else progress,
            "job_status": job.error,
            "job_step_preview": None,
            "job_result": fooocus_results(job, request, require_base64)
            if job.state == JobState.DONE
            else None,
            # Beyond Fooocus-API (its clients ignore extra fields): what the web page shows.
            "job_queue_position": service.queue.position(job),
            "job_step": job.step,
            "job_steps": job.steps,
            "job_request": job_settings(job),
            "job_prompt_policy": {"findings": policy.get("findings", [])},  # rule names, never text
        }

    # ------------------------------------------------------------------ Fooocus-API

    @app.post("/v1/generation/text-to-image")
    async def text_to_image(body: FooocusRequest, request: Request, who: Principal = may_generate):
        check_url("webhook_url", body.webhook_url)
        job = await run(body.to_engine(), who, wait=not body.async_process)
        if body.async_process:
            return fooocus_job(job, request)
        return fooocus_results(job, request, body.require_base64)

    @app.get("/v1/generation/query-job")
    async def query_job(
        job_id: str,
        request: Request,
        require_step_preview: bool = False,
        who: Principal = may_read_jobs,
    ):
        return fooocus_job(service.queue.get(job_id, who.tenant), request, require_base64=True)

    @app.get("/v1/generation/job-queue")
    async def job_queue(who: Principal = may_read_jobs):
        mine = service.queue.jobs(who.tenant)
        return {
            "running_size": sum(not j.finished for j in mine),
            "finished_size": sum(j.finished for j in mine),
            "last_job_id": mine[-1].id if mine else None,
        }

    @app.get("/v1/generation/job-history")
    async def job_history(who: Principal = may_read_jobs):
        mine = service.queue.jobs(who.tenant)
        entry = lambda j: {"job_id": j.id, "is_finished": j.finished, "job_stage": STAGES[j.state]}  # noqa: E731
        return {
            "queue": [entry(j) for j in mine if not j.finished],
            "history": [entry(j) for j in mine if j.finished],
        }

    @app.post("/v1/generation/stop")
    async def stop(job_id: str, who: Principal = may_generate):
        job = service.queue.cancel(job_id, who.tenant)
        return {"job_id": job.id, "job_stage": STAGES[job.state]}

    @app.get("/v1/engines/all-models")
    async def all_models(who: Principal = may_read_models):
        allowed = [e for e in service.registry.entries() if e.allowed_for(who.tenant)]
        return {
            "model_filenames": [e.name for e in allowed if e.kind in ("base", "refiner")],
            "lora_filenames": [e.name for e in allowed if e.kind == "lora"],
        }

    @app.get("/v1/engines/styles")
    async def styles(who: Principal = may_read_models):
        return sorted(service.engine.styles)

    @app.get("/v1/engines/options")
    async def engine_options(who: Principal = may_read_models):
        """What a generation may ask for here: presets, the aspect ratios within the size limits."""
        limits = settings.limits
        fits = lambda r: all(limits.min_side <= int(v) <= limits.max_side for v in r.split("*"))  # noqa: E731
        return {
            "performances": [
                {"name": p.name, "steps": p.steps, "guidance_scale": p.guidance_scale}
                for p in PRESETS.values()
            ],
            "default_performance": DEFAULT_PRESET,
            "aspect_ratios": [r for r in ASPECT_RATIOS if fits(r)],
            "default_aspect_ratio": DEFAULT_ASPECT_RATIO,
            "max_image_number": limits.max_image_number,
            "min_side": limits.min_side,
            "max_side": limits.max_side,
            "max_prompt_chars": limits.max_prompt_chars,
            "samplers": sorted(SAMPLERS),
            "schedulers": sorted(SCHEDULERS),
        }

    @app.get("/ping", response_class=PlainTextResponse)
    async def ping():
        return "pong"

    # ------------------------------------------------------------------ AUTOMATIC1111

    @app.post("/sdapi/v1/txt2img")
    async def txt2img(body: A1111Request, who: Principal = may_generate):
        job = await run(body.to_engine(), who, wait=True)
        meta = job.images[0].metadata if job.images else {}
        return {
            "images": [base64.b64encode(img.data).decode() for img in job.images],
            "parameters": body.model_dump(),
            "info": _json(meta | {"all_seeds": [i.seed for i in job.images]}),
        }

    @app.get("/sdapi/v1/sd-models")
    async def sd_models(who: Principal = may_read_models):
        return [
            {
                "title": e.ref,
                "model_name": e.name,
                "hash": e.checksum.removeprefix("sha256:")[:10],
                "sha256": e.checksum.removeprefix("sha256:"),
                "filename": e.path,
                "config": None,
            }
            for e in service.registry.entries()
            if e.kind == "base" and e.allowed_for(who.tenant)
        ]

    @app.get("/sdapi/v1/samplers")
    async def samplers(who: Principal = may_read_models):
        return [
            {"name": name, "aliases": [fooocus], "options": {}}
            for name, fooocus in A1111_SAMPLERS.items()
            if fooocus in SAMPLERS
        ]

    @app.get("/sdapi/v1/progress")
    async def progress(who: Principal = may_read_jobs):
        mine = [j for j in service.queue.jobs(who.tenant) if not j.finished]
        return {
            "progress": 0.0,
            "eta_relative": 0.0,
            "state": {"job_count": len(mine)},
            "current_image": None,
        }

    # ------------------------------------------------------------------ own

    @app.get("/v1/me")
    async def me(who: Principal = any_key):
        """Who this key is (the web page's sign-in check); never the key or its hash."""
        return {"key_id": who.key_id, "tenant": who.tenant, "permissions": list(who.permissions)}

    @app.get("/v1/outputs/{job_id}/{index}", name="output")
    async def output(job_id: str, index: int, who: Principal = may_read_jobs):
        """From the encrypted store (so outputs outlive restarts); another tenant's reads as missing."""
        if not OUTPUT_ID.fullmatch(job_id) or not 0 <= index < 1000:
            raise OutputNotFound(who.tenant, f"{job_id}-{index}")
        data, meta = await run_in_threadpool(service.outputs.get, who.tenant, f"{job_id}-{index}")
        return Response(data, media_type=f"image/{meta['format']}")

    @app.get("/v1/outputs/{job_id}/{index}/provenance")
    async def output_provenance(job_id: str, index: int, who: Principal = may_read_jobs):
        """The image's signed provenance record as a sidecar (`airlock provenance verify --sidecar`)."""
        if not OUTPUT_ID.fullmatch(job_id) or not 0 <= index < 1000:
            raise OutputNotFound(who.tenant, f"{job_id}-{index}")
        _, meta = await run_in_threadpool(service.outputs.get, who.tenant, f"{job_id}-{index}")
        return meta["provenance"]

    @app.get("/v1/prompts/{job_id}")
    async def full_prompt(job_id: str, request: Request, who: Principal = may_read_full):
        """The full (unsanitized) prompts of one of this tenant's jobs; each read is audited."""
        if not OUTPUT_ID.fullmatch(job_id):
            raise OutputNotFound(who.tenant, job_id)
        data, _ = await run_in_threadpool(service.prompts.get, who.tenant, job_id)
        audit.append(
            "system_events",
            "prompt.read_full",
            outcome="success",
            component="prompts",
            key_id=who.key_id,
            tenant=who.tenant,
            job=job_id,
        )
        return {"job_id": job_id, **json.loads(data)}

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "version": __version__}

    @app.get("/readyz")
    async def readyz():
        """Ready when the audit log is writable, the default model is loaded and the queue has room."""
        problems = []
        if not settings.paths.audit_root.is_dir() or not os.access(settings.paths.audit_root, os.W_OK):
            problems.append("audit root not writable")
        if not service.engine.loaded_models():
            problems.append("no model loaded yet")
        if service.queue.queued() >= settings.limits.max_queued:
            problems.append("queue full")
        return JSONResponse(
            {"ready": not problems, "problems": problems}, status_code=503 if problems else 200
        )

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        """Prometheus text format, pulled by the internal scraper (nothing is pushed anywhere)."""
        lines = ["# TYPE airlock_http_responses_total counter"]
        lines += [
            f'airlock_http_responses_total{{status="{code}"}} {n}' for code, n in sorted(responses.items())
        ]
        lines += [
            "# TYPE airlock_jobs_queued gauge",
            f"airlock_jobs_queued {service.queue.queued()}",
            "# TYPE airlock_models_loaded gauge",
            f"airlock_models_loaded {service.engine.loaded_models()}",
        ]
        return "\n".join(lines) + "\n"

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error(
            exc.status_code, "generation_failed" if exc.status_code >= 500 else "refused", str(exc.detail)
        )

    mount_ui(app)
    return app


def _json(value: dict) -> str:
    import json

    return json.dumps(value, sort_keys=True)
