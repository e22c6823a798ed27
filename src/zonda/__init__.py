"""zonda: train data-driven weather emulators from a reanalysis archive to a promoted model."""

__version__ = "0.1.0"
