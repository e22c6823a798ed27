"""Init container of the zonda MLflow server (charts/zonda, templates/mlflow.yaml).

Runs in the zonda data image before ``mlflow server`` starts and, driven by environment variables:

* ``ZONDA_WAIT_FOR=host:port[,host:port]`` — waits until each address accepts TCP connections
  (the in-chart Postgres/MinIO starting up), at most ``ZONDA_WAIT_SECONDS`` (default 300);
* ``ZONDA_AUTH_CONFIG=/path/basic_auth.ini`` — writes the basic-auth app's config, with the
  users database URI from ``MLFLOW_AUTH_DATABASE_URI`` (a Secret, so it stays out of ConfigMaps)
  and ``MLFLOW_AUTH_DEFAULT_PERMISSION``; the admin comes from ``MLFLOW_AUTH_ADMIN_*`` at server start;
* ``ZONDA_CREATE_BUCKET=true`` — creates the bucket of ``MLFLOW_ARTIFACTS_DESTINATION`` (s3://) on
  ``MLFLOW_S3_ENDPOINT_URL`` if missing (in-chart MinIO starts empty).

Exits non-zero with one line saying what is wrong, so ``kubectl describe pod`` shows it.
"""

from __future__ import annotations

import configparser
import os
import socket
import sys
import time
from urllib.parse import urlparse

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


def fail(message: str) -> None:
    print(f"mlflow-init: {message}", file=sys.stderr)
    raise SystemExit(1)


def wait_for(addresses: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for address in filter(None, (a.strip() for a in addresses.split(","))):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            fail(f"ZONDA_WAIT_FOR entry {address!r} is not host:port")
        while True:
            try:
                with socket.create_connection((host, int(port)), timeout=3):
                    print(f"mlflow-init: {address} is up")
                    break
            except OSError as exc:
                if time.monotonic() > deadline:
                    fail(f"{address} did not accept connections within {timeout_s:.0f} s ({exc})")
                time.sleep(2)


def write_auth_config(path: str, database_uri: str, default_permission: str) -> None:
    if not database_uri:
        fail("MLFLOW_AUTH_DATABASE_URI is empty; set the auth database URI key of the backend-store Secret")
    if default_permission not in PERMISSIONS:
        fail(f"MLFLOW_AUTH_DEFAULT_PERMISSION {default_permission!r} is not one of {', '.join(PERMISSIONS)}")
    # MLflow reads this file with ConfigParser's default interpolation: a '%' (URL-encoded
    # password characters) must be written as '%%'.
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {
        "default_permission": default_permission,
        "database_uri": database_uri.replace("%", "%%"),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        config.write(fh)
    print(f"mlflow-init: wrote {path}")


def ensure_bucket(destination: str, endpoint: str | None) -> None:
    url = urlparse(destination)
    if url.scheme != "s3" or not url.netloc:
        fail(f"MLFLOW_ARTIFACTS_DESTINATION {destination!r} is not an s3://bucket/prefix URI")
    import boto3
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3", endpoint_url=endpoint or None)
    try:
        s3.head_bucket(Bucket=url.netloc)
        print(f"mlflow-init: bucket {url.netloc} exists")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            fail(f"cannot check bucket {url.netloc}: {exc}")
        s3.create_bucket(Bucket=url.netloc)
        print(f"mlflow-init: created bucket {url.netloc}")


def main() -> None:
    env = os.environ
    if env.get("ZONDA_WAIT_FOR"):
        wait_for(env["ZONDA_WAIT_FOR"], float(env.get("ZONDA_WAIT_SECONDS", "300")))
    if env.get("ZONDA_AUTH_CONFIG"):
        write_auth_config(
            env["ZONDA_AUTH_CONFIG"],
            env.get("MLFLOW_AUTH_DATABASE_URI", ""),
            env.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ"),
        )
    if env.get("ZONDA_CREATE_BUCKET") == "true":
        ensure_bucket(env.get("MLFLOW_ARTIFACTS_DESTINATION", ""), env.get("MLFLOW_S3_ENDPOINT_URL"))


if __name__ == "__main__":
    main()
