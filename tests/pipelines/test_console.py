"""The local runner's console (pipelines.console): the tasks' console lines shown, the rest in the run's log."""

from __future__ import annotations

import io
import os
import sys

import pytest

from pipelines import run
from pipelines.console import ConsoleLines, runner_output
from zonda.console import VERBOSE_ENV, console_line

# What KFP's local runner prints around a task (its banner, the executor's JSON, the task's own lines, indented).
RUNNER_OUTPUT = """07:36:57.682 - INFO - Executing task 'snapshot'
07:36:57.683 - INFO - Streamed logs:

    [KFP Executor 2026-12-06 07:36:57,955 INFO]: Got executor_input:
    {
        "inputs": {"parameterValues": {"params_json": "{\\"name\\": \\"ci\\"}"}}
    }
    zonda 07:37:00 snapshot: started (log /r/snapshot.log)
    Held-Suarez:  50%|#####     | 7.00/14.00 simulated days
    zonda 07:37:25 snapshot: done in 25 s -> /r/snapshot
07:37:26.100 - INFO - Task 'snapshot' finished with status SUCCESS
--------------------------------------------------------------------------------
"""


def test_only_console_lines_reach_the_console_and_everything_reaches_the_log() -> None:
    log, console = io.StringIO(), io.StringIO()
    stream = ConsoleLines(log, console)
    for piece in (RUNNER_OUTPUT[:100], RUNNER_OUTPUT[100:333], RUNNER_OUTPUT[333:]):  # lines split across writes
        stream.write(piece)
    assert console.getvalue() == (
        "zonda 07:37:00 snapshot: started (log /r/snapshot.log)\nzonda 07:37:25 snapshot: done in 25 s -> /r/snapshot\n"
    )
    assert log.getvalue() == RUNNER_OUTPUT


def test_runner_output_keeps_the_noise_in_the_log_and_shows_its_tail_on_failure(tmp_path, capsys) -> None:
    path = tmp_path / "kfp" / "run.log"
    with runner_output(path, verbose=False):
        print("    [KFP Executor ...]: Got executor_input: {...}")
        print(console_line("train: started"), file=sys.stderr)
    console = capsys.readouterr()
    assert console.err == "" and console.out.endswith("train: started\n") and "executor_input" not in console.out
    with pytest.raises(RuntimeError), runner_output(path, verbose=False):
        print("Traceback: the task's error")
        raise RuntimeError("Task 'train' finished with status FAILURE")
    assert "Traceback: the task's error" in capsys.readouterr().err  # the log's last lines, where a person sees them
    assert "Got executor_input" in path.read_text() and "the task's error" in path.read_text()


def test_verbose_leaves_the_runner_output_on_the_console(tmp_path, capsys) -> None:
    with runner_output(tmp_path / "run.log", verbose=True):
        print("    [KFP Executor ...]: Got executor_input: {...}")
    assert "Got executor_input" in capsys.readouterr().out
    assert not (tmp_path / "run.log").exists()


def test_run_dash_v_makes_the_tasks_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VERBOSE_ENV, "0")
    monkeypatch.delenv(VERBOSE_ENV)  # recorded, so that main's setting it is undone too
    monkeypatch.delenv("KFP_HOST", raising=False)
    seen = []
    monkeypatch.setattr(run, "run_local", lambda params, **kw: seen.append(os.environ.get(VERBOSE_ENV)) or {})
    monkeypatch.setattr(run, "print_local_summary", lambda params, result: None)
    assert run.main(["run", "--params", "ci"]) == 0 and run.main(["run", "-v", "--params", "ci"]) == 0
    assert seen == [None, "1"]  # the tasks, child processes of the runner, inherit it
