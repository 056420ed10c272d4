"""Local-only repairs to the moto DynamoDB emulator, installed when the embedded local AWS is imported.

moto's `TransactWriteItems` deep-copies every table it touches before each transaction, to roll back on
failure: O(table size) per call, about 8 s with 20,000 items, so any transactional write path (ingest's
conditional puts, the aggregator's aggregate + touchpoint marks) becomes unusable on a table of any size.
This replacement keeps DynamoDB's semantics for what the project uses (up to 100 actions, one action per
item, conditions of every action evaluated before anything is written, `ReturnValuesOnConditionCheckFailure`,
`TransactionCanceledException` with one cancellation reason per action) and rolls back only the items the
transaction wrote. A lock serialises it against moto's single-item writes and reads, so a transaction is
atomic for concurrent requests to the threaded local server, as it is in DynamoDB. Condition expressions are
parsed once per distinct (expression, names, values) instead of once per action and pass (`_memo_parser`:
the parse is pure, so answers do not change; it was most of the emulator's time for such transactions).
moto's response serializer walks the botocore shape of every attribute of every item it returns (alias lookups
per member): most of the emulator's time for GetRecords, BatchGetItem and Query. DynamoDB's `AttributeValue`
maps are written directly instead, with the same output (`_FastItemsSerializer`; a test compares the two).

Nothing here runs in the cloud: only `nbc.local` (and the tests, through it) imports this module.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from typing import Any

from botocore.model import Shape
from moto.core import serialize
from moto.dynamodb import comparisons, responses
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend

_LOCK = threading.RLock()
_INSTALLED = "_nbc_fast_transactions"


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(self, *args, **kwargs)

    wrapper.__wrapped__ = method  # type: ignore[attr-defined]
    wrapper.__name__ = method.__name__
    return wrapper


class _Parsed:
    """What moto's callers use of a ConditionExpressionParser, from a memoised parse."""

    def __init__(self, op: Any, names: list[str], values: list[str]) -> None:
        self._op, self.expr_attr_names_found, self.expr_attr_values_found = op, list(names), list(values)

    def parse(self) -> Any:
        return self._op


_PARSED: dict[str, tuple[Any, list[str], list[str]]] = {}
_parser = comparisons.create_condition_expression_parser


def _memo_parser(expr: str | None, names: Any, values: Any) -> Any:
    """moto parses every condition of every request again (a hand-written lexer: most of the emulator's time for
    transactions of 100 conditional actions that share two expressions); parse each distinct one once."""
    key = json.dumps([expr, names, values], sort_keys=True, default=str)
    hit = _PARSED.get(key)
    if hit is None:
        parser = _parser(expr, names, values)
        op = parser.parse()  # an invalid expression raises here, as the caller's parse() would, and is not kept
        hit = (op, list(parser.expr_attr_names_found), list(parser.expr_attr_values_found))
        if len(_PARSED) >= 4096:
            _PARSED.clear()
        _PARSED[key] = hit
    return _Parsed(*hit)


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    with _LOCK:
        plan: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        targets: set[tuple[str, str]] = set()
        errors: list[tuple[Any, Any, Any]] = []
        for entry in transact_items:
            if len(entry) > 1:
                raise TransactWriteSingleOpException
            op_type, op = next(iter(entry.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise MockValidationException("Unsupported transaction operation")
            table = self.get_table(op["TableName"])
            if op_type == "Put":
                key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = op["Item"][table.range_key_attr]
            else:
                key = op["Key"]
            target = (table.name, str(dict(sorted(key.items()))))
            if target in targets:
                raise MultipleTransactionsException()
            targets.add(target)
            current = self.get_item(op["TableName"], key)
            condition = op.get("ConditionExpression")
            if condition is not None and not get_filter_expression(
                condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            ).expr(current):
                old = None
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current is not None:
                    old = current.to_json()["Attributes"]
                errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
            else:
                errors.append((None, None, None))
            plan.append((op_type, op, key))
        if any(code is not None for code, _, _ in errors):
            raise TransactionCanceledException(errors)

        undo = []  # (table, hash, range, the item before, stream length before)
        for op_type, op, key in plan:
            if op_type == "ConditionCheck":
                continue
            table = self.get_table(op["TableName"])
            hash_key, range_key = self.get_keys_value(table, key)
            shard = table.stream_shard
            before = table.get_item(hash_key, range_key)
            undo.append((table, hash_key, range_key, copy.deepcopy(before), len(shard.items) if shard else 0))
        try:
            for op_type, op, key in plan:
                names, values = op.get("ExpressionAttributeNames") or {}, op.get("ExpressionAttributeValues") or {}
                if op_type == "Put":
                    self.put_item(op["TableName"], op["Item"], overwrite=True)
                elif op_type == "Delete":
                    self.delete_item(op["TableName"], key)
                elif op_type == "Update":
                    self.update_item(op["TableName"], key, op["UpdateExpression"], names, values)
        except ConditionalCheckFailed:  # cannot happen: conditions were checked above, under the lock
            raise
        except Exception:
            for table, hash_key, range_key, before, stream_len in reversed(undo):
                bucket: Any = table.items[hash_key] if range_key is not None else table.items
                slot = range_key if range_key is not None else hash_key
                if before is None:
                    bucket.pop(slot, None)
                else:
                    bucket[slot] = before
                if table.stream_shard is not None:
                    del table.stream_shard.items[stream_len:]
            raise


_STRINGS, _BLOBS = ("S", "N"), ("B",)
_AV_MEMBERS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


class _FastItemsSerializer(serialize.JSONSerializer):
    """moto's JSON serializer, except for DynamoDB items (`AttributeValue` and maps of them), written as the
    shape walk would write them: strings as str, blobs base64, M and L recursively, other members as they are,
    None left out. Anything else (an unexpected key or type) goes the generic way."""

    def _attribute_value(self, value: Any) -> dict[str, Any] | None:
        if type(value) is not dict or not value.keys() <= _AV_MEMBERS:
            return None
        out: dict[str, Any] = {}
        for key, member in value.items():
            if member is None:
                continue
            if key in _STRINGS:
                out[key] = str(member)
            elif key in _BLOBS:
                out[key] = self._base64(member)
            elif key in ("SS", "NS"):
                out[key] = [str(v) if v not in (None, {}, []) else v for v in member]
            elif key == "BS":
                out[key] = [self._base64(v) for v in member]
            elif key == "M":
                fields = self._attribute_map(member)
                if fields is None:
                    return None
                out[key] = fields
            elif key == "L":
                items = [self._attribute_value(v) for v in member]
                if any(item is None for item in items):
                    return None
                out[key] = items
            else:  # NULL, BOOL
                out[key] = member
        return out

    def _attribute_map(self, value: Any) -> dict[str, Any] | None:
        if type(value) is not dict:
            return None
        out = {}
        for name, member in value.items():
            av = self._attribute_value(member)
            if av is None:
                return None
            out[name] = av
        return out

    def _serialize_type_structure(self, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue":
            fast = self._attribute_value(value)
            if fast is not None:
                self._default_serialize(serialized, fast, shape, key)
                return
        super()._serialize_type_structure(serialized, value, shape, key)

    def _serialize_type_map(self, serialized: Any, value: Any, shape: Any, key: str) -> None:
        value_shape: Shape | None = getattr(shape, "value", None)
        if value_shape is not None and value_shape.name == "AttributeValue":
            fast = self._attribute_map(value)
            if fast is not None:
                self._default_serialize(serialized, fast, shape, key)
                return
        super()._serialize_type_map(serialized, value, shape, key)


def install() -> None:
    """Replace moto's TransactWriteItems (idempotent) and serialise single-item operations with it."""
    if getattr(DynamoDBBackend, _INSTALLED, False):
        return
    for name in ("put_item", "update_item", "delete_item", "get_item"):
        setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    comparisons.create_condition_expression_parser = _memo_parser  # used by get_filter_expression
    responses.create_condition_expression_parser = _memo_parser  # type: ignore[attr-defined]
    for service in ("dynamodb", "dynamodbstreams"):  # moto's own hook for service-specific serializers
        serialize.SERVICE_SPECIFIC_SERIALIZERS.setdefault(service, {})["json"] = _FastItemsSerializer
    setattr(DynamoDBBackend, _INSTALLED, True)
