"""Small conveniences a user meets first: --version, presets by name, "did you mean", README's own examples."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import zonda
from tests.support.repo import REPO
from zonda.cli import main
from zonda.params import ParamsError, load_params, write_resolved
from zonda.training.data import batches_to_run


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"zonda {zonda.__version__}"


def test_a_preset_by_name_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_params("aifs") == load_params(REPO / "params" / "aifs.yaml")
    with pytest.raises(ParamsError, match=r"aifz: no params file and no preset of that name \(presets: aifs, ci"):
        load_params("aifz")


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [("training.lrr=1e-3", "training.lrr: unknown key (not in the params schema); did you mean 'lr'?"),
     ("trainig.lr=1e-3", "trainig: unknown key (not in the params schema); did you mean 'training'?"),
     ("data.heldsuarez.truncatoin=21", "did you mean 'truncation'?")],
)
def test_a_misspelt_key_gets_a_suggestion(override: str, suggestion: str) -> None:
    with pytest.raises(ParamsError) as exc:
        load_params("ci", [override])
    assert suggestion in str(exc.value)


def test_an_unknown_key_with_nothing_close_gets_no_guess() -> None:
    with pytest.raises(ParamsError) as exc:
        load_params("ci", ["training.xyzzy=1"])
    assert "unknown key" in str(exc.value) and "did you mean" not in str(exc.value)


def test_the_readme_override_examples_load() -> None:
    readme = (REPO / "README.md").read_text()
    examples = re.findall(r'make run-pipeline PARAMS=(\S+) OVERRIDES="([^"]+)"', readme)
    examples += [(m[0], m[1]) for m in re.findall(r"zonda params show --params (\S+) ([^\n#]+)", readme)]
    assert examples
    for preset, overrides in examples:
        load_params(REPO / preset if "/" in preset else preset, shlex.split(overrides))


def test_the_batches_log_counts_what_max_steps_lets_run() -> None:
    assert batches_to_run(120, max_steps=50, global_step=0, accumulate=1) == 50
    assert batches_to_run(120, max_steps=50, global_step=0, accumulate=2) == 100
    assert batches_to_run(120, max_steps=200, global_step=150, accumulate=1) == 50
    assert batches_to_run(120, max_steps=-1, global_step=10, accumulate=1) == 120


def test_a_snapshot_no_op_says_so(synthetic_params, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params_file = write_resolved(synthetic_params(), tmp_path / "params")
    out = tmp_path / "snapshot"
    argv = ["snapshot", "--params", str(params_file), "--out", str(out), "--no-mlflow", "-q"]
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()[-1]  # the command's result, after the stage's console lines
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert first.startswith("snapshot sha256:") and first.rstrip().endswith(f"written to {out}")
    assert second.rstrip().endswith(f"already at {out}: nothing written")
