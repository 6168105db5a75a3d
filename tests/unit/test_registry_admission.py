"""Admission policy: what may enter the registry, checked from headers alone (policies/models.yml)."""

import dataclasses
import json
import pickle
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from airlock.registry import AdmissionError, RegistryError, admit, load_policy, validate_safetensors
from airlock.registry.policy import DEFAULT_POLICY_PATH


def raw_safetensors(header, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file built by hand: <u64 N><N bytes of JSON><data>; length overrides N."""
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(encoded) if length is None else length) + encoded + data


def write(path, content: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def f32(begin: int, count: int) -> dict:
    return {"dtype": "F32", "shape": [count], "data_offsets": [begin, begin + 4 * count]}


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def weights(path, tensors):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def diffusers_folder(root):
    """A small diffusers-shaped folder: weights as safetensors, configs as JSON/TXT."""
    weights(root / "unet" / "diffusion_pytorch_model.safetensors", {"w": np.ones((2, 2), dtype=np.float16)})
    write(root / "unet" / "config.json", b'{"sample_size": 8}')
    write(root / "model_index.json", b'{"_class_name": "StableDiffusionXLPipeline"}')
    write(root / "scheduler" / "scheduler_config.json", b'{"num_train_timesteps": 1000}')
    write(root / "tokenizer" / "vocab.json", b'{"a": 0}')
    write(root / "tokenizer" / "merges.txt", b"#version: 0.2\na b\n")
    weights(root / "text_encoder" / "model.safetensors", {"t": np.zeros((3,), dtype=np.int64)})
    return root


# ---------------------------------------------------------------- the policy file


def test_the_repository_policy_is_the_source_of_truth(policy):
    assert policy.source == DEFAULT_POLICY_PATH
    assert policy.formats == ("safetensors",)
    assert policy.dtypes == {
        "F16",
        "BF16",
        "F32",
        "F8_E4M3",
        "F8_E5M2",
        "I64",
        "I32",
        "I16",
        "I8",
        "U8",
        "BOOL",
    }
    assert policy.max_header_bytes == 100_000_000  # safetensors' own MAX_HEADER_SIZE
    assert set(policy.folder_extensions) == {".safetensors", ".json", ".txt"}


def test_a_policy_with_a_typo_or_another_format_is_refused(tmp_path):
    text = DEFAULT_POLICY_PATH.read_text()
    typo = write(tmp_path / "typo.yml", text.replace("max_file_bytes:", "max_file_byte:").encode())
    with pytest.raises(RegistryError, match="exactly"):
        load_policy(typo)
    pickles = write(tmp_path / "pickle.yml", text.replace("  - safetensors\n", "  - ckpt\n").encode())
    with pytest.raises(RegistryError, match="formats must be"):
        load_policy(pickles)
    with pytest.raises(RegistryError, match="AIRLOCK_MODEL_POLICY"):
        load_policy(tmp_path / "absent.yml")


# ---------------------------------------------------------------- files that pass


def test_files_written_by_safetensors_are_admitted_and_their_header_returned(tmp_path, policy):
    import torch
    from safetensors.torch import save_file as torch_save_file

    path = tmp_path / "lora.safetensors"
    torch_save_file(
        {"a": torch.ones(3, 2, dtype=torch.bfloat16), "b": torch.zeros(0), "c": torch.tensor(1.0)}, path
    )
    header = validate_safetensors(path, policy)
    assert header["a"] == {"dtype": "BF16", "shape": [3, 2], "data_offsets": header["a"]["data_offsets"]}
    assert set(header) == {"a", "b", "c"}
    save_file({"x": np.ones(4, dtype=np.uint8)}, str(tmp_path / "np.safetensors"), metadata={"format": "pt"})
    assert validate_safetensors(tmp_path / "np.safetensors", policy)["__metadata__"] == {"format": "pt"}
    admit(path, policy)


def test_a_real_header_whose_length_starts_like_a_pickle_is_not_mistaken_for_one(tmp_path, policy):
    header = json.dumps({"w": f32(0, 1)}).encode()
    header += b" " * (0x280 - len(header))  # N = 640: bytes 0-1 are 0x80 0x02, a pickle's opening
    path = write(tmp_path / "ok.safetensors", raw_safetensors(header, b"\0" * 4))
    assert path.read_bytes()[:2] == b"\x80\x02"
    admit(path, policy)


def test_a_diffusers_folder_of_safetensors_and_configs_is_admitted(tmp_path, policy):
    admit(diffusers_folder(tmp_path / "pipe"), policy)


# ---------------------------------------------------------------- pickles


@pytest.mark.parametrize("ext", [".ckpt", ".bin", ".pt", ".pth", ".pkl"])
def test_pickle_formats_are_refused_by_extension(tmp_path, policy, ext):
    path = write(tmp_path / f"model{ext}", raw_safetensors({"w": f32(0, 1)}, b"\0" * 4))
    with pytest.raises(AdmissionError, match=rf"model\{ext} refused: \{ext} is a pickle-based format"):
        admit(path, policy)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_pickle_renamed_safetensors_is_refused_by_content(tmp_path, policy, protocol):
    path = write(tmp_path / "model.safetensors", pickle.dumps({"w": [1.0] * 64}, protocol=protocol))
    with pytest.raises(
        AdmissionError, match=rf"model.safetensors refused: it is a pickle stream \(protocol {protocol}\)"
    ):
        admit(path, policy)


def test_a_torch_save_archive_renamed_safetensors_is_refused(tmp_path, policy):
    import torch

    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.ones(8)}, path)
    with pytest.raises(AdmissionError, match=r"zip archive .*torch.save.*convert the weights to safetensors"):
        admit(path, policy)


# ---------------------------------------------------------------- framing and header


def test_a_header_bomb_is_refused_without_reading_it(tmp_path, policy):
    path = write(tmp_path / "bomb.safetensors", struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(AdmissionError, match="header bomb"):
        validate_safetensors(path, policy)
    small = dataclasses.replace(policy, max_header_bytes=64)  # the bound comes from the policy
    path = write(tmp_path / "big.safetensors", raw_safetensors({"w": f32(0, 1), "pad": "x" * 100}, b"\0" * 4))
    with pytest.raises(AdmissionError, match="over the policy's max_header_bytes 64"):
        validate_safetensors(path, small)


def test_a_header_longer_than_the_file_is_refused(tmp_path, policy):
    path = write(tmp_path / "short.safetensors", raw_safetensors({"w": f32(0, 1)}, b"", length=4096))
    with pytest.raises(AdmissionError, match="claims 4096 bytes but only"):
        validate_safetensors(path, policy)


def test_a_file_too_short_for_a_header_is_refused(tmp_path, policy):
    with pytest.raises(AdmissionError, match="too short"):
        validate_safetensors(write(tmp_path / "tiny.safetensors", b"\x01\x00"), policy)


@pytest.mark.parametrize(
    ("header", "data", "reason"),
    [
        ({"w": f32(0, 4)}, b"\0" * 8, "past the data section"),
        ({"a": f32(0, 1), "b": f32(8, 1)}, b"\0" * 12, "a gap in the data section between bytes 4 and 8"),
        ({"a": f32(0, 2), "b": f32(4, 2)}, b"\0" * 12, "tensors overlap at data byte 4"),
        ({"w": f32(0, 1)}, b"\0" * 12, "8 bytes after the last tensor belong to no tensor"),
        ({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, "dtype 'F64', not one"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12"),
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b"", "not a list of non-negative"),
        (
            {"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}},
            b"\0" * 4,
            "not a list of non-negative",
        ),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4, "begin <= end"),
        ({"w": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, "exactly dtype, shape, data_offsets"),
        ({"w": {**f32(0, 1), "extra": 1}}, b"\0" * 4, "exactly dtype, shape, data_offsets"),
        ({"__metadata__": {"k": 1}, "w": f32(0, 1)}, b"\0" * 4, "__metadata__ is not a mapping of strings"),
        (b'{"w": {"dtype": "F32", ', b"", "not valid UTF-8 JSON"),
        (b'[{"dtype": "F32"}]', b"", "not valid UTF-8 JSON|a JSON list"),
        (b'{"w": 1, "w": 2}', b"", "duplicate keys"),
        (b'{"w": "\xff"}', b"", "not valid UTF-8 JSON"),
    ],
    ids=[
        "offsets-past-end",
        "gap",
        "overlap",
        "trailing-bytes",
        "dtype-F64",
        "size-mismatch",
        "negative-shape",
        "bool-shape",
        "reversed-offsets",
        "missing-field",
        "unknown-field",
        "bad-metadata",
        "bad-json",
        "not-an-object",
        "duplicate-keys",
        "not-utf8",
    ],
)
def test_malformed_headers_are_refused_with_the_reason(tmp_path, policy, header, data, reason):
    path = write(tmp_path / "bad.safetensors", raw_safetensors(header, data))
    with pytest.raises(AdmissionError, match=reason) as caught:
        admit(path, policy)
    assert str(path) in str(caught.value)  # every refusal names the file


def test_a_file_over_the_size_limit_is_refused(tmp_path, policy):
    path = write(tmp_path / "w.safetensors", raw_safetensors({"w": f32(0, 64)}, b"\0" * 256))
    with pytest.raises(AdmissionError, match="over the policy's max_file_bytes 100"):
        admit(path, dataclasses.replace(policy, max_file_bytes=100))


def test_only_safetensors_files_are_admitted(tmp_path, policy):
    with pytest.raises(AdmissionError, match="is not an admitted format"):
        admit(write(tmp_path / "model.onnx", b"\0" * 16), policy)
    with pytest.raises(AdmissionError, match="does not exist"):
        admit(tmp_path / "absent.safetensors", policy)


# ---------------------------------------------------------------- diffusers folders


@pytest.mark.parametrize(
    "pickle_file", ["unet/diffusion_pytorch_model.bin", "text_encoder/pytorch_model.bin", "extra/model.ckpt"]
)
def test_a_folder_with_pickle_weights_anywhere_is_refused(tmp_path, policy, pickle_file):
    folder = diffusers_folder(tmp_path / "pipe")
    write(folder / pickle_file, pickle.dumps({"w": 1}))
    with pytest.raises(AdmissionError, match=f"pickle weights inside: {pickle_file}"):
        admit(folder, policy)


def test_a_folder_with_files_of_other_types_is_refused(tmp_path, policy):
    folder = diffusers_folder(tmp_path / "pipe")
    write(folder / "README.md", b"# model card")
    write(folder / "unet" / "model.onnx", b"\0")
    with pytest.raises(
        AdmissionError, match=r"README.md, unet/model.onnx; remove them.*\.safetensors, \.json, \.txt"
    ):
        admit(folder, policy)


def test_a_folder_with_an_invalid_weight_file_is_refused(tmp_path, policy):
    folder = diffusers_folder(tmp_path / "pipe")
    bad = write(
        folder / "vae" / "diffusion_pytorch_model.safetensors", raw_safetensors({"w": f32(0, 2)}, b"\0" * 4)
    )
    with pytest.raises(AdmissionError, match=f"{bad} refused: tensor data ends at byte 8"):
        admit(folder, policy)


def test_a_folder_whose_config_is_a_pickle_or_not_json_is_refused(tmp_path, policy):
    folder = diffusers_folder(tmp_path / "pipe")
    write(folder / "model_index.json", pickle.dumps({"x": 1}, protocol=4))
    with pytest.raises(AdmissionError, match=r"model_index.json is a pickle stream"):
        admit(folder, policy)
    write(folder / "model_index.json", b"{not json")
    with pytest.raises(AdmissionError, match=r"model_index.json is not valid UTF-8 text/JSON"):
        admit(folder, policy)


def test_a_folder_without_weights_or_with_a_symlink_is_refused(tmp_path, policy):
    empty = tmp_path / "configs"
    write(empty / "model_index.json", b"{}")
    with pytest.raises(AdmissionError, match=r"no .safetensors weights"):
        admit(empty, policy)
    folder = diffusers_folder(tmp_path / "pipe")
    (folder / "unet" / "linked.safetensors").symlink_to(folder / "text_encoder" / "model.safetensors")
    with pytest.raises(AdmissionError, match="is a symlink"):
        admit(folder, policy)
