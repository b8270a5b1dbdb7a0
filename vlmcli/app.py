"""The `vlm` command: a thin Typer front over the engine, media and profile layers.

Nothing heavy is imported at module level: `vlm --help` must answer fast. Each command lives in
`vlmcli/commands/` and imports vLLM only when it needs a model.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from vlmcli import __version__
from vlmcli.commands import bench, chat, describe, doctor, profiles, ps, serve, stop

class VlmGroup(TyperGroup):
    """Turns the user's errors (VlmError) into one line on stderr and the error's exit code."""

    def invoke(self, ctx):
        from vlmcli.errors import VlmError

        try:
            return super().invoke(ctx)
        except VlmError as exc:
            from vlmcli.render import error_line

            error_line(str(exc))
            ctx.exit(exc.exit_code)


app = typer.Typer(
    name="vlm",
    cls=VlmGroup,
    help="Local vision-language-model inference on your own GPU, built on vLLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(describe.describe)
app.command()(chat.chat)
app.command()(bench.bench)
app.command()(serve.serve)
app.command()(ps.ps)
app.command()(stop.stop)
app.add_typer(profiles.app, name="profiles")
app.command()(doctor.doctor)


def _version(value: bool) -> None:
    if value:
        print(f"vlm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Describe images and videos, chat, benchmark and serve vision-language models."""


def main() -> None:
    """Console entry point."""
    app()
