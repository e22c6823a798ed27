"""A real DVC data repository in a temporary directory (this module holds no tests).

``git init`` + ``dvc init`` + a local DVC remote, with the synthetic WB2-like
dataset tracked as a zarr store (``data/era5.zarr``, a DVC directory) and as a
netCDF file (``data/era5.nc``), at two revisions: tag ``v1`` (seed 0) and tag
``v2`` (seed 1, also branch ``main``), both pushed to the remote. The DVC side
goes through DVC's own API (``dvc.repo.Repo``); git through ``git``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import xarray as xr
import yaml
from dvc.repo import Repo

from tests.support.synthetic import synthetic_dataset, write_zarr

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
ZARR_PATH, NETCDF_PATH = "data/era5.zarr", "data/era5.nc"
SEEDS = {"v1": 0, "v2": 1}


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@dataclass(frozen=True)
class DataRepo:
    root: Path
    remote: Path

    def commit_of(self, rev: str) -> str:
        return git(self.root, "rev-parse", f"{rev}^{{commit}}")

    def tracked_md5(self, rev: str, path: str) -> str:
        """The md5 the ``.dvc`` file of ``path`` records at ``rev`` (read with git, not DVC)."""
        dvcfile = yaml.safe_load(git(self.root, "show", f"{rev}:{path}.dvc"))
        return dvcfile["outs"][0]["md5"]

    @staticmethod
    def dataset(rev: str) -> xr.Dataset:
        """What the repository holds at ``rev`` (both formats hold the same data)."""
        return synthetic_dataset(seed=SEEDS[rev])


def write_revision(repo: Path, rev: str) -> None:
    """Writes the dataset of ``rev`` in both formats, ``dvc add``s them, commits and tags ``rev``."""
    ds = DataRepo.dataset(rev)
    (repo / "data").mkdir(exist_ok=True)
    write_zarr(ds, repo / ZARR_PATH)
    ds.to_netcdf(repo / NETCDF_PATH, engine="h5netcdf")
    with Repo(str(repo)) as dvc:
        dvc.add([str(repo / ZARR_PATH), str(repo / NETCDF_PATH)])
        dvc.push()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"data {rev}")
    git(repo, "tag", rev)


def make_data_repo(base: Path) -> DataRepo:
    root, remote = base / "data-repo", base / "data-remote"
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    with Repo.init(str(root)) as dvc:
        with dvc.config.edit() as config:
            config["remote"]["store"] = {"url": str(remote)}
            config["core"]["remote"] = "store"
            config["core"]["autostage"] = True
    git(root, "add", "-A")
    git(root, "commit", "-qm", "dvc init")
    for rev in SEEDS:
        write_revision(root, rev)
    return DataRepo(root, remote)
