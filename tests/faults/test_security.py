"""Security: credentials put in params never reach a written or logged copy of them, nor a pipeline input;
a crafted pickle in a checkpoint is refused without running its payload.

(The checkpoint loader's own cases, tampered and wrong-shape files too: tests/training/test_checkpoints.py.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import fsspec
import mlflow
import pytest
import yaml
from fsspec.implementations.local import LocalFileSystem

from pipelines.run import run_local
from pipelines.submit import SubmitError, main_submit, submit
from pipelines.zonda_pipeline import compile_pipeline
from tests.support import training_builders as support
from tests.support.repo import REPO
from zonda import tracking
from zonda.cli import main
from zonda.data.sources import preflight
from zonda.params import MASK, ParamsError, is_secret_key, load_params, mask_secrets, params_from_json
from zonda.stages import graph_stage
from zonda.training.checkpoints import save_training_checkpoint

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


# ---------------------------------------------------------------- credentials and the pipeline's inputs

CREDENTIAL = "hunter2-fake-secret"


class CredentialFS(LocalFileSystem):
    """A local filesystem behind ``zondacred://`` that opens only with ``secret=CREDENTIAL`` (as S3 with its key)."""

    protocol = ("zondacred",)
    cachable = False  # every open sees the storage options it is given
    seen: list = []

    def __init__(self, *args, secret=None, **kwargs):
        CredentialFS.seen.append(secret)
        if secret != CREDENTIAL:
            raise PermissionError(f"zondacred: access denied for secret {secret!r}")
        super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("zondacred://") if isinstance(path, str) else path)


@pytest.fixture
def credential_store(make_source, monkeypatch):
    """A zarr source that only the right credential opens: its ``zondacred://`` URL."""
    monkeypatch.setattr(CredentialFS, "seen", [])
    fsspec.register_implementation("zondacred", CredentialFS, clobber=True)
    return f"zondacred://{make_source()}"


def task_params_json(package: Path, task: str) -> str:
    """The params_json a task of the compiled pipeline is given (a constant of the IR)."""
    spec = next(yaml.safe_load_all(package.read_text()))  # the pipeline spec (then the Kubernetes platform config)
    return spec["components"]["comp-exit-handler-1"]["dag"]["tasks"][task]["inputs"]["parameters"]["params_json"][
        "runtimeValue"]["constant"]


def test_compiled_pipeline_holds_references_and_the_task_gets_the_credential(
    synthetic_params, credential_store, tmp_path, monkeypatch
):
    """A literal storage_options.secret: not in the compiled IR; the task resolves it from its environment."""
    params = synthetic_params(
        f"data.source.path={credential_store}", f"data.source.storage_options={{secret: {CREDENTIAL}, anon: false}}"
    )
    assert params.secret_paths() == ["data.source.storage_options.secret"]
    package = compile_pipeline(params, tmp_path / "pipeline.yaml")
    assert CREDENTIAL not in package.read_text()
    variable = "ZONDA_SECRET_DATA_SOURCE_STORAGE_OPTIONS_SECRET"
    task_json = task_params_json(package, "snapshot")
    options = json.loads(task_json)["data"]["source"]["storage_options"]
    assert options == {"secret": f"${{env:{variable}}}", "anon": False}

    _, env = params.with_secret_references()
    assert env == {variable: CREDENTIAL}
    monkeypatch.setenv(variable, CREDENTIAL)
    preflight(params_from_json(task_json).data)  # opens the store: the credential reached the filesystem
    assert CredentialFS.seen[-1] == CREDENTIAL


def test_a_task_without_the_variable_says_which_field_and_variable(synthetic_params, credential_store, monkeypatch):
    monkeypatch.delenv("ERA5_READER_SECRET", raising=False)
    params = synthetic_params(
        f"data.source.path={credential_store}", "data.source.storage_options={secret: '${env:ERA5_READER_SECRET}'}"
    )
    assert params.secret_paths() == []  # a reference is not a secret: shown as written
    assert params.public_dict()["data"]["source"]["storage_options"] == {"secret": "${env:ERA5_READER_SECRET}"}
    with pytest.raises(ParamsError) as info:
        preflight(params.data)
    message = str(info.value)
    assert "data.source.storage_options.secret" in message and "ERA5_READER_SECRET" in message
    assert "secrets_as_env" in message
    assert CredentialFS.seen == []  # nothing was opened without it
    monkeypatch.setenv("ERA5_READER_SECRET", CREDENTIAL)
    preflight(params.data)
    assert set(CredentialFS.seen) == {CREDENTIAL}


def test_a_local_run_hands_its_tasks_references_and_their_environment_the_value(
    synthetic_params, credential_store, monkeypatch
):
    """run_local: the pipeline is built from references, and the tasks' (inherited) environment holds the value."""
    built = {}

    def capture(params, root, name, *, runner, container_user):
        built["params"] = params
        built["env"] = {k: v for k, v in os.environ.items() if k.startswith("ZONDA_SECRET_")}

    monkeypatch.setattr("pipelines.run._run_kfp_local", capture)
    monkeypatch.setattr("pipelines.run.stage_cache.locate", lambda params, **kwargs: {})
    monkeypatch.setattr("pipelines.run.tracking.start_pipeline_run", lambda params, **kwargs: "run-id")
    monkeypatch.setattr("pipelines.run.tracking.end_pipeline_run", lambda params, run_id, **kwargs: None)
    params = synthetic_params(f"data.source.path={credential_store}", f"data.source.storage_options={{secret: {CREDENTIAL}}}")
    run_local(params)
    assert built["params"].secret_paths() == []
    assert CREDENTIAL not in json.dumps(built["params"].resolved_dict())
    assert built["env"] == {"ZONDA_SECRET_DATA_SOURCE_STORAGE_OPTIONS_SECRET": CREDENTIAL}
    assert "ZONDA_SECRET_DATA_SOURCE_STORAGE_OPTIONS_SECRET" not in os.environ  # set for the run only
    assert set(CredentialFS.seen) == {CREDENTIAL}  # the run's preflight opened the store with it


def test_a_cluster_run_with_a_credential_in_clear_is_refused_before_submission(synthetic_params, capsys, monkeypatch):
    def no_connection(*args, **kwargs):
        raise AssertionError("the KFP API was contacted")

    monkeypatch.setattr("pipelines.submit._connect", no_connection)
    params = synthetic_params(f"data.source.storage_options={{secret: {CREDENTIAL}}}")
    assert main_submit(params, "http://kfp.example.org", wait=False, summary=None) == 2
    err = capsys.readouterr().err
    assert "data.source.storage_options.secret" in err and "secrets_as_env" in err and "${env:" in err
    assert CREDENTIAL not in err
    with pytest.raises(SubmitError, match="user:password"):
        submit(synthetic_params("data.source.path=https://reader:s3cr3t-url-password@data.example.org/era5.zarr"),
               "http://kfp.example.org", wait=False)
    # A reference no task's Secret sets is refused too; mapped into the snapshot task, it is not.
    reference = "data.source.storage_options={secret: '${env:ERA5_READER_SECRET}'}"
    with pytest.raises(SubmitError, match="ERA5_READER_SECRET.*no task gets that variable"):
        submit(synthetic_params(reference), "http://kfp.example.org", wait=False)
    mapped = synthetic_params(
        reference,
        "runtime.resources.snapshot.secrets_as_env=[{secret_name: era5-reader, keys: {secret: ERA5_READER_SECRET}}]",
    )
    monkeypatch.setenv("ERA5_READER_SECRET", CREDENTIAL)  # the submitter lists the source for its fingerprint
    with pytest.raises(AssertionError, match="KFP API was contacted"):
        submit(mapped, "http://kfp.example.org", wait=False)


# ------------------------------------------------------------------ crafted pickles


class Payload:
    """Unpickling this would run code: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_zonda_train_refuses_a_crafted_pickle_checkpoint_without_running_it(tmp_path, capsys):
    """``training.resume_from`` at a checkpoint holding an object whose unpickling runs code (its digest sidecar
    matching, as an attacker can write one): exit 2 naming the file, the payload never runs, nothing trained."""
    marker = tmp_path / "payload-ran"
    crafted = tmp_path / "crafted" / "last.ckpt"
    crafted.parent.mkdir()
    save_training_checkpoint({"state_dict": {}, "zonda": {"extra": Payload(marker)}}, crafted)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(support.params().to_yaml())
    a = support.artifacts()
    out = tmp_path / "model"
    rc = main(["train", "--params", str(params_file), *(f"--{k}={a[k]}" for k in ("snapshot", "statistics", "graph")),
               "--out", str(out), f"training.resume_from={crafted}", "--no-mlflow", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    (error,) = [line for line in err if line.startswith("zonda train: error:")]  # torch's explanation follows it
    assert error.startswith(f"zonda train: error: {crafted}: refused: it holds pickled objects"), err
    assert not any("Traceback" in line for line in err)
    assert not marker.exists()
    assert not (out / "manifest.json").exists() and not (out / "weights.safetensors").exists()
