"""The model registry (seed section 2.4): approved models under a signed manifest.

Only safetensors weights that pass the admission policy (policies/models.yml) get in, each import is
audited (`model_changes`), and the inference engine gets a model's path only after re-hashing it
against the signed manifest:

    reg = Registry(root, load_verifier(trust))
    entry = reg.get("sd_xl_base_1.0", tenant="healthcare_system_b", kind="base")
    pipeline_path = reg.verified_path(entry)
"""

from airlock.registry.admission import admit, validate_safetensors
from airlock.registry.checksum import tree_checksum
from airlock.registry.errors import AdmissionError, ModelIntegrityError, ModelRestrictedError, RegistryError
from airlock.registry.importer import import_model
from airlock.registry.manifest import ALL_TENANTS, KINDS, ModelEntry, registry_root
from airlock.registry.policy import AdmissionPolicy, load_policy
from airlock.registry.registry import Registry
from airlock.registry.verify import VerifyReport, verify_registry

__all__ = [
    "ALL_TENANTS",
    "KINDS",
    "AdmissionError",
    "AdmissionPolicy",
    "ModelEntry",
    "ModelIntegrityError",
    "ModelRestrictedError",
    "Registry",
    "RegistryError",
    "VerifyReport",
    "admit",
    "import_model",
    "load_policy",
    "registry_root",
    "tree_checksum",
    "validate_safetensors",
    "verify_registry",
]
