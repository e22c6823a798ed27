"""A graph directory's files and their check against ``graph.json``, without torch.

The stage cache verifies a graph it reuses with :func:`verify_graph_files` (a
rerun with every output present loads no tensor library); :func:`zonda.graph.io.load_graph`
does the same checks and then loads and checks the tensors themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zonda.files import read_json_file
from zonda.graph.hashing import SCHEMA_VERSION, graph_hash
from zonda.integrity import verify_file

TENSORS_FILE = "graph.safetensors"
MANIFEST_FILE = "graph.json"
FORMAT = "zonda.graph"


def read_manifest(directory: Path) -> dict[str, Any]:
    """The parsed graph.json of a graph directory (ValueError naming the file if absent/bad)."""
    path = Path(directory) / MANIFEST_FILE
    manifest = read_json_file(path, "not a graph directory, or save_graph did not finish")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version is {manifest.get('schema_version')!r}; this zonda reads "
                         f"{SCHEMA_VERSION} (rebuild the graph)")
    return manifest


def verify_graph_files(directory: Path) -> dict[str, Any]:
    """Checks the tensors file's sha256 against graph.json and the recorded graph_hash against its params and
    grid (IntegrityError / ValueError naming the file otherwise); returns the manifest."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    path = directory / TENSORS_FILE
    if not path.is_file():
        raise ValueError(f"{path}: not found")
    verify_file(path, manifest.get("files", {}).get(TENSORS_FILE, {}), recorded_in=directory / MANIFEST_FILE)
    recomputed = graph_hash(manifest["params"], manifest["grid"]["latitudes"], manifest["grid"]["longitudes"])
    if recomputed != manifest["graph_hash"]:
        raise ValueError(f"{directory / MANIFEST_FILE}: graph_hash does not match its params and grid "
                         "(edited by hand, or written by another schema)")
    return manifest
