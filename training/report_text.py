"""Reading report.json for people: null-safe numbers, the lead estimator and why, and the plain notes on how far
to trust the off-policy numbers.

Shared by the HTML page (training/report.py), the marketer's page (training/marketer_report.py) and the command
line's tables (nbc/commands/training.py, the demo). Every number may be null (no propensity, no matched
decision): it is shown as "n/a", never crashed on. The layout it reads is documented in docs/ope.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from training.ope.estimators import ESTIMATORS, MOSTLY_REWARD_MODEL

WEIGHTED = frozenset(ESTIMATORS) - {"dm"}  # numbers that rest on propensities
LABELS = {e: e.upper() for e in ESTIMATORS} | {"switch": "Switch-DR"}


def num(value: Any) -> float | None:
    """A finite float, or None (null, NaN, a string, a missing key)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: Any, spec: str = ".3f", missing: str = "n/a") -> str:
    """A number by a fixed-point format spec, with thousands separators."""
    v = num(value)
    if v is None:
        return missing
    if "," not in spec and spec[-1:] == "f":
        spec = spec[0] + "," + spec[1:] if spec[:1] in "+- " else "," + spec
    return format(v, spec)


def human(value: Any, missing: str = "n/a") -> str:
    """A number for people, never in scientific notation: whole numbers and anything from 1,000 up with
    thousands separators and no decimals, smaller ones with 4 significant digits (0.0001234, 12.35)."""
    v = num(value)
    if v is None:
        return missing
    if abs(v) >= 1000 or v == int(v):
        return f"{v:,.0f}"
    return np.format_float_positional(v, precision=4, fractional=False, trim="-")


def money(value: Any, missing: str = "n/a", sign: bool = False) -> str:
    """An amount in the currency of the conversion values: 2 decimals, thousands separators (a nonzero amount
    below half a cent with its significant digits rather than as 0.00)."""
    v = num(value)
    if v is None:
        return missing
    if 0 < abs(v) < 0.005:
        return ("+" if sign and v > 0 else "") + human(v)
    return format(v, "+,.2f" if sign else ",.2f")


def percent(value: Any, missing: str = "n/a") -> str:
    """A share as a percentage with one decimal ("< 0.1%" rather than a rounded zero)."""
    v = num(value)
    if v is None:
        return missing
    return "< 0.1%" if 0 < v < 0.0005 else f"{100 * v:.1f}%"


def fmt_ci(ci: Any, spec: str = ".3f", missing: str = "n/a") -> str:
    lo, hi = (ci or [None, None])[:2] if isinstance(ci, list | tuple) and len(ci) >= 2 else (None, None)
    if num(lo) is None or num(hi) is None:
        return missing
    return f"[{fmt(lo, spec)}, {fmt(hi, spec)}]"


def fmt_count(value: Any) -> str:
    v = num(value)
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v < 10_000 else f"{v / 1000:,.0f}k"


def lead(report: dict[str, Any]) -> str | None:
    value = (report.get("ope") or {}).get("lead")
    return value if isinstance(value, str) else None


def policy_lead(report: dict[str, Any], policy: str) -> str | None:
    """The estimator a policy's headline value comes from (`policies.<policy>.lead`; the report's lead in reports
    written before policies had their own)."""
    own = ((report.get("policies") or {}).get(policy) or {}).get("lead")
    return own if isinstance(own, str) else lead(report)


def lead_note(report: dict[str, Any]) -> str:
    """The lead estimator in words, naming the policies that lead with another (thin weights): "DR" or
    "DR; SWITCH for global_best"."""
    name = lead(report)
    others: dict[str, list[str]] = {}
    for policy in report.get("policies") or {}:
        own = policy_lead(report, policy)
        if own and own != name:
            others.setdefault(own, []).append(policy)
    parts = [(name or "n/a").upper()] + [f"{e.upper()} for {', '.join(p)}" for e, p in others.items()]
    return "; ".join(parts)


def estimated(report: dict[str, Any]) -> bool:
    return bool((report.get("ope") or {}).get("estimated"))


def estimators_in(report: dict[str, Any]) -> list[str]:
    """The estimators the report carries, in the documented order (unknown names last)."""
    seen: list[str] = []
    for res in (report.get("policies") or {}).values():
        for name in (res or {}).get("estimates") or {}:
            if name not in seen:
                seen.append(name)
    return [e for e in ESTIMATORS if e in seen] + [e for e in seen if e not in ESTIMATORS]


def estimator_label(report: dict[str, Any], name: str) -> str:
    label = LABELS.get(name, name)
    if name == lead(report):
        label += " (lead)"
    if estimated(report) and name in WEIGHTED:
        label += " est."
    return label


def has_truth(report: dict[str, Any]) -> bool:
    return any(num((r or {}).get("true_value")) is not None for r in (report.get("policies") or {}).values())


def short(value: Any, missing: str = "n/a") -> str:
    """A number with about 3 significant digits (2 decimals below 10) (tables with many columns)."""
    v = num(value)
    if v is None:
        return missing
    digits = 2 if abs(v) < 10 else 1 if abs(v) < 100 else 0
    text = f"{v:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def cell(est: dict[str, Any] | None, compact: bool = False) -> tuple[str, str, str]:
    """(value, 95% interval, "ESS / matched") of one estimate, "n/a" where null."""
    est = est or {}
    if compact:
        ci = est.get("ci") or [None, None]
        lo, hi = (ci[0], ci[1]) if isinstance(ci, list | tuple) and len(ci) >= 2 else (None, None)
        interval = "n/a" if num(lo) is None or num(hi) is None else f"[{short(lo)}, {short(hi)}]"
        value = short(est.get("value"))
    else:
        value, interval = fmt(est.get("value")), fmt_ci(est.get("ci"))
    sep = "/" if compact else " / "
    return value, interval, f"{fmt_count(est.get('ess'))}{sep}{fmt_count(est.get('matched'))}"


def reward_text(report: dict[str, Any]) -> str:
    """What the off-policy numbers measure, per held-out decision."""
    days = fmt(report.get("attribution_window_days"), ".0f", "the")
    objective = str(report.get("objective") or "conversion")
    if objective in ("click", "visit"):
        return (
            f"{report.get('value_unit') or objective + 's per decision'}, net of cost: whether the held-out "
            f"decision got an attributed {objective} within {days} days, minus the channel cost counted in "
            f"{objective}s (at the configured value of one {objective})"
        )
    if report.get("labels") == "window":
        return (
            f"net value per held-out decision: the value of the customer's conversions within {days} days after "
            "the decision, whatever caused them (window labels), minus the channel cost"
        )
    return "net value per held-out decision: the conversion value attributed to the send, minus the channel cost"


def lead_reason(report: dict[str, Any]) -> str:
    """Why the report leads with its estimator (the rule of docs/ope.md, with the model's numbers)."""
    name = lead(report)
    model = ((report.get("policies") or {}).get("model") or {}).get("estimates") or {}
    dr, mdr = model.get("dr") or {}, model.get("mdr") or {}
    if name == "dr":
        return (
            f"DR leads: the model's full-action weights are not thin (ESS {fmt_count(dr.get('ess'))} of "
            f"{fmt_count(dr.get('n'))} decisions, {fmt_count(dr.get('matched'))} matched)."
        )
    if name == "mdr":
        if num(dr.get("value")) is None:
            return "MDR leads: no decision has a logged propensity of its full action; MDR weights by the channel."
        return (
            f"MDR leads: the model's full-action weights are thin (DR: ESS {fmt_count(dr.get('ess'))} of "
            f"{fmt_count(dr.get('n'))}, {fmt_count(dr.get('matched'))} matched), its weights over the channel are "
            f"not (ESS {fmt_count(mdr.get('ess'))})."
        )
    if name == "switch":
        return (
            f"Switch-DR leads: the model's full-action weights are thin (DR: ESS {fmt_count(dr.get('ess'))} of "
            f"{fmt_count(dr.get('n'))} decisions, {fmt_count(dr.get('matched'))} matched); it keeps DR's correction "
            "where a weight is moderate and values the rest by the reward model."
        )
    if name == "dm":
        return (
            "DM leads: no weighted estimate is usable (no propensities); its interval ignores the reward model's bias."
        )
    return "No policy was evaluated (no held-out decision)."


def model_share_text(res: dict[str, Any]) -> str:
    """A policy's headline share valued by the reward model alone, as a percentage ("n/a" when not known)."""
    share = num(res.get("reward_model_share"))
    return "n/a" if share is None else f"{100 * share:.0f}%"


def reward_model_note(report: dict[str, Any]) -> str | None:
    """Which policies' headline values rest mostly on the reward model, and what their intervals then mean."""
    leaning = [
        f"{name} {100 * share:.0f}%"
        for name, res in (report.get("policies") or {}).items()
        if (share := num((res or {}).get("reward_model_share"))) is not None and share >= MOSTLY_REWARD_MODEL
    ]
    if not leaning:
        return None
    return (
        "Valued mostly by the reward model (the share of each policy's probability that no importance weight "
        f"covers): {', '.join(leaning)}. Their intervals cover the decisions' sampling noise, not the reward "
        "model's error: on the simulator it valued greedy policies 9-16% low (bench/RESULTS.md), and no estimator "
        "that does without it could value them within +-200% on 20,000 decisions of such a log (docs/ope.md, "
        '"What no estimator can do"). Compare such policies through the paired gate, not by their levels.'
    )


def ope_notes(report: dict[str, Any]) -> list[str]:
    """Plain sentences on how far to trust the off-policy numbers: propensities, the lead, unsupported actions."""
    ope = report.get("ope") or {}
    notes: list[str] = []
    props = ope.get("propensities")
    if props == "none":
        notes.append(
            "The log has NO propensities: IPS, SNIPS, DR and SNDR cannot be computed (n/a). MIPS and MDR weight by "
            "the logging probability of the channel, ESTIMATED by a classifier of the logged channel given the "
            "context (clipped, calibration below): every off-policy number here is estimated, and the promotion "
            "gate falls back to predictive metrics."
        )
    elif props == "partial":
        support = num(
            ((report.get("policies") or {}).get("model") or {}).get("estimates", {}).get("dr", {}).get("support")
        )
        share = f"{100 * support:.0f}%" if support is not None else "only part"
        notes.append(
            f"Only {share} of the held-out decisions carry a logged propensity: IPS, SNIPS, DR and SNDR use those "
            "decisions only; MIPS and MDR weight by an estimated channel probability. Off-policy numbers are marked "
            "estimated."
        )
    elif props == "logged":
        notes.append(
            "Propensities: logged for every held-out decision (IPS, SNIPS, DR, SNDR). MIPS and MDR weight by the "
            "channel's logging probability, estimated by a cross-fitted classifier."
        )
    if ope:
        notes.append(lead_reason(report))
        if (leaning := reward_model_note(report)) is not None:
            notes.append(leaning)
    model = ((report.get("policies") or {}).get("model") or {}).get("estimates") or {}
    seen, seen_channel = (
        num((model.get("dr") or {}).get("mean_weight")),
        num((model.get("mdr") or {}).get("mean_weight")),
    )
    if seen is not None and seen < 0.5:
        notes.append(
            f"The model's policy puts only about {100 * seen:.0f}% of its probability on actions the log ever takes "
            "(mean full-action weight): DR and SNDR value the rest by the reward model alone, IPS and SNIPS not at "
            "all (biased low)"
            + (
                f"; over the channel (MIPS, MDR) the mean weight is {seen_channel:.2f}."
                if seen_channel is not None
                else "."
            )
        )
    gone = ope.get("unsupported") or {}
    channels, messages = gone.get("channels") or [], gone.get("messages") or []
    if channels or messages:
        parts = []
        if channels:
            parts.append("channels " + ", ".join(map(str, channels)))
        if messages:
            parts.append("messages " + ", ".join(map(str, messages)))
        notes.append(
            "Never tried in the log (serving and evaluation give them no lift over not contacting, so the policy "
            "sends them only by exploration until the log has data for them): " + "; ".join(parts) + "."
        )
    return notes


def value_prior_text(report: dict[str, Any]) -> str:
    """One sentence on how a customer's order value is estimated (model.domain.value), from the report."""
    prior = report.get("value_prior")
    if not prior:
        return (
            "Order value: the customer's own average when they have converted, else the configured default "
            "(no training conversion to learn a prior from)."
        )
    by = (
        f"by {prior['attribute']} ("
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(prior["means"].items()))
        + f"; overall {prior['overall']:.2f})"
        if prior.get("attribute")
        else f"overall {prior['overall']:.2f} (no profile attribute separates customers' order values)"
    )
    return (
        f"Order value: the customer's own orders blended with a prior learned from {prior['conversions']:,} "
        f"training conversions of {prior['customers']:,} customers, {by}; a customer's n orders weigh "
        f"n / (n + {prior['credibility']:.3g}) (docs/decisions.md section 14)."
    )
