"""Prompt styles in Fooocus' format: JSON files holding a list of
`{"name": ..., "prompt": "... {prompt} ...", "negative_prompt": "..."}`.

Every *.json file of the configured directories is loaded (Fooocus' own sdxl_styles/ files work when
installed from the bundle); names are normalised the way Fooocus does, so its clients can send them.
Several styles compose: each one wraps the prompt built so far (a style without `{prompt}` is
appended), and negative prompts accumulate without repeats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from inference.engine.options import OptionError

BUILTIN_DIR = Path(__file__).resolve().parent / "styles"


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str
    negative_prompt: str
    source: str


def normalize_name(name: str) -> str:
    """Fooocus' normalize_key: dashes to spaces, each word capitalised, a few fixed spellings."""
    words = name.replace("-", " ").split(" ")
    key = " ".join(w[:1].upper() + w[1:].lower() for w in words)
    return key.replace("3d", "3D").replace("Sai", "SAI").replace("Mre", "MRE").replace("(s", "(S")


def load_styles(directories: list[Path] | None = None) -> dict[str, Style]:
    styles: dict[str, Style] = {}
    for directory in directories or [BUILTIN_DIR]:
        for path in sorted(Path(directory).glob("*.json")):
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise OptionError(f"style file {path} is not readable JSON: {exc}") from exc
            if not isinstance(entries, list):
                raise OptionError(f"style file {path} must hold a JSON list of styles")
            for index, entry in enumerate(entries):
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise OptionError(f"style file {path} entry {index} has no name")
                name = normalize_name(entry["name"])
                styles[name] = Style(
                    name, str(entry.get("prompt", "")), str(entry.get("negative_prompt", "")), str(path)
                )
    return styles


def apply_styles(prompt: str, negative: str, names: list[str], styles: dict[str, Style]) -> tuple[str, str]:
    """The positive and negative prompts after applying the named styles in order."""
    positive, negatives = prompt, [n.strip() for n in negative.split(",") if n.strip()]
    for requested in names:
        style = styles.get(normalize_name(requested))
        if style is None:
            known = ", ".join(sorted(styles)) or "none installed"
            raise OptionError(f"unknown style {requested!r}; installed styles: {known}")
        if "{prompt}" in style.prompt:
            positive = style.prompt.replace("{prompt}", positive)
        elif style.prompt:
            positive = f"{positive}, {style.prompt}" if positive else style.prompt
        for part in style.negative_prompt.split(","):
            if part.strip() and part.strip() not in negatives:
                negatives.append(part.strip())
    return positive, ", ".join(negatives)
