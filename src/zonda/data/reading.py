"""Reading blocks of a zarr store so that a corrupt or truncated chunk is reported, not a codec's traceback.

A chunk that fails to decompress makes zarr/numcodecs raise errors such as
``RuntimeError: Could not set determine zstd frame size``, which name no store,
variable or time. :func:`read_values` and :func:`load_block` catch any read
error of a block and, on that failure path only, read the block again piece
by piece (one on-disk chunk along time at a time) to find the first piece that
fails, then raise :class:`ChunkReadError` naming the store, the variable, the
time steps and, where known, the chunk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr


class ChunkReadError(RuntimeError):
    """A block of a store cannot be read (corrupt or truncated chunk); the message names store, variable and time."""


def _time_text(values: np.ndarray, a: int, b: int) -> str:
    first, last = pd.Timestamp(values[a]).isoformat(), pd.Timestamp(values[b - 1]).isoformat()
    return first if a == b - 1 else f"{first} .. {last}"


def _pieces(da: xr.DataArray, offset: int, chunk_steps: int | None) -> list[tuple[int, int]]:
    """[a, b) time ranges of ``da`` that each lie in one on-disk chunk (dask chunks, else ``chunk_steps``, else steps)."""
    n = da.sizes["time"]
    if da.chunks is not None:
        sizes = da.chunks[da.dims.index("time")]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    step = chunk_steps or 1
    cuts = sorted({0, n, *range(step - offset % step, n, step)})
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if a < b]


def _failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def describe_read_error(
    da: xr.DataArray, exc: BaseException, *, store: str, name: str, offset: int = 0, chunk_steps: int | None = None
) -> str:
    """One paragraph naming store, variable, the first unreadable time steps and chunk, and the cause."""
    if "time" not in da.dims:
        return (f"{store}: variable {name!r} cannot be read ({_failure(exc)}): a chunk of the store is corrupt or "
                f"truncated; restore or rebuild the store")
    times = np.asarray(da["time"].values)
    bad, cause = None, exc
    for a, b in _pieces(da, offset, chunk_steps):
        try:
            np.asarray(da.isel(time=slice(a, b)).values)
        except Exception as piece_exc:  # noqa: BLE001 - codecs and stores raise many kinds
            bad, cause = (a, b), piece_exc
            break
    a, b = bad or (0, da.sizes["time"])
    where = f"time {_time_text(times, a, b)} (steps {offset + a}..{offset + b - 1} of the store"
    if bad is not None and chunk_steps:
        where += f", chunk {(offset + a) // chunk_steps} along time of {chunk_steps} steps"
    where += ")"
    return (f"{store}: variable {name!r} cannot be read at {where}: {_failure(cause)}. A chunk of the store is "
            f"corrupt or truncated there; restore or rebuild the store")


def read_values(
    da: xr.DataArray, *, store: str, name: str, offset: int = 0, chunk_steps: int | None = None
) -> np.ndarray:
    """``da``'s values, or ChunkReadError naming ``store``, variable ``name`` and the unreadable time steps.

    ``offset`` is the store's time index of ``da``'s first step and
    ``chunk_steps`` the store's chunk length along time, to name the chunk
    (a dask-backed ``da`` is cut at its own chunks).
    """
    try:
        return np.asarray(da.values)
    except Exception as exc:  # noqa: BLE001 - codecs and stores raise many kinds
        message = describe_read_error(da, exc, store=store, name=name, offset=offset, chunk_steps=chunk_steps)
    raise ChunkReadError(message)


def load_block(ds: xr.Dataset, *, store: str, offset: int = 0) -> xr.Dataset:
    """``ds.load()``, or ChunkReadError naming ``store``, the first unreadable variable and its time steps."""
    try:
        return ds.load()
    except Exception as exc:  # noqa: BLE001 - codecs and stores raise many kinds
        first = exc
    for name in ds.data_vars:
        read_values(ds[name], store=store, name=str(name), offset=offset)
    raise ChunkReadError(f"{store}: a block at time steps {offset}.. cannot be read: {_failure(first)}")
