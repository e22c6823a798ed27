"""The repository root (presets under params/, dvc.yaml, charts/, images/, .github/)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
