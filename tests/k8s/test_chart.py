"""charts/zonda: values schema, helm lint and template (Helm's Go engine via helm-python-sdk), every
rendered object validated, and the chart checked against what the params presets and the launcher expect."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import jsonschema
import pytest
import yaml

from tests.support.repo import REPO
from zonda.k8s.trainjob import IMAGE_UID, TRAINER_NODE, trainjob_manifest
from zonda.k8s.validate import iter_documents, validate_all
from zonda.params import load_params

CHART = REPO / "charts" / "zonda"
EXAMPLES = sorted((CHART / "examples").glob("values-*.yaml"))
KIND_SECRETS = {"secrets": {"mlflowPassword": "s3cret-admin", "postgresPassword": "p@ss%w0rd/+x",
                            "s3AccessKey": "zonda", "s3SecretKey": "minio-secret"}}


def _helm():
    try:
        import helm_python
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("helm-python-sdk is not installed: add helm-python-sdk==0.2.2 to the dev extra")
        pytest.skip("helm-python-sdk not installed (dev dependency helm-python-sdk==0.2.2)")
    return helm_python


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _values(name: str) -> dict:
    if name == "default":
        return {}
    values = yaml.safe_load((CHART / "examples" / f"values-{name}.yaml").read_text())
    return _merge(values, KIND_SECRETS) if name == "kind" else values


def _render(values: dict) -> list[dict]:
    helm = _helm()
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name="zonda", namespace="zonda")
    return [doc for path, text in sorted(files.items()) if path.endswith(".yaml") for doc in iter_documents(text)]


def _find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def _mlflow_module(relative: str):
    """One module of the installed MLflow, loaded by file: importing mlflow.server whole is slow,
    and mlflow.server.auth needs Flask-WTF, a server-only extra."""
    import mlflow

    path = Path(mlflow.__file__).parent / relative
    spec = importlib.util.spec_from_file_location(f"_mlflow_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: _render(_values(name)) for name in ("default", "gke", "eks", "kind")}


# ---------------------------------------------------------------------- values schema


def test_examples_are_the_three_documented_clusters():
    assert [p.name for p in EXAMPLES] == ["values-eks.yaml", "values-gke.yaml", "values-kind.yaml"]


@pytest.mark.parametrize("path", [CHART / "values.yaml", *EXAMPLES], ids=lambda p: p.name)
def test_values_files_satisfy_the_schema(schema, path):
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load(path.read_text())
    if path.name == "values-kind.yaml":  # its passwords come from --set, as its header says
        values = _merge(values, KIND_SECRETS)
    merged = _merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(merged)]
    assert errors == []


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"mlflow": {"port": "5000x"}}, "port"),
        ({"mlflow": {"imagee": {}}}, "imagee"),  # typo: unknown keys are errors
        ({"dataCache": {"size": "lots"}}, "size"),
        ({"mlflow": {"auth": {"defaultPermission": "ADMIN"}}}, "defaultPermission"),
        ({"minio": {"enabled": True}, "mlflow": {"artifacts": {"destination": "gs://b/a"}}}, "destination"),
        ({"secrets": {"create": True, "mlflowPassword": "short"}}, "mlflowPassword"),
        ({"trainer": {"runtime": {"name": "Zonda_Runtime"}}}, "name"),
    ],
)
def test_schema_rejects_bad_values(schema, bad, fragment):
    merged = _merge(yaml.safe_load((CHART / "values.yaml").read_text()), bad)
    messages = [f"{list(e.absolute_path)} {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(merged)]
    assert any(fragment in m for m in messages), messages


def test_helm_itself_applies_the_schema():
    helm = _helm()
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(Exception, match="/mlflow/port"):
        chart.render({"mlflow": {"port": "5000x"}}, name="zonda", namespace="zonda")


# ------------------------------------------------------------------- lint and render


@pytest.mark.parametrize("name", ["default", "gke", "eks", "kind"])
def test_helm_lint_finds_no_errors(name):
    helm = _helm()
    result = helm.lint(str(CHART), _values(name), strict=True, namespace="zonda")
    assert result["errors"] == []
    # only the chart-icon recommendation may remain
    assert [m["error"] for m in result["messages"] if m["error"] != "icon is recommended"] == []


@pytest.mark.parametrize("name", ["default", "gke", "eks", "kind"])
def test_every_rendered_object_is_valid(rendered, name):
    docs = rendered[name]
    assert validate_all(docs) == len(docs)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "Deployment",
            "Service", "NetworkPolicy", "ClusterTrainingRuntime"} <= kinds
    if name == "kind":
        assert {"StatefulSet", "Secret"} <= kinds
    else:
        assert "Secret" not in kinds  # production secrets are created out of band


def test_secrets_create_needs_passwords_and_uris():
    helm = _helm()
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(Exception, match="/secrets/mlflowPassword"):  # values.schema.json
            chart.render(_merge(_values("kind"), {"secrets": {"mlflowPassword": ""}}), name="zonda", namespace="zonda")
        external_db = _merge(_values("kind"), {"postgres": {"enabled": False}})
        with pytest.raises(Exception, match="secrets.backendStoreUri is required"):  # the template
            chart.render(external_db, name="zonda", namespace="zonda")


def test_package_leaves_out_the_vendored_crds(tmp_path):
    helm = _helm()
    helm.package(str(CHART), destination=str(tmp_path))
    (archive,) = tmp_path.glob("zonda-*.tgz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert not [n for n in names if "crds-schemas" in n or "/examples/" in n]
    assert "zonda/files/mlflow_init.py" in names
    # a Helm release (stored in a Secret) must stay under 1 MiB
    assert archive.stat().st_size < 256 * 1024


# --------------------------------------------------------- chart <-> params <-> launcher


@pytest.mark.parametrize("preset", ["aifs", "graphcast"])
def test_params_presets_find_what_the_chart_creates(rendered, preset):
    params = load_params(REPO / "params" / f"{preset}.yaml")
    docs = rendered["gke"]
    ns = params.runtime.distributed.namespace
    assert _find(docs, "Namespace")["metadata"]["name"] == ns

    # MLflow: the tracking URI resolves to the chart's Service, and the server accepts that Host header.
    is_allowed_host_header = _mlflow_module("server/security_utils.py").is_allowed_host_header
    uri = urlparse(params.runtime.mlflow_tracking_uri)
    service_name, service_ns = uri.hostname.split(".")[:2]
    service = _find(docs, "Service", service_name)
    assert service["metadata"]["namespace"] == service_ns == ns
    assert [p["port"] for p in service["spec"]["ports"]] == [uri.port]
    deployment = _find(docs, "Deployment", service_name)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    allowed = env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    assert is_allowed_host_header(allowed, uri.netloc)
    assert is_allowed_host_header(allowed, f"{service_name}.{ns}.svc.cluster.local:{uri.port}")
    assert not is_allowed_host_header(allowed, "evil.example.com")

    # Secrets and volumes the params mount are the chart's.
    for stage in ("train", "evaluate", "snapshot"):
        res = params.runtime.resources.for_stage(stage)
        for mount in res.pvc_mounts:
            assert _find(docs, "PersistentVolumeClaim", mount.pvc_name)
        for secret in res.secrets_as_env:
            assert secret.secret_name == env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
            assert set(secret.keys) == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}

    if params.runtime.distributed.kind == "trainjob":
        assert _find(docs, "ClusterTrainingRuntime", params.runtime.distributed.runtime_ref)


def test_trainjob_patches_target_the_runtimes_node_container(rendered):
    params = load_params(REPO / "params" / "aifs.yaml")
    job = trainjob_manifest(params, job_name="aifs-train-1", command=["zonda", "train"])
    runtime = _find(rendered["gke"], "ClusterTrainingRuntime")
    (rjob,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    pod = rjob["template"]["spec"]["template"]["spec"]
    (patch_job,) = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    patch_containers = patch_job["template"]["spec"]["template"]["spec"]["containers"]
    assert rjob["name"] == patch_job["name"] == TRAINER_NODE
    assert {c["name"] for c in patch_containers} <= {c["name"] for c in pod["containers"]}
    assert rjob["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    # runtime and patch volumes do not collide; the pods run as the images' user
    patch_volumes = {v["name"] for v in patch_job["template"]["spec"]["template"]["spec"]["volumes"]}
    assert not patch_volumes & {v["name"] for v in pod["volumes"]}
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    # the GKE example's defaults match the preset's GPU pool
    assert pod["nodeSelector"] == params.runtime.resources.train.node_selector


def test_pipeline_role_allows_exactly_what_the_launcher_calls(rendered):
    role = _find(rendered["default"], "Role", "zonda-pipeline")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    needed = {("trainer.kubeflow.org", "trainjobs", v) for v in ("create", "get", "list", "watch", "delete")}
    needed |= {("kubeflow.org", "pytorchjobs", v) for v in ("create", "get", "list", "watch", "delete")}
    needed |= {("", "pods", "list"), ("", "pods/log", "get"), ("", "secrets", "get")}
    assert needed <= granted
    assert not [g for g in granted if g[2] in ("*", "escalate", "bind", "impersonate")]
    binding = _find(rendered["gke"], "RoleBinding", "zonda-pipeline")
    subjects = {(s["name"], s["namespace"]) for s in binding["subjects"]}
    assert subjects == {("zonda-pipeline", "zonda"), ("default-editor", "zonda")}


def test_network_policies_deny_by_default_and_fence_mlflow(rendered):
    docs = rendered["kind"]
    deny = _find(docs, "NetworkPolicy", "zonda-default-deny-ingress")
    assert deny["spec"]["podSelector"] == {} and deny["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny["spec"]

    mlflow = _find(docs, "NetworkPolicy", "zonda-mlflow")
    assert mlflow["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = mlflow["spec"]["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 5000}]
    assert {"podSelector": {}} in ingress["from"]  # pipeline and training pods of the namespace
    egress_ports = sorted(p["port"] for rule in mlflow["spec"]["egress"] for p in rule["ports"])
    assert egress_ports == [53, 53, 5432, 9000]  # DNS, in-chart Postgres, in-chart MinIO: nothing else

    postgres = _find(docs, "NetworkPolicy", "zonda-postgres")
    (only,) = postgres["spec"]["ingress"][0]["from"]
    assert only["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "mlflow"

    # with external services (GKE), MLflow may reach exactly the configured Cloud SQL address
    gke = _find(rendered["gke"], "NetworkPolicy", "zonda-mlflow")
    blocks = [(b["ipBlock"]["cidr"], p["port"]) for rule in gke["spec"]["egress"] for b in rule["to"]
              if "ipBlock" in b for p in rule["ports"]]
    assert ("10.20.0.3/32", 5432) in blocks and ("0.0.0.0/0", 443) in blocks


def test_mlflow_server_command_line(rendered):
    deployment = _find(rendered["eks"], "Deployment", "mlflow")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["mlflow"]
    args = container["args"]
    assert args[0] == "server" and "--serve-artifacts" in args and "--app-name=basic-auth" in args
    assert "--artifacts-destination=s3://my-zonda-mlflow/artifacts" in args
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "zonda-mlflow-db", "key": "backend-store-uri"}
    assert "AWS_ACCESS_KEY_ID" not in env  # IRSA example: no static keys
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["startupProbe"]["httpGet"]["path"] == "/health"


# ------------------------------------------------------------- the MLflow init script


def test_init_script_writes_an_auth_config_mlflow_reads_back(rendered, tmp_path, monkeypatch):
    docs = rendered["kind"]
    script = _find(docs, "ConfigMap", "mlflow-init")["data"]["mlflow_init.py"]
    (tmp_path / "mlflow_init.py").write_text(script)
    db_secret = _find(docs, "Secret", "zonda-mlflow-db")["stringData"]
    auth_uri = db_secret["auth-database-uri"]
    # the password with '@', '%', '/' and '+' survives URL encoding in the generated URIs
    userinfo = auth_uri.split("://", 1)[1].rsplit("@", 1)[0]
    assert unquote(userinfo.split(":", 1)[1]) == KIND_SECRETS["secrets"]["postgresPassword"]
    assert db_secret["backend-store-uri"].endswith(".svc:5432/mlflow")

    ini = tmp_path / "auth" / "basic_auth.ini"
    env = {"PATH": os.environ.get("PATH", ""), "ZONDA_AUTH_CONFIG": str(ini),
           "MLFLOW_AUTH_DATABASE_URI": auth_uri, "MLFLOW_AUTH_DEFAULT_PERMISSION": "READ"}
    subprocess.run([sys.executable, str(tmp_path / "mlflow_init.py")], env=env, check=True, capture_output=True)
    assert oct(ini.stat().st_mode & 0o777) == "0o600"

    # MLflow's own reader of that file
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    config = _mlflow_module("server/auth/config.py").read_auth_config()
    assert (config.database_uri, config.default_permission) == (auth_uri, "READ")


def test_init_script_fails_clearly_without_the_auth_database(rendered, tmp_path):
    script = _find(rendered["default"], "ConfigMap", "mlflow-init")["data"]["mlflow_init.py"]
    (tmp_path / "init.py").write_text(script)
    result = subprocess.run([sys.executable, str(tmp_path / "init.py")], capture_output=True, text=True,
                            env={"ZONDA_AUTH_CONFIG": str(tmp_path / "a.ini"), "MLFLOW_AUTH_DATABASE_URI": ""})
    assert result.returncode == 1
    assert "MLFLOW_AUTH_DATABASE_URI is empty" in result.stderr
