"""The model admission policy, loaded from policies/models.yml (the single source of truth).

The path is, in order: the `path` argument (`--policy`), $AIRLOCK_MODEL_POLICY, then the
repository's own `policies/models.yml`. Unknown or missing keys are refused, so a typo in the
policy never silently loosens it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from airlock.registry.errors import RegistryError

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "policies" / "models.yml"

# Bytes per element of every dtype a policy may allow (the safetensors format's names).
ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}


@dataclass(frozen=True)
class AdmissionPolicy:
    formats: tuple[str, ...]
    dtypes: frozenset[str]
    max_header_bytes: int
    max_file_bytes: int
    max_config_bytes: int
    folder_extensions: tuple[str, ...]
    pickle_extensions: tuple[str, ...]
    source: Path


def policy_path(path: Path | None = None) -> Path:
    if path is not None:
        return Path(path)
    return Path(os.environ.get("AIRLOCK_MODEL_POLICY", DEFAULT_POLICY_PATH))


def _strings(path: Path, data: dict, key: str) -> tuple[str, ...]:
    value = data[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RegistryError(f"{path}: {key} must be a non-empty list of strings")
    return tuple(value)


def _size(path: Path, data: dict, key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RegistryError(f"{path}: {key} must be a positive number of bytes, got {value!r}")
    return value


def load_policy(path: Path | None = None) -> AdmissionPolicy:
    """Read and check the policy file; RegistryError says which key is wrong."""
    path = policy_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(
            f"no model admission policy at {path}: pass --policy or set AIRLOCK_MODEL_POLICY "
            "(the repository ships policies/models.yml)"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RegistryError(f"cannot read the model admission policy {path}: {exc}") from exc
    fields = {
        "formats",
        "dtypes",
        "max_header_bytes",
        "max_file_bytes",
        "max_config_bytes",
        "folder_extensions",
        "pickle_extensions",
    }
    if not isinstance(data, dict) or set(data) != fields:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise RegistryError(f"{path} must be a mapping with exactly {sorted(fields)}; found {found}")
    formats = _strings(path, data, "formats")
    if formats != ("safetensors",):
        raise RegistryError(f"{path}: formats must be [safetensors]; it is the only format Airlock admits")
    dtypes = _strings(path, data, "dtypes")
    unknown = sorted(set(dtypes) - set(ITEMSIZE))
    if unknown:
        raise RegistryError(f"{path}: unknown dtypes {unknown}; use safetensors names like F16, BF16")
    extensions = {key: _strings(path, data, key) for key in ("folder_extensions", "pickle_extensions")}
    for key, values in extensions.items():
        bad = [v for v in values if not v.startswith(".") or v != v.lower()]
        if bad:
            raise RegistryError(f"{path}: {key} entries must be lower-case and start with a dot: {bad}")
    if ".safetensors" not in extensions["folder_extensions"]:
        raise RegistryError(f"{path}: folder_extensions must include .safetensors")
    if set(extensions["folder_extensions"]) & set(extensions["pickle_extensions"]):
        raise RegistryError(f"{path}: a pickle extension cannot also be an allowed folder extension")
    return AdmissionPolicy(
        formats=formats,
        dtypes=frozenset(dtypes),
        max_header_bytes=_size(path, data, "max_header_bytes"),
        max_file_bytes=_size(path, data, "max_file_bytes"),
        max_config_bytes=_size(path, data, "max_config_bytes"),
        folder_extensions=extensions["folder_extensions"],
        pickle_extensions=extensions["pickle_extensions"],
        source=path,
    )
