"""Mismatched artifacts: every stage checks its inputs against the digests recorded when they were written.

An edited ``statistics.nc``, a snapshot chunk swapped or edited after writing,
or an edited graph file is refused, naming the file and both hashes, before any
compute: otherwise a model would record the manifest's hash while it used
other numbers (false lineage).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.support import registry_builders as rf
from zonda.cli import main
from zonda.evaluation.run import run_evaluation
from zonda.files import file_sha256
from zonda.graph import load_graph
from zonda.integrity import IntegrityError
from zonda.registry.register import register_model
from zonda.snapshot import DATA_DIRNAME, open_snapshot, verify_snapshot
from zonda.statistics import build_statistics, load_statistics, statistics_hash

DEBUG = str(rf.REPO / "params" / "debug.yaml")


def _copy(name: str, tmp_path: Path) -> Path:
    """A private copy of one of the session's stage outputs (``snapshot``, ``statistics``, ``graph``)."""
    return Path(shutil.copytree(rf.stage_dirs()[name], tmp_path / name))


def _edit_statistics(stats: Path) -> None:
    """Doubles the temperature std in statistics.nc, leaving manifest.json as it was."""
    ds = xr.load_dataset(stats / "statistics.nc", engine="h5netcdf")
    ds["temperature"].loc[{"statistic": "std"}] = ds["temperature"].sel(statistic="std") * 2
    ds.to_netcdf(stats / "statistics.nc", engine="h5netcdf")


def _cli(*args: str) -> list[str]:
    p = rf.params()
    return ["--params", DEBUG, "data.source.kind=zarr", f"data.source.path={p.data.source.path}",
            f"runtime.output_root={p.runtime.output_root}", *args, "--no-mlflow", "-q"]


# ---------------------------------------------------------------- statistics.nc


def test_an_edited_statistics_file_is_refused_naming_it_and_both_hashes(tmp_path) -> None:
    stats = _copy("statistics", tmp_path)
    recorded = json.loads((stats / "manifest.json").read_text())["files"]["statistics.nc"]["sha256"]
    _edit_statistics(stats)
    with pytest.raises(IntegrityError) as info:
        load_statistics(stats)
    message = str(info.value)
    for words in (str(stats / "statistics.nc"), recorded, file_sha256(stats / "statistics.nc"), "manifest.json"):
        assert words in message, message


def test_edited_statistics_are_refused_by_their_content_hash_when_no_file_digest_was_recorded(tmp_path) -> None:
    stats = _copy("statistics", tmp_path)
    manifest = json.loads((stats / "manifest.json").read_text())
    del manifest["files"]  # as an artifact of an earlier zonda, before file digests were recorded
    (stats / "manifest.json").write_text(json.dumps(manifest))
    assert load_statistics(stats) is not None  # untouched values still verify
    _edit_statistics(stats)
    edited = xr.load_dataset(stats / "statistics.nc", engine="h5netcdf")
    with pytest.raises(IntegrityError) as info:
        load_statistics(stats)
    assert manifest["statistics_hash"] in str(info.value)
    assert f"sha256:{statistics_hash(edited)}" in str(info.value)


def test_training_with_edited_statistics_exits_2_before_training(tmp_path, capsys) -> None:
    snapshot, graph = rf.stage_dirs()["snapshot"], rf.stage_dirs()["graph"]
    stats = _copy("statistics", tmp_path)
    _edit_statistics(stats)
    out = tmp_path / "model"
    rc = main(["train", *_cli("--snapshot", str(snapshot), "--statistics", str(stats), "--graph", str(graph),
                              "--out", str(out))])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert str(stats / "statistics.nc") in err and "Traceback" not in err
    assert not (out / "manifest.json").exists() and not (out / "weights.safetensors").exists()


def test_evaluation_and_registration_refuse_edited_statistics(tmp_path) -> None:
    dirs = rf.stage_dirs()
    stats = _copy("statistics", tmp_path)
    _edit_statistics(stats)
    with pytest.raises(IntegrityError, match="statistics.nc"):
        run_evaluation(rf.params(), dirs["snapshot"], stats, dirs["graph"], rf.model_dir(0), tmp_path / "eval",
                       progress=False)
    assert not (tmp_path / "eval").exists() or not any((tmp_path / "eval").iterdir())
    evaluation = rf.evaluation_dir({rf.METRIC: 100.0}, lineage_of=rf.model_dir(0))
    with pytest.raises(IntegrityError, match="statistics.nc"):  # before anything is logged or registered
        register_model(rf.params(), rf.model_dir(0), stats, dirs["graph"], evaluation, snapshot_dir=dirs["snapshot"])


# ---------------------------------------------------------------- snapshot chunks


def _temperature_chunk(snapshot: Path, index: int) -> Path:
    return snapshot / DATA_DIRNAME / "temperature" / "c" / str(index) / "0" / "0" / "0"


def test_a_swapped_snapshot_chunk_is_refused_by_statistics_before_compute(tmp_path) -> None:
    snapshot = _copy("snapshot", tmp_path)
    a, b = _temperature_chunk(snapshot, 0), _temperature_chunk(snapshot, 1)
    recorded = json.loads((snapshot / "store_digests.json").read_text())["files"]["temperature/c/0/0/0/0"]["sha256"]
    first, second = a.read_bytes(), b.read_bytes()
    a.write_bytes(second)
    b.write_bytes(first)  # both valid chunks, each in the other's place: zarr reads them without complaint
    assert np.isfinite(xr.open_zarr(snapshot / DATA_DIRNAME, consolidated=False)["temperature"].values).all()
    with pytest.raises(IntegrityError) as info:
        build_statistics(rf.params(), snapshot, tmp_path / "stats", progress=False)
    message = str(info.value)
    for words in (str(a), "variable 'temperature', chunk (0, 0, 0, 0), time steps 0..3", recorded,
                  file_sha256(a), "store_digests.json"):
        assert words in message, message
    assert not (tmp_path / "stats").exists()


def test_a_snapshot_chunk_edited_in_place_is_refused_wherever_the_snapshot_is_opened(tmp_path, capsys) -> None:
    snapshot = _copy("snapshot", tmp_path)
    chunk = _temperature_chunk(snapshot, 2)
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte different
    chunk.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="is not the sha256"):
        open_snapshot(snapshot)  # how graph, train, evaluate and register open it
    rc = main(["graph", *_cli("--snapshot", str(snapshot), "--out", str(tmp_path / "graph"))])
    err = capsys.readouterr().err
    assert rc == 2 and str(chunk) in err and "time steps 8..11" in err, err


def test_an_unchanged_snapshot_verifies_and_a_file_added_to_it_is_refused(tmp_path) -> None:
    snapshot = _copy("snapshot", tmp_path)
    recorded = json.loads((rf.stage_dirs()["snapshot"] / "manifest.json").read_text())["snapshot_id"]
    assert verify_snapshot(snapshot)["snapshot_id"] == recorded
    (snapshot / DATA_DIRNAME / "temperature" / "c" / "99").mkdir()
    (snapshot / DATA_DIRNAME / "temperature" / "c" / "99" / "0").write_bytes(b"extra")
    with pytest.raises(IntegrityError, match="not written by the stage"):
        verify_snapshot(snapshot)


def test_a_manifest_without_store_digests_is_refused_with_the_way_out(tmp_path) -> None:
    snapshot = _copy("snapshot", tmp_path)
    manifest = json.loads((snapshot / "manifest.json").read_text())
    del manifest["store_digests"]
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="rebuild it with `zonda snapshot`"):
        verify_snapshot(snapshot)


# ---------------------------------------------------------------- graph


def test_an_edited_graph_file_is_refused_naming_it_and_both_hashes(tmp_path) -> None:
    graph = _copy("graph", tmp_path)
    tensors = graph / "graph.safetensors"
    recorded = json.loads((graph / "graph.json").read_text())["files"]["graph.safetensors"]["sha256"]
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0x01
    tensors.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as info:
        load_graph(graph)
    for words in (str(tensors), recorded, file_sha256(tensors), "graph.json"):
        assert words in str(info.value), str(info.value)
