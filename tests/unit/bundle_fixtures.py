"""Small real inputs for transfer-bundle tests: wheels, .debs built with dpkg-deb, a signed
registry, and a way to rewrite a bundle tar member by member (to forge broken ones)."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from airlock.audit import AuditLog
from airlock.keys import Signer, Verifier
from airlock.registry import import_model

ROOT = Path(__file__).resolve().parents[2]
DOWNLOADED = ROOT / ".cache" / "bundle" / "wheels"  # `make bundle`'s download cache
REAL_WHEELS = ("idna-", "markupsafe-", "mdurl-")  # small requirements.lock wheels


def _tiny_wheel(
    folder: Path,
    name: str,
    version: str,
    license_expression: str = "MIT",
    requires: tuple[str, ...] = (),
    extras: tuple[str, ...] = (),
    tag: str = "py3-none-any",
) -> Path:
    """A minimal valid wheel (zip with METADATA, WHEEL, RECORD), same bytes every time; `requires` are
    its Requires-Dist lines, `extras` its Provides-Extra."""
    dist = f"{name}-{version}.dist-info"
    metadata = (
        f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\nLicense-Expression: {license_expression}\n"
        + "".join(f"Provides-Extra: {e}\n" for e in extras)
        + "".join(f"Requires-Dist: {r}\n" for r in requires)
    )
    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{dist}/METADATA": metadata.encode(),
        f"{dist}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: airlock-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
        ).encode(),
    }
    record = "".join(
        f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
        for n, d in files.items()
    )
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    path = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in files.items():
            zf.writestr(zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0)), d)
    return path


def wheels(folder: Path) -> list[Path]:
    """Three small wheels: real ones once `make bundle` downloaded them, else tiny local ones."""
    folder.mkdir(parents=True, exist_ok=True)
    chosen = sorted(p for p in DOWNLOADED.glob("*.whl") if p.name.startswith(REAL_WHEELS))
    if len(chosen) == len(REAL_WHEELS):
        for wheel in chosen:
            shutil.copyfile(wheel, folder / wheel.name)
        return [folder / wheel.name for wheel in chosen]
    return [
        _tiny_wheel(folder, "airlock_test_alpha", "1.0", "MIT"),
        _tiny_wheel(folder, "airlock_test_beta", "2.1", "Apache-2.0"),
        _tiny_wheel(folder, "airlock_test_gamma", "0.3", "BSD-3-Clause"),
    ]


def dependency_wheels(folder: Path) -> list[Path]:
    """An app whose Requires-Dist exercise markers and extras, and every wheel it could need."""
    folder.mkdir(parents=True, exist_ok=True)
    app = _tiny_wheel(
        folder,
        "dep_app",
        "1.0",
        requires=(
            "dep-core>=1",
            'dep-win; sys_platform == "win32"',
            'dep-old; python_version < "3.10"',
            'dep-arm; platform_machine == "aarch64"',
            'dep-timeout; python_full_version < "3.11.3"',  # redis's async-timeout, on Debian 12
            "dep-web[fast]",
            'dep-gpu; extra == "gpu"',
        ),
        extras=("gpu",),
    )
    web = _tiny_wheel(
        folder,
        "dep_web",
        "2.0",
        requires=('dep-speed; extra == "fast"', 'dep-slow; extra == "slow"'),
        extras=("fast", "slow"),
    )
    gpu = _tiny_wheel(folder, "dep_gpu", "3.0", requires=("dep-cuda",))
    # a round after dep-web was read, more of its extras: its Requires-Dist must be read again
    cuda = _tiny_wheel(folder, "dep_cuda", "4.0", requires=("dep-web[slow]",))
    plain = [
        _tiny_wheel(folder, name, "1.2")
        for name in ("dep_core", "dep_win", "dep_old", "dep_arm", "dep_timeout", "dep_speed", "dep_slow")
    ]
    return [app, web, gpu, cuda, *plain]


def local_wheel(folder: Path, name: str = "airlock_test_app", tag: str = "py3-none-any") -> Path:
    """The project's own wheel as `pip wheel .` makes it: not on any index, with extras."""
    folder.mkdir(parents=True, exist_ok=True)
    return _tiny_wheel(
        folder,
        name,
        "0.1.0",
        "Apache-2.0",
        requires=("dep-core", 'dep-gpu; extra == "engine"', 'dep-web[fast]; extra == "service"'),
        extras=("engine", "service"),
        tag=tag,
    )


def write_lock(path: Path, wheel_paths: list[Path]) -> Path:
    """A requirements.lock pinning exactly these wheels by hash."""
    blocks = []
    for wheel in wheel_paths:
        name, version = wheel.name.split("-")[:2]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        blocks.append(f"{name.replace('_', '-').lower()}=={version} \\\n    --hash=sha256:{digest}\n")
    path.write_text("# test lock\n" + "".join(sorted(blocks)))
    return path


def deb(folder: Path, name: str, version: str, depends: str | None = None) -> Path:
    """A tiny architecture-independent .deb built with dpkg-deb."""
    root = folder / f"{name}-root"
    (root / "DEBIAN").mkdir(parents=True)
    control = (
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: Airlock Tests <tests@example.invalid>\nDescription: tiny bundle test package\n"
    )
    if depends:
        control += f"Depends: {depends}\n"
    (root / "DEBIAN" / "control").write_text(control)
    doc = root / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    (doc / "README").write_text(f"{name} {version}\n")
    out = folder / f"{name}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
        env={"SOURCE_DATE_EPOCH": "1700000000", "PATH": "/usr/bin:/bin"},
    )
    return out


def weights(path: Path, value: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.full((4, 4), value, dtype=np.float16)}, str(path))
    return path


def registry(base: Path, signer: Signer, verifier: Verifier) -> Path:
    """A signed registry with a diffusers-folder base model and a single-file LoRA."""
    source = base / "models-src"
    folder = source / "base"
    weights(folder / "unet" / "diffusion_pytorch_model.safetensors", 1.0)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    lora = weights(source / "style_lora.safetensors", 2.0)
    root = base / "registry"
    with AuditLog(base / "registry-audit") as log:
        for path, name, kind in ((folder, "sd_xl_base_1.0", "base"), (lora, "brand_lora_v3", "lora")):
            import_model(
                root,
                path,
                name=name,
                version="1.0",
                kind=kind,
                approved_by="security_team",
                signer=signer,
                verifier=verifier,
                audit=log,
                source="bundle tests",
            )
    return root


def members(bundle: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(bundle) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]


def write_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def entry(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info, data
