"""Training checkpoints without unpickling: digests, ``weights_only`` loads, RNG states.

* **Training checkpoints** (``checkpoints/*.ckpt``, written by Lightning's
  ``ModelCheckpoint`` through :class:`SafeCheckpointIO`): the full training
  state (model, optimizer, scheduler, loops and data order, callbacks, RNG
  states under ``zonda.rng``) saved with ``torch.save``, written to a temporary
  file and renamed, with a ``<file>.sha256`` sidecar. Loading checks the
  sidecar, then ``torch.load(weights_only=True)`` (which refuses any pickled
  object other than tensors and plain containers), then the structure and the
  ``zonda`` metadata; the LightningModule then checks every tensor's name and
  shape against the model. Anything wrong raises :class:`CheckpointError`
  naming the file.

The trained model itself (``weights.safetensors``, ``model.json``) is
:mod:`zonda.models.saved`, which serving reads without Lightning.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from zonda.files import atomic_path, file_sha256, write_bytes_atomic
from zonda.models.saved import CheckpointError

CHECKPOINT_FORMAT = "zonda.training-checkpoint"
CHECKPOINT_VERSION = 1
DIGEST_SUFFIX = ".sha256"
_REQUIRED_KEYS = ("state_dict", "epoch", "global_step", "loops", "optimizer_states", "lr_schedulers", "zonda")


def digest_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar ``<file>.sha256`` of a checkpoint."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def save_training_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file, write the sha256 sidecar, rename the file into place.

    Safe against a kill -9 at any point: the sidecar (replaced atomically) lists the new digest
    first and the previous file's digests after it, and only then is the new file renamed over
    the old, so whichever file is at ``path`` afterwards, old or new, verifies.
    """
    path = Path(path)
    try:
        previous = _listed_digests(path)[:_PREVIOUS_DIGESTS]
    except CheckpointError:  # no (readable) sidecar yet
        previous = []
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(dict(checkpoint), f)
            f.flush()
            os.fsync(f.fileno())
        lines = [f"{file_sha256(tmp)}  {path.name}"] + [f"{d}  {path.name} (previous)" for d in previous if d]
        write_bytes_atomic(digest_path(path), ("\n".join(lines) + "\n").encode(), fsync=True)
    return path


#: Digests of earlier files kept in a sidecar: the file at the path is the newest or, after a kill
#: between the sidecar's replacement and the rename, the one before (two kept: one more crash).
_PREVIOUS_DIGESTS = 2


def _listed_digests(path: Path) -> list[str]:
    """The sha256 digests a checkpoint's sidecar lists (the newest first); CheckpointError if it has none."""
    sidecar = digest_path(path)
    if not sidecar.is_file():
        raise CheckpointError(f"{path}: no {sidecar.name} beside it; refusing a checkpoint whose integrity cannot be checked")
    digests = [line.split()[0] for line in sidecar.read_text().splitlines() if line.strip()]
    if not digests or any(len(d) != 64 for d in digests):
        raise CheckpointError(f"{sidecar}: not a sha256 digest file")
    return digests


def load_training_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Loads a training checkpoint written by :func:`save_training_checkpoint`, safely.

    Checks, in order: the file exists; its sha256 matches the sidecar; it loads
    with ``torch.load(weights_only=True)`` (no arbitrary unpickling); it is a
    dict with the Lightning and ``zonda`` entries and a tensor ``state_dict``.
    Raises :class:`CheckpointError` naming the file otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if file_sha256(path) not in _listed_digests(path):
        raise CheckpointError(f"{path}: sha256 does not match {digest_path(path).name} (corrupt or modified file)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: it holds pickled objects that a weights-only load does not allow ({exc})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
    check_checkpoint_structure(checkpoint, path)
    return checkpoint


def check_checkpoint_structure(checkpoint: Any, path: str | os.PathLike[str]) -> None:
    """Raises CheckpointError unless ``checkpoint`` looks like a zonda training checkpoint."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: top level is {type(checkpoint).__name__}, expected a dict")
    missing = [k for k in _REQUIRED_KEYS if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not a zonda training checkpoint (missing {missing})")
    meta = checkpoint["zonda"]
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: zonda.format is not {CHECKPOINT_FORMAT!r}")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: zonda.version {meta.get('version')!r}; this zonda reads {CHECKPOINT_VERSION}")
    state = checkpoint["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: state_dict must map names to tensors")


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: atomic saves with sha256 sidecars, verified ``weights_only`` loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"SafeCheckpointIO takes no storage_options, got {storage_options!r}")
        save_training_checkpoint(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        if weights_only is False:
            raise CheckpointError(f"{path}: zonda loads checkpoints with weights_only=True only")
        return load_training_checkpoint(path, map_location=map_location or "cpu")

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)
        digest_path(path).unlink(missing_ok=True)


# --------------------------------------------------------------------- RNG


def collect_rng_states() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors/ints/lists (``weights_only``-loadable)."""
    version, keys, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": {"version": int(version), "state": list(keys), "gauss": gauss},
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: Mapping[str, Any]) -> None:
    """Inverse of :func:`collect_rng_states`."""
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
