"""`nbc config check FILE` and `nbc config show`: validate a configuration file, print the configuration in force."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from rich.console import Console
from rich.table import Table

from model.domain.config_file import format_errors
from model.domain.settings import Settings, get_settings, read_config

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Check and show the configuration.")
_out = Console(soft_wrap=True)


def load_remote() -> None:
    """In AWS: put the document of NBC_CONFIG_LOCATION (S3 or SSM) in force before any command runs."""
    from model.adapters.config_source import ConfigUnavailableError, load_configured

    try:
        load_configured()
    except ConfigUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


class _FileOnly(Settings):
    """The defaults and what is handed in: the environment does not take part in `check`."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def summary(s: Settings, title: str) -> None:
    """One screen: channels, rules, messages, attributes, learning shares, the hash a model records."""
    _out.print(f"[bold]{title}[/bold]  config_hash {s.config_hash()}")
    channels = Table("channel", "cost", "opt-in", "quiet hours", title="Channels", title_justify="left")
    for name in s.channels:
        window = s.quiet_window(name)
        channels.add_row(
            name,
            f"{s.cost_of(name):g}",
            "required" if name in s.consent_required else "-",
            window.label() if window else f"default {s.default_quiet.label()}",
        )
    _out.print(channels)
    caps = s.caps
    _out.print(
        f"Caps: {caps.per_channel_day}/day and {caps.per_channel_week}/week per channel, "
        f"{caps.total_day}/day and {caps.total_week}/week in all. Quiet hours by default {s.default_quiet.label()} "
        "(customer's local time; a customer's own window always applies)."
    )
    if s.messages:
        messages = Table(
            "message", "channels", "cost", "from", "until (excl.)", "tags", title="Messages", title_justify="left"
        )
        for m in s.messages:
            messages.add_row(
                m.id,
                ", ".join(m.channels),
                f"{m.cost:g}",
                f"{m.valid_from:%Y-%m-%d %H:%M}" if m.valid_from else "-",
                f"{m.valid_until:%Y-%m-%d %H:%M}" if m.valid_until else "-",
                ", ".join(m.tags),
            )
        _out.print(messages)
    else:
        _out.print("Messages: no catalogue (any message id is accepted; one the model never saw scores as none).")
    attrs = ", ".join(f"{a.name} ({a.kind})" for a in s.profile_attributes)
    _out.print(f"Attributes: {attrs or 'none'}")
    _out.print(
        f"Exploration {s.exploration_rate:.1%}, holdout {s.holdout_share:.1%}, default conversion value "
        f"{s.default_conversion_value:g}, attribution window {s.attribution_window_days:g} days."
    )


@app.command("check")
def check(file: Annotated[Path, typer.Argument(help="The TOML configuration file to check.")]) -> None:
    """Validate FILE over the defaults (the environment aside): clear messages and exit 1 on an error, else a
    one-screen summary of what it declares."""
    try:
        values = read_config([file], texts={})
        settings = _FileOnly(**values)
    except ValidationError as exc:
        typer.echo(f"error: {file}: {format_errors(exc)}", err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    summary(settings, f"{file}: valid")


@app.command("show")
def show(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False) -> None:
    """The configuration in force: defaults, configuration files, NBC_CONFIG_LOCATION and environment merged."""
    try:
        settings = get_settings()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({"config_hash": settings.config_hash(), **settings.domain_config()}, indent=2))
        return
    summary(settings, "configuration in force")
