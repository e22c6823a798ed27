"""`make run-pipeline` with a KFP host: compile the pipeline, then submit it (zonda.pipeline_runs).

Wiring only: :func:`compile_package` builds the IR from ``pipelines.zonda_pipeline``;
everything that talks to the KFP API and follows the run lives in
:mod:`zonda.pipeline_runs`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from zonda.params import Params
from zonda.pipeline_runs import RunFailed, SubmitError, write_not_submitted
from zonda.pipeline_runs import submit as submit_package


def compile_package(params: Params, path: Path) -> Path:
    """Compiles the pipeline for ``params`` to ``path`` (IR YAML)."""
    from pipelines.run import compile_pipeline

    return compile_pipeline(params, path)


def submit(params: Params, host: str, **options: Any) -> dict[str, Any]:
    """Compiles the pipeline for ``params`` and submits it (options: see :func:`zonda.pipeline_runs.submit`)."""
    with tempfile.TemporaryDirectory(prefix="zonda-kfp-") as tmp:
        package = Path(tmp) / "pipeline.yaml"
        try:
            compile_package(params, package)
        except ValueError as exc:  # e.g. ResourceSpecError: a quantity KFP cannot express
            raise SubmitError(f"cannot compile the pipeline for preset {params.name!r}: {exc}") from None
        return submit_package(params, host, package, **options)


def main_submit(params: Params, host: str, wait: bool, summary: str | os.PathLike[str] | None) -> int:
    """CLI entry: 0 when submitted (and, with ``wait``, succeeded); 1 when the run failed; 2 when not submitted."""
    try:
        submit(params, host, wait=wait, summary_path=Path(summary) if summary else None)
    except RunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if summary and exc.result is None:
            write_not_submitted(Path(summary), params, host, str(exc))
        return 2
    return 0
