"""Reuse of earlier stage outputs: a stage whose inputs did not change is not run again.

KFP's cache skips a task on a cluster, but the KFP local runner and DVC-less
``zonda <stage>`` calls have none, so the stage layer keeps its own. A stage's
*input key* is the sha256 of what its output depends on:

- the params sections it reads (:meth:`Params.for_stage`, without ``runtime``),
- the IDs of its upstream outputs (``snapshot_id``, ``statistics_hash``,
  ``graph_hash``, ``model_id``; an evaluation is identified by its own key),
- the digest of the zonda code that runs (every ``.py`` file of the package),
- for the snapshot, the source's fingerprint (:mod:`zonda.data.fingerprint`: a
  zarr store's metadata and object versions, files' sizes and hashes), so an
  updated store is snapshotted again although its URL is the same.

A finished stage records ``<output_root>/stage-index/<stage>/<key>.json``
(where its output is) and writes the key into its ``manifest.json``. A later
call with the same key hard-links that output into its own ``out_dir`` (a copy
across file systems) instead of running, and says ``reused <id> from <where>``.
``ZONDA_REUSE=0`` turns reuse off.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import zonda
from zonda import tracking
from zonda.console import CONSOLE, adopt_library_loggers
from zonda.data.fingerprint import source_fingerprint
from zonda.files import atomic_dir, link_or_copy, read_json_file, write_json_atomic
from zonda.params import Params
from zonda.provenance import canonical_json_hash, read_manifest, write_manifest


PathLike = str | os.PathLike[str]

INDEX_DIRNAME = "stage-index"
KEY_FIELD = "stage_key"
REUSE_ENV = "ZONDA_REUSE"

# The manifest field that identifies each stage's output to the stages downstream.
OUTPUT_ID_FIELD = {
    "snapshot": "snapshot_id",
    "statistics": "statistics_hash",
    "graph": "graph_hash",
    "train": "model_id",
    "evaluate": KEY_FIELD,
    "register": KEY_FIELD,
}


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over the path and bytes of every ``.py`` file of the zonda package that runs."""
    root = Path(zonda.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def output_id(stage: str, manifest: dict[str, Any]) -> str:
    """The ID of a stage's output from its manifest; KeyError naming the field when it is missing."""
    field = OUTPUT_ID_FIELD[stage]
    if manifest.get(field) is None:
        raise KeyError(f"{stage} manifest has no {field!r}")
    return str(manifest[field])


def _verify_upstream(stage: str, directory: PathLike) -> None:
    """Checks a snapshot, statistics or graph output against the digests recorded at write time (IntegrityError
    naming the file otherwise): a reused output must not stand for inputs edited since their manifest was written."""
    # Imported here, not at the top: `make run-pipeline` imports this module, and its preflight must fail in
    # seconds, before torch-geometric (zonda.graph) and xarray/zarr (snapshot, statistics) are loaded.
    if stage == "snapshot":
        from zonda.snapshot import verify_snapshot

        verify_snapshot(directory)
    elif stage == "statistics":
        from zonda.statistics import load_statistics

        load_statistics(directory).close()
    elif stage == "graph":
        from zonda.graph.files import verify_graph_files  # the tensors' digest, without loading torch

        verify_graph_files(Path(directory))


def upstream_ids(upstream: dict[str, PathLike]) -> dict[str, str]:
    """``{stage: output ID}`` of upstream output directories (``{"snapshot": dir, ...}``), each verified first."""
    ids = {}
    for stage, directory in upstream.items():
        manifest = read_manifest(directory)
        if manifest is None:
            raise FileNotFoundError(f"{directory}: no manifest.json (not a finished {stage} output)")
        _verify_upstream(stage, directory)
        ids[stage] = output_id(stage, manifest)
    return ids


def input_key(
    params: Params, stage: str, upstream: dict[str, PathLike], *, fingerprint: dict[str, Any] | None = None
) -> str:
    """The stage's input key (see the module docstring).

    For the snapshot, ``fingerprint`` is the source's (taken here when not given).
    """
    return _key(params, stage, upstream_ids(upstream), fingerprint)


def _key(params: Params, stage: str, ids: dict[str, str], fingerprint: dict[str, Any] | None) -> str:
    """:func:`input_key` from the upstream outputs' IDs."""
    sections = params.for_stage(stage)
    sections.pop("runtime")
    sections.pop("name")
    payload = {"stage": stage, "params": sections, "upstream": ids, "code": code_digest()}
    if stage == "snapshot":
        payload["source"] = (fingerprint or source_fingerprint(params.data))["digest"]
    return canonical_json_hash(payload)


def _index_path(params: Params, stage: str, key: str) -> Path:
    return Path(params.runtime.output_root).resolve() / INDEX_DIRNAME / stage / f"{key}.json"


def reuse_enabled() -> bool:
    return os.environ.get(REUSE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def find(params: Params, stage: str, key: str) -> tuple[Path, dict[str, Any]] | None:
    """(directory, manifest) of an earlier output with this key, or None (none, moved or overwritten since)."""
    entry = _index_path(params, stage, key)
    if not entry.is_file():
        return None
    directory = Path(read_json_file(entry, "a zonda stage-index entry")["path"])
    manifest = read_manifest(directory) if directory.is_dir() else None
    if manifest is None or manifest.get(KEY_FIELD) != key:
        return None
    return directory, manifest


def reuse(params: Params, stage: str, key: str, out_dir: PathLike) -> dict[str, Any] | None:
    """Puts the earlier output with this key at ``out_dir`` and returns its manifest; None when there is none."""
    if not reuse_enabled():
        return None
    found = find(params, stage, key)
    if found is None:
        return None
    source, manifest = found
    out_dir = Path(out_dir)
    if source.resolve() != out_dir.resolve():
        with atomic_dir(out_dir) as tmp:
            shutil.copytree(source, tmp, copy_function=link_or_copy, dirs_exist_ok=True)
    CONSOLE.info("%s: reused %s from %s", stage, output_id(stage, manifest), source)
    return manifest


def record_reuse(
    params: Params, stage: str, manifest: dict[str, Any], out_dir: PathLike, source: Path, *, mlflow_run_id: str | None
) -> None:
    """The MLflow record of a reused output: a stage run tagged ``zonda.reused_from`` with its manifest; nothing
    is recomputed, and nothing heavier than MLflow is loaded (a rerun with every output present starts no task)."""
    import mlflow  # MLflow boundary

    adopt_library_loggers()
    with tracking.stage_run(params, mlflow_run_id, stage):
        mlflow.set_tags({"zonda.reused_from": str(source)})
        tracking.log_manifest(stage, manifest, out_dir)


def record(params: Params, stage: str, key: str, out_dir: PathLike, manifest: dict[str, Any]) -> dict[str, Any]:
    """Writes the key into ``out_dir``'s manifest and indexes the output; returns the manifest with the key."""
    out_dir = Path(out_dir).resolve()
    manifest = {**(read_manifest(out_dir) or manifest), KEY_FIELD: key}
    write_manifest(out_dir, manifest)
    write_json_atomic(_index_path(params, stage, key), {"path": str(out_dir), "id": output_id(stage, manifest)})
    return manifest


# Each stage's upstream stages, in pipeline order (the DAG of pipelines/zonda_pipeline.py).
UPSTREAM: dict[str, tuple[str, ...]] = {
    "snapshot": (),
    "statistics": ("snapshot",),
    "graph": ("snapshot",),
    "train": ("snapshot", "statistics", "graph"),
    "evaluate": ("snapshot", "statistics", "graph", "train"),
    "register": ("snapshot", "statistics", "graph", "train", "evaluate"),
}


def locate(params: Params, *, fingerprint: dict[str, Any] | None = None) -> dict[str, Path]:
    """``{stage: output directory}`` of the outputs these params lead to, as far as the index has them.

    Walks the stages in pipeline order, each key from the params and the
    upstream outputs found before it (what a pipeline run with these params
    produced or reused); stops at the first stage with none. ``fingerprint``:
    the source's, when the caller has taken it already. Each output found is
    verified once (:func:`upstream_ids`), not once per stage downstream of it.
    """
    found: dict[str, Path] = {}
    ids: dict[str, str] = {}
    fingerprint = fingerprint or source_fingerprint(params.data)
    for stage, upstream in UPSTREAM.items():
        hit = find(params, stage, _key(params, stage, {name: ids[name] for name in upstream}, fingerprint))
        if hit is None:
            break
        found[stage] = hit[0]
        ids |= upstream_ids({stage: hit[0]})
    return found
