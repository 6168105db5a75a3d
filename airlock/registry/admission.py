"""Admission: is a file or diffusers folder safe to put in the registry? Checked without loading a tensor.

A safetensors file is `<N: u64 little-endian><N bytes of JSON header><data>`. The header maps each
tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data section),
plus an optional "__metadata__" mapping of strings to strings. A file is admitted only if:

- N is at most the policy's max_header_bytes (a larger N is a header bomb) and fits in the file;
- the header is a UTF-8 JSON object without duplicate keys;
- every tensor has an allowed dtype, a shape of non-negative ints, begin <= end and
  end - begin == product(shape) * itemsize(dtype);
- the tensors, sorted by offset, tile the data section exactly: no gap, no overlap, and the last end
  is the file size - 8 - N (no hidden trailing bytes).

Pickle-based weights (.ckpt, .bin, .pt, .pth, .pkl) are refused by extension, and by content
anywhere: a torch.save zip (b"PK\\x03\\x04") or a pickle stream (b"\\x80" then protocol 2..5) at byte 0
that does not frame as safetensors (a genuine safetensors file whose N happens to start with those
bytes is still admitted: its byte 8 is "{").
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from airlock.registry.checksum import tree_files
from airlock.registry.errors import AdmissionError, RegistryError
from airlock.registry.policy import ITEMSIZE, AdmissionPolicy, load_policy

PICKLE_FIX = (
    "pickle files run code when loaded: convert the weights to safetensors on the connected side "
    "(safetensors.torch.save_file) and import that file"
)
CORRUPT_FIX = (
    "the file is damaged or crafted: fetch it again from the trusted source and re-check its checksum"
)
TENSOR_FIELDS = {"dtype", "shape", "data_offsets"}


def _refuse(path: Path, reason: str, fix: str) -> AdmissionError:
    return AdmissionError(f"{path} refused: {reason}; {fix}")


def pickle_kind(head: bytes) -> str | None:
    """Name the pickle container head starts with, or None."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (the torch.save format, which holds a pickle)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a pickle stream (protocol {head[1]})"
    return None


def _frames_as_safetensors(head: bytes, size: int, policy: AdmissionPolicy) -> bool:
    if len(head) < 9:
        return False
    n = struct.unpack("<Q", head[:8])[0]
    return 2 <= n <= min(policy.max_header_bytes, size - 8) and head[8:9] == b"{"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"duplicate keys {dupes}")  # loaders disagree on which copy wins
    return dict(pairs)


def _check_tensor(path: Path, name: str, info: Any, policy: AdmissionPolicy) -> tuple[int, int]:
    if not isinstance(info, dict) or set(info) != TENSOR_FIELDS:
        found = sorted(info) if isinstance(info, dict) else type(info).__name__
        raise _refuse(
            path, f"tensor {name!r} must have exactly dtype, shape, data_offsets (has {found})", CORRUPT_FIX
        )
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in policy.dtypes:
        raise _refuse(
            path,
            f"tensor {name!r} has dtype {dtype!r}, not one the policy allows "
            f"({', '.join(sorted(policy.dtypes))})",
            f"convert it to an allowed dtype, or change dtypes in {policy.source} through review",
        )
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _refuse(
            path, f"tensor {name!r} has shape {shape!r}, not a list of non-negative ints", CORRUPT_FIX
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise _refuse(
            path,
            f"tensor {name!r} has data_offsets {offsets!r}, not [begin, end] with begin <= end",
            CORRUPT_FIX,
        )
    begin, end = offsets
    expected = math.prod(shape) * ITEMSIZE[dtype]
    if end - begin != expected:
        raise _refuse(
            path,
            f"tensor {name!r} spans {end - begin} bytes but shape {shape} of {dtype} needs {expected}",
            CORRUPT_FIX,
        )
    return begin, end


def validate_safetensors(path: Path, policy: AdmissionPolicy | None = None) -> dict[str, Any]:
    """Check a safetensors file's framing and header (no tensor is read); return the parsed header."""
    policy = policy or load_policy()
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(9)
            if size > policy.max_file_bytes:
                raise _refuse(
                    path,
                    f"it is {size} bytes, over the policy's max_file_bytes {policy.max_file_bytes}",
                    f"raise max_file_bytes in {policy.source} through review if this model is expected",
                )
            if len(head) < 8:
                raise _refuse(path, f"it is {size} bytes, too short to be safetensors", CORRUPT_FIX)
            kind = pickle_kind(head)
            if kind and not _frames_as_safetensors(head, size, policy):
                raise _refuse(
                    path, f"it is {kind}, not safetensors (a pickle under another name?)", PICKLE_FIX
                )
            n = struct.unpack("<Q", head[:8])[0]
            if n > policy.max_header_bytes:
                raise _refuse(
                    path,
                    f"its header claims {n} bytes, over the policy's max_header_bytes "
                    f"{policy.max_header_bytes} (a header bomb)",
                    CORRUPT_FIX,
                )
            if n > size - 8:
                raise _refuse(path, f"its header claims {n} bytes but only {size - 8} follow", CORRUPT_FIX)
            fh.seek(8)
            raw = fh.read(n)
    except OSError as exc:
        raise AdmissionError(
            f"cannot read {path}: {exc.strerror or exc}; check the path and permissions"
        ) from exc
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _refuse(path, f"its header is not valid UTF-8 JSON ({exc})", CORRUPT_FIX) from exc
    if not isinstance(header, dict):
        raise _refuse(path, f"its header is a JSON {type(header).__name__}, not an object", CORRUPT_FIX)
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _refuse(path, "its __metadata__ is not a mapping of strings to strings", CORRUPT_FIX)
    spans = sorted(
        _check_tensor(path, name, info, policy) for name, info in header.items() if name != "__metadata__"
    )
    data_len = size - 8 - n
    at = 0
    for begin, end in spans:
        if begin > at:
            raise _refuse(path, f"a gap in the data section between bytes {at} and {begin}", CORRUPT_FIX)
        if begin < at:
            raise _refuse(
                path, f"tensors overlap at data byte {begin} (previous one ends at {at})", CORRUPT_FIX
            )
        at = end
    if at > data_len:
        raise _refuse(
            path, f"tensor data ends at byte {at}, past the data section's {data_len} bytes", CORRUPT_FIX
        )
    if at < data_len:
        raise _refuse(path, f"{data_len - at} bytes after the last tensor belong to no tensor", CORRUPT_FIX)
    return header


def _check_config(path: Path, rel: str, policy: AdmissionPolicy) -> None:
    size = path.stat().st_size
    if size > policy.max_config_bytes:
        raise _refuse(
            path,
            f"config file {rel} is {size} bytes, over the policy's max_config_bytes "
            f"{policy.max_config_bytes}",
            f"remove it, or raise max_config_bytes in {policy.source} through review",
        )
    data = path.read_bytes()
    kind = pickle_kind(data[:4])
    if kind:
        raise _refuse(path, f"config file {rel} is {kind}", PICKLE_FIX)
    try:
        text = data.decode("utf-8")
        if path.suffix.lower() == ".json":
            json.loads(text, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _refuse(path, f"config file {rel} is not valid UTF-8 text/JSON ({exc})", CORRUPT_FIX) from exc
    if "\x00" in text:
        raise _refuse(path, f"config file {rel} holds NUL bytes (binary data under a text name)", CORRUPT_FIX)


def _admit_folder(folder: Path, policy: AdmissionPolicy) -> None:
    try:
        files = tree_files(folder)
    except (RegistryError, OSError) as exc:
        raise AdmissionError(f"{folder} refused: {exc}") from exc
    suffix = {rel: full.suffix.lower() for rel, full in files}
    pickles = [rel for rel in suffix if suffix[rel] in policy.pickle_extensions]
    if pickles:
        raise _refuse(
            folder,
            f"pickle weights inside: {', '.join(pickles)}",
            "delete them (diffusers uses the .safetensors weights beside them) or convert them",
        )
    other = [rel for rel in suffix if suffix[rel] not in policy.folder_extensions]
    if other:
        raise _refuse(
            folder,
            f"files of a type a model folder may not hold: {', '.join(other)}",
            f"remove them; a diffusers folder may hold only {', '.join(policy.folder_extensions)} files",
        )
    weights = [rel for rel in suffix if suffix[rel] == ".safetensors"]
    if not weights:
        raise _refuse(
            folder, "no .safetensors weights inside", "point the import at a diffusers model folder"
        )
    for rel, full in files:
        if suffix[rel] == ".safetensors":
            validate_safetensors(full, policy)
        else:
            _check_config(full, rel, policy)


def admit(path: Path, policy: AdmissionPolicy | None = None) -> None:
    """Raise AdmissionError unless path (a .safetensors file or a diffusers folder) passes the policy."""
    policy = policy or load_policy()
    path = Path(path)
    if path.is_dir():
        _admit_folder(path, policy)
        return
    if not path.is_file():
        raise AdmissionError(f"{path} does not exist or is not a regular file or folder; check the path")
    ext = path.suffix.lower()
    if ext in policy.pickle_extensions:
        raise _refuse(path, f"{ext} is a pickle-based format", PICKLE_FIX)
    if ext != ".safetensors":
        raise _refuse(
            path,
            f"{ext or 'no extension'} is not an admitted format (only {', '.join(policy.formats)})",
            "import a .safetensors file or a diffusers folder",
        )
    validate_safetensors(path, policy)
