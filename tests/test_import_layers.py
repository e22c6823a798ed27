"""Packages import along the stage order (the import-linter contract in pyproject.toml), and serving a model
does not load Lightning."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.repo import REPO

PACKAGES = {"zonda": REPO / "src" / "zonda", "pipelines": REPO / "pipelines"}
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` (no cache) on the packages found under ``tree`` (``tree/src/zonda``,
    ``tree/pipelines``); the report with colours stripped in ``stdout``."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}", "NO_COLOR": "1"}
    done = subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120,
    )
    done.stdout = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    return done


def test_the_code_keeps_the_stage_order():
    done = lint_imports(REPO, REPO / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 1 kept, 0 broken." in done.stdout


@pytest.fixture(scope="module")
def code_copy(tmp_path_factory) -> Path:
    """A copy of the three root packages, to add modules that import against the order."""
    tree = tmp_path_factory.mktemp("layers")
    for name, source in PACKAGES.items():
        shutil.copytree(source, (tree / "src" / name) if name == "zonda" else (tree / name),
                        ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    return tree


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("src/zonda/evaluation/_probe.py", "import zonda.training.train\n",
         "zonda.evaluation is not allowed to import zonda.training"),
        ("src/zonda/training/_probe.py", "from zonda.evaluation.metrics import rmse\n",
         "zonda.training is not allowed to import zonda.evaluation"),
        ("src/zonda/models/_probe.py", "from zonda.training.checkpoints import load_training_checkpoint\n",
         "zonda.models is not allowed to import zonda.training"),
        ("src/zonda/registry/_probe.py", "from zonda import cli\n", "zonda.registry is not allowed to import zonda.cli"),
        # imports inside function bodies count as much as those at the top
        ("src/zonda/data/_probe.py", "def late():\n    from zonda.statistics import load_statistics\n",
         "zonda.data is not allowed to import zonda.statistics"),
    ],
    ids=["evaluation->training", "training->evaluation", "models->training", "registry->cli", "function-body"],
)
def test_an_import_against_the_order_breaks_the_contract(code_copy, module, source, broken):
    probe = code_copy / module
    probe.write_text(textwrap.dedent(source))
    try:
        done = lint_imports(code_copy, REPO / "pyproject.toml")
    finally:
        probe.unlink()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Contracts: 0 kept, 1 broken." in done.stdout
    assert broken in done.stdout
    probe_name = module.removeprefix("src/").removesuffix(".py").replace("/", ".")
    assert f"- {probe_name} -> " in done.stdout  # the offending line is named


def test_a_chain_through_a_module_outside_the_layers_is_caught(code_copy):
    """``zonda.graph`` -> an unlisted helper -> ``zonda.registry``: the layers are checked along indirect chains."""
    helper = code_copy / "src/zonda/files_probe.py"
    probe = code_copy / "src/zonda/graph/_probe.py"
    helper.write_text("import zonda.registry.register\n")
    probe.write_text("import zonda.files_probe\n")
    try:
        done = lint_imports(code_copy, REPO / "pyproject.toml")
    finally:
        helper.unlink()
        probe.unlink()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "zonda.graph is not allowed to import zonda.registry" in done.stdout
    assert "zonda.graph._probe -> zonda.files_probe" in done.stdout


def test_serving_and_evaluating_a_model_do_not_load_lightning():
    """The registered pyfunc and the evaluation stage load a trained model through :mod:`zonda.models.saved`,
    never through :mod:`zonda.training` (which imports Lightning)."""
    code = (
        "import sys\n"
        "import zonda.registry.pyfunc_model, zonda.evaluation.run\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')"
        " or m.startswith('zonda.training')))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
