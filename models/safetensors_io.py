"""Write safetensors files without numpy or the safetensors package (the export venv has
neither): an 8-byte little-endian header length, a JSON header, then raw little-endian float32
data. tch reads them with `Tensor::read_safetensors`."""

import json
import struct
import sys

import torch


def tensor_bytes(t: torch.Tensor) -> bytes:
    """Raw little-endian float32 bytes."""
    assert t.dtype == torch.float32 and sys.byteorder == "little"
    return bytes(t.contiguous().view(torch.uint8).flatten().tolist())


def write_safetensors(path: str, tensors: dict) -> None:
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = tensor_bytes(t)
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # align the data section
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for blob in blobs:
            f.write(blob)
