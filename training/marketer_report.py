"""The marketer's page (marketing.html, beside report.html): what the model will do against what the team does
today, in plain words, from report.json's `marketing` block (training/marketing.py) and policy values.

One self-contained HTML file without images (bars and heatmap are styled tables): a headline with its interval
and the data it rests on, the "don't contact" share, contacts and cost per customer per week, the channel /
send-hour / message mix side by side, and a channel x local-hour heatmap of the model's expected value. Every
number may be null (no held-out decision, no holdout, no propensities): it reads "not measured", never crashes.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from training.report_text import estimated, fmt, human, lead_note, money, num, percent

POLICY_NAMES = {"model": "Model", "logging": "Today (current practice)", "oracle": "Best possible (simulator)"}
COLOURS = {"model": "#1f77b4", "logging": "#ff7f0e", "oracle": "#2ca02c"}
NOT_MEASURED = "not measured"


def _policies(block: dict[str, Any]) -> list[str]:
    """The policies a block has, in page order."""
    return [p for p in POLICY_NAMES if p in block]


def _ci(ci: Any, show: Callable[[Any], str] = money) -> str | None:
    """ "a to b" of a 2-item interval, or None when either end is null."""
    if not isinstance(ci, list | tuple) or len(ci) < 2 or num(ci[0]) is None or num(ci[1]) is None:
        return None
    return f"{show(ci[0])} to {show(ci[1])}"


def _with_ci(value: Any, ci: Any, show: Callable[[Any], str] = money) -> str:
    """A number and its 95% interval, in words; "not measured" when the number is null."""
    if num(value) is None:
        return NOT_MEASURED
    interval = _ci(ci, show)
    return show(value) + (f" <small>(95% interval {interval})</small>" if interval else "")


# --- sentences ------------------------------------------------------------------------------------------------


def per_decision(report: dict[str, Any]) -> str:
    """The unit of the model's values: "per decision" (conversion value), or "visits per decision" for a visit
    model (report.json `value_unit`)."""
    objective = report.get("objective")
    return f"{objective}s per decision" if objective in ("click", "visit") else "per decision"


def headline(report: dict[str, Any]) -> str:
    """The model against current practice in one sentence, with its interval and the decisions it rests on."""
    mk = report.get("marketing") or {}
    vs = mk.get("vs_logging") or {}
    value, n = num(vs.get("value")), num(vs.get("n"))
    if value is None:
        return "The model's value against current practice is not measured (no held-out decision could be valued)."
    interval = _ci(vs.get("ci"))
    sentence = (
        f"The model's recommendations are worth {money(value, sign=True)} {per_decision(report)}"
        + (f" (95% interval {interval})" if interval else " (no interval)")
        + f" over current practice, on {human(n)} held-out decisions."
    )
    ci = vs.get("ci") or [None, None]
    lo, hi = (num(ci[0]), num(ci[1])) if len(ci) >= 2 else (None, None)
    if lo is not None and hi is not None and lo <= 0 <= hi:
        sentence += " The interval includes zero: the data do not yet show a difference either way."
    elif lo is not None and lo > 0:
        sentence += " The whole interval is above zero: the model does better than current practice."
    elif hi is not None and hi < 0:
        sentence += " The whole interval is below zero: current practice does better than the model."
    pol = report.get("policies") or {}
    true_model = num((pol.get("model") or {}).get("true_value"))
    true_log = num((pol.get("logging") or {}).get("true_value"))
    if true_model is not None and true_log is not None:
        sentence += f" On this simulated data the true difference is {money(true_model - true_log, sign=True)}"
        sentence += " (in conversion value)." if per_decision(report) != "per decision" else "."
    return sentence


def uplift_sentence(report: dict[str, Any]) -> str:
    """What contacting earned over the holdout (never contacted), measured on the log itself."""
    up = (report.get("marketing") or {}).get("uplift") or {}
    m = up.get("measured") or {}
    if num(m.get("value")) is None:
        reason = up.get("reason")
        return "Measured uplift against the holdout: not measured" + (
            f" ({html.escape(str(reason))})." if reason else " (the log has no holdout decisions)."
        )
    interval = _ci(m.get("ci"))
    text = (
        f"Measured uplift against the holdout: the decisions served in this log earned "
        f"{money(m.get('value'), sign=True)} per decision"
        + (f" (95% interval {interval})" if interval else "")
        + f" over customers who were never contacted, on {human(m.get('served_decisions'))} served decisions of "
        f"{human(m.get('served_customers'))} customers and {human(m.get('holdout_decisions'))} holdout decisions "
        f"of {human(m.get('holdout_customers'))} customers ({human(m.get('window_days'))}-day window)."
    )
    if num(up.get("true")) is not None:
        text += f" The true uplift on this simulated data is {money(up.get('true'), sign=True)} per decision."
    return text


def best_hours(report: dict[str, Any]) -> list[str]:
    """Per channel, the local hour with the highest mean expected value ("email: 19:00, 0.42 per decision")."""
    heat = (report.get("marketing") or {}).get("heatmap") or {}
    out = []
    for name, row in zip(heat.get("channels") or [], heat.get("mean_ev") or [], strict=False):
        values = [(num(v), h) for h, v in enumerate(row or [])]
        known = [(v, h) for v, h in values if v is not None]
        if known:
            v, h = max(known)
            out.append(f"{name}: {h:02d}:00 ({money(v)} {per_decision(report)})")
        else:
            out.append(f"{name}: never allowed in the held-out decisions")
    return out


# --- tables ---------------------------------------------------------------------------------------------------


def _mix_table(mix: dict[str, dict[str, float]], keys: list[str], labels: dict[str, str]) -> str:
    """Shares side by side, one column per policy, each cell a bar (scaled to the largest share) and its
    percentage; keys no policy uses are left out."""
    names = _policies(mix)
    head = "".join(f'<th style="color:{COLOURS[n]}">{html.escape(POLICY_NAMES[n])}</th>' for n in names)
    shown = [k for k in keys if any(num(mix[n].get(k)) for n in names)]
    top = max([num(mix[n].get(k)) or 0.0 for n in names for k in shown] or [0.0]) or 1.0

    def bar(name: str, key: str) -> str:
        share = num(mix[name].get(key)) or 0.0
        width = f"{100 * share / top:.1f}"
        colour = COLOURS[name]
        return f'<td><div class=bar style="width:{width}%;background:{colour}"></div>{percent(mix[name].get(key))}</td>'

    rows = "".join(
        f"<tr><th>{html.escape(labels.get(k, k))}</th>{''.join(bar(n, k) for n in names)}</tr>" for k in shown
    )
    return f"<table class=mix><tr><th></th>{head}</tr>{rows}</table>"


def _heat_cell(value: float | None, top: float) -> str:
    """A cell: green for value, red for loss, the stronger the further from zero (relative to the largest);
    empty when the slot was never allowed."""
    if value is None:
        return "<td></td>"
    alpha = min(1.0, abs(value) / top) * 0.75 if top > 0 else 0.0
    rgb = "26,152,80" if value >= 0 else "215,48,39"
    return f'<td style="background:rgba({rgb},{alpha:.2f})">{money(value)}</td>'


def heatmap_table(heat: dict[str, Any]) -> str:
    """Channel x local hour as a coloured table of the model's mean expected value per decision; hours no channel
    was ever allowed at (quiet hours) are left out and named."""
    channels = list(heat.get("channels") or [])
    rows = [[num(v) for v in (row or [])] + [None] * (24 - len(row or [])) for row in (heat.get("mean_ev") or [])]
    hours = [h for h in range(24) if any(r[h] is not None for r in rows)]
    if not hours:
        return "<p>No channel was allowed at any hour in the held-out decisions: no expected value to show.</p>"
    top = max(abs(v) for r in rows for v in r if v is not None)
    head = "".join(f"<th>{h:02d}</th>" for h in hours)
    body = "".join(
        f"<tr><th>{html.escape(str(name))}</th>" + "".join(_heat_cell(row[h], top) for h in hours) + "</tr>"
        for name, row in zip(channels, rows, strict=False)
    )
    closed = [h for h in range(24) if h not in hours]
    note = (
        f"<p><small>Never allowed at {', '.join(f'{h:02d}:00' for h in closed)} (quiet hours): left out.</small></p>"
        if closed
        else ""
    )
    return f"<table class=heat><tr><th>local hour</th>{head}</tr>{body}</table>{note}"


def _key_numbers(report: dict[str, Any]) -> str:
    """Per policy: don't-contact share, contacts and cost per customer per week, value per decision."""
    mk = report.get("marketing") or {}
    no_contact, weekly = mk.get("no_contact") or {}, mk.get("per_customer_week") or {}
    pol = report.get("policies") or {}
    names = [p for p in POLICY_NAMES if p in no_contact or p in weekly]
    truth = any(num((pol.get(p) or {}).get("true_value")) is not None for p in names)
    head = "".join(f"<th>{html.escape(POLICY_NAMES[n])}</th>" for n in names)

    def row(label: str, cells: list[str]) -> str:
        return f"<tr><th>{label}</th>{''.join(f'<td>{c}</td>' for c in cells)}</tr>"

    nc = [_with_ci((no_contact.get(n) or {}).get("share"), (no_contact.get(n) or {}).get("ci"), percent) for n in names]
    if not mk.get("logged_no_contact") and "logging" in names:
        nc[names.index("logging")] = (
            "0.0% <small>(the held-out log holds contacts only: its don't-contact decisions are not part of "
            "this evaluation)</small>"
        )
    rows = [
        row("Don't contact (share of decisions)", nc),
        row(
            "Contacts per customer per week",
            [_with_ci((weekly.get(n) or {}).get("contacts"), (weekly.get(n) or {}).get("contacts_ci")) for n in names],
        ),
        row(
            "Contact cost per customer per week",
            [_with_ci((weekly.get(n) or {}).get("cost"), (weekly.get(n) or {}).get("cost_ci")) for n in names],
        ),
        row(
            f"Net value per decision ({html.escape(lead_note(report))} estimate)",
            [_with_ci((pol.get(n) or {}).get("value"), (pol.get(n) or {}).get("ci")) for n in names],
        ),
    ]
    if truth:
        label = "True value per decision (simulator: what the contact adds over not contacting"
        label += ")" if mk.get("incremental") else "; the estimates above count attributed conversions)"
        rows.append(row(label, [money((pol.get(n) or {}).get("true_value")) for n in names]))
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _basis(report: dict[str, Any]) -> str:
    """The data every number rests on, in one paragraph."""
    mk = report.get("marketing") or {}
    value = (
        "the expected incremental value of a contact over not contacting, minus its cost"
        if mk.get("incremental")
        else "the expected conversion value of a contact minus its cost (not over not contacting: the model was "
        "trained on attributed conversions)"
    )
    costs = ", ".join(f"{html.escape(k)} {money(v)}" for k, v in (mk.get("costs") or {}).items())
    text = (
        f"Based on {human(mk.get('evaluated_decisions'))} held-out decisions (the most recent period, not used for "
        f"training) about {human(mk.get('customers'))} customers over {fmt(mk.get('weeks'), '.1f')} weeks: "
        f"{fmt(mk.get('decisions_per_customer_week'), '.2f')} decisions per customer per week, which scales the "
        f"per-week figures (the rate itself is observed, not resampled). Expected value: {value}. "
        f"Contact costs per send: {costs or 'not set'}. Intervals are 95% bootstrap intervals over the decisions."
    )
    if estimated(report):
        text += (
            " The log carries no (or partial) propensities: the value estimates rest on estimated ones and are "
            "less certain than their intervals say."
        )
    return text


def render_html(report: dict[str, Any], title: str = "What the model will do") -> str:
    """The marketer's page."""
    mk = report.get("marketing") or {}
    mix = mk.get("mix") or {}
    body: list[str] = [
        f"<p class=headline>{headline(report)}</p>",
        f"<p>{uplift_sentence(report)}</p>",
    ]
    if not mk.get("mix"):
        body.append("<p>No held-out decision was evaluated: there is nothing to show about the model's choices.</p>")
    else:
        body.append("<h2>Key numbers</h2>" + _key_numbers(report) + f"<p><small>{_basis(report)}</small></p>")
        channels = list(((mk.get("heatmap") or {}).get("channels")) or [])
        ch_mix = mix.get("channel") or {}
        body.append(
            '<h2>Which channel</h2><p>Share of decisions per channel; "don\'t contact" is a decision too.</p>'
            + _mix_table(ch_mix, [*channels, "none"], {"none": "don't contact"})
        )
        hours = [str(h) for h in range(24)]
        hour_labels = {str(h): f"{h:02d}:00" for h in range(24)} | {"outside_grid": "outside the evaluated send times"}
        hr_mix = mix.get("hour") or {}
        body.append(
            "<h2>When: send hour</h2><p>Share of contacts per local hour (the customer's time zone).</p>"
            + _mix_table(hr_mix, [*hours, "outside_grid"], hour_labels)
        )
        msg_mix = mix.get("message") or {}
        if msg_mix:
            keys = list(dict.fromkeys(k for n in _policies(msg_mix) for k in msg_mix[n]))
            body.append(
                "<h2>Which message</h2><p>Share of contacts per message.</p>"
                + _mix_table(msg_mix, keys, {"other": "other (not a known message)"})
            )
        heat = mk.get("heatmap") or {}
        best = "".join(f"<li>{html.escape(b)}</li>" for b in best_hours(report))
        body.append(
            "<h2>Best time per channel</h2><p>The model's mean expected value per decision for each channel and local "
            "hour (the customer's time zone), with the best message for that slot, over the held-out decisions where "
            "the slot was allowed (consent, quiet hours and caps); blank: never allowed. Green pays, red costs more "
            "than it brings.</p>" + heatmap_table(heat) + f"<p>Best hour per channel:</p><ul>{best}</ul>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:75em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}}small{{color:#555}}
.headline{{font-size:1.25em;background:#eef5ff;padding:.6em}}
.heat td{{padding:3px 4px;font-size:.85em}}
.mix td{{min-width:9em}}.bar{{height:.7em;margin-bottom:2px}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
{"".join(body)}
<p><small>The data scientist's view (estimators, calibration, diagnostics): report.html.</small></p>
</body></html>
"""
