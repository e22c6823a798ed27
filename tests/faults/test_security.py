"""Security: credentials put in params never reach a written or logged copy of them.

(Crafted pickles in checkpoints are refused without running their payload:
tests/training/test_checkpoints.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.support import training_builders as support
from tests.support.repo import REPO
from zonda import tracking
from zonda.cli import main
from zonda.params import MASK, ParamsError, is_secret_key, load_params, mask_secrets
from zonda.stages import graph_stage

SECRETS = ("AKIAFAKE1234567890", "hunter2-fake-secret", "fake-session-token-xyz", "s3cr3t-url-password")
STORAGE = (
    "data.source.storage_options={key: AKIAFAKE1234567890, secret: hunter2-fake-secret, anon: false, "
    "client_kwargs: {region_name: eu-west-1, aws_session_token: fake-session-token-xyz}}"
)
URL = "data.source.path=https://reader:s3cr3t-url-password@data.example.org/era5.zarr"


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} in {where}"


@pytest.mark.parametrize(
    "name, secret",
    [("key", True), ("secret", True), ("token", True), ("password", True), ("aws_secret_access_key", True),
     ("account_key", True), ("sasToken", True), ("credentials", True), ("connection_string", True),
     ("anon", False), ("region_name", False), ("keys", False), ("monitor", False), ("endpoint_url", False)],
)
def test_secret_looking_keys(name, secret):
    assert is_secret_key(name) is secret


def test_mask_keeps_the_shape_and_the_harmless_values():
    tree = {"storage_options": {"key": "A", "anon": False, "client_kwargs": {"region_name": "eu", "token": "t"},
                                "password": None, "use_auth": True},
            "path": "https://u:pw@host/x", "other": {"token": "anon", "api_key": 12345}}
    assert mask_secrets(tree) == {
        "storage_options": {"key": MASK, "anon": False, "client_kwargs": {"region_name": "eu", "token": MASK},
                            "password": None, "use_auth": True},
        "path": f"https://u:{MASK}@host/x", "other": {"token": "anon", "api_key": MASK},
    }
    # Kubernetes settings whose names look secret: a taint key, and Secret references (no secret in them).
    p = load_params(REPO / "params" / "aifs.yaml", ["runtime.resources.train.tolerations=[{key: nvidia.com/gpu}]"])
    resources = p.public_dict()["runtime"]["resources"]
    assert resources["train"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert resources["train"]["secrets_as_env"] == p.resolved_dict()["runtime"]["resources"]["train"]["secrets_as_env"] != []
    assert p.secret_paths() == []  # aifs.yaml reads a public bucket (token: anon) and takes its credentials from Secrets


def test_params_show_and_errors_mask_credentials(capsys):
    assert main(["params", "show", "--params", str(REPO / "params" / "ci.yaml"), STORAGE, URL]) == 0
    out = capsys.readouterr().out
    assert_no_secret(out, "zonda params show")
    options = yaml.safe_load(out)["data"]["source"]["storage_options"]
    assert options == {"key": MASK, "secret": MASK, "anon": False,
                       "client_kwargs": {"region_name": "eu-west-1", "aws_session_token": MASK}}
    with pytest.raises(ParamsError) as info:  # a bad params file with a credential override: the message names no secret
        load_params(REPO / "params" / "ci.yaml", [STORAGE, URL, "data.source.api_token=AKIAFAKE1234567890", "training.lr=-1"])
    assert "training.lr" in str(info.value) and "data.source.api_token" in str(info.value)
    assert_no_secret(str(info.value), "a ParamsError")


@pytest.mark.faults
def test_stage_outputs_and_mlflow_records_hold_no_credential(tmp_path):
    """The graph stage (params.resolved.yaml, MLflow params and artifacts) and a training run (its own MLflow params)."""
    a = support.artifacts()
    params = support.params(STORAGE, URL)
    graph_stage(params, a["snapshot"], tmp_path / "graph", progress=False)
    written = (tmp_path / "graph" / "params.resolved.yaml").read_text()
    assert_no_secret(written, "params.resolved.yaml")
    assert yaml.safe_load(written)["data"]["source"]["storage_options"]["key"] == MASK

    with support.one_thread():
        manifest = support.run_training(support.new_dir("secrets"), STORAGE, track=True)
    tracking.configure(params)
    client = mlflow.MlflowClient()
    graph_runs = client.search_runs([tracking.experiment_id(params)], filter_string="tags.`zonda.stage` = 'graph'")
    checked = [graph_runs[0], client.get_run(manifest["mlflow_run_id"])]  # the newest graph run is this test's
    assert {r.data.tags.get("zonda.stage") for r in checked} == {"graph", "train"}
    for run in checked:
        assert run.data.params["data.source.storage_options.key"] == MASK
        assert_no_secret(json.dumps(run.data.params), f"MLflow params of run {run.info.run_id}")
        local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id)))
        for path in local.rglob("*"):
            if path.is_file() and path.suffix in (".yaml", ".json", ".txt"):
                assert_no_secret(path.read_text(errors="replace"), str(path))
