"""`vlm profiles`: list the profiles and show what one resolves to."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from vlmcli.commands.common import JsonOption, complete_profile

app = typer.Typer(help="List model profiles and show their resolved engine settings.", no_args_is_help=True)


@app.command("list")
def list_command(json_output: JsonOption = False) -> None:
    """List built-in and user profiles."""
    from vlmcli.errors import ProfileError
    from vlmcli.profiles import builtin_profiles_dir, list_profiles, parse_profile_file

    rows = []
    for name, path in list_profiles():
        row = {"name": name, "path": str(path), "origin": "built-in" if path.parent == builtin_profiles_dir() else "user"}
        try:
            profile = parse_profile_file(path).profile
        except ProfileError as exc:
            row["error"] = str(exc)
        else:
            row.update(model=profile.model, precision=profile.precision, max_model_len=profile.max_model_len,
                       description=profile.description)
        rows.append(row)
    if json_output:
        print(json.dumps(rows, indent=2))
        return
    if not sys.stdout.isatty():
        for row in rows:
            print("\t".join(str(row.get(key, "")) for key in ("name", "precision", "max_model_len", "model", "origin")))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("profile", "precision", "context", "model", "description", box=None, header_style="bold")
    for row in rows:
        if "error" in row:
            table.add_row(row["name"], "", "", "[red]invalid[/]", row["error"])
        else:
            table.add_row(row["name"], row["precision"], f"{row['max_model_len']:,}", row["model"], row["description"])
    Console().print(table)


@app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Profile name or YAML file.", autocompletion=complete_profile)],
    json_output: JsonOption = False,
) -> None:
    """Show the engine settings a profile resolves to, and where each value came from."""
    from vlmcli.commands.common import run_settings

    settings = run_settings(name)
    rows = settings_rows(settings)
    if json_output:
        print(json.dumps({"profile": settings.profile_name, "settings": [
            {"key": key, "value": value, "source": source} for key, value, source in rows]}, indent=2, default=str))
        return
    if not sys.stdout.isatty():
        for key, value, source in rows:
            print(f"{key}\t{json.dumps(value, default=str)}\t{source}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("setting", "value", "from", box=None, header_style="bold", title=f"profile {settings.profile_name}")
    for key, value, source in rows:
        table.add_row(key, json.dumps(value, default=str), source)
    Console().print(table)


def settings_rows(settings) -> list[tuple[str, object, str]]:
    """(key, value, source) for each engine argument, then media and sampling settings."""
    rows: list[tuple[str, object, str]] = []
    for key, value in settings.engine_args.items():
        if isinstance(value, dict) and value:
            for sub_key, sub_value in value.items():
                row = f"{key}.{sub_key}"
                rows.append((row, sub_value, settings.sources.get(row, settings.sources.get(key, "default"))))
        else:
            rows.append((key, value, settings.sources.get(key, "default")))
    for key in ("fps", "num_frames", "max_frames"):
        rows.append((f"video.{key}", getattr(settings.video, key), settings.sources.get(f"video.{key}", "default")))
    rows.append(("media_root", str(settings.media_root), settings.sources.get("media_root", "default")))
    rows.append(("preprocess_workers", settings.preprocess_workers, settings.sources.get("preprocess_workers", "default")))
    for key, value in settings.sampling.items():
        rows.append((f"sampling.{key}", value, settings.sources.get(f"sampling.{key}", "default")))
    return rows
