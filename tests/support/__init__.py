"""Helpers the tests import (this package holds no tests; pytest fixtures live in the folders' conftest.py).

repo: the repository root. synthetic: a WB2-like synthetic source. training_builders, registry_builders:
stage outputs of the debug preset built once per session for the training and registry tests.
dvc_data_repo: a real DVC data repository. fake_kfp_server: a fake Kubeflow Pipelines API server.
"""
