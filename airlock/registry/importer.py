"""`airlock models import`: admit, copy + hash, audit, place, re-sign. Fail closed at every step.

Order, and why:
1. admission policy on the source (cheap header reads: a pickle is refused before a byte is copied);
2. under an exclusive lock on the registry root: finish any interrupted manifest commit, load the
   signed manifest, refuse a duplicate name+version or an occupied path;
3. stream the source into a temp name inside the destination folder, hashing the same bytes
   (1 MiB chunks), fsync; re-check admission on the copy (so what is admitted is what was hashed);
4. write the `model_changes` audit record (write-ahead): if the audit log cannot take it the temp
   copy is removed and the import fails, so an unaudited model can never appear;
5. rename the copy into place and commit the re-signed manifest (see manifest.py). If this fails
   the copy and the manifest are rolled back and a failure record follows the first one.
A refused import writes a `model_changes` record with outcome "failure" and the reason, when the
audit log can take it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import os
import shutil
import tempfile
from pathlib import Path

from rich.progress import Progress

from airlock.audit import AuditLog, AuditWriteError
from airlock.audit.layout import RootLock, fsync_dir
from airlock.errors import AirlockError
from airlock.keys import Signer, Verifier
from airlock.registry.admission import admit, validate_safetensors
from airlock.registry.checksum import Advance, file_sha256, listing_checksum, tree_files, tree_size
from airlock.registry.errors import RegistryError
from airlock.registry.manifest import (
    ALL_TENANTS,
    BASE_DIR,
    LORA_DIR,
    MANIFEST,
    SIGNATURE,
    ModelEntry,
    Signed,
    check_identity,
    commit,
    dump_manifest,
    finish_pending,
    load_signed,
    model_path,
    parse_entry,
    parse_manifest,
    restore,
)
from airlock.registry.policy import AdmissionPolicy, load_policy


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}"


def _copy_file(src: Path, dst: Path, advance: Advance | None) -> str:
    """Copy src to the new file dst (read-only from birth), hashing the bytes written; return the digest."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        digest = file_sha256(src, advance, copy_to=fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest


def _copy_folder(src: Path, dst: Path, advance: Advance | None) -> str:
    """Copy every file of a diffusers folder under dst (which exists); return the folder checksum."""
    lines = []
    for rel, full in tree_files(src):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        lines.append((rel, _copy_file(full, target, advance)))
    for dirpath, _dirs, _files in os.walk(dst):
        fsync_dir(Path(dirpath))  # new directory entries are durable before the rename publishes them
    return listing_checksum(lines)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _current(root: Path, verifier: Verifier) -> Signed | None:
    """The signed manifest to extend, or None for a new registry (refused if model files lie there)."""
    finish_pending(root, verifier)
    if (root / MANIFEST).exists() or (root / SIGNATURE).exists():
        return load_signed(root, verifier)
    stray = [
        p
        for d in (BASE_DIR, LORA_DIR)
        if (root / d).is_dir()
        for p in (root / d).rglob("*")
        if not p.is_dir()
    ]
    if stray:
        raise RegistryError(
            f"{root} holds model files ({stray[0]}...) but no {MANIFEST}: restore the manifest and its "
            "signature from backup before importing (a new manifest would drop every existing model)"
        )
    return None


def import_model(
    root: Path,
    path: Path,
    *,
    name: str,
    version: str,
    kind: str,
    approved_by: str,
    signer: Signer,
    verifier: Verifier,
    audit: AuditLog,
    tenant: str | None = None,
    source: str | None = None,
    classification: str = "unspecified",
    policy: AdmissionPolicy | None = None,
    progress: Progress | None = None,
) -> ModelEntry:
    """Import a .safetensors file or diffusers folder; returns the new (signed, audited) entry."""
    path = Path(path).absolute()
    restricted_to = tenant or ALL_TENANTS
    source = source or str(path)
    actor = approved_by or os_user()
    model = {"name": name, "version": version, "checksum": None}
    details = {
        "approved_by": approved_by,
        "kind": kind,
        "restricted_to": restricted_to,
        "source": source,
        "classification": classification,
        "operator": os_user(),
    }
    try:
        return _import(
            Path(root).absolute(), path, model, details, actor, signer, verifier, audit, policy, progress
        )
    except AuditWriteError:
        raise  # the log cannot take records: there is no failure record to write either
    except (AirlockError, OSError) as exc:
        reason = str(exc) if isinstance(exc, AirlockError) else f"{exc.strerror or exc} ({exc.filename})"
        with contextlib.suppress(AirlockError):  # best effort: the refusal is what the caller must see
            audit.append(
                "model_changes",
                "model.imported",
                outcome="failure",
                actor=actor,
                action="import",
                model=model,
                reason=reason,
                **details,
            )
        if isinstance(exc, AirlockError):
            raise
        raise RegistryError(f"import of {name}@{version} failed: {reason}; nothing was changed") from exc


def _import(root, path, model, details, actor, signer, verifier, audit, policy, progress) -> ModelEntry:
    name, version = model["name"], model["version"]
    kind, restricted_to = details["kind"], details["restricted_to"]
    check_identity(name, version, kind, restricted_to)
    policy = policy or load_policy()
    admit(path, policy)
    folder = path.is_dir()
    rel = model_path(name, version, kind, restricted_to, folder)
    entry = ModelEntry(
        name=name,
        version=version,
        checksum="sha256:" + "0" * 64,  # set once the copy is hashed
        import_date=dt.datetime.now(dt.UTC).date().isoformat(),
        approved_by=details["approved_by"],
        restricted_to=restricted_to,
        kind=kind,
        path=rel,
        source=details["source"],
        classification=details["classification"],
    )
    parse_entry(entry.to_dict(), "the new entry")  # refuse now what the manifest could not load back
    dest = root / rel
    root.mkdir(parents=True, exist_ok=True, mode=0o755)
    for sub in (BASE_DIR, LORA_DIR):
        (root / sub).mkdir(exist_ok=True, mode=0o755)
    with RootLock(root):
        previous = _current(root, verifier)
        entries = previous.entries if previous else []
        same = [e for e in entries if e.name == name and e.version == version]
        if same:
            raise RegistryError(
                f"{name}@{version} is already registered (imported {same[0].import_date}, "
                f"{same[0].checksum}); "
                "registered models are never replaced: import the new weights under a new --version"
            )
        if dest.exists() or dest.is_symlink():
            raise RegistryError(
                f"{dest} exists but the manifest does not list it (left by an interrupted import, or placed "
                "by hand): inspect it, remove it, then retry"
            )
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        advance = None
        if progress is not None:
            task = progress.add_task(f"{name}@{version}", total=tree_size(path))
            advance = lambda n: progress.advance(task, n)  # noqa: E731
        if folder:
            tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".importing"))
        else:
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".importing")
            os.close(fd)
            tmp = Path(tmp_name)
            tmp.unlink()  # _copy_file creates it exclusively, read-only
        try:
            if folder:
                checksum = _copy_folder(path, tmp, advance)
                tmp.chmod(0o755)
                admit(tmp, policy)  # the copy, not the source, is what gets registered
            else:
                checksum = "sha256:" + _copy_file(path, tmp, advance)
                validate_safetensors(tmp, policy)
            fsync_dir(dest.parent)
            model["checksum"] = checksum
            entry = dataclasses.replace(entry, checksum=checksum)
            data = dump_manifest([*entries, entry])
            if parse_manifest(data, root / MANIFEST) != [*entries, entry]:
                raise RegistryError(
                    f"the new manifest for {entry.ref} does not read back as written; not signed"
                )
            audit.append(
                "model_changes",
                "model.imported",
                outcome="success",
                actor=actor,
                action="import",
                model=model,
                path=rel,
                **details,
            )
            os.rename(tmp, dest)
            try:
                fsync_dir(dest.parent)
                commit(root, data, signer)
            except OSError:
                _remove(dest)
                restore(root, previous)
                raise
        finally:
            if tmp.exists() or tmp.is_symlink():
                _remove(tmp)
                fsync_dir(dest.parent)
    return entry
