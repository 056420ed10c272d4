"""`nbc aggregate rebuild`: recompute customers' aggregates from their stored touchpoints (gathered by nbc/cli.py)."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nbc.progress import progress_for

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Maintain the per-customer feature aggregates.")
console = Console()


@app.command("rebuild")
def rebuild(
    customer: Annotated[str | None, typer.Option(help="The customer whose aggregate to rebuild.")] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every customer with an aggregate or a touchpoint (scans the table's keys).")
    ] = False,
    table: Annotated[str | None, typer.Option(help="DynamoDB table (default: NBC_TABLE_NAME).")] = None,
) -> None:
    """Recompute aggregates with the aggregator's fold from the stored touchpoints, and fold (exactly once) those
    the aggregator has not folded yet. Safe while the aggregator runs. Touchpoints removed by their retention
    TTL no longer count afterwards. AWS settings come from the NBC_* environment (NBC_AWS_ENDPOINT_URL for a
    local store)."""
    import os

    from model.adapters.aggregate_rebuild import Rebuilt, customers_with_data, rebuild_customer
    from model.adapters.dynamodb import StoreUnavailableError
    from model.domain.schemas import ID_PATTERN
    from model.domain.settings import get_settings

    if (customer is None) == (not every):
        raise typer.BadParameter("give either --customer ID or --all")
    if customer is not None and (len(customer) > 128 or not re.match(ID_PATTERN, customer)):
        raise typer.BadParameter(f"{customer!r} is not a customer id (1-128 of A-Z a-z 0-9 . _ : @ + -)")
    if table:
        os.environ["NBC_TABLE_NAME"] = table
        get_settings.cache_clear()
    name = get_settings().table_name
    results: list[Rebuilt] = []
    failed = 0
    if customer is not None:
        results.append(rebuild_customer(customer))
    else:
        with console.status(f"listing the customers of table {name}"):
            customers = list(customers_with_data())
        with progress_for(console) as progress:
            task = progress.add_task("rebuilding", total=len(customers))
            for cid in customers:
                try:
                    results.append(rebuild_customer(cid))
                except StoreUnavailableError:  # throttled past the retry budget: the others still go on
                    failed += 1
                progress.advance(task)
    counts = {o: sum(1 for r in results if r.outcome == o) for o in ("changed", "unchanged", "erased", "empty")}
    summary = Table(title=f"Aggregate rebuild (table {name})", show_header=False, title_justify="left")
    summary.add_column("measure", style="bold")
    summary.add_column("value", justify="right")
    summary.add_row("customers rebuilt", f"{counts['changed'] + counts['unchanged']:,}")
    summary.add_row("  changed", f"{counts['changed']:,}")
    summary.add_row("  unchanged", f"{counts['unchanged']:,}")
    summary.add_row("touchpoints read", f"{sum(r.touchpoints for r in results):,}")
    summary.add_row("  folded now (the aggregator had not)", f"{sum(r.folded_late for r in results):,}")
    summary.add_row("  unreadable (not counted)", f"{sum(r.unreadable for r in results):,}")
    if counts["erased"]:
        summary.add_row("skipped: erased", f"{counts['erased']:,}")
    if counts["empty"]:
        summary.add_row("skipped: nothing stored", f"{counts['empty']:,}")
    if failed:
        summary.add_row("[red]failed: store unavailable (run again)[/red]", f"{failed:,}")
    console.print(summary)
    if failed:
        raise typer.Exit(1)
