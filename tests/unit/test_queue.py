"""The job queue with the real tiny engine: bounded, fair, batching, cancellable, clean shutdown."""

import json
import threading

import pytest
from conftest import TENANT, build_registry

from inference.engine.engine import Engine, EngineSettings
from inference.engine.options import OptionError
from inference.engine.request import GenerationRequest
from inference.queue import JobQueue, JobState, QueueClosed, QueueFull, UnknownJob

OTHER_TENANT = "tenant_finance_c"


def request(seed=1, **extra):
    fields = {"prompt": "a lighthouse", "width": 64, "height": 64, "seed": seed, "performance": "Lightning"}
    return GenerationRequest(**{**fields, **extra})


@pytest.fixture
def setup(tiny, tmp_path):
    registry, audit, _ = build_registry(tmp_path, tiny)
    engine = Engine(registry, audit, EngineSettings(egress_guard=False))
    yield engine, audit, tmp_path
    audit.close()


class Gate:
    """Holds the worker inside the engine until released, so tests can fill the queue behind it."""

    def __init__(self, engine):
        self.entered, self.release, self.calls = threading.Event(), threading.Event(), []
        original = engine.run_plans

        def run_plans(plans, **kwargs):
            self.calls.append([(p.tenant, p.seeds[0]) for p in plans])
            self.entered.set()
            self.release.wait(30)
            return original(plans, **kwargs)

        engine.run_plans = run_plans


def records(tmp_path, category):
    return [
        json.loads(line)
        for p in (tmp_path / "audit").glob(f"*/{category}.jsonl")
        for line in p.read_bytes().splitlines()
    ]


def test_a_job_runs_off_the_callers_thread_and_completes(setup):
    engine, audit, _ = setup
    queue = JobQueue(engine, audit)
    job = queue.submit(request(), TENANT, key_id="ak_1")
    assert job.done.wait(60) and job.state == JobState.DONE
    assert [i.seed for i in job.images] == [1] and job.images[0].data.startswith(b"\x89PNG")
    assert queue.get(job.id, TENANT) is job
    queue.shutdown()


def test_jobs_are_private_to_their_tenant(setup):
    engine, audit, _ = setup
    queue = JobQueue(engine, audit)
    job = queue.submit(request(), TENANT)
    with pytest.raises(UnknownJob):
        queue.get(job.id, OTHER_TENANT)
    with pytest.raises(UnknownJob):
        queue.cancel(job.id, OTHER_TENANT)
    queue.shutdown()


def test_bad_requests_are_refused_at_submit(setup):
    engine, audit, _ = setup
    queue = JobQueue(engine, audit)
    with pytest.raises(OptionError):
        queue.submit(request(aspect_ratio="3*4", width=None, height=None), TENANT)
    assert queue.queued() == 0
    queue.shutdown()


def test_full_queue_refuses_and_tenants_are_served_round_robin_in_batches(setup):
    engine, audit, _ = setup
    gate = Gate(engine)
    queue = JobQueue(engine, audit, max_queued=5, max_batch=2)
    first = queue.submit(request(seed=100), TENANT)
    assert gate.entered.wait(30)  # the worker is busy with the first job
    jobs = [queue.submit(request(seed=s), TENANT) for s in (1, 2, 3)]
    jobs += [queue.submit(request(seed=s, width=72), OTHER_TENANT) for s in (11, 12)]
    with pytest.raises(QueueFull, match="5 jobs waiting"):
        queue.submit(request(seed=99), TENANT)
    # Jobs ahead, the running one included, in round-robin order (not arrival order): the other
    # tenant's first comes right after the tenant's first.
    assert [queue.position(j) for j in [first, *jobs]] == [0, 1, 3, 5, 2, 4]
    gate.release.set()
    assert all(j.done.wait(120) for j in [first, *jobs])
    # After the first: the tenant's next two together (max_batch 2, compatible), then the other
    # tenant's pair (72 wide, a different batch key), then the tenant's last one.
    assert gate.calls == [
        [(TENANT, 100)],
        [(TENANT, 1), (TENANT, 2)],
        [(OTHER_TENANT, 11), (OTHER_TENANT, 12)],
        [(TENANT, 3)],
    ]
    queue.shutdown()


def test_cancel_a_queued_job_and_shutdown_fails_the_rest_with_audit_records(setup):
    engine, audit, tmp_path = setup
    gate = Gate(engine)
    queue = JobQueue(engine, audit)
    running = queue.submit(request(seed=1), TENANT)
    assert gate.entered.wait(30)
    cancelled = queue.submit(request(seed=2), TENANT)
    waiting = queue.submit(request(seed=3), TENANT)
    assert queue.cancel(cancelled.id, TENANT).state == JobState.CANCELLED
    threading.Timer(0.5, gate.release.set).start()
    queue.shutdown()
    assert running.state == JobState.DONE  # the running batch finished
    assert waiting.state == JobState.FAILED and "shut down" in waiting.error
    with pytest.raises(QueueClosed):
        queue.submit(request(), TENANT)
    events = {r["event"]: r for r in records(tmp_path, "generations")}
    assert events["job.cancelled"]["parameters"]["job"] == cancelled.id
    assert (
        events["job.failed"]["parameters"]["job"] == waiting.id
        and events["job.failed"]["outcome"] == "failure"
    )


def test_an_engine_failure_fails_the_batch_and_the_worker_lives_on(setup):
    engine, audit, _ = setup
    queue = JobQueue(engine, audit)
    original = engine.run_plans
    engine.run_plans = lambda plans, **kw: (_ for _ in ()).throw(RuntimeError("CUDA out of memory"))
    broken = queue.submit(request(seed=1), TENANT)
    assert broken.done.wait(30) and broken.state == JobState.FAILED and "out of memory" in broken.error
    engine.run_plans = original
    fine = queue.submit(request(seed=2), TENANT)
    assert fine.done.wait(60) and fine.state == JobState.DONE
    queue.shutdown()
