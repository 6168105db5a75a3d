"""Full-size SDXL on CUDA with random weights: bare diffusers defaults vs the Airlock engine.

Random-initialised weights cost exactly the compute of real ones, so no model is downloaded: the
published SDXL base 1.0 architecture is built from its configuration, saved as a diffusers folder,
imported into a throwaway signed registry and run through `inference.engine` exactly as in
production (verified load, bf16, SDPA, channels_last, fused QKV, optional torch.compile).

    python bench/gpu_sdxl.py [--size 1024] [--images 3] [--compile] [--append docs/performance.md]
    python bench/gpu_sdxl.py --smoke    # the tiny model on CPU: every code path, meaningless numbers

Prints s/image, images/s and the ratio, and appends a row to --append. One run fits in < 8 minutes on
an H200 (the build, save and import of ~5 GB of weights take about a minute).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path

from airlock.offline import force_offline

force_offline()

import diffusers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from airlock.audit import AuditLog  # noqa: E402
from airlock.keys import init_keys, load_verifier  # noqa: E402
from airlock.registry import Registry, import_model  # noqa: E402
from airlock.registry.tiny import make_tiny, write_tokenizer  # noqa: E402
from inference.engine.engine import Engine, EngineSettings  # noqa: E402
from inference.engine.request import GenerationRequest  # noqa: E402

# SDXL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0), as published in its config files.
SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (5, 10, 20),
    "transformer_layers_per_block": (1, 2, 10),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
}
SDXL_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "sample_size": 1024,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "scaling_factor": 0.13025,
    "force_upcast": False,
}
CLIP_L = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
CLIP_BIGG = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}


def build_full_size(
    out: Path,
    device: str,
    dtype: torch.dtype,
    *,
    unet: dict = SDXL_UNET,
    vae: dict = SDXL_VAE,
    clip_l: dict = CLIP_L,
    clip_g: dict = CLIP_BIGG,
) -> Path:
    """Write a random-weight SDXL base as a diffusers folder (weights in `dtype`); the configs are
    parameters only so that a test can run this very code at a small size."""
    tok_dir = out / "tokenizer_src"
    vocab = write_tokenizer(tok_dir, pad_token="<|endoftext|>")  # noqa: S106 - a token, not a password
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(tok_dir))
    tokenizer_2 = transformers.CLIPTokenizer.from_pretrained(str(tok_dir), pad_token="!")  # noqa: S106

    def clip(config: dict, cls):
        cfg = transformers.CLIPTextConfig(
            vocab_size=49408,
            max_position_embeddings=77,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
            **config,
        )
        return cls(cfg)

    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: minutes faster than on the CPU
        pipe = diffusers.StableDiffusionXLPipeline(
            vae=diffusers.AutoencoderKL(**vae),
            text_encoder=clip(clip_l, transformers.CLIPTextModel),
            text_encoder_2=clip(clip_g, transformers.CLIPTextModelWithProjection),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=diffusers.UNet2DConditionModel(**unet),
            scheduler=diffusers.EulerDiscreteScheduler(
                beta_start=0.00085,
                beta_end=0.012,
                beta_schedule="scaled_linear",
                steps_offset=1,
                timestep_spacing="leading",
            ),
        )
    pipe.to(dtype=dtype).save_pretrained(out / "sdxl", safe_serialization=True)
    del pipe
    return out / "sdxl"


def seconds_per_image(fn, images: int, device: str) -> float:
    fn()  # warm-up: kernels, allocator, compile
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(images):
        fn()
    sync()
    return (time.perf_counter() - start) / images


def bare_seconds(model: Path, dtype, device: str, prompt: str, size: int, steps: int, images: int) -> float:
    """diffusers as it comes: from_pretrained, default attention, no memory-format or fusion changes."""
    bare = diffusers.StableDiffusionXLPipeline.from_pretrained(
        model, dtype=dtype, use_safetensors=True, local_files_only=True
    ).to(device)
    bare.set_progress_bar_config(disable=True)
    return seconds_per_image(
        lambda: bare(
            prompt=prompt,
            width=size,
            height=size,
            num_inference_steps=steps,
            guidance_scale=7.0,
            generator=torch.Generator("cpu").manual_seed(1),
        ),
        images,
        device,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=3, help="timed images per variant (after one warm-up)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the engine's UNet")
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU (tests the script itself)")
    parser.add_argument("--append", type=Path, help="append a result row to this markdown file")
    args = parser.parse_args()
    if args.smoke:
        device, dtype, size = "cpu", torch.float32, 64
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on a GPU host (or --smoke on a CPU)")
    else:
        device, dtype, size = "cuda", torch.bfloat16, args.size

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        model = make_tiny(work / "tiny")["base"] if args.smoke else build_full_size(work, device, dtype)
        signer, verifier = init_keys(work / "keys"), load_verifier(work / "keys")
        audit = AuditLog(work / "audit")
        import_model(
            work / "registry",
            model,
            name="sd_xl_base_1.0",
            version="random",
            kind="base",
            approved_by="bench",
            signer=signer,
            verifier=verifier,
            audit=audit,
            source="random init (bench/gpu_sdxl.py)",
        )
        print(f"model built, saved and imported in {time.perf_counter() - start:.0f} s", flush=True)

        prompt = "a lighthouse on a cliff at dusk, volumetric light"
        settings = EngineSettings(
            device=device,
            dtype=str(dtype).removeprefix("torch."),
            optimize=not args.smoke,
            compile=args.compile,
            egress_guard=False,
            max_side=4096,
        )
        engine = Engine(Registry(work / "registry", verifier), audit, settings)
        # Speed preset (30 steps) at CFG 7 with Euler, the folder's own scheduler: only the engine differs.
        request = GenerationRequest(
            prompt=prompt,
            width=size,
            height=size,
            seed=1,
            sampler="euler",
            scheduler="normal",
            performance="Speed",
            guidance_scale=7.0,
        )
        steps = engine.plan(request, None).steps
        bare_s = bare_seconds(model, dtype, device, prompt, size, steps, args.images)
        if device == "cuda":
            torch.cuda.empty_cache()
        engine_s = seconds_per_image(lambda: engine.generate(request), args.images, device)
        audit.close()

    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    setup = f"{size}x{size}, {steps} steps, CFG 7, {dtype}"
    label = "engine (SDPA, channels_last, fused QKV" + (", torch.compile)" if args.compile else ")")
    print(f"bare diffusers defaults: {bare_s:.3f} s/image ({1 / bare_s:.2f} images/s)")
    print(f"{label}: {engine_s:.3f} s/image ({1 / engine_s:.2f} images/s)")
    print(f"bare / engine: {bare_s / engine_s:.2f}x  ({setup}, {name})")
    if args.append:
        compiled = " (compiled)" if args.compile else ""
        row = (
            f"| {datetime.date.today()} | {name} | {setup} | {bare_s:.3f} | {engine_s:.3f}{compiled} | "
            f"{bare_s / engine_s:.2f}x | torch {torch.__version__}, diffusers {diffusers.__version__} |\n"
        )
        with open(args.append, "a") as fh:
            fh.write(row)


if __name__ == "__main__":
    main()
