"""A bounded queue of generation jobs in front of one engine worker.

- Requests are planned at submit time (bad ones are refused before they wait) and queued per tenant;
  the worker serves tenants round robin, so one busy tenant cannot starve the others.
- The worker takes the next job plus every queued job compatible with it (same model, size, steps,
  scheduler, guidance, LoRAs), up to `max_batch`, from any tenant, and runs them as one pipeline call.
- When `max_queued` jobs wait, `submit` raises QueueFull (429 / Fooocus QUEUE_IS_FULL).
- Inference runs on the worker thread, never on the caller's (an event loop stays responsive).
- `shutdown` stops intake, lets the running batch finish, and fails what still waits, each with an
  audit record. Jobs live in memory: after a restart a job id is unknown, never reported done.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from airlock.audit import AuditLog
from airlock.errors import AirlockError
from inference.engine.engine import Engine, GeneratedImage, Plan
from inference.engine.request import GenerationRequest


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class QueueFull(AirlockError):
    pass


class QueueClosed(AirlockError):
    pass


class UnknownJob(AirlockError, KeyError):
    """No such job for this tenant (another tenant's job is just as unknown)."""


@dataclass
class Job:
    id: str
    tenant: str | None
    key_id: str | None
    request: GenerationRequest
    plan: Plan
    state: JobState = JobState.QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    images: list[GeneratedImage] = field(default_factory=list)
    error: str | None = None
    step: int = 0  # denoising steps done (the engine reports each one while the job runs)
    unrecorded: bool = False  # the audit record of its result could not be written
    context: dict = field(default_factory=dict)  # what the service records with it (screened prompts)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def steps(self) -> int:
        return self.plan.steps

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

    def duration_ms(self) -> int:
        """Time from submission to now (or to the finish): what the client waited."""
        return round(((self.finished_at or time.time()) - self.created_at) * 1000)


class JobQueue:
    def __init__(
        self,
        engine: Engine,
        audit: AuditLog,
        *,
        max_queued: int = 64,
        max_batch: int = 8,
        keep_finished: int = 1000,
        on_done: Callable[[Job], None] | None = None,
    ):
        self.engine, self.audit = engine, audit
        self.on_done = on_done  # records a finished job (the service's audit record); if it raises, no image
        self.max_queued, self.max_batch = max_queued, max_batch
        self._lock = threading.Condition()
        self._waiting: dict[str | None, collections.deque[Job]] = {}  # tenant -> its queued jobs
        self._order: list[str | None] = []  # tenants in round-robin order
        self._next_tenant = 0
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._keep_finished = keep_finished
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="generation-worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ callers

    def submit(
        self,
        request: GenerationRequest,
        tenant: str | None,
        key_id: str | None = None,
        *,
        recorded: tuple[str, str] | None = None,
        context: dict | None = None,
    ) -> Job:
        """recorded: the prompts the image's metadata shows (Engine.plan); context: kept for on_done."""
        plan = self.engine.plan(request, tenant, recorded)  # refuses bad requests before they wait
        with self._lock:
            if self._closed:
                raise QueueClosed("the service is shutting down; retry on another host or later")
            if self.queued() >= self.max_queued:
                raise QueueFull(f"the queue is full ({self.max_queued} jobs waiting); retry later")
            job = Job(
                id=secrets.token_hex(12),
                tenant=tenant,
                key_id=key_id,
                request=request,
                plan=plan,
                context=context or {},
            )
            self._jobs[job.id] = job
            if tenant not in self._waiting:
                self._waiting[tenant] = collections.deque()
                self._order.append(tenant)
            self._waiting[tenant].append(job)
            self._forget_old()
            self._lock.notify_all()
        return job

    def get(self, job_id: str, tenant: str | None) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.tenant != tenant:
            raise UnknownJob(f"no job {job_id!r} for this tenant")
        return job

    def cancel(self, job_id: str, tenant: str | None) -> Job:
        with self._lock:
            job = self.get(job_id, tenant)
            if job.state == JobState.QUEUED:
                self._waiting[job.tenant].remove(job)
                self._finish(job, JobState.CANCELLED, error="cancelled by the client")
            return job  # a running batch is not interrupted: its result is kept for the record

    def position(self, job: Job) -> int:
        """0 while it runs (or has finished); else how many jobs are ahead of it, the running batch
        included (at least 1). The worker serves tenants round robin, one job each per turn; batching
        can only bring a job forward."""
        with self._lock:
            if job.state != JobState.QUEUED:
                return 0
            running = sum(j.state == JobState.RUNNING for j in self._jobs.values())
            turn = self._waiting[job.tenant].index(job)  # the round in which the worker reaches it
            start = self._next_tenant % len(self._order)
            rotation = self._order[start:] + self._order[:start]
            before = rotation[: rotation.index(job.tenant)]
            ahead = turn + sum(
                min(len(self._waiting[t]), turn + (t in before)) for t in rotation if t != job.tenant
            )
            return max(1, running + ahead)

    def queued(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def jobs(self, tenant: str | None) -> list[Job]:
        return [j for j in self._jobs.values() if j.tenant == tenant]

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop intake, finish the running batch, fail (and audit) every job still waiting."""
        with self._lock:
            self._closed = True
            for queue in self._waiting.values():
                while queue:
                    self._finish(
                        queue.popleft(), JobState.FAILED, error="the service shut down before it ran"
                    )
            self._lock.notify_all()
        self._worker.join(timeout)

    # ------------------------------------------------------------------ worker

    def _take_batch(self) -> list[Job]:
        """Next tenant's oldest job, plus compatible queued jobs of any tenant (caller holds the lock)."""
        if not self.queued():
            return []
        self._next_tenant %= len(self._order)
        while not self._waiting.get(self._order[self._next_tenant]):
            self._next_tenant = (self._next_tenant + 1) % len(self._order)
        first = self._waiting[self._order[self._next_tenant]].popleft()
        self._next_tenant = (self._next_tenant + 1) % len(self._order)
        batch = [first]
        for queue in self._waiting.values():
            for job in list(queue):
                if len(batch) < self.max_batch and job.plan.batch_key == first.plan.batch_key:
                    queue.remove(job)
                    batch.append(job)
        return batch

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not self.queued():
                    self._lock.wait()
                batch = self._take_batch()
                if not batch:
                    return  # closed and drained
                for job in batch:
                    job.state, job.started_at = JobState.RUNNING, time.time()
            try:
                results = self.engine.run_plans([job.plan for job in batch], progress=self._progress(batch))
            except Exception as exc:  # the worker survives any engine failure; the jobs say why
                with self._lock:
                    for job in batch:
                        self._finish(job, JobState.FAILED, error=f"generation failed: {exc}")
                continue
            for job, images in zip(batch, results, strict=True):
                job.images = images
                try:
                    if self.on_done is not None:
                        self.on_done(job)
                except Exception as exc:  # fail closed: an image nobody recorded is not handed out
                    job.images, job.unrecorded = [], True
                    with self._lock:
                        self._finish(job, JobState.FAILED, error=f"not recorded, image withheld: {exc}")
                    continue
                with self._lock:
                    self._finish(job, JobState.DONE)

    @staticmethod
    def _progress(batch: list[Job]) -> Callable[[int, int], None]:
        def report(step: int, _steps: int) -> None:
            for job in batch:  # one pipeline call: every job of the batch is at the same step
                job.step = step

        return report

    def _finish(self, job: Job, state: JobState, error: str | None = None) -> None:
        job.state, job.error, job.finished_at = state, error, time.time()
        if state != JobState.DONE:
            self.audit.submit(
                "generations",
                f"job.{state.value}",
                outcome="failure",
                key_id=job.key_id,
                tenant=job.tenant,
                model=_model(job.plan),
                parameters={"job": job.id},
                output_ref=None,
                duration_ms=job.duration_ms(),
                reason=error,
            )
        job.done.set()

    def _forget_old(self) -> None:
        finished = [jid for jid, j in self._jobs.items() if j.finished]
        for jid in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._jobs[jid]


def _model(plan: Plan) -> dict:
    return {"name": plan.base.name, "version": plan.base.version, "checksum": plan.base.checksum}
