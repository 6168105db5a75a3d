"""What a client may ask the engine for: Fooocus' generation parameters, validated."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer


class LoraChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    weight: float = Field(1.0, ge=-2.0, le=2.0)


class GenerationRequest(BaseModel):
    """One generation job. Defaults follow Fooocus (Speed preset, 1152*896, CFG 7, refiner switch 0.8)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field("", max_length=10_000)
    negative_prompt: str = Field("", max_length=10_000)
    styles: list[str] = Field(default_factory=list, max_length=32)
    performance: str = "Speed"
    aspect_ratio: str | None = None  # one of Fooocus' 26 ratios; or width and height
    width: int | None = None
    height: int | None = None
    image_number: int = Field(1, ge=1, le=32)
    seed: int = Field(-1, ge=-1, le=MAX_SEED)  # -1: random; image i uses seed + i
    guidance_scale: float = Field(7.0, ge=1.0, le=30.0)
    base_model: str | None = None  # registry name; the engine's default when None
    loras: list[LoraChoice] = Field(default_factory=list, max_length=5)
    refiner: str | None = None
    refiner_switch: float = Field(0.8, ge=0.1, le=1.0)
    sampler: str | None = None  # override of the preset's sampler
    scheduler: str | None = None
    output_format: Literal["png", "jpeg", "webp"] = "png"
