"""The service's settings: one pydantic-settings class, read from /etc/airlock/airlock.toml
(`--config` or AIRLOCK_CONFIG) with environment overrides (AIRLOCK_SERVER__PORT=8443 style).

`insecure_problems()` lists every setting that would make the service unsafe to start, each with the
setting's name and the fix; the service refuses to start while the list is not empty.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG = Path("/etc/airlock/airlock.toml")


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    allow_bind_all: bool = False  # 0.0.0.0 / :: must be asked for explicitly
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None  # set: mutual TLS, clients need a certificate from this CA
    cors_origins: list[str] = Field(default_factory=list)  # never "*"


class PathSettings(BaseModel):
    apikeys: Path = Path("/var/lib/airlock/apikeys.json")
    audit_root: Path = Path("/var/log/airlock/audit")
    registry: Path = Path("/srv/model_registry")
    trust_key: Path = Path("/etc/airlock/keys/signing.pub")
    outputs: Path = Path("/var/lib/airlock/outputs")  # images, encrypted per tenant (airlock/store)
    output_keys: Path = Path("/var/lib/airlock/kek")  # the outputs' key-encryption keys, per tenant (0700)
    # Full prompts (the audit log holds the sanitized ones): encrypted under their own KEKs, with their own
    # retention, read only with the audit:read-full permission.
    prompts: Path = Path("/var/lib/airlock/prompts")
    prompt_keys: Path = Path("/var/lib/airlock/prompt-kek")
    prompt_policy: Path = Path("/etc/airlock/prompts.yml")  # policies/prompts.yml: block / redact / allow
    signing_key: Path = Path("/etc/airlock/keys")  # the host's key: signs provenance (and audit seals)


class EngineConfig(BaseModel):
    default_base_model: str = "sd_xl_base_1.0"
    device: str = "cuda"
    dtype: str = "bfloat16"
    styles_dirs: list[Path] = Field(default_factory=list)
    single_file_config: Path | None = None
    optimize: bool = True
    egress_allowed_cidrs: list[str] = Field(default_factory=list)
    egress_allowed_domains: list[str] = Field(default_factory=list)


class LimitSettings(BaseModel):
    max_queued: int = Field(64, ge=1)
    max_batch: int = Field(8, ge=1)
    max_image_number: int = Field(8, ge=1, le=32)
    max_prompt_chars: int = Field(2000, ge=1)
    max_side: int = Field(2048, ge=64)
    min_side: int = Field(512, ge=64)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    default_rate: str = "60/min"
    tenant_rate: str | None = None
    # Unset: buckets in this process. Set: shared by every host using the same Redis (rediss:// for TLS).
    redis_url: str | None = None
    redis_ca: Path | None = None  # the CA that signed Redis' certificate (rediss:// only)

    def redis_problems(self) -> list[str]:
        if self.redis_url is None:
            return []
        url = urlsplit(self.redis_url)
        if url.scheme not in ("redis", "rediss") or not url.hostname:
            return ["limits.redis_url: expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB"]
        if url.scheme == "redis" and not _is_loopback(url.hostname):
            return [
                f"limits.redis_url: plaintext Redis at {url.hostname} sends key ids across the network; "
                "use rediss:// and set limits.redis_ca"
            ]
        if url.scheme == "rediss" and (self.redis_ca is None or not self.redis_ca.exists()):
            return ["limits.redis_ca: rediss:// needs the CA file that signed Redis' certificate"]
        return []


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIRLOCK_", env_nested_delimiter="__", extra="forbid")

    server: ServerSettings = Field(default_factory=ServerSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    internal_url_hosts: list[str] = Field(default_factory=list)  # hosts allowed in input-image/webhook URLs

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings,
        env_settings,
        dotenv_settings,
        file_secret_settings,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = Path(os.environ.get("AIRLOCK_CONFIG", DEFAULT_CONFIG))
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config if config.exists() else None)
        return init_settings, env_settings, toml

    def insecure_problems(self) -> list[str]:
        problems = []
        server, paths = self.server, self.paths
        if not server.tls_cert or not server.tls_key:
            problems.append(
                "server.tls_cert / server.tls_key: TLS is required; issue a certificate with "
                "`airlock ca issue --host NAME` and set both"
            )
        else:
            problems += [
                f"server.{name}: {path} does not exist"
                for name, path in (("tls_cert", server.tls_cert), ("tls_key", server.tls_key))
                if not path.exists()
            ]
        if _is_wildcard(server.host) and not server.allow_bind_all:
            problems.append(
                f"server.host: {server.host} listens on every interface; bind the internal address, "
                "or set server.allow_bind_all = true if the host firewall restricts it"
            )
        if "*" in server.cors_origins:
            problems.append(
                "server.cors_origins: '*' lets any web page call the API; list the internal origins"
            )
        if not paths.apikeys.exists():
            problems.append(
                f"paths.apikeys: no key store at {paths.apikeys}; create a key with "
                "`airlock apikeys create --tenant T --permissions generate`"
            )
        if not paths.audit_root.is_dir():
            problems.append(
                f"paths.audit_root: {paths.audit_root} is not a directory; create it (owned by the "
                "service user, 0750)"
            )
        if not paths.trust_key.exists():
            problems.append(
                f"paths.trust_key: no public key at {paths.trust_key} to check the model manifest with"
            )
        if not paths.prompt_policy.is_file():
            problems.append(
                f"paths.prompt_policy: no prompt policy at {paths.prompt_policy}; start from "
                "policies/prompts.yml (every prompt is screened before it is logged or generated)"
            )
        if not (paths.signing_key / "signing.key").is_file():
            problems.append(
                f"paths.signing_key: no signing key in {paths.signing_key} to sign image provenance; "
                "create one with `airlock keys init --dir DIR`"
            )
        for path in (paths.registry, paths.registry / "model_manifest.yaml"):
            if path.exists() and _writable_by_service(path):
                problems.append(
                    f"paths.registry: {path} is writable by the service user; models must be "
                    "read-only to the service (owned by root, 0755/0644)"
                )
        problems += self.limits.redis_problems()
        return problems


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host in ("", "*")


def _writable_by_service(path: Path) -> bool:
    mode = path.stat()
    return bool(mode.st_mode & (stat.S_IWGRP | stat.S_IWOTH)) or (
        mode.st_uid == os.geteuid() and bool(mode.st_mode & stat.S_IWUSR)
    )
