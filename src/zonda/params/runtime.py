"""``runtime``: where a run goes (KFP, MLflow, outputs, the DVC remote), its images and Kubernetes resources."""

from __future__ import annotations

from pydantic import Field

from zonda.params.base import Strict
from zonda.params.k8s import DistributedLaunchParams, ResourcesParams


class ImagesParams(Strict):
    data: str = Field("zonda-data:latest", description="CPU image (no torch) for snapshot, statistics and the MLflow run's tasks.")
    train: str = Field(
        "zonda-train:latest", description="Image with torch (CUDA on clusters) for graph, train, evaluate and register."
    )


class RuntimeParams(Strict):
    kfp_host: str | None = Field(None, description="KFP API endpoint; the KFP_HOST environment variable overrides.")
    kfp_experiment: str = "zonda"
    service_account: str | None = Field(
        None, description="Kubernetes service account of pipeline runs on KFP (charts/zonda creates zonda-pipeline)."
    )
    pipeline_name: str = Field("zonda", pattern=r"^[a-z0-9][a-z0-9\-]*$")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; MLFLOW_TRACKING_URI overrides; default sqlite under output_root."
    )
    mlflow_experiment: str = "zonda"
    output_root: str = Field("artifacts", description="Local runs: where KFP-local outputs and caches go.")
    dvc_remote: str | None = Field(
        "local",
        description="Where the snapshot stage pushes each snapshot by content: a DVC remote URL (s3://, gs://, "
        "ssh://, a directory) or the name of a remote of the DVC project in the working directory (resolved to "
        "its URL at the start of a run); null: do not push. Credentials come from the environment, never params.",
    )
    images: ImagesParams = Field(default_factory=ImagesParams)
    resources: ResourcesParams = Field(default_factory=ResourcesParams)
    distributed: DistributedLaunchParams = Field(default_factory=DistributedLaunchParams)
