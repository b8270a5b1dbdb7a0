"""`vlm doctor`: check this machine for what `vlm` needs, and say how to fix what is missing."""

from __future__ import annotations

import json
import sys

import typer

from vlmcli.commands.common import JsonOption

_MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "info": ("·", "cyan")}


def doctor(json_output: JsonOption = False) -> None:
    """Check Python, vLLM, torch, GPUs, video and image libraries, the model cache, and which profiles fit.

    Exits 1 when vlm cannot run here (each problem comes with a one-line fix), 0 otherwise.
    """
    from vlmcli.doctor import run_checks, report

    checks, rows = run_checks()
    document = report(checks, rows)
    if json_output:
        print(json.dumps(document, indent=2, default=str))
    elif sys.stdout.isatty():
        _rich(checks, rows, document)
    else:
        _plain(checks, rows, document)
    raise typer.Exit(document["exit_code"])


def _verdict(document: dict) -> str:
    if document["failed"]:
        return f"vlm cannot run here: {len(document['failed'])} problem(s) ({', '.join(document['failed'])})"
    warnings = document["warnings"]
    return "vlm can run here" + (f" ({len(warnings)} warning(s): {', '.join(warnings)})" if warnings else "")


def _fits(row: dict) -> str:
    return {True: "yes", False: "no", None: "?"}[row.get("fits")]


def _plain(checks, rows, document) -> None:
    for check in checks:
        print(f"{check.status:<5} {check.name:<12} {check.summary}")
        if check.fix:
            print(f"{'':<5} {'':<12} fix: {check.fix}")
    print()
    print(f"{'profile':<30} {'precision':<9} {'needs':>9}  {'on disk':<10} {'fits':<4}  why")
    for row in rows:
        needs = f"{row['needs_gib']} GiB" if row.get("needs_gib") is not None else "?"
        print(f"{row['name']:<30} {row.get('precision', '?'):<9} {needs:>9}  {row.get('downloaded', '?'):<10} "
              f"{_fits(row):<4}  {row.get('why', '')}")
    print()
    print(_verdict(document))


def _rich(checks, rows, document) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table("", "check", "result", "fix", box=None, header_style="bold")
    for check in checks:
        mark, colour = _MARKS[check.status]
        table.add_row(f"[{colour}]{mark}[/]", check.name, escape(check.summary), escape(check.fix or ""))
    console.print(table)
    profiles = Table("profile", "precision", "needs", "on disk", "fits", "why", box=None, header_style="bold",
                     title="profiles on this machine", title_justify="left")
    for row in rows:
        needs = f"~{row['needs_gib']} GiB" if row.get("needs_gib") is not None else "?"
        colour = {"yes": "green", "no": "red"}.get(_fits(row), "yellow")
        profiles.add_row(row["name"], row.get("precision", "?"), needs, row.get("downloaded", "?"),
                         f"[{colour}]{_fits(row)}[/]", escape(row.get("why", "")))
    console.print()
    console.print(profiles)
    colour = "red" if document["failed"] else ("yellow" if document["warnings"] else "green")
    console.print(f"\n[bold {colour}]{escape(_verdict(document))}[/]")
