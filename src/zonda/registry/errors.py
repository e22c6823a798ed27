"""Errors of the registry package, one base class so the CLI can report them all as bad input."""

from __future__ import annotations


class RegistryError(ValueError):
    """Registration, promotion or forecasting cannot proceed; the message names model, version or file."""


class InitialStateError(RegistryError):
    """The initial state given to a forecast does not fit the model (variables, grid, levels, times)."""


class LeadError(RegistryError):
    """A forecast lead that is not a positive multiple of 6 hours (``10d``, ``36h``, ``6h``)."""


class PromotionLockTimeout(RegistryError):
    """Another promotion of the same registered model held the lock for longer than we waited."""


class ChampionIncomparable(RegistryError):
    """The champion cannot be scored on the challenger's evaluation data (the gate applies ``on_incomparable``)."""
