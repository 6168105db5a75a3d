"""The SDXL engine: plans a request against the registry, then runs diffusers on verified files only.

- Models come only from the signed registry; each file is re-hashed before its first load
  (`Registry.verified_path`), and a mismatch is refused and audited.
- Hugging Face libraries are forced offline before import; every load passes local_files_only=True
  and use_safetensors=True; single-file checkpoints load only with a local config folder.
- Fooocus' features (presets, styles, aspect ratios, LoRAs, refiner, samplers) become one Plan per
  request; compatible plans are batched into one pipeline call.
- Deterministic: image i of a request uses a CPU torch.Generator seeded with seed + i, so the same
  request on the same machine gives the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airlock.offline import force_offline

force_offline()  # before torch/diffusers/transformers are imported anywhere in this process

import diffusers  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from PIL.PngImagePlugin import PngInfo  # noqa: E402

from airlock.audit import AuditLog  # noqa: E402
from airlock.errors import AirlockError  # noqa: E402
from airlock.registry import ModelEntry, ModelIntegrityError, Registry, RegistryError  # noqa: E402
from inference.engine import guard, options  # noqa: E402
from inference.engine.options import OptionError  # noqa: E402
from inference.engine.request import GenerationRequest  # noqa: E402
from inference.engine.styles import apply_styles, load_styles  # noqa: E402

IMAGE_DESCRIPTION = 0x010E  # EXIF tag carrying the generation metadata in JPEG/WebP


@dataclass(frozen=True)
class EngineSettings:
    default_base_model: str = "sd_xl_base_1.0"
    styles_dirs: tuple[Path, ...] = ()  # empty: Airlock's built-in styles
    min_side: int = 64
    max_side: int = 2048
    device: str = "cpu"
    dtype: str = "float32"  # bfloat16/float16 on GPUs
    single_file_config: Path | None = None  # local diffusers config folder for single-file checkpoints
    optimize: bool = False  # channels_last + fused QKV projections (GPU speed-ups; same math)
    compile: bool = False  # torch.compile the UNet (slow first call, faster after)
    egress_guard: bool = True  # refuse in-process connections outside the allowlist (see guard.py)
    egress_allowed_cidrs: tuple[str, ...] = ()
    egress_allowed_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """Everything that decides the pixels of one request."""

    request: GenerationRequest
    tenant: str | None
    base: ModelEntry
    refiner: ModelEntry | None
    loras: tuple[tuple[ModelEntry, float], ...]
    width: int
    height: int
    steps: int
    guidance_scale: float
    sampler: str
    scheduler: str
    scheduler_class: str
    scheduler_config: tuple[tuple[str, object], ...]
    prompt: str
    negative_prompt: str
    seeds: tuple[int, ...]
    # What the image's metadata and records show instead of the prompts (the sanitized text when the
    # model got the original): None shows the prompts themselves.
    recorded: tuple[str, str] | None = None

    @property
    def batch_key(self) -> tuple:
        """Plans with equal keys can share one pipeline call."""
        return (
            self.base.checksum,
            self.refiner.checksum if self.refiner else None,
            tuple((e.checksum, w) for e, w in self.loras),
            self.width,
            self.height,
            self.steps,
            self.guidance_scale,
            self.scheduler_class,
            self.scheduler_config,
            self.request.refiner_switch,
        )

    def metadata(self, seed: int) -> dict:
        entry = lambda e: {"name": e.name, "version": e.version, "checksum": e.checksum}  # noqa: E731
        prompt, negative = self.recorded or (self.prompt, self.negative_prompt)
        return {
            "prompt": prompt,
            "negative_prompt": negative,
            "styles": self.request.styles,
            "performance": self.request.performance,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "sampler": self.sampler,
            "scheduler": self.scheduler,
            "seed": seed,
            "base_model": entry(self.base),
            "refiner": entry(self.refiner) if self.refiner else None,
            "refiner_switch": self.request.refiner_switch if self.refiner else None,
            "loras": [{**entry(e), "weight": w} for e, w in self.loras],
        }


@dataclass
class GeneratedImage:
    data: bytes
    format: str
    seed: int
    metadata: dict
    provenance: dict | None = None  # the signed record embedded in data (the service signs it)


@dataclass
class _Loaded:
    pipe: object
    adapters: dict[str, str] = field(default_factory=dict)  # checksum -> adapter name


class Engine:
    def __init__(self, registry: Registry, audit: AuditLog, settings: EngineSettings | None = None):
        self.registry = registry
        self.audit = audit
        self.settings = settings or EngineSettings()
        self.styles = load_styles(list(self.settings.styles_dirs) or None)
        self._pipelines: dict[str, _Loaded] = {}
        self._lock = threading.Lock()  # one pipeline call at a time: diffusers pipelines are not thread-safe
        self.dtype = getattr(torch, self.settings.dtype)
        if self.settings.egress_guard:
            guard.install(
                guard.EgressPolicy(
                    list(self.settings.egress_allowed_cidrs),
                    list(self.settings.egress_allowed_domains),
                    on_block=self._egress_blocked,
                )
            )

    def _egress_blocked(self, detail: dict) -> None:
        # submit, not append: this runs inside the audit hook of whatever thread tried to connect.
        # The connection is refused whether or not the record can be queued.
        with contextlib.suppress(AirlockError):
            self.audit.submit(
                "system_events", "egress.blocked", outcome="failure", component="engine", **detail
            )

    def loaded_models(self) -> int:
        return len(self._pipelines)

    def warm(self) -> None:
        """Load (and verify) the default base model now, so the first request does not pay for it."""
        with self._lock:
            self._pipeline(self.registry.get(self.settings.default_base_model, kind="base"))

    # ------------------------------------------------------------------ planning

    def plan(
        self, request: GenerationRequest, tenant: str | None, recorded: tuple[str, str] | None = None
    ) -> Plan:
        """recorded: the (prompt, negative prompt) to show in metadata instead of the request's; the
        styles wrap them the same way."""
        preset = options.preset(request.performance)
        sampler = request.sampler or preset.sampler
        scheduler = request.scheduler or preset.scheduler
        scheduler_class, scheduler_config, _ = options.scheduler_spec(sampler, scheduler)
        if request.width is not None or request.height is not None:
            if request.width is None or request.height is None or request.aspect_ratio:
                raise OptionError("give either aspect_ratio or both width and height")
            width, height = request.width, request.height
        else:
            width, height = options.parse_aspect_ratio(request.aspect_ratio or options.DEFAULT_ASPECT_RATIO)
        options.check_size(width, height, self.settings.min_side, self.settings.max_side)
        base = self.registry.get(
            request.base_model or self.settings.default_base_model, tenant=tenant, kind="base"
        )
        refiner = None
        if request.refiner and request.refiner_switch < 1.0:
            refiner = self.registry.get(request.refiner, tenant=tenant, kind="refiner")
        loras = [(self.registry.get(c.name, tenant=tenant, kind="lora"), c.weight) for c in request.loras]
        if preset.lora:
            try:
                loras.append((self.registry.get(preset.lora, tenant=tenant, kind="lora"), preset.lora_weight))
            except RegistryError as exc:
                raise OptionError(
                    f"performance {preset.name} needs the LoRA {preset.lora!r}, which is not in the "
                    f"registry: import it with `airlock models import ... --name {preset.lora} "
                    "--kind lora`"
                ) from exc
        prompt, negative = apply_styles(request.prompt, request.negative_prompt, request.styles, self.styles)
        seed = request.seed if request.seed >= 0 else secrets.randbelow(2**63 - request.image_number)
        if seed + request.image_number > 2**63:
            raise OptionError("seed + image_number must stay below 2**63")
        return Plan(
            request=request,
            tenant=tenant,
            base=base,
            refiner=refiner,
            loras=tuple(loras),
            width=width,
            height=height,
            steps=preset.steps,
            guidance_scale=preset.guidance_scale
            if preset.guidance_scale is not None
            else request.guidance_scale,
            sampler=sampler,
            scheduler=scheduler,
            scheduler_class=scheduler_class,
            scheduler_config=tuple(sorted(scheduler_config.items())),
            prompt=prompt,
            negative_prompt=negative,
            seeds=tuple(seed + i for i in range(request.image_number)),
            recorded=apply_styles(*recorded, request.styles, self.styles) if recorded else None,
        )

    # ------------------------------------------------------------------ loading

    def _verified(self, entry: ModelEntry) -> Path:
        try:
            return self.registry.verified_path(entry)
        except ModelIntegrityError as exc:
            self.audit.append(
                "model_changes",
                "model.load_refused",
                outcome="failure",
                actor="engine",
                action="load_refused",
                reason=str(exc),
                model={"name": entry.name, "version": entry.version, "checksum": entry.checksum},
            )
            raise

    def _pipeline(self, entry: ModelEntry) -> _Loaded:
        loaded = self._pipelines.get(entry.checksum)
        if loaded is not None:
            return loaded
        path = self._verified(entry)
        cls = (
            diffusers.StableDiffusionXLImg2ImgPipeline
            if entry.kind == "refiner"
            else (diffusers.StableDiffusionXLPipeline)
        )
        common = {"dtype": self.dtype, "local_files_only": True}
        if path.is_dir():
            pipe = cls.from_pretrained(path, use_safetensors=True, **common)
        else:
            if self.settings.single_file_config is None:
                raise OptionError(
                    f"{entry.name} is a single-file checkpoint; set the engine's single_file_config "
                    "to a local diffusers config folder (never looked up online)"
                )
            pipe = cls.from_single_file(str(path), config=str(self.settings.single_file_config), **common)
        pipe.set_progress_bar_config(disable=True)
        pipe = pipe.to(self.settings.device)
        if self.settings.optimize:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
            pipe.fuse_qkv_projections()
        if self.settings.compile:
            pipe.unet = torch.compile(pipe.unet, mode="max-autotune", fullgraph=True)
        loaded = self._pipelines[entry.checksum] = _Loaded(pipe)
        return loaded

    def _activate_loras(self, loaded: _Loaded, loras: tuple[tuple[ModelEntry, float], ...]) -> None:
        pipe = loaded.pipe
        for entry, _weight in loras:
            if entry.checksum not in loaded.adapters:
                path = self._verified(entry)
                name = re.sub(r"\W", "_", f"{entry.name}_{entry.version}")
                pipe.load_lora_weights(
                    str(path.parent), weight_name=path.name, adapter_name=name, local_files_only=True
                )
                loaded.adapters[entry.checksum] = name
        if loras:
            pipe.enable_lora()
            pipe.set_adapters(
                [loaded.adapters[e.checksum] for e, _ in loras], adapter_weights=[w for _, w in loras]
            )
        elif loaded.adapters:
            pipe.disable_lora()

    def _set_scheduler(self, pipe, plan: Plan) -> None:
        cls = getattr(diffusers, plan.scheduler_class)
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **dict(plan.scheduler_config))

    # ------------------------------------------------------------------ generation

    def generate(self, request: GenerationRequest, tenant: str | None = None) -> list[GeneratedImage]:
        return self.generate_many([(request, tenant)])[0]

    def generate_many(self, jobs: list[tuple[GenerationRequest, str | None]]) -> list[list[GeneratedImage]]:
        """Plan every job, then run each group of compatible plans as one pipeline call."""
        return self.run_plans([self.plan(request, tenant) for request, tenant in jobs])

    def run_plans(
        self, plans: list[Plan], progress: Callable[[int, int], None] | None = None
    ) -> list[list[GeneratedImage]]:
        """Run plans made by `plan` (the queue plans at submit time, to refuse bad requests early).
        progress(step, steps) is called after each denoising step of a pipeline call."""
        groups: dict[tuple, list[int]] = {}
        for index, plan in enumerate(plans):
            groups.setdefault(plan.batch_key, []).append(index)
        results: list[list[GeneratedImage]] = [[] for _ in plans]
        for indices in groups.values():
            images = self._run([plans[i] for i in indices], progress)
            for i in indices:
                results[i], images = images[: len(plans[i].seeds)], images[len(plans[i].seeds) :]
        return results

    def _run(
        self, plans: list[Plan], progress: Callable[[int, int], None] | None = None
    ) -> list[GeneratedImage]:
        first = plans[0]
        done = 0

        def on_step(_pipe, _step, _timestep, tensors: dict) -> dict:
            # Counted across base and refiner: together they run the plan's steps.
            nonlocal done
            done += 1
            progress(min(done, first.steps), first.steps)
            return tensors  # diffusers takes the (unchanged) tensors back

        step_callback = {"callback_on_step_end": on_step} if progress else {}

        prompts = [p.prompt for p in plans for _ in p.seeds]
        negatives = [p.negative_prompt for p in plans for _ in p.seeds]
        seeds = [s for p in plans for s in p.seeds]
        switch = first.request.refiner_switch if first.refiner else None
        with self._lock, torch.inference_mode():
            base = self._pipeline(first.base)
            self._activate_loras(base, first.loras)
            self._set_scheduler(base.pipe, first)
            call = {
                "prompt": prompts,
                "negative_prompt": negatives,
                "width": first.width,
                "height": first.height,
                "num_inference_steps": first.steps,
                "guidance_scale": first.guidance_scale,
                "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds],
                **step_callback,
            }
            if switch is None:
                pil = base.pipe(**call).images
            else:
                latents = base.pipe(**call, denoising_end=switch, output_type="latent").images
                refiner = self._pipeline(first.refiner)
                self._set_scheduler(refiner.pipe, first)
                pil = refiner.pipe(
                    prompt=prompts,
                    negative_prompt=negatives,
                    image=latents,
                    num_inference_steps=first.steps,
                    guidance_scale=first.guidance_scale,
                    denoising_start=switch,
                    generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                    **step_callback,
                ).images
        out, position = [], 0
        for plan in plans:
            for seed in plan.seeds:
                metadata = plan.metadata(seed)
                out.append(
                    GeneratedImage(
                        encode(pil[position], plan.request.output_format, metadata),
                        plan.request.output_format,
                        seed,
                        metadata,
                    )
                )
                position += 1
        return out


def encode(image: Image.Image, fmt: str, metadata: dict) -> bytes:
    """PNG with a tEXt chunk, or JPEG/WebP with an EXIF ImageDescription, holding the metadata JSON."""
    text = json.dumps({"airlock": metadata}, sort_keys=True, separators=(",", ":"))
    buffer = io.BytesIO()
    if fmt == "png":
        info = PngInfo()
        info.add_text("parameters", text)
        image.save(buffer, format="PNG", pnginfo=info)
    else:
        exif = Image.Exif()
        exif[IMAGE_DESCRIPTION] = text
        image.save(buffer, format="JPEG" if fmt == "jpeg" else "WEBP", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def read_metadata(data: bytes) -> dict:
    """The generation metadata embedded by encode()."""
    image = Image.open(io.BytesIO(data))
    text = image.info.get("parameters") if image.format == "PNG" else image.getexif().get(IMAGE_DESCRIPTION)
    if not text:
        raise OptionError("no Airlock generation metadata in this image")
    return json.loads(text)["airlock"]
