"""The Held-Suarez restarts shipped in the package: where each one is, without loading JAX or dinosaur.

The run's preflight checks that the builtin restart exists before anything starts;
:mod:`zonda.data.heldsuarez` reads it.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_RESTART_SPINUP_DAYS = 300.0

_PACKAGE_DIR = Path(__file__).resolve().parent


def builtin_restart_path(truncation: int, layers: int) -> Path:
    """Path of the restart shipped in the package for T``truncation`` L``layers``.

    Raises:
      FileNotFoundError: no such file is shipped; the message gives the command that writes it.
    """
    name = f"heldsuarez_restart_T{truncation}_L{layers}.npz"
    path = _PACKAGE_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"no builtin Held-Suarez restart for T{truncation} L{layers} ({path}); write it with "
            f"`zonda data heldsuarez --spinup-days {DEFAULT_RESTART_SPINUP_DAYS:g} --write-restart "
            f"src/zonda/data/{name} data.heldsuarez.truncation={truncation} data.heldsuarez.layers={layers}`, "
            f"or set data.heldsuarez.restart=rest with data.heldsuarez.spinup_days >= 200"
        )
    return path
