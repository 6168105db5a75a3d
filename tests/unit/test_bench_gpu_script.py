"""bench/gpu_sdxl.py must run unchanged on a GPU host; CI has none, so its code paths run here small."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import diffusers
import torch

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_sdxl", ROOT / "bench" / "gpu_sdxl.py")
gpu_sdxl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_sdxl)


def test_the_full_size_builder_makes_a_loadable_sdxl_at_a_small_size(tmp_path):
    small = {
        "unet": {
            **gpu_sdxl.SDXL_UNET,
            "sample_size": 8,
            "block_out_channels": (32, 64),
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "attention_head_dim": (2, 4),
            "transformer_layers_per_block": (1, 1),
            "cross_attention_dim": 96,
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 64,
        },
        "vae": {**gpu_sdxl.SDXL_VAE, "block_out_channels": (32, 32, 64, 64), "sample_size": 64},
        "clip_l": {
            **gpu_sdxl.CLIP_L,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "projection_dim": 32,
        },
        "clip_g": {
            **gpu_sdxl.CLIP_BIGG,
            "hidden_size": 64,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "projection_dim": 64,
        },
    }
    folder = gpu_sdxl.build_full_size(tmp_path, "cpu", torch.float32, **small)
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(
        folder, use_safetensors=True, local_files_only=True
    )
    image = pipe(prompt="x", width=64, height=64, num_inference_steps=1, output_type="np").images[0]
    assert image.shape == (64, 64, 3)
    assert not any(folder.rglob("*.bin"))


def test_the_script_runs_end_to_end_in_smoke_mode(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_sdxl.py"),
            "--smoke",
            "--images",
            "1",
            "--append",
            str(tmp_path / "perf.md"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bare / engine:" in result.stdout
    assert (tmp_path / "perf.md").read_text().count("| 64x64, 30 steps, CFG 7, torch.float32 |") == 1
