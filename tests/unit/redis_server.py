"""A real redis-server (Debian's `redis-server` package) on loopback for the tests: no persistence,
a password, optionally TLS only with a certificate from our CA. Stopped by PID when the test ends."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def redis_server(work: Path, *, tls: tuple[Path, Path, Path] | None = None):
    """Yield (url, password); tls = (cert, key, ca_cert) serves TLS 1.3 only and no plaintext port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: apt-get install redis-server (.ci/run installs it)")
    work.mkdir(parents=True, exist_ok=True)
    port, password = free_port(), secrets.token_hex(16)
    args = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work)]
    args += ["--requirepass", password, "--protected-mode", "yes"]
    if tls:
        cert, key, ca = tls
        args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert)]
        args += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        args += ["--tls-protocols", "TLSv1.3"]
    else:
        args += ["--port", str(port)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"redis-server did not start: {output[-2000:]}")
                time.sleep(0.05)
        scheme = "rediss" if tls else "redis"
        yield f"{scheme}://:{password}@127.0.0.1:{port}/0", password
    finally:
        process.terminate()
        process.wait(10)
