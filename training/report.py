"""The human-readable evaluation report: one HTML page with PNG plots (matplotlib, Agg backend).

It reads the layout of report.json (docs/ope.md): `policies.<policy>.estimates.<estimator>` = {"value", "ci",
"ess", "max_weight", "matched", "support", "n"}, `policies.<policy>.true_value` on simulated data, and
`ope` = {"lead", "propensities", "estimated", "unsupported", "channel_model", ...}. Its numbers, leads and notes
come from training/report_text.py, which the command line's tables share.
"""

from __future__ import annotations

import html
import io
from typing import Any

import matplotlib

from training.report_text import (
    cell,
    estimated,
    estimator_label,
    estimators_in,
    fmt,
    fmt_ci,
    has_truth,
    human,
    lead,
    lead_note,
    model_share_text,
    num,
    ope_notes,
    policy_lead,
    reward_text,
    value_prior_text,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # (the backend must be chosen first)

PLOTS = ("calibration.png", "gains.png", "importance.png", "policies.png")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


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


def _value_prior(report: dict[str, Any]) -> str:
    return f"<p>{html.escape(value_prior_text(report))}</p>"
