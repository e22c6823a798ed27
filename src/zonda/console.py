"""What a person at the console sees of a stage, and where the rest goes.

The console gets, per stage, one line when it starts and one when it ends (its
duration and where its output is), training progress and the final summary;
every other message (zonda's from DEBUG, other libraries' such as Lightning, JAX
and MLflow from INFO, everyone's DEBUG with -v; warnings, stray prints) goes to
the stage's log file, which lies beside its output directory: ``<out_dir>.log``
(e.g. ``artifacts/local/model.log`` for ``--out artifacts/local/model``). :func:`stage_log`, which every stage of
:mod:`zonda.stages` runs in, owns that file.

Console lines are the records of the :data:`CONSOLE` logger (and errors), on
standard output, formatted as ``zonda HH:MM:SS <message>`` (a command's error
stays one line on standard error), so a runner that collects a task's
whole output (the KFP local runner) can keep just these lines
(:func:`is_console_line`). Progress bars (tqdm, Rich) show only when the console
is a terminal (:func:`bars`); elsewhere training reports a line every few steps.
With ``ZONDA_VERBOSE=1`` (``zonda -v``, ``python -m pipelines.run run -v``)
nothing is held back from the console; the log file is written all the same.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import IO, Iterator

#: The logger of lines meant for the console (stage start/end, progress, summaries).
CONSOLE = logging.getLogger("zonda.console")
_log = logging.getLogger("zonda.console.details")
#: Set to ``1`` for everything on the console (the ``-v`` of ``zonda`` and ``pipelines.run``).
VERBOSE_ENV = "ZONDA_VERBOSE"
#: Set by KFP in every task pod on a cluster, whose pod log is the only log kept: verbose there by default.
KFP_POD_ENV = "KFP_POD_NAME"
LOG_SUFFIX = ".log"
CONSOLE_FORMAT = "zonda %(asctime)s %(message)s"
CONSOLE_DATEFMT = "%H:%M:%S"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONSOLE_LINE = re.compile(r"^\s*(zonda \d\d:\d\d:\d\d .*)$")
# Libraries that print through handlers of their own (not the root logger's): during a stage
# their records go to the root's handlers (the log file) instead.
_SELF_HANDLED = ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow")


def verbose() -> bool:
    """Whether everything goes to the console: ``ZONDA_VERBOSE=1``; unset, in a KFP task pod on a
    cluster (``KFP_POD_NAME``), where the pod log is the only one kept (``ZONDA_VERBOSE=0`` quiets it)."""
    setting = os.environ.get(VERBOSE_ENV, "").strip()
    if setting:
        return setting != "0"
    return bool(os.environ.get(KFP_POD_ENV))


def log_path(out_dir: str | os.PathLike[str]) -> Path:
    """The log file of the stage writing ``out_dir``: ``<out_dir>.log``, beside it."""
    out = Path(out_dir)
    return out.with_name(out.name + LOG_SUFFIX)


def is_console_line(line: str) -> str | None:
    """The console line in ``line`` (a runner's indentation stripped), or None if it is not one."""
    match = _CONSOLE_LINE.match(line.rstrip("\n"))
    return match.group(1) if match else None


def console_line(message: str) -> str:
    """``message`` as a console line (what :data:`CONSOLE` prints), for a process that prints it itself."""
    return f"zonda {time.strftime(CONSOLE_DATEFMT)} {message}"


def bars(progress: bool) -> bool:
    """Whether to draw progress bars: asked for (``progress``) and the console is a terminal."""
    stream = _console_stream()
    return progress and hasattr(stream, "isatty") and stream.isatty()


_console_streams: list[IO[str]] = []
_set_asides: list[dict[str, tuple[bool, list[logging.Handler]]]] = []  # per active stage: handlers set aside


def _console_stream() -> IO[str]:
    return _console_streams[-1] if _console_streams else sys.stdout


class _AtLeast(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


class _OursAtDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO or record.name == "zonda" or record.name.startswith("zonda.")


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == CONSOLE.name or (record.levelno >= logging.ERROR and record.name != _log.name)


@contextlib.contextmanager
def stage_log(stage: str, out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Runs a stage with its log in :func:`log_path` and only its console lines on the console.

    Says ``<stage>: started`` on entry and ``<stage>: done in N s -> <out_dir>`` (or
    ``FAILED after N s: <error> (log <path>)``) on exit. Everything logged meanwhile (zonda's
    DEBUG and up, other libraries' INFO and up; all DEBUG when :func:`verbose`) goes to the log
    file (appended to); without :func:`verbose`, the root logger's handlers that print to the
    console and Lightning's and MLflow's own are set aside, and when the console is not a
    terminal, ``sys.stdout``/``sys.stderr`` go to the file too. All is restored on exit.
    """
    path = log_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = sys.stdout  # a command's own output goes there too; its errors (one line) to stderr
    loud = verbose()
    root = logging.getLogger()
    file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
    if not loud:  # other libraries' DEBUG (matplotlib's font search: 2,000 lines a plot) only with -v
        file_handler.addFilter(_OursAtDebug())
    console = logging.StreamHandler(stream)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT, CONSOLE_DATEFMT))
    if not loud:
        console.addFilter(_ConsoleFilter())
    saved_root = (root.level, list(root.handlers))
    saved_self_handled: dict[str, tuple[bool, list[logging.Handler]]] = {}
    # Handlers that do not print (files, pytest's capture) stay, at their level (else the root's).
    kept_root = saved_root[1] if loud else [h for h in saved_root[1] if not _is_std_stream_handler(h)]
    with contextlib.ExitStack() as stack:
        root.handlers = [*kept_root, file_handler]
        for handler in [] if loud else kept_root:
            at_least = _AtLeast(handler.level or root.getEffectiveLevel())
            handler.addFilter(at_least)
            stack.callback(handler.removeFilter, at_least)
        if not any(_is_std_stream_handler(h) for h in kept_root):
            root.addHandler(console)
        root.setLevel(logging.DEBUG)
        if not loud:
            _set_aside(saved_self_handled)
        stack.callback(setattr, warnings, "showwarning", warnings.showwarning)  # restored as it was, last
        stack.callback(logging.captureWarnings, False)
        logging.captureWarnings(True)
        _console_streams.append(stream)
        _set_asides.append(saved_self_handled)
        stack.callback(_console_streams.pop)
        stack.callback(_set_asides.pop)
        stack.callback(_restore, root, saved_root, saved_self_handled, file_handler)
        if not loud and not (hasattr(stream, "isatty") and stream.isatty()):
            log_stream = stack.enter_context(open(path, "a", encoding="utf-8", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(log_stream))
            stack.enter_context(contextlib.redirect_stderr(log_stream))
        CONSOLE.info("%s: started (log %s)", stage, path)
        started = time.monotonic()
        try:
            yield path
        except BaseException as exc:
            CONSOLE.error("%s: FAILED after %.0f s: %s: %s (log %s)", stage, time.monotonic() - started,
                          type(exc).__name__, exc, path, exc_info=loud)
            _log.debug("%s failed", stage, exc_info=True)  # the traceback, for the file
            raise
        CONSOLE.info("%s: done in %.0f s -> %s", stage, time.monotonic() - started, Path(out_dir))


def adopt_library_loggers() -> None:
    """Inside a stage (without -v), sets aside the handlers of Lightning's and MLflow's loggers that
    appeared since it started (each adds one on import, so a stage that imports them late calls this),
    as :func:`stage_log` did at its start; a no-op elsewhere."""
    if _set_asides and not verbose():
        _set_aside(_set_asides[-1])


def _set_aside(saved: dict[str, tuple[bool, list[logging.Handler]]]) -> None:
    """Lets the libraries' loggers (:data:`_SELF_HANDLED`) propagate to the root's handlers instead of
    printing through their own; ``saved`` keeps what to restore (their state before the first change)."""
    for name in _SELF_HANDLED:
        logger = logging.getLogger(name)
        if logger.handlers or name not in saved:  # first seen, or configured itself on import since
            saved[name] = (logger.propagate, [*saved.get(name, (True, []))[1], *logger.handlers])
        logger.handlers = []
        logger.propagate = True


def _is_std_stream_handler(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__
    )


def _restore(
    root: logging.Logger,
    saved_root: tuple[int, list[logging.Handler]],
    saved_self_handled: dict[str, tuple[bool, list[logging.Handler]]],
    file_handler: logging.Handler,
) -> None:
    file_handler.close()
    root.setLevel(saved_root[0])
    root.handlers = saved_root[1]
    for name, (propagate, handlers) in saved_self_handled.items():
        logging.getLogger(name).propagate = propagate
        logging.getLogger(name).handlers = handlers
