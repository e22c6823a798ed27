"""The local runner's console: the tasks' console lines on the terminal, everything else in a file.

KFP's local runner prints, for every task, its executor input and output JSON,
every line the task writes and its own banners; ``kfp.local.init`` has no
setting for that. :func:`runner_output` sends all of it to the run's log
(``<runtime.output_root>/kfp/<run name>.log``) and lets through to the console
only the tasks' console lines (:func:`zonda.console.is_console_line`: stage
start/end, training progress, errors). With ``-v`` (``ZONDA_VERBOSE=1``) the
console gets everything, as the runner prints it.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import IO, Iterator

from zonda.console import is_console_line


class ConsoleLines(io.TextIOBase):
    """A text stream that writes everything to ``log`` and the console lines (unindented) to ``console``."""

    def __init__(self, log: IO[str], console: IO[str]) -> None:
        super().__init__()
        self._log = log
        self._console = console
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._log.write(text)
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            shown = is_console_line(line)
            if shown is not None:
                self._console.write(shown + "\n")
                self._console.flush()
        return len(text)

    def flush(self) -> None:
        self._log.flush()
        self._console.flush()

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def runner_output(log_path: Path, *, verbose: bool) -> Iterator[Path]:
    """``sys.stdout`` and ``sys.stderr`` into ``log_path``, with the console lines shown; nothing changed
    when ``verbose``. On an error, the log's last lines go to the console before it propagates."""
    if verbose:
        yield log_path
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = sys.stdout
    with open(log_path, "a", encoding="utf-8", buffering=1) as log:
        stream = ConsoleLines(log, console)
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield log_path
        except BaseException:
            log.flush()
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
            print("\n".join(["", f"--- the last lines of {log_path} ---", *tail, "---"]), file=sys.stderr)
            raise
