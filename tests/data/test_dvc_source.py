"""A dvc source (data.source.kind: dvc): a real git + DVC repository with a local remote, two revisions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.run import pin_run_inputs
from tests.support.dvc_data_repo import NETCDF_PATH, ZARR_PATH, DataRepo, git, make_data_repo
from tests.support.repo import REPO
from zonda.data import dvc_source
from zonda.data.dvc_source import DvcSourceError
from zonda.data.sources import preflight
from zonda.params import ParamsError, load_params
from zonda.snapshot import build_snapshot, open_snapshot
from zonda.snapshot_store import SnapshotStoreError


@pytest.fixture(scope="module")
def data_repo(tmp_path_factory: pytest.TempPathFactory) -> DataRepo:
    return make_data_repo(tmp_path_factory.mktemp("dvc-source"))


def dvc_params(repo: str | Path, path: str, rev: str, out: Path, *overrides: str):
    return load_params(
        REPO / "params" / "ci.yaml",
        ["data.source.kind=dvc", f"data.source.repo={repo}", f"data.source.path={path}", f"data.source.rev={rev}",
         f"runtime.output_root={out}", "runtime.dvc_remote=null", *overrides],
    )


def test_zarr_and_netcdf_at_two_revisions_give_two_snapshots_with_revision_and_hashes(
    data_repo: DataRepo, tmp_path: Path
) -> None:
    ids = {}
    for path in (ZARR_PATH, NETCDF_PATH):
        for rev in ("v1", "v2"):
            out = tmp_path / f"snap-{Path(path).suffix[1:]}-{rev}"
            manifest = build_snapshot(dvc_params(data_repo.root, path, rev, tmp_path / "root"), out, progress=False).manifest
            lineage = manifest["source"]["dvc"]
            assert lineage["rev"] == rev and lineage["path"] == path
            assert lineage["commit"] == data_repo.commit_of(rev)  # as git resolves the tag
            assert lineage["md5"] == data_repo.tracked_md5(rev, path)  # as the .dvc file at that tag records it
            expected = data_repo.dataset(rev).sel(level=[500, 850], time=slice("2000-01-01", "2000-01-14T18"))
            snap = open_snapshot(out)
            np.testing.assert_array_equal(snap["temperature"].values, expected["temperature"].values)
            assert "data.source.commit" not in str(out) and f"commit: {lineage['commit']}" in (
                out / "params.resolved.yaml"
            ).read_text()  # the pinned params are what the snapshot records
            ids[path, rev] = manifest["snapshot_id"]
    assert ids[ZARR_PATH, "v1"] != ids[ZARR_PATH, "v2"]
    # one dataset in two formats: the content hash does not see the container
    assert ids[ZARR_PATH, "v1"] == ids[NETCDF_PATH, "v1"] and ids[ZARR_PATH, "v2"] == ids[NETCDF_PATH, "v2"]


def test_a_branch_is_resolved_once_and_later_commits_on_it_are_not_read(data_repo: DataRepo, tmp_path: Path) -> None:
    work = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(data_repo.root), str(work))
    (work / ".dvc" / "cache").symlink_to(data_repo.root / ".dvc" / "cache")  # the data, without a pull
    pinned = dvc_source.pin(dvc_params(work, ZARR_PATH, "main", tmp_path / "root"))
    assert pinned.data.source.commit == data_repo.commit_of("v2")
    git(work, "checkout", "-q", "v1", "--", "data/era5.zarr.dvc")
    git(work, "commit", "-qm", "main moves back to the v1 data")
    assert git(work, "rev-parse", "main") != pinned.data.source.commit
    manifest = build_snapshot(pinned, tmp_path / "snap", progress=False).manifest
    assert manifest["source"]["dvc"]["commit"] == data_repo.commit_of("v2")
    assert manifest["source"]["dvc"]["md5"] == data_repo.tracked_md5("v2", ZARR_PATH)
    moved = build_snapshot(dvc_params(work, ZARR_PATH, "main", tmp_path / "root"), tmp_path / "snap-main", progress=False)
    assert moved.manifest["source"]["dvc"]["md5"] == data_repo.tracked_md5("v1", ZARR_PATH)  # a new run, the new tip


def test_a_git_url_is_cloned_and_its_data_comes_from_the_dvc_remote(data_repo: DataRepo, tmp_path: Path) -> None:
    params = dvc_source.pin(dvc_params(f"file://{data_repo.root}", NETCDF_PATH, "v1", tmp_path / "root"))
    checkout = dvc_source.materialise(params.data.source, tmp_path / "cache")
    assert checkout.revision.md5 == data_repo.tracked_md5("v1", NETCDF_PATH)
    assert checkout.path.read_bytes() == (data_repo.remote / "files" / "md5" / checkout.revision.md5[:2]
                                          / checkout.revision.md5[2:]).read_bytes()


@pytest.mark.parametrize(
    ("path", "rev", "expected"),
    [
        (ZARR_PATH, "v9", "has no revision 'v9'"),
        ("data/absent.zarr", "v1", "no such path at commit"),
        ("data/era5.zarr.dvc", "v1", "tracked by git, not by DVC"),
    ],
)
def test_a_missing_rev_or_untracked_path_fails_before_compute_naming_repo_rev_and_path(
    data_repo: DataRepo, tmp_path: Path, path: str, rev: str, expected: str
) -> None:
    params = dvc_params(data_repo.root, path, rev, tmp_path / "root", "data.source.format=zarr")
    with pytest.raises(DvcSourceError) as info:
        preflight(params.data)
    message = str(info.value)
    assert expected in message
    assert f"repo {str(data_repo.root)!r}" in message and f"rev {rev!r}" in message and f"path {path!r}" in message
    with pytest.raises(DvcSourceError):
        build_snapshot(params, tmp_path / "snap", progress=False)
    assert not (tmp_path / "snap").exists() and not (tmp_path / "root").exists()  # nothing computed, nothing written


def test_an_unreachable_remote_fails_before_compute_naming_repo_rev_and_path(data_repo: DataRepo, tmp_path: Path) -> None:
    moved = data_repo.remote.with_name("data-remote-away")
    url = f"file://{data_repo.root}"  # a clone: no DVC cache of its own, the data must come from the remote
    params = dvc_params(url, ZARR_PATH, "v2", tmp_path / "root")
    shutil.move(data_repo.remote, moved)
    try:
        with pytest.raises(DvcSourceError) as info:
            preflight(params.data)
        with pytest.raises(DvcSourceError):
            build_snapshot(params, tmp_path / "snap", progress=False)
    finally:
        shutil.move(moved, data_repo.remote)
    message = str(info.value)
    assert "the DVC remote cannot be reached" in message and str(data_repo.remote) in message
    assert f"repo {url!r}" in message and "rev 'v2'" in message and f"path {ZARR_PATH!r}" in message
    assert not (tmp_path / "snap").exists() and not (tmp_path / "root").exists()  # nothing computed, nothing written


def test_dvc_source_params_are_checked_at_load_time(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"data\.source: Value error|data\.source: rev is required"):
        load_params(REPO / "params" / "ci.yaml", ["data.source.kind=dvc", "data.source.repo=.", "data.source.path=a.zarr"])
    with pytest.raises(ParamsError, match="cannot tell the format of 'data/era5'"):
        dvc_params(".", "data/era5", "v1", tmp_path)
    with pytest.raises(ParamsError, match="only apply when kind is 'dvc'"):
        load_params(REPO / "params" / "ci.yaml", ["data.source.rev=v1"])
    assert dvc_params(".", "data/era5", "v1", tmp_path, "data.source.format=grib").data.source.file_format == "grib"


def test_a_cluster_run_refuses_local_paths_its_pods_cannot_reach(data_repo: DataRepo, tmp_path: Path) -> None:
    params = dvc_params(data_repo.root, ZARR_PATH, "v1", tmp_path, "runtime.dvc_remote=s3://bucket/dvc")
    with pytest.raises(DvcSourceError.__mro__[1], match="data.source.repo .* is a local path"):
        pin_run_inputs(params, cluster=True)
    on_pvc = load_params(REPO / "params" / "aifs.yaml")
    assert pin_run_inputs(on_pvc, cluster=True).runtime.dvc_remote == "/data/dvc-remote"  # on the preset's PVC
    off_pvc = load_params(REPO / "params" / "aifs.yaml", [f"runtime.dvc_remote={tmp_path / 'remote'}"])
    with pytest.raises(SnapshotStoreError, match="runtime.dvc_remote .* is a local path"):
        pin_run_inputs(off_pvc, cluster=True)
    local = pin_run_inputs(dvc_params(data_repo.root, ZARR_PATH, "v1", tmp_path), cluster=False)
    assert local.data.source.commit == data_repo.commit_of("v1")
