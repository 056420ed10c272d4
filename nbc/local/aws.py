"""The embedded local AWS: moto's server on 127.0.0.1 playing DynamoDB, S3 and SQS over real HTTP."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

from model.adapters import aws
from model.adapters.table import ensure_table
from model.domain.settings import get_settings
from nbc.local import moto_fixes

moto_fixes.install()  # before any server starts: fast, atomic TransactWriteItems (see the module)

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",  # moto accepts any value; never a real secret
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


# moto runs in this process and shares its GIL with the API: under load one of its answers can take seconds, where
# DynamoDB takes milliseconds. The embedded store gets a longer read timeout than the cloud's 2 s (an explicit
# NBC_AWS_READ_TIMEOUT wins); the request deadline still bounds every request.
LOCAL_READ_TIMEOUT = "10"


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


class _MotoProcess:
    """moto's server in a child process: its work runs on another core than the caller's (same GIL otherwise)."""

    def __init__(self, port: int) -> None:
        code = "import sys; from nbc.local.aws import serve_forever; serve_forever(int(sys.argv[1]), int(sys.argv[2]))"
        argv = [sys.executable, "-c", code, str(port), str(os.getpid())]  # this interpreter, fixed code, numbers
        self._proc = subprocess.Popen(argv, cwd=Path(__file__).parents[2])  # noqa: S603
        self._port = port

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the local AWS process exited ({self._proc.returncode})")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self._port)) == 0:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the local AWS process did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def serve_forever(port: int, parent: int) -> None:
    """The child process of `local_aws(separate_process=True)`: moto (with this module's repairs) until stopped,
    or until its parent is gone (killed without a chance to stop it)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl-C in the parent's terminal: the parent stops us
    while not stop.wait(1.0) and os.getppid() == parent:
        pass
    server.stop()


@contextmanager
def local_aws(port: int | None = None, separate_process: bool = False) -> Iterator[str]:
    """Start moto on 127.0.0.1, provision it, yield its endpoint, stop it (and restore the environment).
    `separate_process`: moto runs in a child process (a batch job such as the demo: moto's work on the second
    core); otherwise in this process's threads (the server, the tests: in-process repairs and no start-up)."""
    saved = {k: os.environ.get(k) for k in [*FAKE_CREDENTIALS, "NBC_AWS_ENDPOINT_URL", "NBC_AWS_READ_TIMEOUT"]}
    os.environ.setdefault("NBC_AWS_READ_TIMEOUT", LOCAL_READ_TIMEOUT)
    port = port or free_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines: noise here
    server: ThreadedMotoServer | _MotoProcess
    if separate_process:
        for name, fake in FAKE_CREDENTIALS.items():  # the child inherits them
            os.environ.setdefault(name, fake)
        server = _MotoProcess(port)
    else:
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


def _passes_filter(record: dict[str, Any]) -> bool:
    """The event source mapping's FilterCriteria in template.yaml: new touchpoint items only (INSERT, SK TP#*).
    The aggregator's own writes (the aggregate, the folded marks) are MODIFY records it never receives."""
    sk = record.get("dynamodb", {}).get("Keys", {}).get("SK", {}).get("S", "")
    return bool(record.get("eventName") == "INSERT" and sk.startswith("TP#"))


class StreamPump:
    """Locally, what Lambda's event source mapping does in the cloud: read the table's stream and hand each
    batch of records, shaped as a Lambda DynamoDB stream event, to a handler (the aggregator's)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], batch_size: int = 100) -> None:
        self.handler, self.batch_size = handler, batch_size
        self._iterators: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open(self, position: str = "TRIM_HORIZON") -> None:
        settings = get_settings()
        arn = aws.client("dynamodb").describe_table(TableName=settings.table_name)["Table"]["LatestStreamArn"]
        streams = aws.client("dynamodbstreams")
        self._arn = arn
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            sid = shard["ShardId"]
            if sid not in self._iterators:
                self._iterators[sid] = streams.get_shard_iterator(
                    StreamArn=arn, ShardId=sid, ShardIteratorType=position
                )["ShardIterator"]

    def skip_existing(self) -> None:
        """Start after the records written so far (a restored snapshot: its touchpoints are already folded)."""
        self._open("LATEST")

    def drain(self) -> int:
        """Deliver every record written so far; return how many were delivered."""
        self._open()
        # moto answers a long stream's GetRecords slowly: a patient client (a local tool, not a request path).
        streams = aws.client("dynamodbstreams", get_settings().model_copy(update={"aws_read_timeout": 120.0}))
        delivered = 0
        for sid, iterator in list(self._iterators.items()):
            while iterator:
                page = streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
                records = page.get("Records", [])
                iterator = page.get("NextShardIterator")
                if not records:
                    break
                wanted = [r for r in records if _passes_filter(r)]
                if wanted:
                    self.handler({"Records": [_lambda_record(r, self._arn) for r in wanted]}, None)
                delivered += len(wanted)
            self._iterators[sid] = iterator
        return delivered

    def start(self, interval: float = 0.5) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.drain()
                except Exception:  # a local convenience loop: report and keep pumping
                    logging.getLogger(__name__).exception("stream pump failed")

        self._thread = threading.Thread(target=loop, name="stream-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)


def _lambda_record(record: dict[str, Any], arn: str) -> dict[str, Any]:
    """boto3 returns datetimes where the Lambda event carries epoch seconds; otherwise the shapes match."""
    out = dict(record)
    ddb = dict(out.get("dynamodb", {}))
    created = ddb.get("ApproximateCreationDateTime")
    if created is not None and hasattr(created, "timestamp"):
        ddb["ApproximateCreationDateTime"] = int(created.timestamp())
    out["dynamodb"] = ddb
    out["eventSourceARN"] = arn
    return out
