"""Where a source lives: a local path or an fsspec URL, and the error that names ``data.source.path``.

Light on purpose (no xarray): the stage cache fingerprints sources through it
before any data library is loaded.
"""

from __future__ import annotations

import importlib

_FSSPEC_PROTOCOL_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "az": "adlfs", "abfs": "adlfs"}


class SourceError(RuntimeError):
    """The data source cannot be opened; the message names data.source.path."""


def protocol(path: str) -> str | None:
    """``"gs"`` of ``gs://bucket/x.zarr``; None for a local path."""
    return path.split("://", 1)[0] if "://" in path else None


def check_fsspec_backend(path: str) -> None:
    """SourceError naming the package when ``path``'s protocol needs one that is not installed (gcsfs, s3fs, adlfs)."""
    proto = protocol(path)
    package = _FSSPEC_PROTOCOL_PACKAGES.get(proto or "")
    if package:
        try:
            importlib.import_module(package)
        except ImportError:
            raise SourceError(
                f"data.source.path {path!r}: reading {proto}:// URLs needs the {package!r} package, which is not "
                f"installed here (it is in the cluster data image). Install it or point data.source.path at a local copy."
            ) from None
