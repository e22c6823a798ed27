"""Submits a TrainJob/PyTorchJob, waits for it to finish, and fails loudly with the pods' logs.

The KFP train component calls :func:`launch` when ``training.num_nodes > 1``::

    from zonda.k8s import distributed_job_manifest, job_name_for, launch

    manifest = distributed_job_manifest(params, job_name=job_name_for(f"{params.name}-train", run_id),
                                        command=["zonda", "train", ...], env={...})
    launch(manifest)   # returns the finished object; raises JobFailed / JobTimedOut with logs

The pod running this needs RBAC to create/get/watch/delete the job kind and to list pods and read
their logs in the job's namespace (``charts/zonda/templates/rbac.yaml``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

#: Seconds granted on top of the job's own activeDeadlineSeconds (queueing, image pulls).
WAIT_GRACE_SECONDS = 600
#: Pods whose logs go into a failure message (failed pods first).
MAX_PODS_IN_REPORT = 8


@dataclass(frozen=True)
class JobType:
    kind: str
    group: str
    version: str
    plural: str
    succeeded: str  # condition type that means success
    failed: str  # condition type that means failure
    pod_label: str  # label every pod of the job carries, with the job name as value

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


TRAINJOB = JobType(
    kind="TrainJob", group="trainer.kubeflow.org", version="v1alpha1", plural="trainjobs",
    succeeded="Complete", failed="Failed", pod_label="jobset.sigs.k8s.io/jobset-name",
)
PYTORCHJOB = JobType(
    kind="PyTorchJob", group="kubeflow.org", version="v1", plural="pytorchjobs",
    succeeded="Succeeded", failed="Failed", pod_label="training.kubeflow.org/job-name",
)
JOB_TYPES = {t.kind: t for t in (TRAINJOB, PYTORCHJOB)}


class LaunchError(RuntimeError):
    """The job could not be submitted or watched."""


class JobFailed(LaunchError):
    """The job ended in failure (or ran out of time); the message carries the pods' log tails."""

    def __init__(self, summary: str, logs: dict[str, str]):
        self.summary = summary
        self.logs = logs
        parts = [summary]
        for pod, text in logs.items():
            parts.append(f"----- {pod} -----\n{text.rstrip()}")
        super().__init__("\n".join(parts))


class JobTimedOut(JobFailed):
    """The job did not finish within the launcher's timeout; it was deleted (unless asked not to)."""


def job_type_of(manifest: dict[str, Any]) -> JobType:
    kind = manifest.get("kind")
    jt = JOB_TYPES.get(kind)
    if jt is None or manifest.get("apiVersion") != jt.api_version:
        known = ", ".join(f"{t.api_version} {t.kind}" for t in JOB_TYPES.values())
        raise LaunchError(f"cannot launch {manifest.get('apiVersion')} {kind}; known kinds: {known}")
    return jt


def terminal_state(jt: JobType, obj: dict[str, Any]) -> tuple[bool, str, str] | None:
    """``(succeeded, reason, message)`` once a condition says the job is over, else ``None``."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == jt.succeeded:
            return True, cond.get("reason", ""), cond.get("message", "")
        if cond.get("type") == jt.failed:
            return False, cond.get("reason", ""), cond.get("message", "")
    return None


def _api_exception() -> type[Exception]:
    from kubernetes.client.exceptions import ApiException

    return ApiException


def kube_clients() -> tuple[Any, Any]:
    """``(CustomObjectsApi, CoreV1Api)``: in-cluster config inside a pod, else ~/.kube/config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def _default_watch() -> Any:
    from kubernetes import watch

    return watch.Watch()


class Launcher:
    """Submit, watch and report on one job kind at a time, through injectable Kubernetes clients."""

    def __init__(
        self,
        custom_api: Any = None,
        core_api: Any = None,
        *,
        watch_factory: Callable[[], Any] = _default_watch,
        echo: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        if custom_api is None or core_api is None:
            default_custom, default_core = kube_clients()
            custom_api = custom_api or default_custom
            core_api = core_api or default_core
        self.custom = custom_api
        self.core = core_api
        self.watch_factory = watch_factory
        self.echo = echo
        self.sleep = sleep
        self.clock = clock

    # ------------------------------------------------------------------ API calls

    def _get(self, jt: JobType, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(jt.group, jt.version, namespace, jt.plural, name)
        except _api_exception() as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def _create(self, jt: JobType, manifest: dict[str, Any]) -> dict[str, Any]:
        ns = manifest["metadata"]["namespace"]
        return self.custom.create_namespaced_custom_object(jt.group, jt.version, ns, jt.plural, manifest)

    def delete(self, jt: JobType, name: str, namespace: str, *, wait_s: float = 120.0) -> None:
        """Deletes the job and its pods (foreground) and waits until it is gone."""
        try:
            self.custom.delete_namespaced_custom_object(
                jt.group, jt.version, namespace, jt.plural, name, body={"propagationPolicy": "Foreground"}
            )
        except _api_exception() as exc:
            if getattr(exc, "status", None) != 404:
                raise
        deadline = self.clock() + wait_s
        while self._get(jt, name, namespace) is not None:
            if self.clock() > deadline:
                raise LaunchError(f"{jt.kind} {namespace}/{name} still exists {wait_s:.0f} s after deletion")
            self.sleep(2.0)

    # --------------------------------------------------------------------- steps

    def submit(
        self, manifest: dict[str, Any], *, if_exists: Literal["adopt", "replace", "error"] = "adopt"
    ) -> dict[str, Any]:
        """Creates the job. When one of that name exists already (a retried pipeline task):

        * ``adopt`` — wait on it if it is still running or has succeeded; replace it if it failed;
        * ``replace`` — delete it and create a new one;
        * ``error`` — raise :class:`LaunchError`.
        """
        jt = job_type_of(manifest)
        name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        try:
            created = self._create(jt, manifest)
            self.echo(f"created {jt.kind} {ns}/{name}")
            return created
        except _api_exception() as exc:
            status = getattr(exc, "status", None)
            if status != 409:
                raise LaunchError(
                    f"creating {jt.kind} {ns}/{name} failed: HTTP {status} {getattr(exc, 'reason', '')}\n"
                    f"{getattr(exc, 'body', '') or ''}"
                ) from None
        existing = self._get(jt, name, ns)
        if if_exists == "error":
            raise LaunchError(f"{jt.kind} {ns}/{name} already exists")
        state = terminal_state(jt, existing) if existing else None
        if existing is not None and if_exists == "adopt" and (state is None or state[0]):
            self.echo(f"{jt.kind} {ns}/{name} already exists; following it")
            return existing
        self.echo(f"{jt.kind} {ns}/{name} already exists ({'failed' if state else 'replacing'}); recreating it")
        self.delete(jt, name, ns)
        return self._create(jt, manifest)

    def wait(self, jt: JobType, name: str, namespace: str, *, timeout_s: float) -> tuple[dict[str, Any], bool, str, str]:
        """Watches the job until a terminal condition; returns ``(object, succeeded, reason, message)``.

        Raises :class:`LaunchError` if the job disappears, and ``TimeoutError`` after ``timeout_s``.
        """
        deadline = self.clock() + timeout_s
        last_conditions: dict[str, str] = {}
        while True:
            obj = self._get(jt, name, namespace)
            if obj is None:
                raise LaunchError(f"{jt.kind} {namespace}/{name} was deleted while the launcher waited on it")
            self._report_conditions(jt, name, namespace, obj, last_conditions)
            state = terminal_state(jt, obj)
            if state is not None:
                return (obj, *state)
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise TimeoutError(f"{jt.kind} {namespace}/{name} did not finish within {timeout_s:.0f} s")
            resource_version = (obj.get("metadata") or {}).get("resourceVersion")
            watcher = self.watch_factory()
            try:
                for event in watcher.stream(
                    self.custom.list_namespaced_custom_object,
                    jt.group, jt.version, namespace, jt.plural,
                    field_selector=f"metadata.name={name}",
                    resource_version=resource_version,
                    timeout_seconds=max(1, int(min(remaining, 300))),
                ):
                    kind = event.get("type")
                    item = event.get("object") or {}
                    if kind == "DELETED":
                        raise LaunchError(f"{jt.kind} {namespace}/{name} was deleted while the launcher waited on it")
                    if kind == "ERROR":
                        break  # e.g. 410 Gone: resourceVersion too old; re-read and watch again
                    self._report_conditions(jt, name, namespace, item, last_conditions)
                    state = terminal_state(jt, item)
                    if state is not None:
                        return (item, *state)
            except _api_exception() as exc:
                if getattr(exc, "status", None) != 410:
                    raise
            finally:
                watcher.stop()

    def _report_conditions(
        self, jt: JobType, name: str, namespace: str, obj: dict[str, Any], seen: dict[str, str]
    ) -> None:
        for cond in (obj.get("status") or {}).get("conditions") or []:
            key = cond.get("type", "?")
            value = f"{cond.get('status')} {cond.get('reason', '')}".strip()
            if seen.get(key) != value:
                seen[key] = value
                msg = cond.get("message") or ""
                self.echo(f"{jt.kind} {namespace}/{name}: {key}={value}" + (f": {msg}" if msg else ""))

    def pod_logs(self, jt: JobType, name: str, namespace: str, *, tail_lines: int = 200) -> dict[str, str]:
        """Log tails of the job's pods, failed pods first; keys describe pod, phase and exit codes."""
        try:
            pods = self.core.list_namespaced_pod(namespace, label_selector=f"{jt.pod_label}={name}").items
        except _api_exception() as exc:
            return {"<pods>": f"could not list pods: HTTP {getattr(exc, 'status', '?')} {getattr(exc, 'reason', '')}"}
        if not pods:
            return {"<pods>": f"no pods with label {jt.pod_label}={name} (never scheduled, or already deleted)"}
        pods = sorted(pods, key=lambda p: (p.status.phase != "Failed", p.metadata.name))
        out: dict[str, str] = {}
        for pod in pods[:MAX_PODS_IN_REPORT]:
            for container in pod.spec.containers:
                header = f"{pod.metadata.name} [{container.name}] phase={pod.status.phase}{_termination(pod, container.name)}"
                try:
                    text = self.core.read_namespaced_pod_log(
                        name=pod.metadata.name, namespace=namespace, container=container.name, tail_lines=tail_lines
                    )
                except _api_exception() as exc:
                    text = f"<logs unavailable: HTTP {getattr(exc, 'status', '?')} {getattr(exc, 'reason', '')}>"
                out[header] = text or "<empty log>"
        if len(pods) > MAX_PODS_IN_REPORT:
            out["<more pods>"] = f"{len(pods) - MAX_PODS_IN_REPORT} more pods not shown"
        return out

    # --------------------------------------------------------------------- all

    def run(
        self,
        manifest: dict[str, Any],
        *,
        timeout_s: float | None = None,
        if_exists: Literal["adopt", "replace", "error"] = "adopt",
        tail_lines: int = 200,
        delete_on_success: bool = False,
        delete_on_timeout: bool = True,
    ) -> dict[str, Any]:
        """Submit, wait, and return the finished job; raise :class:`JobFailed` with logs on failure."""
        jt = job_type_of(manifest)
        name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        if timeout_s is None:
            timeout_s = _manifest_deadline(manifest) + WAIT_GRACE_SECONDS
        self.submit(manifest, if_exists=if_exists)
        try:
            obj, ok, reason, message = self.wait(jt, name, ns, timeout_s=timeout_s)
        except TimeoutError as exc:
            logs = self.pod_logs(jt, name, ns, tail_lines=tail_lines)
            if delete_on_timeout:
                self.delete(jt, name, ns)
            raise JobTimedOut(f"{exc}{'; deleted it' if delete_on_timeout else ''}", logs) from None
        if not ok:
            logs = self.pod_logs(jt, name, ns, tail_lines=tail_lines)
            raise JobFailed(f"{jt.kind} {ns}/{name} failed: {reason or 'no reason given'}: {message}".rstrip(": "), logs)
        self.echo(f"{jt.kind} {ns}/{name} succeeded")
        if delete_on_success:
            self.delete(jt, name, ns)
        return obj


def _termination(pod: Any, container: str) -> str:
    for status in (pod.status.container_statuses or []):
        if status.name != container:
            continue
        term = getattr(status.state, "terminated", None) or getattr(status.last_state, "terminated", None)
        if term is not None:
            return f" exit={term.exit_code} reason={term.reason}"
    return ""


def _manifest_deadline(manifest: dict[str, Any]) -> float:
    spec = manifest.get("spec") or {}
    seconds = spec.get("activeDeadlineSeconds") or (spec.get("runPolicy") or {}).get("activeDeadlineSeconds")
    if not seconds:
        raise LaunchError("the manifest sets no activeDeadlineSeconds; pass timeout_s")
    return float(seconds)


def launch(manifest: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Runs ``manifest`` to completion with clients from the pod's service account (or kubeconfig).

    Keyword arguments go to :meth:`Launcher.run` (``timeout_s``, ``if_exists``, ``tail_lines``,
    ``delete_on_success``, ``delete_on_timeout``).
    """
    return Launcher().run(manifest, **kwargs)

