"""`nbc import`: bring your own history into the layout `nbc train --source` reads (gathered by nbc/cli.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nbc.progress import PlainProgress

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _top(counts: dict[str, int], n: int = 8) -> str:
    items = list(counts.items())
    text = ", ".join(f"{k} {v:,}" for k, v in items[:n])
    return text + (f", ... ({len(items) - n} more)" if len(items) > n else "") or "-"


def quality_tables(q: dict[str, Any], title: str) -> list[Table]:
    """quality.json as tables: what was read and kept, then every drop reason with an example and the fix."""
    from training.importer.quality import FIX, PROFILE_REASONS

    summary = Table(title=title, show_header=False, title_justify="left")
    summary.add_column("measure", style="bold")
    summary.add_column("value")
    dropped: dict[str, int] = q.get("dropped", {})
    tp_dropped = sum(n for r, n in dropped.items() if r not in PROFILE_REASONS)
    summary.add_row("rows read", _count(q.get("rows_read", 0)))
    if q.get("touchpoints", 0) != q.get("rows_read", 0):
        summary.add_row("touchpoints made", _count(q.get("touchpoints", 0)))
    summary.add_row("touchpoints kept", f"{_count(q.get('rows_kept', 0))}  (dropped {tp_dropped:,})")
    period = q.get("period") or {}
    summary.add_row("period", f"{period.get('first') or '-'} -> {period.get('last') or '-'}")
    if q.get("as_of"):
        summary.add_row("as of (end of observation)", str(q["as_of"]))
    summary.add_row("customers", _count(q.get("customers", 0)))
    summary.add_row("events by type", escape(_top(q.get("events_by_type", {}))))
    summary.add_row("events by channel", escape(_top(q.get("events_by_channel", {}))))
    summary.add_row("profiles", f"{_count(q.get('profiles', 0))} ({_count(q.get('profile_attributes', 0))} attributes)")
    if q.get("decisions"):
        summary.add_row("decisions", _count(q["decisions"]))
    if q.get("empty_columns"):
        summary.add_row("[yellow]columns without a value[/yellow]", escape(", ".join(q["empty_columns"])))
    tables = [summary]
    if dropped:
        drops = Table(title="Dropped (every one counted; examples in quality.json)", title_justify="left")
        for col in ("reason", "count", "example", "fix"):
            drops.add_column(col, overflow="fold")
        examples = q.get("examples", {})
        unknown = q.get("unknown_values", {})
        for reason, n in dropped.items():
            first = (examples.get(reason) or [{}])[0]
            example = str(first.get("error", ""))[:90]
            fld = {"unknown_channel": "channel", "unknown_event_type": "event_type"}.get(reason)
            if fld and unknown.get(fld):
                example = "values: " + _top(unknown[fld], 5)
            unit = " attribute values" if reason in PROFILE_REASONS else ""
            drops.add_row(reason, f"{n:,}{unit}", escape(example), escape(FIX.get(reason, "")))
        tables.append(drops)
    return tables


def print_quality(q: dict[str, Any], title: str) -> None:
    for table in quality_tables(q, title):
        console.print(table)


@app.command("import")
def import_data(
    sources: Annotated[
        list[str], typer.Argument(help="Files or folders: CSV/TSV, Parquet, NDJSON (.gz or not), local or s3://")
    ],
    out: Annotated[Path, typer.Option(help="Output folder, in the layout `nbc train --source` reads")],
    mapping: Annotated[
        Path | None,
        typer.Option(help="TOML column mapping (docs/own-history.md); without it the project's own field names"),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="End of the observation window (ISO 8601; the mapping's timezone if no offset). Later events are "
            "dropped (counted); `nbc train` on the folder labels every send whose window ends by then",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail (exit 1) on any dropped row; then only quality.json is written")
    ] = False,
) -> None:
    """Import your own history (event exports, campaign response tables) with a data-quality report.

    Writes OUT/touchpoints.parquet (+ profiles, decisions), OUT/quality.json (rows read and kept, every drop
    by reason with examples) and OUT/nbc.toml (the channels and attributes the data declares). Every row is
    validated by the same schema as the online API. Then: nbc train --source OUT.
    """
    from training.importer import Options, load, run
    from training.importer.times import parse_as_of
    from training.sources import SourceError

    started = time.monotonic()
    plain = PlainProgress(console, heartbeat=60.0) if not console.is_terminal else None
    last = [started]

    def progress(read: int, kept: int) -> None:
        now = time.monotonic()
        if now - last[0] < (10.0 if plain else 2.0):
            return
        last[0] = now
        rate = read / max(now - started, 1e-9)
        text = f"import: {read:,} rows read, {kept:,} touchpoints kept ({rate:,.0f} rows/s)"
        if plain is not None:
            plain.log(text)
        else:
            console.print(text, highlight=False)

    try:
        m = load(mapping) if mapping is not None else None
        when = parse_as_of(as_of, m.timezone if m else None) if as_of else None
        result = run(sources, Options(out=out, mapping=m, as_of=when, strict=strict, progress=progress))
    except SourceError as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    print_quality(result.quality, f"Import into {out} ({result.seconds:.1f} s)")
    if not result.ok:
        n = sum(result.quality.get("dropped", {}).values())
        console.print(f"[red]--strict: {n:,} dropped; nothing written but {out / 'quality.json'}[/red]")
        raise typer.Exit(1)
    for name, rows in result.files.items():
        console.print(f"wrote {out / name} ({rows:,} rows)", highlight=False)
    console.print(f"next: nbc train --source {out}", highlight=False)
