"""`nbc`: the one command line of the product (simulate, train, evaluate, promote, models, serve, openapi, demo)."""

from __future__ import annotations

import typer

from nbc.commands import data, demo, serve, training

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
# Each group lives in nbc/commands/; this file only gathers them under one name.
for sub in (training.app, data.app, serve.app):
    app.registered_commands.extend(sub.registered_commands)
app.command("demo")(demo.demo)

if __name__ == "__main__":
    app()
