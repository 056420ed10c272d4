"""`nbc serve` and `nbc openapi`: the whole HTTP API on this machine, against the embedded local AWS."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8080,
    embedded: Annotated[
        bool,
        typer.Option(
            "--embedded/--no-embedded",
            help="Start an embedded local AWS (moto on 127.0.0.1) for DynamoDB/S3, stopped with the server. "
            "--no-embedded uses the environment as it is: a region, table and bucket (NBC_*) mean real AWS.",
        ),
    ] = True,
    state: Annotated[
        Path | None,
        typer.Option(
            help="The embedded table's file, loaded at start and saved at stop "
            "[default: local/table.jsonl.gz beside the model store's folder, .nbc/local/table.jsonl.gz]."
        ),
    ] = None,
    persist: Annotated[
        bool,
        typer.Option("--persist/--no-persist", help="--no-persist: start with an empty table and save nothing."),
    ] = True,
) -> None:
    """Serve the whole HTTP API (ingest + scoring). Requests must carry x-api-key when NBC_API_KEY is set.

    With the embedded local AWS, the table is restored from its file at start (what `nbc demo` left there) and
    saved to it at stop, so customers survive a restart."""
    import uvicorn

    from model.domain.settings import get_settings
    from nbc.local.aws import local_aws
    from nbc.server import build_app

    def run() -> None:
        settings = get_settings()
        if settings.api_key is None and not _loopback(host):
            typer.secho(
                f"warning: listening on {host} without NBC_API_KEY: anyone who can reach it can call it", err=True
            )
        where = settings.aws_endpoint_url or f"AWS {settings.region}"
        typer.echo(
            f"nbc API on http://{host}:{port} (table {settings.table_name} at {where}, "
            f"models {settings.model_store}); Ctrl-C stops it"
        )
        # No access log: request paths carry customer ids, which never appear in clear text at INFO.
        uvicorn.run(build_app(), host=host, port=port, log_level="info", access_log=False, lifespan="off")

    if embedded:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines: noise here
        from functions.aggregator.app import handler as aggregator
        from functions.common.observability import forget_lambda_context
        from nbc.local import snapshot
        from nbc.local.events import LambdaContext

        def aggregate(event: dict[str, Any], _ctx: Any) -> None:
            try:
                aggregator(event, LambdaContext(function_name="nbc-aggregator"))
            finally:
                forget_lambda_context()  # the HTTP API's log lines never carry the aggregator's Lambda context

        with local_aws():  # moto stops (and the environment is restored) when uvicorn returns
            # The table is restored from its file and saved back at stop; locally, the pump plays Lambda's
            # stream event source: new touchpoints reach the aggregator.
            kept = (state or snapshot.default_path()) if persist else None
            try:
                with snapshot.served_table(kept, aggregate, typer.echo):
                    run()
            except snapshot.SnapshotError as exc:
                typer.secho(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
    else:
        run()


@app.command()
def openapi(
    out: Annotated[Path, typer.Option(help="Where to write the OpenAPI schema ('-' for stdout).")] = Path(
        "docs/openapi.json"
    ),
) -> None:
    """Publish the OpenAPI schema of the whole HTTP API."""
    from nbc.server import openapi_text

    text = openapi_text()
    if str(out) == "-":
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}")
