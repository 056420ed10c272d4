"""The human-readable evaluation report: one HTML page with PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import html
import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # (the backend must be chosen first)

PLOTS = ("calibration.png", "gains.png", "importance.png", "policies.png")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


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


def policies_plot(report: dict[str, Any]) -> bytes:
    pol = report.get("policies") or {}
    names = list(pol)
    fig, ax = plt.subplots(figsize=(7, 4))
    x = range(len(names))
    snips = [pol[n].get("snips", math.nan) for n in names]
    lo = [s - pol[n].get("snips_ci", [s, s])[0] for n, s in zip(names, snips, strict=True)]
    hi = [pol[n].get("snips_ci", [s, s])[1] - s for n, s in zip(names, snips, strict=True)]
    err = [[max(0.0, v) if v == v else 0.0 for v in lo], [max(0.0, v) if v == v else 0.0 for v in hi]]
    ax.bar([i - 0.2 for i in x], snips, width=0.4, yerr=err, capsize=3, label="SNIPS (off-policy, 95% CI)")
    if any("true_value" in pol[n] for n in names):
        ax.bar([i + 0.2 for i in x], [pol[n].get("true_value", 0.0) for n in names], width=0.4, label="true value")
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(ylabel="net value per decision", title="Policy value on held-out decisions")
    ax.legend()
    return _png(fig)


def plots(report: dict[str, Any]) -> dict[str, bytes]:
    return {
        "calibration.png": calibration_plot(report),
        "gains.png": gains_plot(report),
        "importance.png": importance_plot(report),
        "policies.png": policies_plot(report),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return html.escape(str(v))


def render_html(report: dict[str, Any], title: str = "Model evaluation") -> str:
    """The page; it references the PNGs by file name (they sit next to it in the version's folder)."""
    metrics = report.get("metrics", {})
    pol = report.get("policies", {})
    cols = ["ips", "ips_ci", "snips", "snips_ci", "true_value", "regret", "share_of_oracle", "matches"]
    cols = [c for c in cols if any(c in p for p in pol.values())]
    rows = "".join(
        "<tr><th>" + html.escape(n) + "</th>" + "".join(f"<td>{_fmt(p.get(c, ''))}</td>" for c in cols) + "</tr>"
        for n, p in pol.items()
    )
    mrows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics.items())
    data = report.get("dataset", {})
    drows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in data.items())
    imgs = "".join(f'<figure><img src="{p}" alt="{p[:-4]}"></figure>' for p in PLOTS)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}figure{{display:inline-block;margin:0 1em}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>Model: {html.escape(str(report.get("training", {}).get("model", "-")))}.
Objective: {html.escape(str(report.get("objective", "")))}; attribution window
{_fmt(report.get("attribution_window_days", ""))} days. Policy values are net value per held-out decision
(attributed conversion value minus channel cost); IPS/SNIPS are off-policy estimates from logged propensities,
true value is exact under the simulator's oracle (simulated data only).</p>
<h2>Prediction quality (held-out sends)</h2><table>{mrows}</table>
<h2>Policy value (held-out decisions)</h2>
<table><tr><th>policy</th>{"".join(f"<th>{c}</th>" for c in cols)}</tr>{rows}</table>
<h2>Plots</h2>{imgs}
<h2>Data</h2><table>{drows}</table>
</body></html>
"""
