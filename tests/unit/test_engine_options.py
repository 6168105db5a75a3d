"""Fooocus' options: presets, samplers, aspect ratios and styles, without loading a model."""

import json

import pytest

from inference.engine import options
from inference.engine.options import OptionError
from inference.engine.styles import apply_styles, load_styles, normalize_name


def test_presets_match_fooocus():
    steps = {name: p.steps for name, p in options.PRESETS.items()}
    assert steps == {"Quality": 60, "Speed": 30, "Extreme Speed": 8, "Lightning": 4, "Hyper-SD": 4}
    assert options.DEFAULT_PRESET == "Speed"
    assert (
        options.PRESETS["Speed"].sampler == "dpmpp_2m_sde_gpu"
        and options.PRESETS["Speed"].scheduler == "karras"
    )
    assert options.PRESETS["Hyper-SD"].lora_weight == 0.8
    assert all(options.PRESETS[n].guidance_scale == 1.0 for n in ("Extreme Speed", "Lightning", "Hyper-SD"))
    with pytest.raises(OptionError, match="use one of Quality, Speed"):
        options.preset("Turbo")


@pytest.mark.parametrize("name", list(options.PRESETS))
def test_every_preset_maps_to_a_diffusers_scheduler(name):
    import diffusers

    preset = options.PRESETS[name]
    cls, config, _ = options.scheduler_spec(preset.sampler, preset.scheduler)
    assert getattr(diffusers, cls).from_config({}, **config) is not None


def test_sampler_scheduler_errors_name_the_choices():
    with pytest.raises(OptionError, match="unknown sampler"):
        options.scheduler_spec("magic", "karras")
    with pytest.raises(OptionError, match="cannot use the karras scheduler"):
        options.scheduler_spec("ddim", "karras")


def test_all_26_aspect_ratios_parse_and_others_are_refused():
    assert len(options.ASPECT_RATIOS) == 26 and len(set(options.ASPECT_RATIOS)) == 26
    for ratio in options.ASPECT_RATIOS:
        width, height = options.parse_aspect_ratio(ratio)
        assert width % 64 == 0 and height % 64 == 0
    assert (
        options.parse_aspect_ratio("1152\u00d7896") == (1152, 896) == options.parse_aspect_ratio("1152x896")
    )
    with pytest.raises(OptionError, match="not one of Fooocus' SDXL ratios"):
        options.parse_aspect_ratio("1000*1000")


def test_free_size_must_be_multiples_of_8_within_bounds():
    assert options.check_size(64, 72, 64, 2048) == (64, 72)
    for size in ((60, 64), (64, 4096), (65, 64)):
        with pytest.raises(OptionError, match="multiple of 8 between 64 and 2048"):
            options.check_size(*size, 64, 2048)


def test_fooocus_name_normalisation():
    assert normalize_name("sai-3d-model") == "SAI 3D Model"
    assert normalize_name("mre-manga") == "MRE Manga"
    assert normalize_name("Fooocus Enhance") == "Fooocus Enhance"


def test_builtin_styles_load_and_compose_in_order():
    styles = load_styles()
    assert "Airlock Product Studio" in styles and len(styles) >= 5
    positive, negative = apply_styles(
        "a hiking jacket", "lowres", ["airlock-product-studio", "Airlock Sharp"], styles
    )
    assert positive.startswith("studio product photograph of a hiking jacket") and positive.endswith(
        "fine texture"
    )
    assert negative.split(", ")[0] == "lowres" and "watermark" in negative and "blurry" in negative
    appended, _ = apply_styles("a lighthouse", "", ["Airlock Minimal"], styles)
    assert appended == "a lighthouse, minimal composition, generous negative space, single subject"


def test_fooocus_format_style_files_load_from_a_directory(tmp_path):
    (tmp_path / "sdxl_styles_fooocus.json").write_text(
        json.dumps(
            [
                {
                    "name": "Fooocus Enhance",
                    "prompt": "{prompt}, enhanced",
                    "negative_prompt": "(worst quality)",
                },
                {"name": "sai-anime", "prompt": "anime artwork {prompt}", "negative_prompt": "photo"},
            ]
        )
    )
    styles = load_styles([tmp_path])
    assert set(styles) == {"Fooocus Enhance", "SAI Anime"}
    positive, negative = apply_styles("a cat", "", ["SAI Anime", "Fooocus Enhance"], styles)
    assert positive == "anime artwork a cat, enhanced" and negative == "photo, (worst quality)"
    with pytest.raises(OptionError, match="unknown style 'Nope'"):
        apply_styles("a cat", "", ["Nope"], styles)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(OptionError, match="not readable JSON"):
        load_styles([tmp_path])
