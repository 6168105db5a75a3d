"""Translating Fooocus-API and AUTOMATIC1111 request bodies into engine requests.

Field names are theirs, so their clients work unchanged; what we do not implement is refused by
name (a silently ignored option would make a different image than the client asked for)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from inference.engine.options import OptionError
from inference.engine.request import MAX_SEED, GenerationRequest, LoraChoice

FOOOCUS_DEFAULT_SHARPNESS = 2.0
SUPPORTED_ADVANCED = {"sampler_name", "scheduler_name"}


class FooocusLora(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    model_name: str
    weight: float = Field(1.0, ge=-2.0, le=2.0)


class FooocusRequest(BaseModel):
    """Fooocus-API's CommonRequest (text-to-image), with its defaults."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = ""
    negative_prompt: str = ""
    style_selections: list[str] = Field(default_factory=list)
    performance_selection: str = "Speed"
    aspect_ratios_selection: str = "1152*896"
    image_number: int = Field(1, ge=1, le=32)
    image_seed: int = Field(-1, ge=-1, le=MAX_SEED)
    sharpness: float = FOOOCUS_DEFAULT_SHARPNESS
    guidance_scale: float = Field(4.0, ge=1.0, le=30.0)
    base_model_name: str | None = None
    refiner_model_name: str = "None"
    refiner_switch: float = Field(0.5, ge=0.1, le=1.0)
    loras: list[FooocusLora] = Field(default_factory=list, max_length=5)
    advanced_params: dict[str, Any] = Field(default_factory=dict)
    require_base64: bool = False
    async_process: bool = False
    webhook_url: str | None = None
    save_extension: Literal["png", "jpg", "jpeg", "webp"] = "png"

    def to_engine(self) -> GenerationRequest:
        if self.sharpness != FOOOCUS_DEFAULT_SHARPNESS:
            raise OptionError(
                f"sharpness: only the default {FOOOCUS_DEFAULT_SHARPNESS} is supported "
                "(Fooocus' sharpness filter is not implemented)"
            )
        unsupported = sorted(set(self.advanced_params) - SUPPORTED_ADVANCED)
        if unsupported:
            raise OptionError(
                f"advanced_params: {', '.join(unsupported)} not supported; "
                f"supported: {', '.join(sorted(SUPPORTED_ADVANCED))}"
            )
        return GenerationRequest(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            styles=self.style_selections,
            performance=self.performance_selection,
            aspect_ratio=self.aspect_ratios_selection,
            image_number=self.image_number,
            seed=self.image_seed,
            guidance_scale=self.guidance_scale,
            base_model=_model_name(self.base_model_name),
            refiner=None if self.refiner_model_name in ("None", "") else _model_name(self.refiner_model_name),
            refiner_switch=self.refiner_switch,
            loras=[
                LoraChoice(name=_model_name(lora.model_name), weight=lora.weight)
                for lora in self.loras
                if lora.enabled and lora.model_name not in ("None", "")
            ],
            sampler=self.advanced_params.get("sampler_name"),
            scheduler=self.advanced_params.get("scheduler_name"),
            output_format="jpeg" if self.save_extension == "jpg" else self.save_extension,
        )


class A1111Request(BaseModel):
    """AUTOMATIC1111's /sdapi/v1/txt2img body (the subset that maps onto the engine)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = Field(default_factory=list)
    seed: int = Field(-1, ge=-1, le=MAX_SEED)
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = Field(1, ge=1, le=32)
    n_iter: int = Field(1, ge=1, le=32)
    steps: int | None = None
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0)
    width: int = 1024
    height: int = 1024
    refiner_checkpoint: str | None = None
    refiner_switch_at: float = Field(0.8, ge=0.1, le=1.0)
    override_settings: dict[str, Any] = Field(default_factory=dict)
    send_images: bool = True
    save_images: bool = False

    def to_engine(self) -> GenerationRequest:
        unsupported = sorted(set(self.override_settings) - {"sd_model_checkpoint"})
        if unsupported:
            raise OptionError(
                f"override_settings: {', '.join(unsupported)} not supported; supported: sd_model_checkpoint"
            )
        performance = {None: "Speed", 30: "Speed", 60: "Quality"}.get(self.steps)
        if performance is None:
            raise OptionError(f"steps: {self.steps} is not a preset; use 30 (Speed) or 60 (Quality)")
        if self.batch_size * self.n_iter > 32:
            raise OptionError("batch_size * n_iter: at most 32 images per request")
        return GenerationRequest(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            styles=self.styles,
            performance=performance,
            width=self.width,
            height=self.height,
            image_number=self.batch_size * self.n_iter,
            seed=self.seed,
            guidance_scale=self.cfg_scale,
            base_model=_model_name(self.override_settings.get("sd_model_checkpoint")),
            refiner=_model_name(self.refiner_checkpoint),
            refiner_switch=self.refiner_switch_at,
            sampler=A1111_SAMPLERS.get(self.sampler_name, self.sampler_name) if self.sampler_name else None,
            scheduler=self.scheduler.lower() if self.scheduler else None,
        )


# A1111 sampler names -> the Fooocus names the engine knows.
A1111_SAMPLERS = {
    "Euler": "euler",
    "Euler a": "euler_ancestral",
    "Heun": "heun",
    "DPM++ 2M": "dpmpp_2m",
    "DPM++ 2M SDE": "dpmpp_2m_sde_gpu",
    "DPM++ SDE": "dpmpp_sde_gpu",
    "DDIM": "ddim",
    "UniPC": "uni_pc",
    "LCM": "lcm",
}


def _model_name(name: str | None) -> str | None:
    """Clients send file names (`sd_xl_base_1.0.safetensors`); the registry knows model names."""
    if not name:
        return None
    return name.removesuffix(".safetensors")
