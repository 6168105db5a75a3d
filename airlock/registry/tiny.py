"""A tiny, random-weight SDXL family, built from configs alone, for tests and the demo.

The real SDXL weights are ~7 GB and come from a model hub this project never reaches. The engine still
has to be exercised end to end: a diffusers pipeline folder, a refiner that takes the base's latents,
LoRAs (a style LoRA and stand-ins for the LCM / Lightning / Hyper-SD performance LoRAs), and a
single-file checkpoint in the original Stability key layout. `make_tiny` writes all of them (~40 MB,
about a second once torch is imported) with no download. The architecture is real SDXL: two CLIP text
encoders, text_time conditioning (plus aesthetic scores on the refiner), a VAE that downsamples 8x,
Euler with SDXL's schedule; only every width is tiny and the weights are noise. The images are noise
too: what the fixtures prove is that every code path loads, runs and is wired correctly.

The same command gives the same bytes: every module is initialised from a seed derived from `seed` and
its name, configs are written with sorted keys and no paths, tokenizers are written by hand, and weights
only ever go to .safetensors (never pickle). Fixtures can therefore be hashed, pinned and signed like a
real model. Another seed gives other weights.

    make_tiny(Path("models/tiny"), seed=0)  # -> {"base": ..., "refiner": ..., "style_lora": ..., ...}

Layout written under `out`:
    base/                         StableDiffusionXLPipeline folder (diffusers layout)
    refiner/                      StableDiffusionXLImg2ImgPipeline folder (text_encoder_2 only, aesthetics)
    loras/style_lora.safetensors  generic style LoRA for the base UNet (diffusers/peft key format)
    loras/lcm_lora.safetensors, loras/lightning_lora.safetensors, loras/hypersd_lora.safetensors
    single/tiny_sdxl.safetensors  the base model as one file in the original SDXL (sgm) key layout
    single/config/                the diffusers configs `from_single_file(..., config=...)` needs offline
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from airlock.offline import force_offline

TIME_EMBED_DIM = 8  # addition_time_embed_dim: 6 time ids for the base, 5 for the refiner (aesthetics)
TEXT_1_HIDDEN = 32  # CLIP ViT-L stand-in ("text_encoder")
TEXT_2_HIDDEN = 64  # OpenCLIP bigG stand-in ("text_encoder_2"); must differ from TEXT_1_HIDDEN, see _sgm_*
TEXT_2_LAYERS = 10  # the key naming resblocks.9 is how diffusers recognises an SDXL base single file
PROJECTION_DIM = 32  # pooled text embedding of text_encoder_2
LORA_RANK = 4
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# name -> file; the first is a generic style LoRA, the others stand in for the performance LoRAs
LORAS = {
    "style_lora": "style_lora.safetensors",
    "lcm_lora": "lcm_lora.safetensors",
    "lightning_lora": "lightning_lora.safetensors",
    "hypersd_lora": "hypersd_lora.safetensors",
}
SINGLE_FILE = "tiny_sdxl.safetensors"

_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
_PAD_2 = "!"  # SDXL's second tokenizer pads with "!" (id 0), the first with <|endoftext|>
# A handful of merges so that BPE actually merges something; every result is also in the vocab.
_MERGES = [
    ("t", "h"),
    ("th", "e</w>"),
    ("a", "n"),
    ("an", "d</w>"),
    ("o", "n</w>"),
    ("c", "a"),
    ("ca", "t</w>"),
    ("d", "o"),
    ("do", "g</w>"),
    ("a", "r"),
    ("ar", "t</w>"),
]


def make_tiny(out: Path, seed: int = 0) -> dict[str, Path]:
    """Build the tiny SDXL family into `out` (which must not exist, or be empty) and return its paths.

    Everything is written into a temporary sibling directory first and renamed to `out` at the end, so
    `out` either holds a complete set or does not appear at all.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"refusing to write the tiny model into {out}: it exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    work.mkdir()  # plain mkdir: the umask decides the mode, as for any directory the caller makes
    try:
        _build(work, seed)
        os.rename(work, out)  # replaces an empty `out` atomically; fails if someone filled it meanwhile
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    paths = {
        "base": out / "base",
        "refiner": out / "refiner",
        **{name: out / "loras" / file for name, file in LORAS.items()},
        "single": out / "single" / SINGLE_FILE,
        "single_config": out / "single" / "config",
    }
    return paths


# ---------------------------------------------------------------------------------------------- build


def _seed_for(seed: int, name: str) -> int:
    """A stable per-module seed: independent modules, and no coupling to construction order."""
    return int.from_bytes(hashlib.sha256(f"airlock-tiny:{seed}:{name}".encode()).digest()[:8], "big") >> 1


def _build(root: Path, seed: int) -> None:
    force_offline()  # before the first import of torch/diffusers/transformers
    import torch

    with torch.random.fork_rng(devices=[]):  # the caller's global RNG state is left as it was
        _build_seeded(root, seed)


def _build_seeded(root: Path, seed: int) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    def seeded(name: str, build):
        torch.manual_seed(_seed_for(seed, name))
        with torch.no_grad():
            module = build()
        return module.eval()

    def unet(name: str, cross_attention_dim: int, n_time_ids: int):
        return seeded(
            name,
            lambda: UNet2DConditionModel(
                sample_size=8,  # x vae_scale_factor 8 -> the pipelines' default size is 64x64
                in_channels=4,
                out_channels=4,
                layers_per_block=2,
                block_out_channels=(32, 64),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                attention_head_dim=(2, 4),
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=TIME_EMBED_DIM,
                transformer_layers_per_block=(1, 2),
                projection_class_embeddings_input_dim=n_time_ids * TIME_EMBED_DIM + PROJECTION_DIM,
                cross_attention_dim=cross_attention_dim,
                norm_num_groups=32,
            ),
        )

    tok_dir = root / "_tokenizer_src"
    vocab = write_tokenizer(tok_dir, pad_token=_EOS)
    bos, eos = vocab[_BOS], vocab[_EOS]
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    tokenizer_2 = CLIPTokenizer.from_pretrained(str(tok_dir), pad_token=_PAD_2)
    shutil.rmtree(tok_dir)

    def text_config(hidden: int, layers: int, pad: int, **extra) -> CLIPTextConfig:
        return CLIPTextConfig(
            hidden_size=hidden,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=layers,
            vocab_size=1000,
            max_position_embeddings=77,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=pad,
            **extra,
        )

    text_encoder = seeded(
        "text_encoder", lambda: CLIPTextModel(text_config(TEXT_1_HIDDEN, 5, eos, hidden_act="quick_gelu"))
    )
    text_encoder_2 = seeded(
        "text_encoder_2",
        lambda: CLIPTextModelWithProjection(
            text_config(
                TEXT_2_HIDDEN, TEXT_2_LAYERS, vocab[_PAD_2], hidden_act="gelu", projection_dim=PROJECTION_DIM
            )
        ),
    )
    vae = seeded(
        "vae",
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(32, 32, 64, 64),  # 4 levels: downsamples 8x like SDXL's VAE
            latent_channels=4,
            norm_num_groups=32,
            sample_size=64,
            scaling_factor=0.13025,  # SDXL's
        ),
    )
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        interpolation_type="linear",
        steps_offset=1,
        timestep_spacing="leading",
        use_karras_sigmas=False,
    )
    base_unet = unet("unet", TEXT_1_HIDDEN + TEXT_2_HIDDEN, 6)
    base = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=base_unet,
        scheduler=scheduler,
    )
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=vae,
        text_encoder=None,
        text_encoder_2=text_encoder_2,
        tokenizer=None,
        tokenizer_2=tokenizer_2,
        unet=unet("refiner_unet", TEXT_2_HIDDEN, 5),
        scheduler=scheduler,
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )

    for name, pipe in (("base", base), ("refiner", refiner)):
        pipe.save_pretrained(root / name, safe_serialization=True)
        for tok in ("tokenizer", "tokenizer_2"):
            if (root / name / tok).is_dir():  # replace what transformers wrote with our own exact files
                shutil.rmtree(root / name / tok)
                write_tokenizer(root / name / tok, pad_token=_EOS if tok == "tokenizer" else _PAD_2)

    _write_loras(root / "loras", base_unet, seed)
    _write_single_file(root / "single", root / "base", base)
    _normalise_tree(root)


def _write_loras(folder: Path, base_unet: Any, seed: int) -> None:
    """Rank-4 LoRAs on every attention projection of the base UNet, in diffusers' saved-LoRA format.

    The keys are what peft's get_peft_model_state_dict gives for LoraConfig(r=4, target_modules=
    LORA_TARGETS) ("<module>.lora_A.weight" / ".lora_B.weight", saved under "unet."), but drawn here
    directly: a quarter of the time of wrapping four UNet copies with peft, and the bytes depend only on
    (seed, name). |BA| is made comparable to W, so weight 1.0 visibly moves a 64x64 image.
    """
    import torch
    from diffusers import StableDiffusionXLPipeline

    targets = sorted(
        (
            (name, module)
            for name, module in base_unet.named_modules()
            if isinstance(module, torch.nn.Linear) and any(name.endswith("." + t) for t in LORA_TARGETS)
        ),
        key=lambda item: item[0],
    )
    folder.mkdir(parents=True)
    for lora, file in LORAS.items():
        gen = torch.Generator().manual_seed(_seed_for(seed, lora))
        state = {}
        for name, module in targets:
            a = torch.randn(LORA_RANK, module.in_features, generator=gen) / module.in_features**0.5
            b = torch.randn(module.out_features, LORA_RANK, generator=gen) / LORA_RANK**0.5
            state[f"{name}.lora_A.weight"] = a.contiguous()
            state[f"{name}.lora_B.weight"] = b.contiguous()
        StableDiffusionXLPipeline.save_lora_weights(
            str(folder), unet_lora_layers=state, weight_name=file, safe_serialization=True
        )


# ------------------------------------------------------------------------------------------ tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table, which CLIP's byte-level BPE also uses."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def write_tokenizer(folder: Path, pad_token: str) -> dict[str, int]:
    """A CLIP tokenizer (vocab.json, merges.txt, configs) small enough for a vocab_size of 1000."""
    symbols = list(_bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in _MERGES), _BOS, _EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens) or len(vocab) >= 1000:
        raise AssertionError("tiny tokenizer vocabulary is inconsistent")
    folder.mkdir(parents=True)
    _write_json(folder / "vocab.json", vocab, sort_keys=False)  # id order, like CLIP's own vocab.json
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in _MERGES), encoding="utf-8"
    )
    specials = {"bos_token": _BOS, "eos_token": _EOS, "pad_token": pad_token, "unk_token": _EOS}
    _write_json(folder / "special_tokens_map.json", specials)
    _write_json(
        folder / "tokenizer_config.json",
        {
            **specials,
            "clean_up_tokenization_spaces": True,
            "model_max_length": 77,
            "tokenizer_class": "CLIPTokenizer",
        },
    )
    return vocab


# ---------------------------------------------------------------------------------------- single file


def _write_single_file(folder: Path, base_dir: Path, base: Any) -> None:
    """The base model as one .safetensors in the original SDXL (sgm) layout, plus its diffusers configs.

    The key names are the inverse of diffusers' own single-file conversion (single_file_utils):
    model.diffusion_model.* (UNet), first_stage_model.* (VAE), conditioner.embedders.0.transformer.*
    (CLIP ViT-L, HF layout) and conditioner.embedders.1.model.* (OpenCLIP layout, fused qkv). diffusers
    tells the two text encoders apart by the width of their position embedding, so they must differ.
    """
    from safetensors.torch import save_file

    state: dict[str, Any] = {}
    state.update(_prefixed("model.diffusion_model.", _sgm_unet(base.unet.state_dict(), base.unet.config)))
    state.update(_prefixed("first_stage_model.", _sgm_vae(base.vae.state_dict(), base.vae.config)))
    state.update(_prefixed("conditioner.embedders.0.transformer.", _sgm_clip(base.text_encoder.state_dict())))
    state.update(
        _prefixed("conditioner.embedders.1.model.", _sgm_open_clip(base.text_encoder_2.state_dict()))
    )
    folder.mkdir(parents=True)
    state = {k: v.detach().clone().contiguous() for k, v in sorted(state.items())}
    save_file(state, str(folder / SINGLE_FILE), metadata={"format": "pt"})
    # The configs (no weights) that make from_single_file work offline: it never guesses a hub repo.
    for src in sorted(base_dir.rglob("*")):
        if src.is_file() and src.suffix in {".json", ".txt"}:
            dst = folder / "config" / src.relative_to(base_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def _prefixed(prefix: str, state: dict[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in state.items()}


_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "time_emb_proj.": "emb_layers.1.",
    "conv_shortcut.": "skip_connection.",
}


def _rename_head(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest.startswith(old):
            return new + rest[len(old) :]
    return rest


def _sgm_unet(state: dict[str, Any], config: Any) -> dict[str, Any]:
    per_block = config.layers_per_block + 1  # sgm counts the down/upsampler (or an extra resnet) as a layer
    with_attention = {i for i, t in enumerate(config.up_block_types) if "CrossAttn" in t}
    out: dict[str, Any] = {}
    for key, value in state.items():
        if (head := next((h for h in _UNET_TOP if key.startswith(h)), None)) is not None:
            new = _UNET_TOP[head] + key[len(head) :]
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"input_blocks.{1 + b * per_block + j}.0." + _rename_head(rest, _UNET_RESNET)
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            new = f"input_blocks.{1 + int(m[1]) * per_block + int(m[2])}.1.{m[3]}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{(int(m[1]) + 1) * per_block}.0.op.{m[2]}"
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}." + _rename_head(m[2], _UNET_RESNET)
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"output_blocks.{b * per_block + j}.0." + _rename_head(rest, _UNET_RESNET)
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            new = f"output_blocks.{int(m[1]) * per_block + int(m[2])}.1.{m[3]}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            b = int(m[1])
            new = (
                f"output_blocks.{b * per_block + per_block - 1}.{2 if b in with_attention else 1}.conv.{m[2]}"
            )
        else:
            raise ValueError(f"no sgm name for UNet weight {key!r}")
        out[new] = value
    return out


_VAE_ATTENTION = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}


def _sgm_vae(state: dict[str, Any], config: Any) -> dict[str, Any]:
    n_up = len(config.up_block_types)
    out: dict[str, Any] = {}
    for key, value in state.items():
        if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
            new = f"{m[1]}.norm_out.{m[2]}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}." + m[3].replace("conv_shortcut.", "nin_shortcut.")
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            rest = m[3].replace("conv_shortcut.", "nin_shortcut.")
            new = f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{rest}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            new = f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            rest = m[3].replace("conv_shortcut.", "nin_shortcut.")
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{rest}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            new = f"{m[1]}.mid.attn_1." + _rename_head(m[2], _VAE_ATTENTION)
            if value.ndim == 2:  # the original stores these 1x1 projections as convolutions
                value = value.reshape(*value.shape, 1, 1)
        elif re.fullmatch(r"(encoder|decoder)\.conv_(in|out)\..+|(post_)?quant_conv\..+", key):
            new = key
        else:
            raise ValueError(f"no sgm name for VAE weight {key!r}")
        out[new] = value
    return out


def _sgm_clip(state: dict[str, Any]) -> dict[str, Any]:
    """CLIP ViT-L stays in the Hugging Face layout in SDXL files, under text_model.*."""
    return {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in state.items()}


_OPEN_CLIP_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
    "self_attn.out_proj.": "attn.out_proj.",
}


def _sgm_open_clip(state: dict[str, Any]) -> dict[str, Any]:
    """OpenCLIP layout: fused in_proj for q/k/v, and text_projection stored transposed."""
    import torch

    out: dict[str, Any] = {}
    qkv: dict[tuple[int, str], dict[str, Any]] = {}
    for key, value in state.items():
        if key in _OPEN_CLIP_TOP:
            out[_OPEN_CLIP_TOP[key]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif m := re.fullmatch(
            r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key
        ):
            qkv.setdefault((int(m[1]), m[3]), {})[m[2]] = value
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key):
            out[f"transformer.resblocks.{m[1]}." + _rename_head(m[2], _OPEN_CLIP_LAYER)] = value
        else:
            raise ValueError(f"no OpenCLIP name for text encoder weight {key!r}")
    for (layer, kind), parts in qkv.items():
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts[c] for c in "qkv"])
    return out


# ------------------------------------------------------------------------------------------- bytes


def _write_json(path: Path, data: Any, sort_keys: bool = True) -> None:
    path.write_text(
        json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def _normalise_tree(root: Path) -> None:
    """Make config files independent of where and when they were written.

    diffusers and transformers record `_name_or_path` (an absolute, here temporary, path) in some
    configs; drop any such field, and rewrite every JSON file with sorted keys.
    """
    for path in sorted(root.rglob("*.json")):
        if path.name == "vocab.json":
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if not (isinstance(v, str) and str(root) in v)}
            data.pop("_name_or_path", None)
        _write_json(path, data)
