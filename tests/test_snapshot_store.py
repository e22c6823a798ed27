"""Snapshots pushed to a DVC remote by the snapshot stage, fetched back byte-identical by snapshot ID."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from dvc.repo import Repo

from zonda.cli import main as zonda_main
from zonda.snapshot_store import SnapshotStoreError, fetch_snapshot, lookup, resolve_remote
from zonda.stages import snapshot_stage


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def pushed(synthetic_params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A snapshot built by the stage with runtime.dvc_remote set: (params, its directory, manifest, its bytes)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    remote = tmp_path / "remote"
    params = synthetic_params(
        f"runtime.dvc_remote={remote}", f"runtime.mlflow_tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"
    )
    out = tmp_path / "snapshot"
    manifest = snapshot_stage(params, out, track=False, progress=False)
    return params, out, manifest, tree_bytes(out)


def test_the_stage_pushes_by_content_and_fetch_restores_it_byte_identical(pushed, tmp_path: Path) -> None:
    params, out, manifest, original = pushed
    remote = params.runtime.dvc_remote
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["dvc"]["md5"].endswith(".dir") and on_disk["dvc"] == {"md5": manifest["dvc"]["md5"]}
    entry = lookup(manifest["snapshot_id"], remote)
    assert entry["md5"] == manifest["dvc"]["dir_md5"] and entry["nfiles"] == len(original)

    snapshot_stage(params, out, progress=False)  # found in place, pushed again (nothing to send), tracked
    assert tree_bytes(out) == original
    shutil.rmtree(out)
    back = fetch_snapshot(manifest["snapshot_id"], tmp_path / "fetched", remote)
    assert back["snapshot_id"] == manifest["snapshot_id"]
    assert tree_bytes(tmp_path / "fetched") == original

    # what is tracked in MLflow says which snapshot went where
    mlflow.set_tracking_uri(params.runtime.mlflow_tracking_uri)
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.data.tags["zonda.snapshot_id"] == manifest["snapshot_id"]
    assert run.data.tags["zonda.snapshot.dvc_md5"] == manifest["dvc"]["md5"]
    assert run.data.tags["zonda.snapshot.dvc_remote"] == remote


def test_the_remote_is_an_ordinary_dvc_remote(pushed, tmp_path: Path) -> None:
    """DVC itself, in a project that knows only the remote and the .dir md5, pulls the same files."""
    params, out, manifest, original = pushed
    project = tmp_path / "project"
    project.mkdir()
    with Repo.init(str(project), no_scm=True) as repo:
        with repo.config.edit() as config:
            config["remote"]["team"] = {"url": params.runtime.dvc_remote}
            config["core"]["remote"] = "team"
    dvcfile = {"outs": [{"md5": lookup(manifest["snapshot_id"], params.runtime.dvc_remote)["md5"], "hash": "md5", "path": "snap"}]}
    (project / "snap.dvc").write_text(yaml.safe_dump(dvcfile))
    with Repo(str(project)) as repo:
        repo.pull()
    assert tree_bytes(project / "snap") == original


def test_a_second_push_of_the_same_snapshot_sends_nothing_and_keeps_its_manifest(pushed, tmp_path: Path) -> None:
    params, out, manifest, original = pushed
    objects = sorted(p for p in Path(params.runtime.dvc_remote, "files").rglob("*") if p.is_file())
    stamps = [p.stat().st_mtime_ns for p in objects]
    again = snapshot_stage(params, out, track=False, progress=False)
    assert again["snapshot_id"] == manifest["snapshot_id"] and again["dvc"] == manifest["dvc"]
    assert tree_bytes(out) == original
    assert [p.stat().st_mtime_ns for p in objects] == stamps


def test_fetch_refuses_an_unknown_id_and_a_damaged_remote_leaving_nothing(pushed, tmp_path: Path) -> None:
    params, _, manifest, _ = pushed
    remote = params.runtime.dvc_remote
    with pytest.raises(SnapshotStoreError, match="is not on DVC remote"):
        fetch_snapshot("sha256:" + "0" * 64, tmp_path / "none", remote)
    with pytest.raises(SnapshotStoreError, match="not a snapshot ID"):
        fetch_snapshot("abc", tmp_path / "none", remote)
    obj = max((p for p in Path(remote, "files").rglob("*") if not p.name.endswith(".dir")), key=lambda p: p.stat().st_size)
    obj.chmod(0o644)
    obj.write_bytes(b"\0" + obj.read_bytes()[1:])  # one byte of one chunk, changed on the remote
    with pytest.raises(SnapshotStoreError, match=manifest["snapshot_id"]):
        fetch_snapshot(manifest["snapshot_id"], tmp_path / "damaged", remote)
    assert not (tmp_path / "damaged").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".damaged")]


def test_zonda_snapshot_fetch_by_remote_name(pushed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    params, out, manifest, original = pushed
    project = tmp_path / "project"
    project.mkdir()
    with Repo.init(str(project), no_scm=True) as repo:
        with repo.config.edit() as config:
            config["remote"]["snapshots"] = {"url": params.runtime.dvc_remote}
    assert resolve_remote("snapshots", project) == params.runtime.dvc_remote
    monkeypatch.chdir(project)
    assert zonda_main(["snapshot", "fetch", manifest["snapshot_id"], "--out", str(tmp_path / "cli"), "--remote", "snapshots"]) == 0
    assert tree_bytes(tmp_path / "cli") == original
    assert zonda_main(["snapshot", "fetch", manifest["snapshot_id"], "--out", str(tmp_path / "x"), "--remote", "nope"]) == 2
    assert "the DVC project has no such remote (it has: snapshots)" in capsys.readouterr().err
