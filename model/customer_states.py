"""Bulk read of customer state for the batch scoring endpoint: aggregates and profiles of up to 1,000
customers in BatchGetItem calls of 100 keys (store.get_state reads one customer per call)."""

from __future__ import annotations

from collections.abc import Sequence

from model import store
from model.aggregate import Aggregate
from model.schemas import Profile
from model.table import AGG_SK, PK, PROFILE_SK, SK, customer_pk

State = tuple[Aggregate | None, Profile | None]


def get_states(customer_ids: Sequence[str]) -> dict[str, State]:
    """Every customer's (aggregate, profile); (None, None) for an unknown customer."""
    unique = list(dict.fromkeys(customer_ids))
    keys = [{PK: {"S": customer_pk(cid)}, SK: {"S": sk}} for cid in unique for sk in (AGG_SK, PROFILE_SK)]
    by_pk = {customer_pk(cid): cid for cid in unique}
    aggs: dict[str, Aggregate] = {}
    profiles: dict[str, Profile] = {}
    # Eventually consistent reads: half the read cost, and a campaign audience does not need the last second.
    for item in store._batch_get(keys, consistent=False):
        cid = by_pk.get(item[PK]["S"])
        if cid is None:
            continue
        if item[SK]["S"] == AGG_SK:
            aggs[cid] = Aggregate.from_json(item["state"]["S"])
        elif item[SK]["S"] == PROFILE_SK:
            profiles[cid] = store._profile_from(store.from_image(item))
    return {cid: (aggs.get(cid), profiles.get(cid)) for cid in unique}
