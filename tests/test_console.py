"""What a stage shows on the console and what goes to its log file beside the output (zonda.console)."""

from __future__ import annotations

import logging
import re
import warnings

import pytest

from tests.support import training_builders as support
from zonda.console import KFP_POD_ENV, VERBOSE_ENV, log_path, stage_log, verbose
from zonda.stages import graph_stage, train_stage

LINE = re.compile(r"^zonda \d\d:\d\d:\d\d ")


def _noise() -> None:
    """What libraries do during a stage: debug records, their own handlers, warnings, stray prints."""
    logging.getLogger("zonda.somewhere").debug("a detail for the log only")
    logging.getLogger("some.library").debug("a library's chatter")
    logging.getLogger("lightning.pytorch").info("GPU available: False, used: False")
    warnings.warn("a library's warning", UserWarning)
    print("a stray print")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    monkeypatch.delenv(KFP_POD_ENV, raising=False)


def test_a_stage_logs_everything_to_its_file_and_says_two_lines(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    lightning = logging.getLogger("lightning.pytorch")
    before = (lightning.propagate, list(lightning.handlers), list(logging.getLogger().handlers))
    with stage_log("train", out) as path:
        _noise()
    assert path == tmp_path / "model.log" == log_path(out)
    console = capsys.readouterr()
    lines = console.out.splitlines()
    assert console.err == "" and len(lines) == 2 and all(LINE.match(line) for line in lines), lines
    assert lines[0].endswith(f"train: started (log {path})")
    assert re.search(rf"train: done in \d+ s -> {re.escape(str(out))}$", lines[1])
    log = path.read_text()
    for text in ("DEBUG zonda.somewhere: a detail for the log only", "GPU available: False", "a library's warning",
                 "a stray print", "train: started"):
        assert text in log, text
    assert "a library's chatter" not in log  # other libraries' DEBUG only with -v
    assert (lightning.propagate, lightning.handlers, logging.getLogger().handlers) == before  # all as it was


def test_a_failing_stage_says_why_and_where_its_log_is(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="bad level"), stage_log("snapshot", tmp_path / "snapshot"):
        raise ValueError("bad level 123")
    last = capsys.readouterr().out.splitlines()[-1]
    assert LINE.match(last) and last.endswith(
        f"snapshot: FAILED after 0 s: ValueError: bad level 123 (log {tmp_path / 'snapshot.log'})"
    )
    assert "Traceback" in (tmp_path / "snapshot.log").read_text()  # the whole story is in the file


def test_verbose_puts_everything_back_on_the_console(tmp_path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VERBOSE_ENV, "1")
    with stage_log("train", tmp_path / "model"):
        _noise()
    console = capsys.readouterr()
    shown = console.out + console.err
    for text in ("a detail for the log only", "a stray print", "train: started", "train: done in"):
        assert text in shown, text
    assert "a library's chatter" in shown and "a library's chatter" in (tmp_path / "model.log").read_text()


def test_a_kfp_task_pod_on_a_cluster_keeps_everything_in_its_pod_log(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not verbose()
    monkeypatch.setenv(KFP_POD_ENV, "zonda-train-abc12")  # what KFP sets in a task pod (the local runner does not)
    assert verbose()
    monkeypatch.setenv(VERBOSE_ENV, "0")
    assert not verbose()


def test_the_graph_stage_writes_its_log_beside_its_output(tmp_path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZONDA_REUSE", "0")
    a = support.artifacts()
    capsys.readouterr()
    graph_stage(support.params(), a["snapshot"], tmp_path / "graph", track=False)
    lines = capsys.readouterr().out.splitlines()
    assert [re.sub(r" \(.*| in \d+ s.*", "", LINE.sub("", line)) for line in lines] == ["graph: started", "graph: done"]
    log = (tmp_path / "graph.log").read_text()
    assert "INFO zonda.stages: graph: running (input key" in log
    assert "zonda.stages: graph: sha256:" in log and str(tmp_path / "graph") in log


def test_training_off_a_terminal_says_progress_in_lines_not_bar_frames(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ZONDA_REUSE", "0")
    a = support.artifacts()
    capsys.readouterr()
    with support.one_thread():
        manifest = train_stage(
            support.params(*support.MULTI_STEP), a["snapshot"], a["statistics"], a["graph"], tmp_path / "model", track=False,
        )
    console = capsys.readouterr()
    assert console.err == "" and "\r" not in console.out and "━" not in console.out  # no progress-bar frames
    lines = [LINE.sub("", line) for line in console.out.splitlines()]
    steps = [line for line in lines if line.startswith("train: epoch ")]
    assert steps and all(re.match(r"train: epoch [12]/2 (done at )?step \d+/~\d+ loss \S+ \(\d+ s\)$", line) for line in steps)
    assert [line.split(" step")[0] for line in steps if " done at " in line] == ["train: epoch 1/2 done at", "train: epoch 2/2 done at"]
    assert any(line.startswith("train: validation at step") for line in lines)
    assert lines[-1].startswith("train: done in ") and len(lines) <= 30
    assert f"step {manifest['global_step']}/~" in steps[-1]  # the steps that ran (of Lightning's estimate)
    log = (tmp_path / "model.log").read_text()
    assert log.count("GPU available") == 1  # Lightning's messages went to the file, once (not also via its own handler)
