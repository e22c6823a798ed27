"""Bad data: unit mix-ups per pressure level, constant fields, corrupt chunks, a full disk, orphaned temporaries, ERA5 GRIB.

Each case is what an operator meets with real archives; each must end in a
clear error naming the variable, level, time, store or path (exit status 2
for bad input from the CLI), and leave no half-written artifact.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr.storage._local as zarr_local_store

from tests.support.grib import write_grib
from tests.support.repo import REPO
from tests.support.synthetic import synthetic_dataset
from zonda.cli import main
from zonda.data.reading import ChunkReadError
from zonda.data.validation import SnapshotValidationError, check_values
from zonda.files import DiskFullError, atomic_dir
from zonda.params import load_params
from zonda.snapshot import DATA_DIRNAME, build_snapshot, open_snapshot, verify_snapshot
from zonda.statistics import compute_statistics

CI = str(REPO / "params" / "ci.yaml")
G0 = 9.80665


def _hidden_siblings(directory: Path, name: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(f".{name}"))


def _chunked_source(ds: xr.Dataset, path: Path, steps: int = 4) -> Path:
    """A zarr v3 source chunked ``steps`` time steps at a time (zstd-compressed, zarr's default)."""
    ds.chunk({"time": steps}).to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return path


# ---------------------------------------------------------------- values that are wrong but finite


def test_geopotential_height_in_metres_labelled_m2_s2_is_caught_naming_the_level(synthetic_params, tmp_path) -> None:
    ds = synthetic_dataset()
    ds["geopotential"] = ds["geopotential"] / G0  # geopotential height (m), about 5200 at 500 hPa
    ds["geopotential"].attrs["units"] = "m**2 s**-2"  # ... labelled as geopotential
    params = synthetic_params(source=_chunked_source(ds, tmp_path / "z-over-g.zarr"))
    with pytest.raises(SnapshotValidationError) as info:
        build_snapshot(params, tmp_path / "snap", progress=False)
    message = str(info.value)
    for words in ("'geopotential' at level 500 hPa", "plausible range", "time=2000-01-01T00:00:00", "wrong units"):
        assert words in message, message
    assert not (tmp_path / "snap").exists() and _hidden_siblings(tmp_path, "snap") == []


@pytest.mark.parametrize("levels", [[850, 925, 1000], [850, 1000]])
def test_geopotential_height_in_metres_near_the_ground_is_caught_by_the_hypsometric_thickness(levels) -> None:
    # Below about 730 hPa the per-level plausible ranges of geopotential and of its height in metres overlap;
    # the thickness between two levels does not: R_d T ln(p1/p2) with T in 150..350 K.
    lat, lon = np.linspace(-80, 80, 5), np.linspace(0, 300, 6)
    times = pd.date_range("2000-01-01", periods=2, freq="6h")
    t_layer = 250.0 + 30.0 * np.cos(np.deg2rad(lat))[:, None] + 0.0 * lon  # K, 250..280 (latitude, longitude)
    p = np.asarray(levels, dtype=float)
    z1000 = 900.0 + 300.0 * np.cos(np.deg2rad(lon))[None, :] + 0.0 * lat[:, None]  # m2/s2 (latitude, longitude)
    z = np.stack([z1000 + 287.05 * t_layer * np.log(1000.0 / lev) for lev in p])  # (level, latitude, longitude)
    ds = xr.Dataset(
        {"geopotential": (("time", "level", "latitude", "longitude"), np.stack([z, z]), {"units": "m**2 s**-2"})},
        coords={"time": times, "level": p, "latitude": lat, "longitude": lon},
    )
    check_values(ds, ["geopotential"])  # real geopotential passes
    ds["geopotential"] = ds["geopotential"] / G0  # heights in metres, labelled as geopotential
    ds["geopotential"].attrs["units"] = "m**2 s**-2"
    assert ds["geopotential"].sel(level=850).min() > 0  # within the per-level plausible ranges at 850 hPa and below
    with pytest.raises(SnapshotValidationError) as info:
        check_values(ds, ["geopotential"])
    message = str(info.value)
    for words in (f"between {levels[1]:g} and {levels[0]:g} hPa", "layer-mean temperature of 2", "time=2000-01-01T00:00:00",
                  "height in metres"):
        assert words in message, message
    assert "plausible range [" not in message  # the per-level ranges did not catch it: the thickness did


@pytest.mark.parametrize(
    "name, index, value, words",
    [
        ("u_component_of_wind", (9, 1), 0.0, ["'u_component_of_wind' is constant (0 everywhere)", "time=2000-01-03T06:00:00", "level=500"]),
        ("surface_pressure", (20,), 101325.0, ["'surface_pressure' is constant (101325 everywhere)", "time=2000-01-06T00:00:00"]),
    ],
)
def test_a_whole_field_constant_at_one_time_is_flagged(name, index, value, words, synthetic_params, tmp_path) -> None:
    ds = synthetic_dataset()  # levels 250, 500, 850: index 1 is 500 hPa
    ds[name][index] = value  # a zero-filled (or fill-valued) field: every value plausible, the field is not
    params = synthetic_params(source=_chunked_source(ds, tmp_path / "constant.zarr"))
    with pytest.raises(SnapshotValidationError) as info:
        build_snapshot(params, tmp_path / "snap", progress=False)
    for word in words:
        assert word in str(info.value), str(info.value)
    assert not (tmp_path / "snap").exists()


@pytest.mark.parametrize(
    "name, index, value, words",
    [
        ("temperature", (9, 1, 3, 3), np.nan, ["'temperature'", "NaN/inf", "time=2000-01-03T06:00:00"]),
        ("surface_pressure", (20, 0, 0), np.inf, ["'surface_pressure'", "NaN/inf", "time=2000-01-06T00:00:00"]),
    ],
    ids=["nan", "inf"],
)
def test_zonda_snapshot_of_a_non_finite_value_exits_2_naming_variable_and_time(name, index, value, words, tmp_path, capsys) -> None:
    """The user's view of validation (its library cases: tests/test_snapshot.py): exit 2, the problems listed one a
    line under the error line, nothing written."""
    ds = synthetic_dataset()
    ds[name][index] = value
    src = _chunked_source(ds, tmp_path / "src.zarr")
    out = tmp_path / "snap"
    rc = main(["snapshot", "--params", CI, "data.source.kind=zarr", f"data.source.path={src}",
               f"runtime.output_root={tmp_path / 'root'}", "--out", str(out), "--no-mlflow", "-q"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("zonda snapshot: error: snapshot validation failed") and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    assert not out.exists() and _hidden_siblings(tmp_path, "snap") == []


# ---------------------------------------------------------------- corrupt or truncated chunks


def _damage(chunk: Path, how: str) -> None:
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x00" * len(data))


@pytest.mark.parametrize("how", ["truncated", "zeroed"])
def test_a_corrupt_chunk_in_a_zarr_source_is_named_with_exit_2(how, tmp_path, capsys) -> None:
    src = _chunked_source(synthetic_dataset(), tmp_path / "src.zarr")
    _damage(src / "temperature" / "c" / "3" / "0" / "0" / "0", how)  # time steps 12..15: 2000-01-04
    out = tmp_path / "snap"
    rc = main(["snapshot", "--params", CI, "data.source.kind=zarr", f"data.source.path={src}",
               f"runtime.output_root={tmp_path / 'root'}", "--out", str(out), "--no-mlflow", "-q"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for words in (str(src), "variable 'temperature'", "2000-01-04T00:00:00 .. 2000-01-04T18:00:00", "steps 12..15"):
        assert words in err, err
    assert not out.exists() and _hidden_siblings(tmp_path, "snap") == []


def test_a_corrupt_chunk_read_by_statistics_names_store_variable_time_and_chunk(synthetic_params, tmp_path) -> None:
    params = synthetic_params()  # ci preset: chunk_time 4
    build_snapshot(params, tmp_path / "snap", progress=False)
    store = tmp_path / "snap" / DATA_DIRNAME
    _damage(store / "temperature" / "c" / "1" / "0" / "0" / "0", "truncated")  # steps 4..7: 2000-01-02
    # the read path itself (the stage refuses the snapshot earlier, on its digests: see the next test)
    with pytest.raises(ChunkReadError) as info:
        compute_statistics(tmp_path / "snap", params, progress=False)
    for words in (str(store), "variable 'temperature'", "2000-01-02T00:00:00 .. 2000-01-02T18:00:00",
                  "chunk 1 along time of 4 steps"):
        assert words in str(info.value), str(info.value)


@pytest.mark.parametrize("how, words", [("truncated", ["bytes with sha256"]), ("zeroed", ["is not the sha256"])])
def test_zonda_statistics_on_a_snapshot_with_a_damaged_chunk_exits_2_naming_it(how, words, synthetic_params, tmp_path, capsys) -> None:
    params = synthetic_params()
    build_snapshot(params, tmp_path / "snap", progress=False)
    chunk = tmp_path / "snap" / DATA_DIRNAME / "temperature" / "c" / "1" / "0" / "0" / "0"
    _damage(chunk, how)
    out = tmp_path / "stats"
    rc = main(["statistics", "--params", CI, "data.source.kind=zarr", f"data.source.path={params.data.source.path}",
               f"runtime.output_root={tmp_path / 'root'}", "--snapshot", str(tmp_path / "snap"), "--out", str(out),
               "--no-mlflow", "-q"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in [str(chunk), "variable 'temperature'", "chunk (1, 0, 0, 0)", "time steps 4..7", *words]:
        assert word in err, err
    assert not out.exists()


# ---------------------------------------------------------------- a full disk, a killed writer


def test_disk_full_while_rewriting_a_snapshot_leaves_nothing_and_names_the_path(synthetic_params, tmp_path, monkeypatch) -> None:
    out = tmp_path / "snap"
    first = build_snapshot(synthetic_params(), out, progress=False)
    rechunked = synthetic_params("data.chunk_time=2")  # its source is written now, before the disk "fills"
    real_put, calls, fail_at = zarr_local_store._put, itertools.count(1), 60  # 60: among the first block's chunks

    def put(path, value, exclusive=False):
        n = next(calls)
        if n == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        if n > fail_at:
            time.sleep(0.2)  # chunk writes still in flight when the error surfaces, as on a real full disk
        return real_put(path, value, exclusive)

    monkeypatch.setattr(zarr_local_store, "_put", put)
    with pytest.raises(DiskFullError) as info:
        build_snapshot(rechunked, out, progress=False)
    assert next(calls) > fail_at + 1, "the failure was not injected mid-write"
    assert str(out) in str(info.value) and "no space left" in str(info.value)
    time.sleep(0.5)  # a write that outlived the cleanup would have re-created its directory by now
    assert _hidden_siblings(tmp_path, "snap") == []
    assert verify_snapshot(out)["snapshot_id"] == first.snapshot_id  # the previous snapshot is intact


_WRITER = """
import sys, time
from zonda.files import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "part").write_text("half written")
    print(tmp, flush=True)
    time.sleep(600)
"""


def _writer(target: Path) -> tuple[subprocess.Popen, Path]:
    """A process writing ``target`` through atomic_dir, stopped half-way; (process, its temporary)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True, env=env)
    return proc, Path(proc.stdout.readline().strip())


def test_the_temporary_of_a_killed_writer_is_removed_by_the_next_write_and_no_other(tmp_path) -> None:
    target = tmp_path / "snap"
    killed, orphan = _writer(target)
    live, in_progress = _writer(target)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        assert orphan.is_dir() and in_progress.is_dir()
        other_host = tmp_path / f".snap.tmp-{killed.pid}-1@another-host.example-0123abcd"
        other_host.mkdir()  # a writer on another node of a shared volume: its liveness is unknown here
        with atomic_dir(target) as tmp:
            (tmp / "data").write_text("complete")
        assert (target / "data").read_text() == "complete"
        assert not orphan.exists()
        assert in_progress.is_dir() and other_host.is_dir()
    finally:
        live.kill()
        live.wait(10)


# ---------------------------------------------------------------- ERA5 GRIB layout


def _append_orography(path: Path, ds: xr.Dataset, orography: np.ndarray) -> None:
    """Appends ERA5's surface ``z`` (orography, repeated at every time) to a GRIB file written by write_grib."""
    eccodes = pytest.importorskip("eccodes")
    lat, lon = ds["latitude"].values, ds["longitude"].values
    with open(path, "ab") as out:
        for value in ds["time"].values:
            stamp = pd.Timestamp(value)
            h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
            try:
                for key, v in [
                    ("Ni", len(lon)), ("Nj", len(lat)),
                    ("latitudeOfFirstGridPointInDegrees", float(lat[-1])), ("latitudeOfLastGridPointInDegrees", float(lat[0])),
                    ("longitudeOfFirstGridPointInDegrees", float(lon[0])), ("longitudeOfLastGridPointInDegrees", float(lon[-1])),
                    ("iDirectionIncrementInDegrees", float(lon[1] - lon[0])), ("jDirectionIncrementInDegrees", float(lat[1] - lat[0])),
                    ("dataDate", int(stamp.strftime("%Y%m%d"))), ("dataTime", stamp.hour * 100),
                    ("shortName", "z"), ("packingType", "grid_ieee"),
                ]:
                    eccodes.codes_set(h, key, v)
                eccodes.codes_set_values(h, orography[::-1].astype("f8").ravel())  # north-to-south rows
                eccodes.codes_write(h, out)
            finally:
                eccodes.codes_release(h)


def test_grib_with_orography_z_beside_pressure_level_z_maps_it_to_geopotential_at_surface(synthetic_params, tmp_path) -> None:
    ds = synthetic_dataset(n_time=8, n_lat=16, n_lon=32)  # two days: cfgrib reads GRIB message by message
    orography = np.random.default_rng(3).uniform(0.0, 2.0e4, (ds.sizes["latitude"], ds.sizes["longitude"])).astype("f4")
    src = write_grib(ds, tmp_path / "era5.grib2")
    _append_orography(src, ds, orography)
    params = synthetic_params(  # the ci preset (static: [geopotential_at_surface]) on these two days
        "data.source.kind=grib", f"data.source.path={src}", "data.time=2000-01-01/2000-01-02T18",
        "data.splits.train=2000-01-01/2000-01-01T18", "data.splits.validation=2000-01-02/2000-01-02T06",
        "data.splits.test=2000-01-02T12/2000-01-02T18", "evaluation.lead_days=0.25", "evaluation.headline_lead_days=[0.25]",
        "evaluation.map_lead_days=[0.25]", "registry.promotion.metrics=[rmse.geopotential.500.0.25d]",
    )
    snap = open_snapshot(build_snapshot(params, tmp_path / "snap", progress=False).path)
    np.testing.assert_array_equal(snap["geopotential_at_surface"].transpose("latitude", "longitude").values, orography)
    expected = ds["geopotential"].sel(level=params.data.levels)
    np.testing.assert_array_equal(snap["geopotential"].transpose(*expected.dims).values, expected.values)


# ---------------------------------------------------------------- the same faults for real (make test-faults)


_FULL_DISK = """
import json, os, sys
from pathlib import Path
from zonda.cli import main
disk, src, root = map(Path, sys.argv[1:4])
out = disk / "snap"
first = main(["snapshot", "--params", sys.argv[4], "data.source.kind=zarr", f"data.source.path={src}",
              f"runtime.output_root={root}", "--out", str(out), "--no-mlflow", "-q"])
manifest = (out / "manifest.json").read_text() if first == 0 else None
second = main(["snapshot", "--params", sys.argv[4], "data.source.kind=zarr", f"data.source.path={src}",
               "data.chunk_time=2", f"runtime.output_root={root}", "--out", str(out), "--no-mlflow", "-q"])
print(json.dumps({"first": first, "second": second, "entries": sorted(os.listdir(disk)),
                  "kept": manifest is not None and (out / "manifest.json").read_text() == manifest}))
"""


@pytest.mark.faults
def test_a_real_full_disk_while_rewriting_a_snapshot(tmp_path) -> None:
    """On a small tmpfs (mounted in a user+mount namespace: no root needed) the second snapshot does not fit."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user namespaces here to mount a small tmpfs")
    src = _chunked_source(synthetic_dataset(), tmp_path / "src.zarr")
    sizing = tmp_path / "sizing"
    build_snapshot(_ci_params(src, tmp_path), sizing, progress=False)
    size = sum(p.stat().st_size for p in sizing.rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(_FULL_DISK)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    mount = f"mount -t tmpfs -o size={int(size * 1.6)} tmpfs {disk}"  # room for one snapshot, not two
    run = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f'{mount} && exec "$0" "$@"', sys.executable, str(script), str(disk), str(src),
         str(tmp_path / "root"), CI],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["first"] == 0 and result["second"] == 1, run.stderr[-3000:]
    assert f"{disk / 'snap'}: no space left on the device" in run.stderr and "Traceback" not in run.stderr
    # the kept snapshot and the stage's log beside it (zonda.console), no .snap.tmp-* left on the full disk
    assert result["entries"] == ["snap", "snap.log"]
    assert result["kept"]


def _ci_params(src: Path, tmp_path: Path, *overrides: str):
    return load_params(CI, ["data.source.kind=zarr", f"data.source.path={src}", f"runtime.output_root={tmp_path / 'root'}",
                            *overrides])


_SNAPSHOT = """
import sys
from zonda.cli import main
sys.exit(main(["snapshot", "--params", sys.argv[1], "data.source.kind=zarr", f"data.source.path={sys.argv[2]}",
               f"runtime.output_root={sys.argv[3]}", "--out", sys.argv[4], "--no-mlflow", "-q"]))
"""


@pytest.mark.faults
def test_kill_9_mid_snapshot_write_then_a_rerun_leaves_no_temporary(tmp_path) -> None:
    src = _chunked_source(synthetic_dataset(n_time=56, n_lat=64, n_lon=128), tmp_path / "src.zarr")
    out, env = tmp_path / "snap", {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-c", _SNAPSHOT, CI, str(src), str(tmp_path / "root"), str(out)]
    proc = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".snap.tmp-") and (p / DATA_DIRNAME).exists() for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the snapshot ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert _hidden_siblings(tmp_path, "snap"), "kill -9 left no temporary: nothing to test"
    assert subprocess.run(command, env=env, timeout=300).returncode == 0
    assert _hidden_siblings(tmp_path, "snap") == []
    verify_snapshot(out)
