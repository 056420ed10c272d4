"""The promotion gate: move CURRENT to a challenger only if its held-out policy value is not worse.

Values come from the manifests (`policy_value`, written by `nbc train`). The gate compares the first metric
both manifests carry, in this order: the exact value under the simulator's oracle (`model_true_value`, only
on simulated data), then the off-policy SNIPS estimate, then IPS. `force` overrides a refusal (and is
recorded in the result). Before CURRENT moves, the version is compiled for the scoring function and verified
against LightGBM (training/compile.py); a model that cannot be compiled is never promoted.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.adapters.registry import Manifest, ModelStore
from training.compile import compile_version

GATE_METRICS = ("model_true_value", "model_snips", "model_ips")


class PromotionRefusedError(Exception):
    """The challenger's held-out policy value is worse than the champion's."""


@dataclass
class Promotion:
    version: str
    previous: str | None
    metric: str | None
    challenger_value: float | None
    champion_value: float | None
    forced: bool
    message: str


def gate_metric(challenger: Manifest, champion: Manifest) -> str | None:
    for key in GATE_METRICS:
        if key in challenger.policy_value and key in champion.policy_value:
            return key
    return None


def promote(store: ModelStore, version: str | None = None, *, force: bool = False) -> Promotion:
    versions = store.versions()
    if not versions:
        raise PromotionRefusedError(f"no model version in {store.uri}: run `nbc train` first")
    version = version or versions[-1]
    if version not in versions:
        raise PromotionRefusedError(f"unknown version {version!r} in {store.uri}; known: {', '.join(versions[-5:])}")
    challenger = store.manifest(version)
    previous = store.current()
    if previous == version:
        return Promotion(version, previous, None, None, None, False, f"{version} is already CURRENT")

    metric: str | None = None
    new_value = old_value = None
    if previous is not None:
        champion = store.manifest(previous)
        metric = gate_metric(challenger, champion)
        if metric is None:
            if not force:
                raise PromotionRefusedError(
                    f"refused: {version} and the champion {previous} share no policy-value metric "
                    f"({', '.join(GATE_METRICS)}); use --force to promote anyway"
                )
        else:
            new_value, old_value = challenger.policy_value[metric], champion.policy_value[metric]
            if new_value < old_value and not force:
                raise PromotionRefusedError(
                    f"refused: challenger {version} {metric} = {new_value:.4f} is worse than champion "
                    f"{previous} {metric} = {old_value:.4f}; use --force to promote anyway"
                )
    compile_version(store, version)  # verified against LightGBM; a failure stops the promotion
    store.set_current(version)
    forced = force and (metric is None or (new_value is not None and old_value is not None and new_value < old_value))
    if previous is None:
        message = f"CURRENT -> {version} (first model)"
    elif forced:
        message = f"CURRENT -> {version} (forced over {previous})"
    else:
        message = f"CURRENT -> {version} ({metric} {new_value:.4f} >= {old_value:.4f} of {previous})"
    return Promotion(version, previous, metric, new_value, old_value, forced, message)
