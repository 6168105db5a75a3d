from airlock.offline import force_offline

force_offline()  # before any test imports a Hugging Face library

from datetime import UTC, datetime, timedelta  # noqa: E402

import pytest  # noqa: E402

from airlock.audit import AuditLog  # noqa: E402
from airlock.keys import init_keys, load_verifier  # noqa: E402
from airlock.registry import Registry, import_model  # noqa: E402


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


# ---------------------------------------------------------------- the tiny model in a signed registry

TENANT, OTHER = "tenant_defense_a", "tenant_health_b"
PRESET_LORAS = {
    "sdxl_lcm_lora": "lcm_lora",
    "sdxl_lightning_4step_lora": "lightning_lora",
    "sdxl_hyper_sd_4step_lora": "hypersd_lora",
}


def build_registry(base_dir, tiny, *, with_preset_loras=True):
    keys = base_dir / "keys"
    signer = init_keys(keys)
    verifier = load_verifier(keys)
    audit = AuditLog(base_dir / "audit")
    root = base_dir / "registry"

    def add(path, name, kind, tenant=None):
        import_model(
            root,
            path,
            name=name,
            version="1.0",
            kind=kind,
            approved_by="security_team",
            signer=signer,
            verifier=verifier,
            audit=audit,
            tenant=tenant,
            source="make-tiny",
        )

    add(tiny["base"], "sd_xl_base_1.0", "base")
    add(tiny["refiner"], "sd_xl_refiner_1.0", "refiner")
    add(tiny["single"], "tiny_single_file", "base")
    add(tiny["style_lora"], "brand_lora_v3", "lora", tenant=TENANT)
    if with_preset_loras:
        for name, key in PRESET_LORAS.items():
            add(tiny[key], name, "lora")
    return Registry(root, verifier), audit, root


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny random-weight SDXL, built once per test session."""
    from airlock.registry.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny") / "out", seed=0)
