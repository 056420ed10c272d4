"""`nbc score --audience`: decide for every customer of a campaign audience (CSV, Parquet or NDJSON; local or S3)
with the model in service, the same rules and the same decision log as the API; resumable, with progress."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from nbc.progress import progress_for

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()


def read_audience(uri: str, column: str) -> list[Any]:
    """The audience's customer ids, in file order (CSV, Parquet or NDJSON by extension; a local path or s3://)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    if uri.startswith("s3://"):
        from model.adapters import aws

        bucket, _, key = uri[5:].partition("/")
        data: Any = io.BytesIO(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    else:
        data = Path(uri).expanduser()
        if not data.is_file():
            raise ValueError(f"audience file not found: {uri}")
    name = uri.lower()
    if name.endswith(".parquet"):
        names = pq.read_schema(data).names
        if column not in names:
            raise ValueError(f"audience {uri} has no column {column!r} (columns: {', '.join(names)})")
        table = pq.read_table(data, columns=[column])
    elif name.endswith((".ndjson", ".jsonl", ".json")):
        table = pajson.read_json(data)
    elif name.endswith((".csv", ".csv.gz", ".txt")):
        # The id column as text: an id like 00042 must stay 00042.
        table = pacsv.read_csv(data, convert_options=pacsv.ConvertOptions(column_types={column: pa.string()}))
    else:
        raise ValueError(f"audience {uri}: expected a .csv, .parquet or .ndjson file")
    if column not in table.column_names:
        raise ValueError(f"audience {uri} has no column {column!r} (columns: {', '.join(table.column_names)})")
    ids: list[Any] = table.column(column).to_pylist()
    return ids


def _embedded(go: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`go` against the embedded local AWS holding the local store (`nbc serve`'s table, e.g. the demo's
    customers); the decisions it logs are saved back to the store, as `nbc serve` saves at stop."""
    from nbc.local import snapshot
    from nbc.local.aws import local_aws

    with local_aws():
        path = snapshot.default_path()
        if path is None or not path.exists():
            console.print(f"no local store at {path}: every customer is unknown (run `make demo` or `nbc serve`)")
            return go()
        console.print(f"{snapshot.load(path):,} customers restored from {path}")
        summary = go()
        console.print(f"{snapshot.save(path):,} customers saved to {path} (with the decisions just logged)")
        return summary


@app.command()
def score(
    audience: Annotated[str, typer.Option(help="Audience file: CSV, Parquet or NDJSON, local or s3://bucket/key")],
    out: Annotated[str, typer.Option(help="Output folder or s3://bucket/prefix (parts + _SUMMARY.json)")],
    column: Annotated[str, typer.Option(help="The column holding customer ids")] = "customer_id",
    channels: Annotated[str | None, typer.Option(help="Candidate channels, comma-separated (default: all)")] = None,
    horizon_hours: Annotated[int | None, typer.Option(min=1, max=168, help="Send slots ahead (default 48)")] = None,
    k: Annotated[int, typer.Option(min=1, max=20, help="Recommendations per customer")] = 1,
    chunk: Annotated[int, typer.Option(min=1, max=100_000, help="Customers per output part")] = 1000,
    embedded: Annotated[
        bool,
        typer.Option("--embedded/--no-embedded", help="The local store (embedded moto), or the environment's AWS"),
    ] = False,
) -> None:
    """Decide for a whole audience with the model in service; rerun the same command to resume."""
    from pydantic import ValidationError

    from model.adapters import audience as aud
    from model.adapters.model_service import get_predictor
    from model.adapters.registry import StoreError

    try:
        options = aud.AudienceOptions(
            channels=[c.strip() for c in channels.split(",") if c.strip()] if channels else None,
            horizon_hours=horizon_hours,
            k=k,
        )
        options.request("probe")  # the options alone, validated as the API would
    except ValidationError as err:
        raise typer.BadParameter(str(err.errors()[0]["msg"])) from None

    def go() -> dict[str, Any]:
        ids = read_audience(audience, column)
        planned = aud.plan(ids, options)
        model = get_predictor().model()
        with progress_for(console) as bar:
            task = bar.add_task("score audience", total=len(planned.customers))

            class Bar(aud.Progress):
                def start(self, chunks: int, done: int) -> None:
                    if done:
                        console.print(f"resuming: {done} of {chunks} parts already written")
                        bar.update(task, completed=min(done * chunk, len(planned.customers)))

                def advance(self, customers: int) -> None:
                    bar.advance(task, customers)

            return aud.run(planned, out, options, model, chunk=chunk, progress=Bar())

    try:
        summary = _embedded(go) if embedded else go()
    except (ValueError, StoreError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    console.print_json(json.dumps(summary))
    if summary["rejected"]:
        bad = summary["rejected"]
        console.print(f"[yellow]{bad} audience rows are not valid customer ids: see {out}/rejected.ndjson")
