"""`nbc`: the one command line (simulate, import, train, evaluate, promote, models, uplift, serve, demo, ...)."""

from __future__ import annotations

import typer

from nbc.commands import aggregate, audience, config, data, demo, serve, training, uplift

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
# Each group lives in nbc/commands/; this file only gathers them under one name.
for sub in (training.app, data.app, uplift.app, serve.app, audience.app):
    app.registered_commands.extend(sub.registered_commands)
app.command("demo")(demo.demo)
app.add_typer(config.app, name="config")
app.add_typer(aggregate.app, name="aggregate")
# In AWS (the retraining task) the configuration document of NBC_CONFIG_LOCATION, as the functions read it.
app.callback()(config.load_remote)

if __name__ == "__main__":
    app()
