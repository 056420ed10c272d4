"""The human-readable evaluation report: one HTML page with PNG plots (matplotlib, Agg backend).

It reads the layout of report.json (docs/ope.md): `policies.<policy>.estimates.<estimator>` = {"value", "ci",
"ess", "max_weight", "matched", "support", "n"}, `policies.<policy>.true_value` on simulated data, and
`ope` = {"lead", "propensities", "estimated", "unsupported", "channel_model", ...}. Every number may be null
(no propensity, no matched decision): it is shown as "n/a", never crashed on. The helpers `ope_notes`,
`estimator_label` and `cell` are shared with the command line's tables (nbc/commands/training.py, the demo).
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

import matplotlib
import numpy as np

from training.ope.estimators import ESTIMATORS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # (the backend must be chosen first)

PLOTS = ("calibration.png", "gains.png", "importance.png", "policies.png")
WEIGHTED = frozenset(ESTIMATORS) - {"dm"}  # numbers that rest on propensities
LABELS = {e: e.upper() for e in ESTIMATORS} | {"switch": "Switch-DR"}


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


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


MOSTLY_MODEL = 0.5  # a headline valued by the reward model for at least this share of its policy's probability


def reward_model_note(report: dict[str, Any]) -> str | None:
    """Which policies' headline values rest mostly on the reward model, and what their intervals then mean."""
    leaning = [
        f"{name} {100 * share:.0f}%"
        for name, res in (report.get("policies") or {}).items()
        if (share := num((res or {}).get("reward_model_share"))) is not None and share >= MOSTLY_MODEL
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


# --- plots ----------------------------------------------------------------------------------------------------


def calibration_plot(report: dict[str, Any]) -> bytes:
    cal = report.get("calibration") or {}
    fig, ax = plt.subplots(figsize=(5, 4))
    pred, obs = cal.get("predicted", []), cal.get("observed", [])
    top = max([*pred, *obs, 1e-3])
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect")
    ax.plot(pred, obs, "o-", label="model")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration (held-out sends)")
    ax.legend()
    return _png(fig)


def gains_plot(report: dict[str, Any]) -> bytes:
    g = report.get("gains") or {}
    fig, ax = plt.subplots(figsize=(5, 4))
    share = [0.0, *g.get("share", [])]
    ax.plot(share, [0.0, *g.get("captured", [])], "o-", label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    ax.set(xlabel="share of sends (ranked by prediction)", ylabel="share of positives captured", title="Gains")
    ax.legend()
    return _png(fig)


def importance_plot(report: dict[str, Any], top: int = 15) -> bytes:
    items = list((report.get("importance") or {}).items())[:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * max(4, len(items)) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel="share of total gain", title="Feature importance")
    return _png(fig)


def _axis_limits(points: list[float], bounds: list[float]) -> tuple[float, float]:
    """Y range: every point estimate and true value, and the intervals as far as 1.5 x that span beyond them
    (one policy's huge interval must not flatten the others)."""
    core = points or bounds or [0.0]
    lo, hi = min([*core, 0.0]), max([*core, 0.0])
    span = (hi - lo) or 1.0
    lo = max(min([*bounds, lo]), lo - 1.5 * span)
    hi = min(max([*bounds, hi]), hi + 1.5 * span)
    pad = 0.05 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def policies_plot(report: dict[str, Any]) -> bytes:
    """Per policy: the lead estimate with its 95% interval, and the true value (simulated data only)."""
    pol = report.get("policies") or {}
    names = list(pol)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    xs = list(range(len(names)))
    points, bounds = [], []
    est_x, est_v, err_lo, err_hi = [], [], [], []
    for i, n in enumerate(names):
        own = policy_lead(report, n)
        e = ((pol[n] or {}).get("estimates") or {}).get(own or "", {}) if own else {}
        v = num(e.get("value")) if e else num((pol[n] or {}).get("value"))
        ci = (e.get("ci") if e else (pol[n] or {}).get("ci")) or [None, None]
        lo, hi = num(ci[0]), num(ci[1])
        if v is None:
            continue
        points.append(v)
        est_x.append(i)
        est_v.append(v)
        err_lo.append(v - lo if lo is not None else 0.0)
        err_hi.append(hi - v if hi is not None else 0.0)
        bounds += [b for b in (lo, hi) if b is not None]
    true_x = [i for i, n in enumerate(names) if num((pol[n] or {}).get("true_value")) is not None]
    true_v = [float(pol[names[i]]["true_value"]) for i in true_x]
    points += true_v
    ylo, yhi = _axis_limits(points, bounds)
    label = f"lead estimate ({lead_note(report)}), 95% CI"
    if estimated(report):
        label += ", estimated propensities"
    if est_x:
        ax.errorbar(
            [x - 0.08 for x in est_x], est_v, yerr=[err_lo, err_hi], fmt="o", capsize=4, label=label, color="C0"
        )
        for x, v, lo_e, hi_e in zip(est_x, est_v, err_lo, err_hi, strict=True):
            for end, sign in ((v - lo_e, -1), (v + hi_e, 1)):
                if end < ylo or end > yhi:  # the interval goes off the axis: say where it ends
                    y = yhi if sign > 0 else ylo
                    ax.annotate(
                        human(end),
                        (x - 0.08, y),
                        fontsize=7,
                        ha="center",
                        va="top" if sign > 0 else "bottom",
                        color="C0",
                    )
    if true_x:
        ax.scatter([x + 0.08 for x in true_x], true_v, marker="D", color="C3", zorder=3, label="true value (oracle)")
    ax.set_ylim(ylo, yhi)
    ax.set_xticks(xs, names, rotation=30, ha="right")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(ylabel=f"net {report.get('value_unit') or 'value per decision'}", title="Policy value on held-out decisions")
    if est_x or true_x:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no estimate (no held-out decision)", ha="center", transform=ax.transAxes)
    return _png(fig)


def plots(report: dict[str, Any]) -> dict[str, bytes]:
    return {
        "calibration.png": calibration_plot(report),
        "gains.png": gains_plot(report),
        "importance.png": importance_plot(report),
        "policies.png": policies_plot(report),
    }


# --- HTML -----------------------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return human(v)
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return html.escape(str(v))


def _policy_table(report: dict[str, Any]) -> str:
    pol = report.get("policies") or {}
    ests = estimators_in(report)
    truth = has_truth(report)
    head = "".join(
        f"<th{' class=lead' if e == lead(report) else ''}>{html.escape(estimator_label(report, e))}</th>" for e in ests
    )
    extra = ["true value", "regret", "% of oracle"] if truth else []
    head += "".join(f"<th>{c}</th>" for c in [*extra, "no contact", "by reward model"])
    rows = []
    for name, res in pol.items():
        res = res or {}
        tds = []
        for e in ests:
            value, ci, diag = cell((res.get("estimates") or {}).get(e))
            cls = " class=lead" if e == policy_lead(report, name) else ""  # this policy's headline estimator
            mean_w = num(((res.get("estimates") or {}).get(e) or {}).get("mean_weight"))
            weight_note = "" if mean_w is None or e == "dm" else f"<br><small>mean w {mean_w:.2f}</small>"
            tds.append(f"<td{cls}>{value}<br><small>{ci}</small><br><small>{diag}</small>{weight_note}</td>")
        if truth:
            share = num(res.get("share_of_oracle"))
            tds.append(f"<td><b>{fmt(res.get('true_value'))}</b></td><td>{fmt(res.get('regret'))}</td>")
            tds.append(f"<td>{'n/a' if share is None else f'{100 * share:.1f}%'}</td>")
        share_none = num(res.get("share_no_contact"))
        tds.append(f"<td>{'n/a' if share_none is None else f'{100 * share_none:.1f}%'}</td>")
        tds.append(f"<td>{model_share_text(res)}</td>")
        rows.append(f"<tr><th>{html.escape(str(name))}</th>{''.join(tds)}</tr>")
    return f"<table><tr><th>policy</th>{head}</tr>{''.join(rows)}</table>"


def _error_table(report: dict[str, Any]) -> str:
    """Simulated data: every estimator's error against the true value, and whether its interval covers it."""
    if not has_truth(report):
        return ""
    pol = report.get("policies") or {}
    ests = estimators_in(report)
    head = "".join(f"<th>{html.escape(estimator_label(report, e))}</th>" for e in ests)
    rows = []
    for name, res in pol.items():
        true = num((res or {}).get("true_value"))
        tds = []
        for e in ests:
            est = ((res or {}).get("estimates") or {}).get(e) or {}
            v, ci = num(est.get("value")), est.get("ci") or [None, None]
            lo, hi = num(ci[0]), num(ci[1])
            if v is None or true is None:
                tds.append("<td>n/a</td>")
                continue
            covers = "" if lo is None or hi is None else (" &#10003;" if lo <= true <= hi else " &#10007;")
            tds.append(f"<td>{v - true:+.3f}{covers}</td>")
        rows.append(f"<tr><th>{html.escape(str(name))}</th>{''.join(tds)}</tr>")
    return (
        "<h3>Error against the true value (estimate - true; &#10003; = the 95% interval covers it)</h3>"
        f"<table><tr><th>policy</th>{head}</tr>{''.join(rows)}</table>"
    )


def _channel_model(report: dict[str, Any]) -> str:
    model = (report.get("ope") or {}).get("channel_model") or {}
    cal = model.get("calibration") or {}
    pred, obs = cal.get("predicted") or [], cal.get("observed") or []
    if not pred:
        return ""
    cells = "".join(
        f"<tr><td>{fmt(p, '.3f')}</td><td>{fmt(o, '.3f')}</td></tr>" for p, o in zip(pred, obs, strict=False)
    )
    return (
        f"<h3>Logging-channel model (the propensity MIPS/MDR weight by)</h3><p>Cross-fitted multiclass log loss "
        f"{fmt(model.get('logloss'), '.4f')}; calibration by decile of the predicted probability:</p>"
        f"<table><tr><th>predicted</th><th>observed</th></tr>{cells}</table>"
    )


def _weekly_table(report: dict[str, Any]) -> str:
    """Held-out AUC by week of the send: drift shows as a falling curve."""
    weeks = report.get("metrics_by_week") or []
    if not weeks:
        return ""
    rows = "".join(
        f"<tr><th>{html.escape(str(w.get('week')))}</th><td>{_fmt(w.get('n'))}</td><td>{_fmt(w.get('positives'))}</td>"
        f"<td>{fmt(num(w.get('auc')), '.3f')}</td>"
        f"<td>{fmt_ci(w.get('ci'))}</td></tr>"
        for w in weeks
    )
    return (
        "<h3>AUC by week of the send</h3><p>Each held-out week on its own, with its 95% interval (Hanley-McNeil) "
        "and the rows it rests on: a falling AUC in the newest weeks means behaviour drifts away from what the "
        "model learned.</p><table><tr><th>week from</th><th>sends</th><th>positives</th><th>AUC</th>"
        f"<th>95% interval</th></tr>{rows}</table>"
    )


def render_html(report: dict[str, Any], title: str = "Model evaluation") -> str:
    """The page; it references the PNGs by file name (they sit next to it in the version's folder)."""
    metrics = report.get("metrics", {})
    mrows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics.items())
    data = report.get("dataset", {})
    drows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in data.items())
    imgs = "".join(f'<figure><img src="{p}" alt="{p[:-4]}"></figure>' for p in PLOTS)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in ope_notes(report))
    warn = (
        "<p class=warn><b>Estimated:</b> the log carries no (or partial) propensities; every off-policy number "
        "below rests on estimated propensities.</p>"
        if estimated(report)
        else ""
    )
    truth_note = (
        " True value: exact under the simulator's oracle, the incremental value of the policy's action over not "
        "contacting (a send valued as if no later send fell in its window); the estimators measure the reward "
        "above, so on data with organic conversions or frequent sends the two differ by definition."
        + (
            " The true values are in conversion value (the simulator's ground truth), not in the objective's units."
            if report.get("objective") in ("click", "visit")
            else ""
        )
        if has_truth(report)
        else ""
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}}
.lead{{background:#eef5ff}}small{{color:#555}}.warn{{background:#fff3cd;padding:.5em}}
figure{{display:inline-block;margin:0 1em}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>Model: {html.escape(str(report.get("training", {}).get("model", "-")))}.
Objective: {html.escape(str(report.get("objective", "")))} (policy values in
{html.escape(str(report.get("value_unit") or "conversion value per decision"))}); attribution window
{_fmt(report.get("attribution_window_days", ""))} days.</p>
<h2>Prediction quality (held-out sends)</h2><table>{mrows}</table>
{_weekly_table(report)}
<h2>Policy value (held-out decisions)</h2>
<p>{html.escape(reward_text(report)[0].upper() + reward_text(report)[1:])}; by every off-policy estimator
(docs/ope.md): the value, its 95% bootstrap interval, and "ESS / matched" (the
effective sample size of the importance weights / the decisions whose weight is positive), and the mean weight
(about the share of the policy's probability on actions the log takes; well below 1: bias). The lead estimator is
highlighted; "est." marks numbers that rest on estimated propensities.{truth_note}</p>
{warn}<ul>{notes}</ul>
{_policy_table(report)}
{_error_table(report)}
{_channel_model(report)}
<h2>Plots</h2>{imgs}
<h2>Data</h2><table>{drows}</table>
{_value_prior(report)}
</body></html>
"""


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


def _value_prior(report: dict[str, Any]) -> str:
    return f"<p>{html.escape(value_prior_text(report))}</p>"
