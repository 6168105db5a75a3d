"""The engine on the tiny random-weight SDXL (CPU): every Fooocus feature, verified models only."""

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import OTHER, TENANT, build_registry
from PIL import Image

from airlock.registry import ModelIntegrityError, ModelRestrictedError
from inference.engine.engine import Engine, EngineSettings, read_metadata
from inference.engine.options import ASPECT_RATIOS, OptionError
from inference.engine.request import GenerationRequest


@pytest.fixture(scope="module")
def engine(tiny, tmp_path_factory):
    registry, audit, _ = build_registry(tmp_path_factory.mktemp("engine"), tiny)
    settings = EngineSettings(single_file_config=tiny["single_config"], egress_guard=False)
    yield Engine(registry, audit, settings)
    audit.close()


def request(**overrides):
    fields = {"prompt": "a lighthouse", "width": 64, "height": 64, "seed": 7, "performance": "Lightning"}
    return GenerationRequest(**{**fields, **overrides})


def pixels(image):
    return np.asarray(Image.open(io.BytesIO(image.data)).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("performance", ["Quality", "Speed", "Extreme Speed", "Lightning", "Hyper-SD"])
def test_every_performance_preset_generates(engine, performance):
    [image] = engine.generate(request(performance=performance), TENANT)
    assert Image.open(io.BytesIO(image.data)).size == (64, 64)
    meta = read_metadata(image.data)
    assert meta["performance"] == performance and meta["seed"] == 7
    expected_steps = {"Quality": 60, "Speed": 30, "Extreme Speed": 8, "Lightning": 4, "Hyper-SD": 4}
    assert meta["steps"] == expected_steps[performance]
    if performance in ("Extreme Speed", "Lightning", "Hyper-SD"):
        assert meta["guidance_scale"] == 1.0 and len(meta["loras"]) == 1


def test_a_preset_whose_lora_is_missing_names_it(tiny, tmp_path):
    registry, audit, _ = build_registry(tmp_path, tiny, with_preset_loras=False)
    engine = Engine(registry, audit, EngineSettings(egress_guard=False))
    with pytest.raises(OptionError, match="needs the LoRA 'sdxl_lightning_4step_lora'"):
        engine.plan(request(performance="Lightning"), TENANT)
    audit.close()


def test_styles_compose_into_the_prompt(engine):
    plan = engine.plan(
        request(styles=["Airlock Product Studio", "Airlock Sharp"], negative_prompt="lowres"), None
    )
    assert plan.prompt == (
        "studio product photograph of a lighthouse, seamless neutral backdrop, softbox lighting, "
        "crisp focus, commercial catalogue quality, sharp detail, high local contrast, fine texture"
    )
    assert plan.negative_prompt.startswith("lowres, logo, watermark")


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_every_fooocus_aspect_ratio_is_accepted(engine, ratio):
    plan = engine.plan(request(width=None, height=None, aspect_ratio=ratio), None)
    assert f"{plan.width}*{plan.height}" == ratio


def test_default_and_invalid_sizes(engine):
    plan = engine.plan(request(width=None, height=None), None)
    assert (plan.width, plan.height) == (1152, 896)
    with pytest.raises(OptionError, match="not one of Fooocus"):
        engine.plan(request(width=None, height=None, aspect_ratio="1000*1000"), None)
    with pytest.raises(OptionError, match="multiple of 8"):
        engine.plan(request(width=100, height=64), None)


def test_lora_weight_zero_equals_no_lora_and_weight_one_changes_the_image(engine):
    plain = pixels(engine.generate(request(), TENANT)[0])
    zero = pixels(engine.generate(request(loras=[{"name": "brand_lora_v3", "weight": 0.0}]), TENANT)[0])
    one = pixels(engine.generate(request(loras=[{"name": "brand_lora_v3", "weight": 1.0}]), TENANT)[0])
    assert np.abs(plain - zero).max() <= 1
    assert np.abs(plain - one).mean() > 1


def test_tenant_restricted_lora_is_refused_for_another_tenant(engine):
    with pytest.raises(ModelRestrictedError):
        engine.plan(request(loras=[{"name": "brand_lora_v3", "weight": 1.0}]), OTHER)


def test_refiner_switch_changes_the_result_and_is_recorded(engine):
    base = engine.generate(request(performance="Speed"), None)[0]
    refined = engine.generate(
        request(performance="Speed", refiner="sd_xl_refiner_1.0", refiner_switch=0.5), None
    )[0]
    assert np.abs(pixels(base) - pixels(refined)).mean() > 1
    meta = read_metadata(refined.data)
    assert meta["refiner"]["name"] == "sd_xl_refiner_1.0" and meta["refiner_switch"] == 0.5
    unused = engine.generate(
        request(performance="Speed", refiner="sd_xl_refiner_1.0", refiner_switch=1.0), None
    )[0]
    assert unused.data == base.data  # switch 1.0: the refiner never runs


def test_same_request_same_bytes_and_seeds_increment(engine):
    first = engine.generate(request(image_number=2, seed=11), None)
    again = engine.generate(request(image_number=2, seed=11), None)
    assert [i.data for i in first] == [i.data for i in again]
    assert [i.seed for i in first] == [11, 12]
    second_alone = engine.generate(request(seed=12), None)[0]
    assert np.abs(pixels(second_alone) - pixels(first[1])).max() <= 1


@pytest.mark.parametrize("refiner", [None, "sd_xl_refiner_1.0"])
def test_progress_is_reported_after_every_step_and_changes_nothing(engine, refiner):
    plan = engine.plan(request(refiner=refiner, refiner_switch=0.5), TENANT)
    seen = []
    [[image]] = engine.run_plans([plan], progress=lambda step, steps: seen.append((step, steps)))
    # Lightning: 4 steps, split between base and refiner when there is one.
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    [[quiet]] = engine.run_plans([plan])
    assert quiet.data == image.data


def test_random_seed_is_reported(engine):
    image = engine.generate(request(seed=-1), None)[0]
    assert 0 <= image.seed < 2**63 and read_metadata(image.data)["seed"] == image.seed


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_output_formats_carry_the_generation_metadata(engine, fmt):
    image = engine.generate(request(output_format=fmt), TENANT)[0]
    assert Image.open(io.BytesIO(image.data)).format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
    meta = read_metadata(image.data)
    assert meta["base_model"]["name"] == "sd_xl_base_1.0" and meta["base_model"]["checksum"].startswith(
        "sha256:"
    )


def test_compatible_requests_share_one_pipeline_call(engine):
    calls = []
    loaded = engine._pipeline(engine.registry.get("sd_xl_base_1.0", kind="base"))
    original = type(loaded.pipe).__call__
    jobs = [
        (request(seed=21), None),
        (request(seed=22, prompt="a harbour"), None),
        (request(seed=23, width=72), None),
    ]
    type(loaded.pipe).__call__ = lambda self, *a, **k: (
        calls.append(len(k["prompt"])) or original(self, *a, **k)
    )
    try:
        batched = engine.generate_many(jobs)
    finally:
        type(loaded.pipe).__call__ = original
    assert sorted(calls) == [1, 2]  # the 64x64 pair together, the 72-wide one alone
    alone = engine.generate(*jobs[1])[0]
    assert np.abs(pixels(alone) - pixels(batched[1][0])).max() <= 2


def test_single_file_checkpoint_loads_with_the_local_config(engine):
    image = engine.generate(request(base_model="tiny_single_file"), None)[0]
    assert read_metadata(image.data)["base_model"]["name"] == "tiny_single_file"


def test_a_model_altered_after_import_is_refused_at_load_and_audited(tiny, tmp_path):
    registry, audit, root = build_registry(tmp_path, tiny, with_preset_loras=False)
    base_dir = root / registry.get("sd_xl_base_1.0", kind="base").path
    weights = next(base_dir.glob("unet/*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    engine = Engine(registry, audit, EngineSettings(egress_guard=False))
    with pytest.raises(ModelIntegrityError):
        engine.generate(request(performance="Speed"), None)
    audit.close()
    records = [
        json.loads(line)
        for p in (tmp_path / "audit").glob("*/model_changes.jsonl")
        for line in p.read_bytes().splitlines()
    ]
    refused = [r for r in records if r["event"] == "model.load_refused"]
    assert refused and refused[0]["model"]["name"] == "sd_xl_base_1.0" and refused[0]["outcome"] == "failure"


ENGINE_CHILD = textwrap.dedent("""
    import json, socket, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from conftest import build_registry
    from test_engine import request
    from airlock.registry.tiny import make_tiny
    from inference.engine.engine import Engine, EngineSettings
    from inference.engine.guard import EgressBlocked
    work = Path(sys.argv[1])
    registry, audit, _ = build_registry(work, make_tiny(work / "tiny"), with_preset_loras=False)
    engine = Engine(registry, audit, EngineSettings(egress_allowed_cidrs=("10.231.1.0/24",)))
    engine.generate(request(performance="Speed"), None)  # loading and generating need no network
    try:
        socket.create_connection(("huggingface.co", 443), timeout=2)
        print("CONNECTED")
    except EgressBlocked:
        print("BLOCKED")
    audit.close()
""")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for an empty netns")
def test_the_engine_process_cannot_reach_the_network(tmp_path):
    here = os.path.dirname(__file__)
    script = 'ip link set lo up && exec "$0" -c "$1" "$2" "$3"'
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", script, sys.executable, ENGINE_CHILD, str(tmp_path), here],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "BLOCKED"
    records = [
        json.loads(line)
        for p in (tmp_path / "audit").glob("*/system_events.jsonl")
        for line in p.read_bytes().splitlines()
    ]
    assert any(r["event"] == "egress.blocked" and r["host"] == "huggingface.co" for r in records)


def test_local_generation_command_writes_the_image_and_audits_it(tiny, tmp_path):
    _, audit, root = build_registry(tmp_path, tiny, with_preset_loras=False)
    audit.close()
    out = tmp_path / "check.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inference.engine",
            "--registry",
            str(root),
            "--trust",
            str(tmp_path / "keys"),
            "--audit-root",
            str(tmp_path / "audit"),
            "--prompt",
            "a lighthouse",
            "--width",
            "64",
            "--height",
            "64",
            "--seed",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_metadata(out.read_bytes())["seed"] == 5
    [record] = [
        json.loads(line)
        for p in (tmp_path / "audit").glob("*/generations.jsonl")
        for line in p.read_bytes().splitlines()
    ]
    assert record["key_id"] == "local-cli" and record["prompt"] == "a lighthouse"
    assert record["model"]["name"] == "sd_xl_base_1.0" and record["parameters"]["steps"] == 30
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "inference.engine",
            "--registry",
            str(root),
            "--trust",
            str(tmp_path / "keys"),
            "--audit-root",
            str(tmp_path / "audit"),
            "--prompt",
            "x",
            "--aspect-ratio",
            "3*4",
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and "not one of Fooocus' SDXL ratios" in bad.stderr
