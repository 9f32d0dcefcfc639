"""``medcode policy code|explain``: code encounter JSON files from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from medcode.errors import MedcodeError
from medcode.records import Encounter

app = typer.Typer(help="Code encounters with the guideline rules.", no_args_is_help=True)
console = Console()

EncounterFile = Annotated[
    Path,
    typer.Argument(
        help="Encounter JSON: one object, a list, or JSON Lines; '-' for stdin.", allow_dash=True
    ),
]


class StrictFailure(MedcodeError):
    exit_code = 3


def read_encounters(path: Path) -> list[Encounter]:
    """Encounters from a JSON object, a JSON list or JSON Lines; errors name the place."""
    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MedcodeError(f"{name}: cannot read ({exc})") from None
    try:
        data: Any = json.loads(text)
        records = data if isinstance(data, list) else [data]
        prefixes = [
            f"{name}: encounter[{i}]" if isinstance(data, list) else f"{name}: encounter"
            for i in range(len(records))
        ]
    except json.JSONDecodeError as first:
        records, prefixes = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                where = first if number == 1 else exc
                raise MedcodeError(
                    f"{name}:{number}: invalid JSON: {where.msg} (column {where.colno})"
                ) from None
            prefixes.append(f"{name}:{number}: encounter")
    if not records:
        raise MedcodeError(f"{name}: no encounter in the file")
    encounters = []
    for record, prefix in zip(records, prefixes, strict=True):
        try:
            encounters.append(Encounter.from_dict(record))
        except MedcodeError as exc:
            exc.args = (f"{prefix[: -len('encounter')]}{exc}",)
            raise
    return encounters


def _code_all(path: Path):
    from medcode.policy import code

    results = []
    for encounter in read_encounters(path):
        try:
            results.append(code(encounter))
        except MedcodeError as exc:
            exc.args = (f"{encounter.id}: {exc}",)
            raise
    return results


def _fail_if_strict(results, strict: bool) -> None:
    count = sum(len(result.warnings) for result in results)
    if strict and count:
        raise StrictFailure(f"--strict: {count} warning(s); see above")


def _print_warnings(results) -> None:
    err = Console(stderr=True)
    for result in results:
        for warning in result.warnings:
            err.print(
                f"[yellow]warning[/yellow] {escape(result.encounter_id)}: "
                f"{escape(f'[{warning.kind}] {warning.message}')}",
                highlight=False,
            )


@app.command("code")
def code_command(
    path: EncounterFile,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail (exit 3) on any warning.")] = False,
) -> None:
    """Print the final codes, first-listed first, with system, description and rule."""
    results = _code_all(path)
    if as_json:
        payload = [result.to_dict() for result in results]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        for result in results:
            table = Table(title=f"encounter {result.encounter_id}", title_justify="left")
            for column in ("#", "code", "system", "description", "rule"):
                table.add_column(column)
            for number, item in enumerate(result.codes, start=1):
                table.add_row(
                    str(number), item.code, item.system.value, item.description, item.rule
                )
            console.print(table)
    _print_warnings(results)
    _fail_if_strict(results, strict)


@app.command("explain")
def explain_command(
    path: EncounterFile,
    strict: Annotated[bool, typer.Option("--strict", help="Fail (exit 3) on any warning.")] = False,
) -> None:
    """Show each fact, the rules that fired on it and why, then the final codes."""
    from medcode.policy.rules import RULES

    results = _code_all(path)
    for result in results:
        console.rule(f"encounter {result.encounter_id}")
        facts: dict[str, list] = {}
        for step in result.steps:
            facts.setdefault(step.fact, []).append(step)
        for fact, steps in facts.items():
            console.print(f"[bold]{fact}[/bold]", highlight=False)
            for step in steps:
                rule = RULES[step.rule]
                console.print(f"  [cyan]{step.rule}[/cyan] {step.message}", highlight=False)
                console.print(f"    [dim]{rule.summary} ({rule.section})[/dim]", highlight=False)
        for warning in result.warnings:
            console.print(
                "[yellow]warning[/yellow] "
                + escape(f"[{warning.kind}] {warning.fact}: {warning.message}"),
                highlight=False,
            )
        console.print("[bold]codes:[/bold] " + ", ".join(result.code_list))
    _fail_if_strict(results, strict)
