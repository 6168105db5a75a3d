"""Tenant, object and KEK ids: they become file names, so only a safe alphabet gets through."""

from __future__ import annotations

import re

from airlock.apikeys import TENANT  # a tenant id is the API keys' tenant id
from airlock.store.errors import InvalidInput

# A leading letter or digit keeps ids off the store's own dot files (temp files, locks).
OBJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
KEK_ID = re.compile(r"v([1-9][0-9]{0,8})-[0-9a-f]{8}")


def check_tenant(tenant: object) -> str:
    if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
        raise InvalidInput(
            f"bad tenant id {tenant!r}: 1-63 characters, lowercase letters, digits, '_' and '-', "
            "starting with a letter or digit (no '/', '..' or control characters: it names a folder)"
        )
    return tenant


def check_object_id(object_id: object) -> str:
    if not isinstance(object_id, str) or not OBJECT_ID.fullmatch(object_id) or ".." in object_id:
        raise InvalidInput(
            f"bad object id {object_id!r}: 1-128 characters, letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, no '..' (no '/' or control characters: it names a file)"
        )
    return object_id


def kek_version(kek_id: object) -> int | None:
    """The version in a KEK id like v3-1a2b3c4d, or None when it is not one."""
    match = KEK_ID.fullmatch(kek_id) if isinstance(kek_id, str) else None
    return int(match.group(1)) if match else None
