"""The promotion gate: move CURRENT to a challenger only if, on the same held-out logged decisions, it is not
worse than the champion and not worse than the logging policy.

Both models are scored on the newest period of one source (`source`, default the challenger's training source,
recorded in its manifest): the held-out decisions are built once (grid, rules and features as serving builds
them, with the challenger's message levels; the champion encodes each message by its own levels), each model's
served policy is valued by the lead off-policy estimator (docs/ope.md), and the paired bootstrap difference
(challenger - champion, and challenger - logging) decides:

    promote  iff  lower 95% bound of (challenger - champion) >= 0  and  lower 95% bound of (challenger - logging) >= 0

The first model (no champion) must beat the logging policy the same way. Logs without propensities: the gate
falls back to predictive quality on the same held-out sends (paired difference of log loss per send, or squared
error for the value objective; AUC is reported), against the champion, or for a first model against the
constant base-rate prediction, and says so. `force` skips the gate (rollback). Before CURRENT moves, the version
is compiled for the scoring function and verified against LightGBM; a model that cannot be compiled is never
promoted. `dry_run` evaluates and changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.adapters.registry import Manifest, ModelStore
from model.domain.features import encode_level
from model.domain.recommend_schemas import NONE_CHANNEL
from training import ope
from training.compile import compile_version

LEVEL = ope.LEVEL


class PromotionRefusedError(Exception):
    """The gate kept the champion (or could not judge the challenger)."""

    def __init__(self, message: str, gate: Gate | None = None) -> None:
        super().__init__(message)
        self.gate = gate


@dataclass
class Gate:
    """What the gate measured and decided (`to_dict` is what `nbc promote --json` prints)."""

    decision: str  # "promote" | "refuse"
    method: str  # "off-policy" | "predictive"
    estimator: str  # the lead OPE estimator, or "logloss" / "squared_error" (predictive fallback)
    challenger: str
    champion: str | None
    source: str | None
    difference: dict[str, Any] | None  # challenger - champion {"value", "ci"} (None: first model)
    vs_logging: dict[str, Any] | None  # challenger - logging policy (off-policy), or - base rate (predictive)
    values: dict[str, dict[str, Any]]  # per side ("challenger", "champion", "logging"/"base_rate"): numbers
    decisions: int  # held-out decisions (off-policy) or sends (predictive) the numbers rest on
    propensities: str  # "logged" | "partial" | "none"
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    true_values: dict[str, float] | None = None  # simulated data: exact values under the oracle (not used to decide)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision": self.decision,
            "estimator": self.estimator,
            "method": self.method,
            "challenger": self.challenger,
            "champion": self.champion,
            "difference": self.difference,
            "vs_logging": self.vs_logging,
            "values": self.values,
            "level": LEVEL,
            "decisions": self.decisions,
            "propensities": self.propensities,
            "source": self.source,
            "reasons": self.reasons,
            "warnings": self.warnings,
        }
        if self.true_values is not None:
            out["true_values"] = self.true_values
        cleaned: dict[str, Any] = _clean(out)
        return cleaned


@dataclass
class Promotion:
    version: str
    previous: str | None
    promoted: bool  # CURRENT moved (False for a dry run or a no-op)
    forced: bool
    message: str
    gate: Gate | None = None


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars -> Python numbers, NaN / infinity -> None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _diff(d: ope.Difference, meaning: str) -> dict[str, Any]:
    return {**d.to_dict(), "meaning": meaning}


def _lower(d: dict[str, Any] | None) -> float | None:
    if d is None:
        return None
    lo = d.get("ci", [None, None])[0]
    return lo if isinstance(lo, int | float) and math.isfinite(lo) else None


# --- inputs ---------------------------------------------------------------------------------------------------


def _booster(store: ModelStore, version: str) -> Any:
    import lightgbm as lgb

    name = store.manifest(version).files.get("lightgbm", "model.txt")
    return lgb.Booster(model_str=store.read(version, name).decode())


def incompatibility(challenger: Manifest, champion: Manifest) -> str | None:
    """Why the two models cannot be scored on the same decisions (None: they can). Message levels may differ."""
    if challenger.features != champion.features or challenger.categorical != champion.categorical:
        return "their feature layouts differ"
    if challenger.channels != champion.channels:
        return "their channel catalogues differ"
    if challenger.objective != champion.objective:
        return f"their objectives differ ({challenger.objective} vs {champion.objective})"
    # Message levels may differ (each model encodes by its own), and so may "don't contact" among the channels.
    a = {k: v for k, v in challenger.levels.items() if k not in ("message", "channel")}
    b = {k: v for k, v in champion.levels.items() if k not in ("message", "channel")}
    if a != b:
        return "their categorical attribute levels differ"
    return None


def no_contact(manifest: Manifest) -> bool:
    """Whether the model scores "don't contact" (trained with logged no-contact decisions): serving then ranks by
    incremental value."""
    return NONE_CHANNEL in manifest.levels.get("channel", [])


def _truth_next_to(source: str | None) -> str | None:
    if source and "://" not in source and Path(source, "truth.json").is_file():
        return str(Path(source, "truth.json"))
    return None


# --- the gate -------------------------------------------------------------------------------------------------


def evaluate_gate(
    store: ModelStore,
    challenger: str,
    champion: str | None,
    source: Any,
    *,
    source_name: str | None = None,
    max_decisions: int = 5000,
    n_boot: int = ope.N_BOOT,
    seed: int = 0,
    simulated_truth: Any = None,
    training_set: Any = None,
    logged: Any = None,
) -> Gate:
    """Score the challenger (and the champion, and the logging policy) on the same held-out decisions of
    `source` (a URI or a `sources.Sources`) and decide. Changes nothing in the store.

    `training_set`: the source's held-out decisions already built with `held_out` (to judge several pairs on the
    same decisions without rebuilding them; `source` then only names them). `simulated_truth`: a truth.json path
    or an `Oracle` (default: truth.json next to a local source): the exact values are reported, never decide.
    `logged`: the nuisance models of `training_set`'s decisions already fitted (`evaluate.LoggedDecisions`, most of
    a gate's time); they depend on the decisions only, never on the models compared, so pairs judged on the same
    decisions can share one fit."""
    from training import dataset, evaluate
    from training.sim_truth import Oracle

    ch_m = store.manifest(challenger)
    champ_m = store.manifest(champion) if champion else None
    if champ_m is not None:
        why = incompatibility(ch_m, champ_m)
        if why:
            raise PromotionRefusedError(
                f"refused: {challenger} and the champion {champion} cannot be scored on the same decisions: {why}; "
                "use --force to promote anyway"
            )
    layout = dataset.layout_from_settings()
    if list(layout.names) != ch_m.features:
        raise PromotionRefusedError(
            f"refused: the configured feature layout differs from {challenger}'s (its nbc.toml channels and "
            "attributes must be loaded: NBC_CONFIG, or the source folder's nbc.toml)"
        )
    name = source_name if source_name is not None else (source if isinstance(source, str) else None)
    ts = training_set if training_set is not None else held_out(source, ch_m, max_decisions)
    ch_b = _booster(store, challenger)
    champ_b = _booster(store, champion) if champion else None
    warnings = _overlap_warnings(ts, ch_m, champ_m)
    ctx = ts.contexts
    if isinstance(simulated_truth, Oracle):
        oracle: Oracle | None = simulated_truth
    else:
        truth = simulated_truth or (_truth_next_to(name) if isinstance(name, str) else None)
        oracle = Oracle.load(truth) if truth else None
    if ctx is not None and len(ctx) > 0 and np.isfinite(ctx.propensity).any():
        if logged is None:
            logged = evaluate.LoggedDecisions(ts, ctx)
        elif training_set is None or len(logged.rows) != len(ctx):
            raise ValueError("`logged` must be fitted on the decisions of the `training_set` passed with it")
        gate = _off_policy(ts, logged, ch_b, champ_b, ch_m, champ_m, n_boot, seed, oracle)
        gate.source, gate.warnings = name, warnings + _reward_model_warnings(gate)
        return gate
    if ctx is None or len(ctx) == 0:
        warnings.append("no held-out logged decision in the source: off-policy evaluation is impossible")
    gate = _predictive(ts, ch_b, champ_b, ch_m, champ_m, n_boot, seed, "none")
    gate.source, gate.warnings = name, warnings
    return gate


def held_out(source: Any, challenger: Manifest, max_decisions: int = 5000, **build: Any) -> Any:
    """The source's training set with its held-out decisions (the newest period), built once with the
    challenger's objective, attribution window and message levels."""
    from training import dataset, sources

    src = sources.load(source) if isinstance(source, str) else source
    return dataset.build(
        src.touchpoints,
        src.profiles,
        src.decisions,
        objective=challenger.objective,  # type: ignore[arg-type]
        window_days=challenger.attribution_window_days,
        max_contexts=max_decisions,
        message_levels=list(challenger.levels.get("message", [])),
        **build,
    )


def _overlap_warnings(ts: Any, ch_m: Manifest, champ_m: Manifest | None) -> list[str]:
    sends = ts.meta["send_ts"].to_numpy()[ts.split == "eval"]
    if len(sends) == 0:
        return []
    start = float(sends.min())
    out = []
    for role, m in (("challenger", ch_m), ("champion", champ_m)):
        if m is not None and m.training_window[1].timestamp() > start:
            out.append(
                f"the {role} {m.version} trained on data up to {m.training_window[1]:%Y-%m-%d %H:%M}, after the "
                f"held-out period starts: if it saw these customers, its estimate is optimistic"
            )
    return out


def _reward_model_warnings(gate: Gate) -> list[str]:
    """A model whose value rests mostly on the reward model: the difference's interval leaves its error out."""
    out = []
    for side in ("challenger", "champion"):
        share = ((gate.values or {}).get(side) or {}).get("reward_model_share")
        if share is not None and share >= ope.MOSTLY_REWARD_MODEL:
            out.append(
                f"{100 * share:.0f}% of the {side}'s policy is valued by the reward model alone (the log rarely takes "
                f"its actions): the interval of the {gate.estimator.upper()} difference covers the decisions' "
                "sampling noise, not the reward model's error (docs/ope.md)"
            )
    return out


def _off_policy(
    ts: Any,
    logged: Any,
    ch_b: Any,
    champ_b: Any | None,
    ch_m: Manifest,
    champ_m: Manifest | None,
    n_boot: int,
    seed: int,
    oracle: Any | None,
) -> Gate:
    from training import evaluate

    ctx = ts.contexts
    n = len(ctx)

    def policy(booster: Any, m: Manifest) -> Any:  # each model encodes the grid's messages by its own levels
        levels = list(m.levels.get("message", []))
        own = None if levels == ts.levels.get("message", []) else levels
        return evaluate.model_policy(booster, ts, own, no_contact=no_contact(m), gone=m.unsupported)

    dists = {"challenger": policy(ch_b, ch_m)}
    if champ_b is not None and champ_m is not None:
        dists["champion"] = policy(champ_b, champ_m)
    terms = {side: logged.terms(d) for side, d in dists.items()}
    terms["logging"] = logged.on_policy_terms(same_support=logged.propensities == "partial")
    idx = ope.bootstrap_indices(n, n_boot, seed)
    estimates = {side: {k: ope.estimate(t, idx=idx) for k, t in ts_.items()} for side, ts_ in terms.items()}
    lead = pair_lead(estimates)
    vs_log = _diff(
        ope.paired_difference(terms["challenger"][lead], terms["logging"][lead], idx=idx),
        "challenger - logging policy, net value per decision",
    )
    diff = None
    if "champion" in terms:
        diff = _diff(
            ope.paired_difference(terms["challenger"][lead], terms["champion"][lead], idx=idx),
            "challenger - champion, net value per decision",
        )
    values = {
        side: {
            "lead": e[lead].to_dict(),
            "reward_model_share": ope.reward_model_share(lead, e[lead]),
            **{k: v.to_dict()["value"] for k, v in e.items()},
        }
        for side, e in estimates.items()
    }
    true_values = None
    if oracle is not None:
        true_ev = evaluate.oracle_values(oracle, ts, ctx)
        true_values = {side: evaluate.true_value(d, true_ev) for side, d in dists.items()}
        true_values["logging"] = float(logged.pick(true_ev)[logged.in_grid].mean())
        if "champion" in true_values:
            true_values["difference"] = true_values["challenger"] - true_values["champion"]
    decision, reasons = _decide(f"{lead.upper()} difference", diff, vs_log, "logging policy")
    if logged.propensities == "partial":
        reasons.append(
            f"only part of the held-out decisions carry a logged propensity: {lead.upper()} uses "
            f"{estimates['challenger'][lead].n:,} of {n:,}"
        )
    return Gate(
        decision=decision,
        method="off-policy",
        estimator=lead,
        challenger=ch_m.version,
        champion=champ_m.version if champ_m else None,
        source=None,
        difference=diff,
        vs_logging=vs_log,
        values=values,
        decisions=n,
        propensities=logged.propensities,
        reasons=reasons,
        true_values=true_values,
    )


def pair_lead(estimates: dict[str, dict[str, ope.Estimate]]) -> str:
    """One estimator for both models, whichever side is challenger: Switch-DR whenever both have logged
    full-action propensities, else MDR (estimated channel propensities), else DM.

    Switch-DR rather than DR: a single logged action weighted in the thousands decides DR (on 300 decisions one
    weight of 1,830 made a worse model look 12 per decision better, true -5.5); Switch-DR values such actions
    with the cross-fitted reward model and keeps DR's correction elsewhere. Not MDR, which is narrower but whose
    bias does not show in its interval (on the simulator it valued the 20k model 71% low)."""
    sides = [estimates[side] for side in ("challenger", "champion") if side in estimates]

    def usable(name: str) -> bool:
        return all(name in e and e[name].n > 0 and math.isfinite(e[name].value) for e in sides)

    return "switch" if usable("switch") else "mdr" if usable("mdr") else "dm"


def _decide(label: str, diff: dict[str, Any] | None, vs_base: dict[str, Any], base: str) -> tuple[str, list[str]]:
    """Promote iff every lower bound is >= 0 (a missing interval refuses)."""
    reasons = []
    ok = True
    for what, d in (("champion", diff), (base, vs_base)):
        if d is None:
            continue
        lo = _lower(d)
        ci = d.get("ci") or [None, None]
        text = f"challenger vs {what} ({label}): {_f(d.get('value'))}, 95% CI [{_f(ci[0])}, {_f(ci[1])}]"
        if lo is None:
            ok = False
            reasons.append(text + ": no interval (nothing to compare on), refused")
        elif lo < 0:
            ok = False
            reasons.append(text + ": the lower bound is below 0")
        else:
            reasons.append(text + ": the lower bound is >= 0")
    if diff is None:
        reasons.insert(0, f"first model: it must not be worse than the {base}")
    return ("promote" if ok else "refuse"), reasons


def _f(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, int | float) and math.isfinite(v) else "n/a"


def _reencode_messages(x: np.ndarray, names: list[str], levels_from: list[str], levels_to: list[str]) -> np.ndarray:
    """Rows encoded with one version's message levels, re-encoded with another's."""
    if levels_from == levels_to or "message" not in names:
        return x
    col = names.index("message")
    table = np.array([encode_level(m, levels_to) for m in levels_from] or [0.0], dtype=x.dtype)
    codes = x[:, col]
    known = np.isfinite(codes) & (codes >= 0)
    out = x.copy()
    out[known, col] = table[codes[known].astype(np.int64)]
    return out


def _predictive(
    ts: Any,
    ch_b: Any,
    champ_b: Any | None,
    ch_m: Manifest,
    champ_m: Manifest | None,
    n_boot: int,
    seed: int,
    propensities: str,
) -> Gate:
    """No propensities: paired difference of per-send loss on the held-out sends (higher score = better)."""
    from sklearn.metrics import roc_auc_score

    ev = ts.split == "eval"
    if not all(no_contact(m) for m in (ch_m, champ_m) if m is not None):
        # "don't contact" rows only for models that learnt that action
        ev &= ts.meta["ch"].to_numpy() < len(ch_m.channels)
    x, y = ts.X[ev], ts.y[ev]
    n = len(y)
    if n == 0:
        raise PromotionRefusedError("refused: the source has no held-out sends to judge the challenger on")
    value_objective = ch_m.objective == "value"
    estimator = "squared_error" if value_objective else "logloss"
    yb = (y > 0).astype(np.float64)

    def score(p: np.ndarray) -> np.ndarray:  # per send, higher is better: - loss
        if value_objective:
            return np.asarray(-((y - p) ** 2))
        pc = np.clip(p, 1e-7, 1 - 1e-7)
        return np.asarray(yb * np.log(pc) + (1 - yb) * np.log(1 - pc))

    def auc(p: np.ndarray) -> float | None:
        return float(roc_auc_score(yb, p)) if len(np.unique(yb)) == 2 else None

    ones = np.ones(n)
    used = np.ones(n, dtype=np.bool_)

    def terms(p: np.ndarray) -> ope.Terms:
        return ope.Terms(((score(p), ones),), ones, used)

    def predict(booster: Any, m: Manifest) -> np.ndarray:  # rows re-encoded with the model's message levels
        rows = _reencode_messages(x, ts.names, list(ts.levels.get("message", [])), list(m.levels.get("message", [])))
        return np.asarray(booster.predict(rows, num_threads=2))

    sides = {"challenger": predict(ch_b, ch_m)}
    if champ_b is not None and champ_m is not None:
        sides["champion"] = predict(champ_b, champ_m)
    train = np.isin(ts.split, ["train", "valid"])
    base = float(ts.y[train].mean()) if train.any() else float(y.mean())
    sides["base_rate"] = np.full(n, base)
    idx = ope.bootstrap_indices(n, n_boot, seed)
    t = {side: terms(p) for side, p in sides.items()}
    loss_name = "squared error" if value_objective else "log loss"
    values = {
        side: {estimator: -float(t[side].value()), **({} if value_objective else {"auc": auc(p)})}
        for side, p in sides.items()
    }
    vs_base = _diff(
        ope.paired_difference(t["challenger"], t["base_rate"], idx=idx),
        f"base-rate {loss_name} - challenger {loss_name}, per held-out send (> 0: the challenger predicts better)",
    )
    diff = None
    if "champion" in t:
        diff = _diff(
            ope.paired_difference(t["challenger"], t["champion"], idx=idx),
            f"champion {loss_name} - challenger {loss_name}, per held-out send (> 0: the challenger predicts better)",
        )
    decision, reasons = _decide(f"{loss_name} improvement", diff, vs_base, "constant base-rate prediction")
    reasons.insert(
        0,
        "the held-out decisions carry no logging propensities: the gate falls back to predictive quality "
        f"({loss_name} per held-out send, paired; AUC reported), not policy value",
    )
    return Gate(
        decision=decision,
        method="predictive",
        estimator=estimator,
        challenger=ch_m.version,
        champion=champ_m.version if champ_m else None,
        source=None,
        difference=diff,
        vs_logging=vs_base,
        values=values,
        decisions=n,
        propensities=propensities,
        reasons=reasons,
    )


# --- promotion ------------------------------------------------------------------------------------------------


def promote(
    store: ModelStore,
    version: str | None = None,
    *,
    source: Any = None,
    force: bool = False,
    dry_run: bool = False,
    max_decisions: int = 5000,
    simulated_truth: Any = None,
    n_boot: int = ope.N_BOOT,
    seed: int = 0,
    training_set: Any = None,
    logged: Any = None,
) -> Promotion:
    """Run the gate for `version` (default: the newest) against CURRENT and move CURRENT if it passes
    (`training_set`, `logged`: as `evaluate_gate`).

    Raises PromotionRefusedError when the gate refuses (its `gate` attribute holds the numbers), except for a dry
    run, which returns the decision and changes nothing. `force` skips the gate (rollback)."""
    versions = store.versions()
    if not versions:
        raise PromotionRefusedError(f"no model version in {store.uri}: run `nbc train` first")
    version = version or versions[-1]
    if version not in versions:
        raise PromotionRefusedError(f"unknown version {version!r} in {store.uri}; known: {', '.join(versions[-5:])}")
    previous = store.current()
    if previous == version:
        return Promotion(version, previous, False, False, f"{version} is already CURRENT")
    if force:
        if dry_run:
            return Promotion(version, previous, False, True, f"dry run: --force would move CURRENT -> {version}")
        compile_version(store, version)
        store.set_current(version)
        return Promotion(version, previous, True, True, f"CURRENT -> {version} (forced, gate skipped; was {previous})")

    challenger = store.manifest(version)
    src = source if source is not None else challenger.source
    if src is None and training_set is None:
        raise PromotionRefusedError(
            f"refused: {version}'s manifest records no training source; pass --source (the logs to judge it on)"
        )
    gate = evaluate_gate(
        store,
        version,
        previous,
        src,
        max_decisions=max_decisions,
        n_boot=n_boot,
        seed=seed,
        simulated_truth=simulated_truth,
        training_set=training_set,
        logged=logged,
    )
    summary = "; ".join(gate.reasons)
    if dry_run:
        verdict = "would promote" if gate.decision == "promote" else "would refuse"
        return Promotion(version, previous, False, False, f"dry run: {verdict} {version} ({summary})", gate)
    if gate.decision != "promote":
        raise PromotionRefusedError(
            f"refused: {version} over {previous or 'no champion'} ({summary}); use --force to promote anyway", gate
        )
    compile_version(store, version)  # verified against LightGBM; a failure stops the promotion
    store.set_current(version)
    what = "first model" if previous is None else f"over {previous}"
    return Promotion(version, previous, True, False, f"CURRENT -> {version} ({what}: {summary})", gate)
