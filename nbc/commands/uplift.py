"""`nbc uplift`: what did the served decisions earn over the holdout? From the logs alone, with a 95% interval."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command()
def uplift(
    source: Annotated[str, typer.Option(help="Folder/file, s3://export-prefix, or dynamodb://TABLE")],
    window_days: Annotated[float | None, typer.Option(help="Outcome window after a decision (default: config)")] = None,
    as_of: Annotated[
        datetime | None, typer.Option(help="End of the observation window (default: the newest touchpoint)")
    ] = None,
    objective: Annotated[
        str, typer.Option(help="Units: conversion value (conversion, value), or clicks / visits per decision")
    ] = "conversion",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Incremental net value per decision of the served arm over the holdout (never contacted)."""
    from training import sources
    from training import uplift as measure

    try:
        src = sources.load(source)
        result = measure.measured(src, window_days, as_of.timestamp() if as_of else None, objective=objective)
        truth = Path(source, "truth.json")
        if truth.is_file() and objective in ("conversion", "value"):  # simulated: the oracle's value beside it
            from training.sim_truth import Oracle

            result["true"] = measure.true_uplift(
                src, Oracle.load(truth), window_days, as_of.timestamp() if as_of else None
            )
    except (ValueError, sources.SourceError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"Measured uplift: served decisions vs the holdout (never contacted), {result['unit']}")
    for col in ("", "per decision", "decisions", "customers"):
        table.add_column(col, justify="right")
    table.add_row(
        "served",
        f"{result['served_per_decision']:,.3f}",
        f"{result['served_decisions']:,}",
        f"{result['served_customers']:,}",
    )
    table.add_row(
        "holdout",
        f"{result['holdout_per_decision']:,.3f}",
        f"{result['holdout_decisions']:,}",
        f"{result['holdout_customers']:,}",
    )
    lo, hi = result["ci"]
    table.add_row("uplift", f"{result['value']:,.3f} [{lo:,.3f}, {hi:,.3f}]", "", "")
    if "true" in result:
        table.add_row("true (simulator)", f"{result['true']:,.3f}", "", "")
    Console().print(table)
