"""The full service stack (TLS 1.3, auth, audit, queue, engine) vs the engine alone, in one run.

- 4 concurrent clients sending the same tiny-model request through HTTPS vs 4 threads calling the
  engine directly: images/s, p50 and p99 latency, and the ratio (goal: the stack adds <= 10%);
- requests/s that the stack refuses at authentication (wrong key; goal >= 1,000/s).
Run with `make bench`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from conftest import TENANT  # noqa: E402 - the tiny registry the tests use
from test_api import make_service  # noqa: E402

from airlock.ca import client_context  # noqa: E402
from airlock.registry.tiny import make_tiny  # noqa: E402
from inference.api.server import make_server  # noqa: E402
from inference.engine.request import GenerationRequest  # noqa: E402

CLIENTS, PER_CLIENT = 4, 6
REJECT_CONNECTIONS = 16
BODY = {
    "prompt": "a lighthouse",
    "performance_selection": "Lightning",
    "aspect_ratios_selection": "1024*1024",
    "image_seed": 5,
    "require_base64": True,
}


def run_clients(call) -> tuple[float, list[float]]:
    latencies: list[float] = []

    def client() -> None:
        for _ in range(PER_CLIENT):
            start = time.perf_counter()
            call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(client) for _ in range(CLIENTS)]:
            future.result()
    return CLIENTS * PER_CLIENT / (time.perf_counter() - start), sorted(latencies)


def p(latencies: list[float], q: float) -> float:
    return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000


def reject_worker(port: int, ca_cert: Path, seconds: float, counts) -> None:
    """The client process: keep-alive TLS connections sending a wrong key until time is up. Plain
    asyncio streams, because a full HTTP client spends more CPU per request than the server does."""
    request = b"GET /v1/engines/styles HTTP/1.1\r\nHost: localhost\r\nX-API-KEY: alk_wrong\r\n\r\n"

    async def connection(deadline: float) -> int:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(ca_cert), server_hostname="localhost"
        )
        count = 0
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 401 "), head
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            count += 1
        writer.close()
        return count

    async def run() -> int:
        deadline = time.perf_counter() + seconds
        return sum(await asyncio.gather(*(connection(deadline) for _ in range(REJECT_CONNECTIONS))))

    counts.put(asyncio.run(run()))


def measure_rejections(port: int, ca_cert: Path, seconds: float = 4.0) -> float:
    """The client runs in its own process, so it does not share the server's interpreter lock."""
    context = multiprocessing.get_context("spawn")
    counts = context.Queue()
    worker = context.Process(target=reject_worker, args=(port, ca_cert, seconds, counts))
    start = time.perf_counter()
    worker.start()
    total = counts.get()
    worker.join()
    return total / (time.perf_counter() - start)


def main() -> None:
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        work = Path(tmp)
        service, settings, keys, ca = make_service(make_tiny(work / "tiny"), work / "svc", max_queued=64)
        server = make_server(service)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"https://localhost:{settings.server.port}"
        clients = [
            httpx.Client(base_url=url, verify=client_context(ca.cert_path), timeout=300)
            for _ in range(CLIENTS)
        ]
        local = threading.local()

        def via_stack() -> None:
            if not hasattr(local, "http"):  # one keep-alive connection per client thread
                local.http = clients.pop()
            http = local.http
            response = http.post(
                "/v1/generation/text-to-image", json=BODY, headers={"X-API-KEY": keys["main"]}
            )
            response.raise_for_status()

        request = GenerationRequest(
            prompt="a lighthouse", performance="Lightning", aspect_ratio="1024*1024", seed=5
        )

        def direct() -> None:
            service.engine.generate(request, TENANT)

        direct()  # warm the model and the LoRA
        direct_rate, direct_lat = run_clients(direct)
        stack_rate, stack_lat = run_clients(via_stack)
        print(
            f"stack / engine alone, {CLIENTS} clients: {direct_rate / stack_rate:.3f}x time per image "
            f"(goal <= 1.10; {stack_rate:.2f} vs {direct_rate:.2f} images/s; p50 {p(stack_lat, 0.5):.0f} vs "
            f"{p(direct_lat, 0.5):.0f} ms, p99 {p(stack_lat, 0.99):.0f} vs {p(direct_lat, 0.99):.0f} ms)"
        )

        rejected_rate = measure_rejections(settings.server.port, ca.cert_path)
        print(
            f"auth-rejected requests/s ({REJECT_CONNECTIONS} keep-alive TLS connections, each request "
            f"audited): {rejected_rate:,.0f} (goal >= 1,000/s)"
        )
        server.should_exit = True
        thread.join(60)
        service.queue.shutdown()
        service.audit.close()


if __name__ == "__main__":
    main()
