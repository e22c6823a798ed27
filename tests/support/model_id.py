"""The documented model ID computed independently of zonda (the reference the model_id tests compare with)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def content_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) in sorted name order, each length-prefixed: the documented model ID."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        array = tensors[name].numpy()
        for part in (name.encode(), str(tensors[name].dtype).removeprefix("torch.").encode(),
                     ",".join(map(str, array.shape)).encode(), np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()):
            h.update(len(part).to_bytes(8, "little") + part)
    return "sha256:" + h.hexdigest()
