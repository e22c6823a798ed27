"""Helpers the tests import (this package holds no tests; pytest fixtures live in each folder's conftest.py).

- ``repo``: the repository root.
- ``synthetic``: a WB2-like synthetic source (Dataset and zarr store); ``grib``: the same written as GRIB2.
- ``training_builders``, ``registry_builders``: stage outputs of the debug preset on a tiny synthetic source,
  built once per session, for the training and the registry/forecast/evaluation tests.
- ``model_id``: the documented model ID computed independently of zonda.
- ``dvc_data_repo``: a real git + DVC data repository with two tagged revisions.
- ``fake_kfp_server``: a fake Kubeflow Pipelines API server on loopback.
"""
