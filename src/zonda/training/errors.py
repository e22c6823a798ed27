"""Errors of the training stage that mean bad inputs, not bugs (the CLI reports them without a traceback)."""

from __future__ import annotations


class TrainingInputError(ValueError):
    """Bad training inputs or settings: the message names the file or the params field."""


class NonFiniteLossError(TrainingInputError):
    """The training loss became inf or nan (diverged): the run stops before that step's update."""
