"""`sbom.cdx.json`: the bundle's CycloneDX 1.6 software bill of materials (cyclonedx-python-lib).

Wheels are `library` components (pkg:pypi purl, licenses from the wheel's METADATA, SHA-256;
python.wheels ones carry airlock:origin=local, as no index holds them),
.debs are `library` components (pkg:deb/debian purl with arch and distro, SHA-256), models are
`machine-learning-model` components with the checksum from the signed registry manifest. The
serial number and timestamp derive from the bundle's inputs, so the same inputs give the same bytes.
Only the build (connected side) imports this module; verify and import do not need the library.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, License
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from airlock.bundle.debs import Deb
from airlock.bundle.spec import Spec
from airlock.bundle.wheels import Wheel, wheel_metadata
from airlock.registry.manifest import ModelEntry

SCHEMA = "1.6"
NAMESPACE = uuid.UUID("6b0e3c52-8f1e-4f0a-9a57-3d2f6c1b7a10")  # for uuid5 serial numbers


def wheel_licenses(wheel: Wheel) -> list[License]:
    """Licenses the wheel declares: License-Expression (PEP 639), else a one-line License field, else
    the `License ::` classifiers. Long License fields (a whole license text) are not names."""
    meta = wheel_metadata(wheel.path)
    if meta is None:
        return []
    factory = LicenseFactory()
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return [factory.make_from_string(expression)]
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 100 and text.upper() != "UNKNOWN":
        return [factory.make_from_string(text)]
    classifiers = [
        c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")
    ]
    return [DisjunctiveLicense(name=name) for name in sorted(set(classifiers)) if name != "OSI Approved"]


def _sha256(hexdigest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)]


def wheel_component(wheel: Wheel) -> Component:
    purl = PackageURL("pypi", None, wheel.name, wheel.version)
    return Component(
        type=ComponentType.LIBRARY,
        name=wheel.name,
        version=wheel.version,
        purl=purl,
        bom_ref=purl.to_string(),
        licenses=wheel_licenses(wheel),
        hashes=_sha256(wheel.sha256),
        properties=[
            Property(name="airlock:path", value=f"wheels/{wheel.path.name}"),
            *([Property(name="airlock:origin", value="local")] if wheel.local else []),
        ],
    )


def deb_component(deb: Deb, distribution: str) -> Component:
    purl = PackageURL(
        "deb", "debian", deb.name, deb.version, {"arch": deb.architecture, "distro": distribution}
    )
    return Component(
        type=ComponentType.LIBRARY,
        name=deb.name,
        version=deb.version,
        purl=purl,
        bom_ref=purl.to_string(),
        hashes=_sha256(deb.sha256),
        properties=[Property(name="airlock:path", value=f"apt/{deb.filename}")],
    )


def model_component(entry: ModelEntry) -> Component:
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=entry.name,
        version=entry.version,
        bom_ref=f"model:{entry.ref}",
        hashes=_sha256(entry.checksum.removeprefix("sha256:")),
        properties=[
            Property(name="airlock:path", value=f"models/registry/{entry.path}"),
            Property(name="airlock:kind", value=entry.kind),
            Property(name="airlock:restricted_to", value=entry.restricted_to),
            Property(name="airlock:approved_by", value=entry.approved_by),
            Property(name="airlock:classification", value=entry.classification),
        ],
    )


def build_sbom(
    spec: Spec, wheels: list[Wheel], debs: list[Deb], models: list[ModelEntry], created: int, seed: str
) -> bytes:
    """The SBOM as JSON bytes; `seed` (a digest of the inputs) makes the serial number reproducible."""
    root = Component(type=ComponentType.APPLICATION, name=spec.name, version=spec.version, bom_ref="bundle")
    components = (
        [wheel_component(w) for w in wheels]
        + [deb_component(d, spec.target.distribution) for d in debs]
        + [model_component(m) for m in models]
    )
    bom = Bom(
        serial_number=uuid.uuid5(NAMESPACE, seed),
        metadata=BomMetaData(
            timestamp=datetime.fromtimestamp(created, UTC),
            component=root,
            properties=[
                Property(name=f"airlock:target:{k}", value=v) for k, v in spec.target.to_dict().items()
            ],
        ),
        components=components,
    )
    bom.register_dependency(root, components)
    return (JsonV1Dot6(bom).output_as_string(indent=2) + "\n").encode("utf-8")
