"""zonda: train data-driven weather emulators from a reanalysis archive to a promoted model."""

# Load Python's sqlite3 (and with it the system SQLite) before anything can load ecCodes: the
# eckitlib wheel bundles SQLite 3.26, and had it come first, sqlite3 would bind to it and MLflow's
# sqlite store (SQLite >= 3.31) would fail for the rest of the process. xarray imports cfgrib,
# and with it ecCodes, whenever it guesses a file's engine.
import sqlite3  # noqa: F401

__version__ = "0.1.0"
