"""`nbc`: the command line of the product (simulate, train, promote, serve, demo)."""

from __future__ import annotations

import typer

from nbc import demo, local_cli
from training import cli as training_cli

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
# Commands live next to what they drive; this file only gathers them under one name.
for sub in (training_cli.app, local_cli.app):
    app.registered_commands.extend(sub.registered_commands)
app.command("demo")(demo.demo)

if __name__ == "__main__":
    app()
