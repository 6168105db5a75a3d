"""Fooocus' generation options as data: performance presets, samplers/schedulers, aspect ratios.

Mapped onto diffusers schedulers. Names follow Fooocus so its clients work unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field

from airlock.errors import AirlockError


class OptionError(AirlockError, ValueError):
    """A generation option that does not exist or is out of bounds; the message lists what is valid."""


@dataclass(frozen=True)
class Preset:
    name: str
    steps: int
    guidance_scale: float | None  # None: the request's own CFG
    sampler: str
    scheduler: str
    lora: str | None = None  # registry name of the LoRA the preset needs
    lora_weight: float = 1.0


# Fooocus' performance presets (modules/flags.py Performance, and the LoRAs it pairs with them).
PRESETS = {
    p.name: p
    for p in (
        Preset("Quality", 60, None, "dpmpp_2m_sde_gpu", "karras"),
        Preset("Speed", 30, None, "dpmpp_2m_sde_gpu", "karras"),
        Preset("Extreme Speed", 8, 1.0, "lcm", "lcm", lora="sdxl_lcm_lora"),
        Preset("Lightning", 4, 1.0, "euler", "sgm_uniform", lora="sdxl_lightning_4step_lora"),
        Preset(
            "Hyper-SD", 4, 1.0, "dpmpp_sde_gpu", "karras", lora="sdxl_hyper_sd_4step_lora", lora_weight=0.8
        ),
    )
}
DEFAULT_PRESET = "Speed"


@dataclass(frozen=True)
class Sampler:
    scheduler_class: str  # diffusers class name
    config: dict = field(default_factory=dict)
    stochastic: bool = False  # draws noise per step: seeded by the request's generator


SAMPLERS = {
    "euler": Sampler("EulerDiscreteScheduler"),
    "euler_ancestral": Sampler("EulerAncestralDiscreteScheduler", stochastic=True),
    "heun": Sampler("HeunDiscreteScheduler"),
    "dpmpp_2m": Sampler("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde_gpu": Sampler(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        stochastic=True,
    ),
    "dpmpp_sde_gpu": Sampler("DPMSolverSDEScheduler", stochastic=True),
    "ddim": Sampler("DDIMScheduler"),
    "uni_pc": Sampler("UniPCMultistepScheduler"),
    "lcm": Sampler("LCMScheduler", stochastic=True),
}
SAMPLERS["dpmpp_2m_sde"] = SAMPLERS["dpmpp_2m_sde_gpu"]
SAMPLERS["dpmpp_sde"] = SAMPLERS["dpmpp_sde_gpu"]

# Fooocus scheduler names -> diffusers scheduler config.
SCHEDULERS = {
    "normal": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "sgm_uniform": {"timestep_spacing": "trailing"},  # what SDXL-Lightning is distilled for
    "simple": {"timestep_spacing": "trailing"},
    "lcm": {},
}
KARRAS_CAPABLE = {
    "DPMSolverMultistepScheduler",
    "DPMSolverSDEScheduler",
    "EulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "UniPCMultistepScheduler",
}


def scheduler_spec(sampler: str, scheduler: str) -> tuple[str, dict, bool]:
    """(diffusers class name, config overrides, stochastic) for a Fooocus sampler/scheduler pair."""
    if sampler not in SAMPLERS:
        raise OptionError(f"unknown sampler {sampler!r}; use one of {', '.join(sorted(SAMPLERS))}")
    if scheduler not in SCHEDULERS:
        raise OptionError(f"unknown scheduler {scheduler!r}; use one of {', '.join(sorted(SCHEDULERS))}")
    spec = SAMPLERS[sampler]
    overrides = dict(SCHEDULERS[scheduler])
    if ("use_karras_sigmas" in overrides or "use_exponential_sigmas" in overrides) and (
        spec.scheduler_class not in KARRAS_CAPABLE
    ):
        raise OptionError(f"sampler {sampler} cannot use the {scheduler} scheduler; use 'normal'")
    return spec.scheduler_class, {**spec.config, **overrides}, spec.stochastic


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise OptionError(f"unknown performance {name!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[name]


# The 26 SDXL aspect ratios Fooocus offers (width*height), and its default.
ASPECT_RATIOS = (
    "704*1408",
    "704*1344",
    "768*1344",
    "768*1280",
    "832*1216",
    "832*1152",
    "896*1152",
    "896*1088",
    "960*1088",
    "960*1024",
    "1024*1024",
    "1024*960",
    "1088*960",
    "1088*896",
    "1152*896",
    "1152*832",
    "1216*832",
    "1280*768",
    "1344*768",
    "1344*704",
    "1408*704",
    "1472*704",
    "1536*640",
    "1600*640",
    "1664*576",
    "1728*576",
)
DEFAULT_ASPECT_RATIO = "1152*896"


def parse_aspect_ratio(value: str) -> tuple[int, int]:
    """Accept Fooocus' spellings: '1152*896', '1152x896' and its UI's multiplication sign."""
    normalised = value.replace("\u00d7", "*").replace("x", "*").replace(" ", "")
    if normalised not in ASPECT_RATIOS:
        raise OptionError(
            f"aspect ratio {value!r} is not one of Fooocus' SDXL ratios ({', '.join(ASPECT_RATIOS)}); "
            "or give width and height in multiples of 8"
        )
    width, height = normalised.split("*")
    return int(width), int(height)


def check_size(width: int, height: int, min_side: int, max_side: int) -> tuple[int, int]:
    for side, value in (("width", width), ("height", height)):
        if value % 8 or not min_side <= value <= max_side:
            raise OptionError(f"{side} {value} must be a multiple of 8 between {min_side} and {max_side}")
    return width, height
