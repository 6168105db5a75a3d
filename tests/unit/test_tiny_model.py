"""The tiny SDXL fixtures: reproducible bytes, safetensors only, and every pipeline feature loads offline."""

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airlock.offline import force_offline

force_offline()  # before anything imports a Hugging Face library

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch", reason="needs the engine extra")
diffusers = pytest.importorskip("diffusers", reason="needs the engine extra")

from airlock.registry import tiny  # noqa: E402
from airlock.registry.tiny import LORAS, make_tiny  # noqa: E402

StableDiffusionXLPipeline = diffusers.StableDiffusionXLPipeline
StableDiffusionXLImg2ImgPipeline = diffusers.StableDiffusionXLImg2ImgPipeline
ALLOWED_SUFFIXES = {".safetensors", ".json", ".txt"}
PROMPT = "a cat and a dog, art"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach a hub fails loudly instead of hanging or silently succeeding."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def base(model):
    pipe = StableDiffusionXLPipeline.from_pretrained(
        model["base"], use_safetensors=True, local_files_only=True
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe, seed=0, **kwargs):
    kwargs = {"num_inference_steps": 2, "height": 64, "width": 64, **kwargs}
    return pipe(PROMPT, generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs).images[0]


@pytest.fixture(scope="module")
def reference(base):
    return render(base)


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------ files and bytes


def test_returns_every_fixture(model):
    expected = {"base", "refiner", "single", "single_config", *LORAS}
    assert set(model) == expected
    assert all(path.exists() for path in model.values())
    assert model["style_lora"].parent == model["lcm_lora"].parent


def test_same_seed_same_bytes_other_seed_other_weights(model, tmp_path):
    """Rebuilt in a fresh process (other hash seed, so set/dict order could differ): identical bytes."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from airlock.registry.tiny import make_tiny
        make_tiny(Path({str(tmp_path / "again")!r}), seed=0)
        make_tiny(Path({str(tmp_path / "other")!r}), seed=1)
        """
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(repo)}
    subprocess.run(
        [sys.executable, "-c", script], check=True, env=env, cwd=repo, capture_output=True, timeout=300
    )
    root = model["base"].parent
    first, again, other = digests(root), digests(tmp_path / "again"), digests(tmp_path / "other")
    assert again == first
    assert set(other) == set(first)
    changed = {name for name in first if other[name] != first[name]}
    assert changed == {name for name in first if name.endswith(".safetensors")}, "seed only moves weights"


def test_only_safetensors_and_text_configs(model):
    root = model["base"].parent
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    assert {p.suffix for p in files} <= ALLOWED_SUFFIXES, "no .bin/.ckpt/.pt: nothing pickled"
    for path in files:
        if path.suffix != ".safetensors":
            text = path.read_text(encoding="utf-8")
            assert str(root.parent) not in text and ".tmp" not in text, f"{path} records a path"
    assert sorted(p.name for p in (root / "base").iterdir()) == [
        "model_index.json",
        "scheduler",
        "text_encoder",
        "text_encoder_2",
        "tokenizer",
        "tokenizer_2",
        "unet",
        "vae",
    ]


def test_refuses_a_non_empty_output_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        make_tiny(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_fills_an_empty_output_dir_and_leaves_the_global_rng_alone(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    state = torch.random.get_rng_state()
    paths = make_tiny(out, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert paths["base"] == out / "base" and (out / "base" / "model_index.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"], "no temporary directory left"


def test_a_failed_build_leaves_no_output(tmp_path, monkeypatch):
    def broken(root, seed):
        (root / "base").mkdir()
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiny, "_build", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        make_tiny(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ pipelines


def test_base_loads_offline_and_renders_deterministically(base, reference):
    assert reference.shape == (64, 64, 3)
    assert np.isfinite(reference).all() and reference.std() > 0
    np.testing.assert_array_equal(render(base), reference)
    assert np.abs(render(base, seed=1) - reference).mean() > 1e-3
    assert base.default_sample_size * base.vae_scale_factor == 64, "defaults to 64x64"
    assert base.vae_scale_factor == 8, "latents are 1/8 of the image, as in SDXL"


def test_tokenizers_match_the_text_encoders(base):
    for tokenizer, encoder in ((base.tokenizer, base.text_encoder), (base.tokenizer_2, base.text_encoder_2)):
        assert len(tokenizer) < encoder.config.vocab_size
        assert tokenizer.model_max_length == 77
        assert tokenizer.bos_token_id == encoder.config.bos_token_id
        assert tokenizer.eos_token_id == encoder.config.eos_token_id
        assert tokenizer.pad_token_id == encoder.config.pad_token_id
    ids = base.tokenizer("the cat", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == base.tokenizer.bos_token_id
    assert base.tokenizer_2.pad_token_id == 0  # "!", as in SDXL's second tokenizer


def test_refiner_refines_base_latents(model, base, reference):
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        model["refiner"], use_safetensors=True, local_files_only=True
    )
    refiner.set_progress_bar_config(disable=True)
    assert refiner.text_encoder is None and refiner.tokenizer is None
    assert refiner.config.requires_aesthetics_score
    generator = torch.Generator().manual_seed(0)
    latents = base(
        PROMPT,
        num_inference_steps=4,
        height=64,
        width=64,
        denoising_end=0.8,
        output_type="latent",
        generator=generator,
    ).images
    assert latents.shape == (1, 4, 8, 8)
    refined = refiner(
        PROMPT,
        image=latents,
        num_inference_steps=4,
        denoising_start=0.8,
        output_type="np",
        generator=generator,
    ).images[0]
    assert refined.shape == (64, 64, 3) and np.isfinite(refined).all()


@pytest.mark.parametrize("name", sorted(LORAS))
def test_lora_loads_and_moves_the_image_only_when_weighted(model, base, reference, name):
    base.load_lora_weights(model[name].parent, weight_name=model[name].name, adapter_name=name)
    try:
        base.set_adapters([name], adapter_weights=[1.0])
        assert np.abs(render(base) - reference).mean() > 1e-2
        base.set_adapters([name], adapter_weights=[0.0])
        np.testing.assert_allclose(render(base), reference, rtol=0, atol=1e-6)
    finally:
        base.delete_adapters(name)
    np.testing.assert_allclose(render(base), reference, rtol=0, atol=1e-6)


def test_loras_stack(model, base, reference):
    names = ["style_lora", "lcm_lora"]
    for name in names:
        base.load_lora_weights(model[name].parent, weight_name=model[name].name, adapter_name=name)
    try:
        base.set_adapters(["style_lora"], adapter_weights=[0.8])
        alone = render(base)
        base.set_adapters(names, adapter_weights=[0.8, 1.0])
        assert np.abs(render(base) - alone).mean() > 1e-2
    finally:
        base.delete_adapters(names)


@pytest.mark.parametrize(
    ("scheduler", "overrides"),
    [
        ("EulerDiscreteScheduler", {}),
        ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),  # Lightning
        ("EulerAncestralDiscreteScheduler", {}),
        ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
        ("LCMScheduler", {}),  # LCM-LoRA
        ("TCDScheduler", {}),  # Hyper-SD
    ],
)
def test_scheduler_swaps(base, scheduler, overrides):
    original = base.scheduler
    base.scheduler = getattr(diffusers, scheduler).from_config(original.config, **overrides)
    try:
        image = render(base, guidance_scale=1.0)
    finally:
        base.scheduler = original
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


def test_single_file_loads_offline_as_the_same_model(model, reference):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type, load_single_file_checkpoint

    checkpoint = load_single_file_checkpoint(str(model["single"]), local_files_only=True)
    assert infer_diffusers_model_type(checkpoint) == "xl_base"
    assert not any(key.startswith(("unet.", "down_blocks.")) for key in checkpoint), "original layout"
    single = StableDiffusionXLPipeline.from_single_file(
        str(model["single"]), config=str(model["single_config"]), local_files_only=True
    )
    single.set_progress_bar_config(disable=True)
    base = StableDiffusionXLPipeline.from_pretrained(
        model["base"], use_safetensors=True, local_files_only=True
    )
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        expected, loaded = getattr(base, component).state_dict(), getattr(single, component).state_dict()
        assert expected.keys() == loaded.keys(), component
        assert all(torch.equal(expected[k], loaded[k]) for k in expected), component
    np.testing.assert_allclose(render(single), reference, rtol=0, atol=1e-4)
