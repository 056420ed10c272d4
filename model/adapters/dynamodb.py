"""Low-level DynamoDB access shared by the table's writers and readers: the client, item keys and timestamps,
marshalling between plain Python and DynamoDB JSON, and the batch and transaction calls with their retries.

Keys come from model/adapters/table.py. Batch calls retry UnprocessedKeys/UnprocessedItems and throttling with
exponential backoff and full jitter, a bounded number of times; when the budget is spent they raise
`StoreUnavailableError` so the caller reports a failure (HTTP 503, SQS redelivery) and nothing is silently lost.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from model.adapters import aws
from model.adapters.table import PK, SK, customer_pk
from model.domain.settings import get_settings

Item = dict[str, Any]
T = TypeVar("T")

WRITE_CHUNK = 25  # BatchWriteItem limit
READ_CHUNK = 100  # BatchGetItem limit
MAX_ATTEMPTS = 10  # per batch call, including the first
BASE_DELAY = 0.05  # seconds; the n-th retry sleeps uniform(0, min(MAX_DELAY, BASE_DELAY * 2**n))
MAX_DELAY = 3.0
TRANSACT_MAX = 100  # TransactWriteItems limit (actions per call; 100 touchpoints of <= ~8 KB stay far below 4 MB)
THROTTLING = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError"}
)
TRANSIENT = THROTTLING | {"TransactionConflictException", "TransactionInProgressException"}
RETRYABLE_CANCELLATIONS = frozenset({"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, so TS sorts lexicographically in time order

_sleep: Callable[[float], None] = time.sleep  # tests may replace it to run the backoff instantly


class StoreUnavailableError(RuntimeError):
    """DynamoDB kept throttling or leaving work unprocessed past the retry budget; nothing was lost silently."""


def table_name() -> str:
    return get_settings().table_name


def client() -> Any:
    return aws.client("dynamodb")


def utc_now() -> datetime:
    return datetime.now(UTC)


def ts_key(occurred_at: datetime) -> str:
    return occurred_at.astimezone(UTC).strftime(TS_FORMAT)


def item_key(customer_id: str, sk: str) -> Item:
    return {PK: {"S": customer_pk(customer_id)}, SK: {"S": sk}}


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def backoff(attempt: int) -> None:
    _sleep(random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt)))  # full jitter


def _throttled(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") in THROTTLING


def to_ddb(value: Any) -> Item:
    """Plain Python (JSON-like) value -> DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {"N": str(Decimal(str(value)))}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {str(k): to_ddb(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_ddb(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def from_ddb(attr: Item) -> Any:
    """DynamoDB attribute value -> plain Python (numbers as int or float)."""
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() and "." not in value else float(number)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_ddb(v) for k, v in value.items()}
    if kind == "L":
        return [from_ddb(v) for v in value]
    if kind == "SS":
        return list(value)
    raise TypeError(f"unsupported DynamoDB type {kind}")


def from_image(image: Item) -> dict[str, Any]:
    """A whole item (or stream NewImage) in DynamoDB JSON -> plain dict."""
    return {k: from_ddb(v) for k, v in image.items()}


def _until_processed(
    call: Callable[..., Item], pending: Item, unprocessed: str, failure: Callable[[Item], str]
) -> Iterator[Item]:
    """Call a batch operation until its `unprocessed` part is empty, yielding each response; throttling and
    unprocessed requests are retried with backoff, MAX_ATTEMPTS times in all (then StoreUnavailableError with
    `failure(what is still pending)`)."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            resp = call(RequestItems=pending)
        except ClientError as err:
            if not _throttled(err):
                raise
        else:
            yield resp
            pending = resp.get(unprocessed) or {}
            if not pending:
                return
        if attempt + 1 < MAX_ATTEMPTS:
            backoff(attempt)
    raise StoreUnavailableError(failure(pending))


def _keys_left(pending: Item) -> str:
    return f"BatchGetItem still incomplete after {MAX_ATTEMPTS} attempts"


def _items_left(pending: Item) -> str:
    left = sum(len(v) for v in pending.values())
    return f"BatchWriteItem left {left} items unprocessed after {MAX_ATTEMPTS} attempts"


def batch_get(keys: Sequence[Item], projection: str | None = None, consistent: bool = True) -> list[Item]:
    """BatchGetItem over any number of keys, retrying UnprocessedKeys and throttling."""
    ddb, table, found = client(), table_name(), []
    for chunk in chunks(keys, READ_CHUNK):
        request: Item = {"Keys": list(chunk), "ConsistentRead": consistent}
        if projection:
            request["ProjectionExpression"] = projection
        for resp in _until_processed(ddb.batch_get_item, {table: request}, "UnprocessedKeys", _keys_left):
            found.extend(resp.get("Responses", {}).get(table, []))
    return found


def batch_write(requests: Sequence[Item]) -> None:
    """BatchWriteItem (puts or deletes) in chunks of 25, retrying UnprocessedItems and throttling."""
    ddb, table = client(), table_name()
    for chunk in chunks(requests, WRITE_CHUNK):
        for _ in _until_processed(ddb.batch_write_item, {table: list(chunk)}, "UnprocessedItems", _items_left):
            pass


def transact(actions: Sequence[Item]) -> list[Item] | None:
    """One TransactWriteItems: None once it committed, else its cancellation reasons (one per action, in order)
    when a condition failed. Conflicts with concurrent transactions and throttling are retried with backoff;
    past the budget, StoreUnavailableError. botocore gives each call an idempotency token (ClientRequestToken)
    that its own retries reuse, so a commit whose answer was lost is not applied twice."""
    ddb = client()
    for attempt in range(MAX_ATTEMPTS):
        try:
            ddb.transact_write_items(TransactItems=list(actions))
            return None
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code")
            if code == "TransactionCanceledException":
                reasons: list[Item] = [dict(r) for r in err.response.get("CancellationReasons") or []]
                codes = {str(r.get("Code", "None")) for r in reasons}
                if "ConditionalCheckFailed" in codes:
                    return reasons
                if not reasons or not codes <= RETRYABLE_CANCELLATIONS:
                    raise
            elif code not in TRANSIENT:
                raise
        if attempt + 1 < MAX_ATTEMPTS:
            backoff(attempt)
    raise StoreUnavailableError(f"TransactWriteItems still conflicting or throttled after {MAX_ATTEMPTS} attempts")


def condition_failed(reason: Item) -> bool:
    """Whether a transaction's cancellation reason is its action's condition failing."""
    return reason.get("Code") == "ConditionalCheckFailed"
