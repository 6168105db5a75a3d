"""Transfer bundles: everything that enters the air gap travels as one signed, checksummed tar.

Connected side (needs pip, dpkg-dev and cyclonedx-python-lib):

    spec = load_spec(Path("bundle.yaml"))
    built = build_bundle(spec, Path("airlock-bundle-0.1.0.tar"), load_signer(key), creator="J. Smith")

Enclave side (standard library, PyYAML and cryptography only):

    report = verify_bundle(path, load_verifier(transfer_pub))          # nothing extracted
    result = import_bundle(path, load_verifier(transfer_pub), store=DEFAULT_STORE,
                           custody=Custody.parse("USB-0042, courier, receiver"), audit=AuditLog(),
                           registry_verifier=load_verifier(registry_pub))

build and load_spec are imported lazily (they pull in the connected side's libraries).
"""

from airlock.bundle.archive import Limits
from airlock.bundle.errors import BundleError, BundleSpecError
from airlock.bundle.importer import DEFAULT_STORE, BundleRefused, Custody, Imported, import_bundle
from airlock.bundle.verify import Finding, VerifyReport, extract, verify_bundle, verify_file

__all__ = [
    "DEFAULT_STORE",
    "BundleError",
    "BundleRefused",
    "BundleSpecError",
    "Custody",
    "Finding",
    "Imported",
    "Limits",
    "VerifyReport",
    "build_bundle",
    "extract",
    "import_bundle",
    "load_spec",
    "verify_bundle",
    "verify_file",
]


def __getattr__(name: str):
    if name == "build_bundle":
        from airlock.bundle.build import build_bundle

        return build_bundle
    if name == "load_spec":
        from airlock.bundle.spec import load_spec

        return load_spec
    raise AttributeError(name)
