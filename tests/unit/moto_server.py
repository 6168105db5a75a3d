"""moto in server mode on loopback for the tests: a real HTTP endpoint that boto3 clients (and the CLI
in a subprocess) can share. Started on a free port, stopped by PID when the test ends.

Fake credentials only: `aws_env()` points boto3 away from ~/.aws and any proxy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis_server import free_port

# No proxy handler: these requests go to 127.0.0.1 and nowhere else, whatever the environment says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,  # never read the developer's ~/.aws
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",  # no credential lookups on 169.254.169.254
    "NO_PROXY": "127.0.0.1",
    "no_proxy": "127.0.0.1",
}
PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "AWS_PROFILE",
)


@contextmanager
def aws_env():
    """Fake credentials and no proxy for the duration (boto3 reads these when a session is made)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in PROXY_VARS:
            patch.delenv(name, raising=False)
        for name, value in FAKE_AWS_ENV.items():
            patch.setenv(name, value)
        yield


def reset(endpoint_url: str) -> None:
    """Forget every resource (all services, all regions): the next test starts from an empty account."""
    # Only ever the http://127.0.0.1 URL that moto_server() built.
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
    _DIRECT.open(request, timeout=10).close()


@contextmanager
def moto_server(work: Path):
    """Yield the endpoint URL of a fresh `moto_server` bound to 127.0.0.1 (log in work/moto.log)."""
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        pytest.fail(f"{binary} is missing: pip install 'moto[server]' (the cloud extra)")
    work.mkdir(parents=True, exist_ok=True)
    port, log_path = free_port(), work / "moto.log"
    # The request log goes to a file: a pipe nobody reads fills up and stalls the server.
    with log_path.open("wb") as log:
        process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                reset(url)
                break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
