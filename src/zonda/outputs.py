"""How every stage finishes its output directory: whole or not at all, resolved params beside, manifest last.

:func:`write_output` is the one way a stage's output is written (the six
functions of :mod:`zonda.stages`, through :func:`zonda.snapshot.build_snapshot`,
:func:`zonda.statistics.build_statistics` and :func:`zonda.training.train.train`
where the library builds it)::

    <out_dir>/
        ...                     what the stage's ``write(tmp)`` put there
        params.resolved.yaml    the fully resolved params the output was made with
        manifest.json           written last: its presence marks a complete output

``write`` fills an empty temporary directory beside ``out_dir`` and returns the
manifest; the directory is then renamed onto ``out_dir`` in one step (an
existing one is swapped aside and deleted). If ``write`` raises, nothing at
``out_dir`` changes and the temporary is removed (:func:`zonda.files.atomic_dir`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from zonda.files import atomic_dir
from zonda.params import Params, write_resolved
from zonda.provenance import write_manifest

PathLike = str | os.PathLike[str]


def write_output(params: Params, out_dir: PathLike, write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Runs ``write(tmp)`` into a fresh temporary directory, adds the resolved params and the manifest it
    returned (last), and moves the directory onto ``out_dir``; returns the manifest."""
    with atomic_dir(out_dir) as tmp:
        manifest = write(tmp)
        write_resolved(params, tmp)
        write_manifest(tmp, manifest)
    return manifest
