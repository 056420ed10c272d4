"""The embedded local AWS: moto's server on 127.0.0.1 playing DynamoDB, S3 and SQS over real HTTP."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

from model import aws
from model.settings import get_settings
from model.table import ensure_table

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",  # moto accepts any value; never a real secret
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def configure(endpoint: str) -> None:
    """Point settings and boto3 at `endpoint` with throwaway credentials."""
    for key, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    os.environ["NBC_AWS_ENDPOINT_URL"] = endpoint
    get_settings.cache_clear()
    aws.reset_clients()


def provision() -> None:
    """Create what template.yaml creates in the cloud: the table, and the bucket of an s3:// model store."""
    settings = get_settings()
    ensure_table(settings)
    if settings.model_store.startswith("s3://"):
        bucket = settings.model_store[5:].split("/", 1)[0]
        s3 = aws.client("s3", settings)
        if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=bucket)


@contextmanager
def local_aws(port: int | None = None) -> Iterator[str]:
    """Start moto on 127.0.0.1, provision it, yield its endpoint, stop it (and restore the environment)."""
    saved = {k: os.environ.get(k) for k in [*FAKE_CREDENTIALS, "NBC_AWS_ENDPOINT_URL"]}
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        configure(endpoint)
        provision()
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        aws.reset_clients()
