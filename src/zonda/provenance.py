"""Code version and content hashing shared by every stage's manifest."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import zonda
from zonda.files import read_json_file, write_json_atomic

MANIFEST_FILENAME = "manifest.json"


def git_commit() -> str | None:
    """The git commit of the code that runs: ZONDA_GIT_SHA (set in images) or the checkout's HEAD."""
    env = os.environ.get("ZONDA_GIT_SHA")
    if env:
        return env
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    if not sha:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
    ).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def code_version() -> dict[str, str | None]:
    return {"zonda": zonda.__version__, "git_commit": git_commit()}


def sha256_id(digest: str) -> str:
    """``sha256:<hex>``, the form stage manifests and MLflow tags use, whether or not ``digest`` has the prefix."""
    digest = str(digest)
    return digest if digest.startswith("sha256:") else f"sha256:{digest}"


def canonical_json_hash(payload: Any) -> str:
    """sha256 hex of the canonical (sorted keys, no whitespace) JSON of ``payload``."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(directory: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """Writes ``manifest.json`` atomically into ``directory``."""
    return write_json_atomic(Path(directory) / MANIFEST_FILENAME, manifest)


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parsed ``manifest.json`` of a stage's output directory; None when it has none."""
    path = Path(directory) / MANIFEST_FILENAME
    if not path.is_file():
        return None
    return read_json_file(path, "a zonda stage manifest")
