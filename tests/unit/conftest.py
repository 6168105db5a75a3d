from airlock.offline import force_offline

force_offline()  # before any test imports a Hugging Face library

from datetime import UTC, datetime, timedelta  # noqa: E402

import pytest  # noqa: E402

from airlock.audit import AuditLog  # noqa: E402
from airlock.keys import init_keys, load_verifier  # noqa: E402


class FakeClock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


GENERATION = {
    "key_id": "ak_7f3e",
    "tenant": "healthcare_system_b",
    "model": {"name": "sd_xl_base_1.0", "version": "1.0", "checksum": "sha256:" + "a" * 64},
    "parameters": {"performance": "Speed", "steps": 30, "cfg": 7.0, "seed": 1234, "styles": ["Fooocus V2"]},
    "output_ref": "outputs/healthcare_system_b/0001.png.enc",
    "duration_ms": 1534,
    "outcome": "success",
    "prompt": "anatomical heart illustration, soft studio lighting",
}


@pytest.fixture
def clock():
    return FakeClock(datetime(2026, 10, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def signer(tmp_path):
    return init_keys(tmp_path / "keys")


@pytest.fixture
def verifier(signer, tmp_path):
    return load_verifier(tmp_path / "keys")


@pytest.fixture
def root(tmp_path):
    return tmp_path / "audit"


@pytest.fixture
def write_days(root, clock, signer):
    """Write `per_day` generations and one api_access record on each of `days` days, sealing as it goes."""

    def write(days: int = 3, per_day: int = 4) -> None:
        with AuditLog(root, clock=clock, signer=signer) as log:
            for _ in range(days):
                for _ in range(per_day):
                    log.append("generations", "generation.completed", **GENERATION)
                log.append(
                    "api_access",
                    "auth.accepted",
                    key_id="ak_7f3e",
                    tenant="healthcare_system_b",
                    method="POST",
                    path="/v1/generation/text-to-image",
                    status=200,
                    client="10.231.1.20",
                    duration_ms=2,
                    outcome="success",
                )
                clock.advance(days=1)
            log.append("system_events", "day.rolled", component="test", outcome="success")

    return write
