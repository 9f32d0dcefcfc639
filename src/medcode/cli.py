"""The ``medcode`` command line."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from medcode import __version__
from medcode.baselines.commands import app as baseline_app
from medcode.errors import MedcodeError
from medcode.eval.commands import app as eval_app
from medcode.policy.commands import app as policy_app
from medcode.records import System
from medcode.synth.commands import app as synth_app

app = typer.Typer(
    help="Train medical-coding language models on policy-generated synthetic notes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
codes_app = typer.Typer(help="Look up ICD-10-CM, CPT and HCPCS codes.", no_args_is_help=True)
app.add_typer(codes_app, name="codes")
app.add_typer(policy_app, name="policy")
app.add_typer(synth_app, name="synth")
app.add_typer(eval_app, name="eval")
app.add_typer(baseline_app, name="baseline")

console = Console()
errors = Console(stderr=True)

_SYSTEMS = {"icd10cm": System.ICD10CM, "cpt": System.CPT, "hcpcs": System.HCPCS}
SystemOption = Annotated[
    str | None,
    typer.Option("--system", "-s", help="Restrict to one code system: icd10cm, cpt or hcpcs."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _system(name: str | None) -> System | None:
    if name is None:
        return None
    try:
        return _SYSTEMS[name.lower().replace("-", "")]
    except KeyError:
        raise typer.BadParameter(
            f"{name!r}: use icd10cm, cpt or hcpcs", param_hint="--system"
        ) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medcode {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    cpt_file: Annotated[
        Path | None,
        typer.Option(
            "--cpt-file",
            envvar="MEDCODE_CPT_FILE",
            exists=True,
            dir_okay=False,
            help="Licensed CPT file (CSV code,description): adds codes, replaces descriptions.",
        ),
    ] = None,
) -> None:
    """medcode: synthetic notes, fine-tuning and evaluation for medical coding."""
    if cpt_file is not None:
        os.environ["MEDCODE_CPT_FILE"] = str(cpt_file)


@codes_app.command("show")
def codes_show(
    code: Annotated[str, typer.Argument(help="A code, e.g. E11.22, e1122, 99214, G0438.")],
    system: SystemOption = None,
    as_json: JsonOption = False,
) -> None:
    """Describe a code: billable or not, hierarchy, notes, categories, HCC."""
    from medcode.terminology.lookup import describe, resolve

    infos = [
        describe(found_system, found) for found_system, found in resolve(code, _system(system))
    ]
    if as_json:
        payload = [info.to_dict() for info in infos]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return
    from medcode.terminology.display import print_code_info

    if len(infos) > 1:
        console.print(
            f"[yellow]{code.strip()!r} is ambiguous: showing {len(infos)} code systems "
            "(use --system to pick one).[/yellow]"
        )
    for info in infos:
        print_code_info(console, info)


@codes_app.command("search")
def codes_search(
    text: Annotated[list[str], typer.Argument(help="Words to look for, e.g. diabetes kidney.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 10,
    system: SystemOption = None,
    billable: Annotated[bool, typer.Option("--billable", help="Billable codes only.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Rank codes by how well their descriptions and inclusion terms match the words."""
    from medcode.terminology.search import CodeSearch

    query = " ".join(text).strip()
    if not query:
        raise MedcodeError("empty search: give some words (e.g. 'diabetes kidney') or a code")
    index = CodeSearch.build()
    started = time.perf_counter()
    hits = index.search(query, limit=limit, system=_system(system), billable_only=billable)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "query": query,
                    "hits": [
                        {
                            "code": h.code,
                            "system": h.system.value,
                            "description": h.description,
                            "billable": h.billable,
                            "score": h.score,
                        }
                        for h in hits
                    ],
                },
                indent=2,
            )
        )
        return
    if not hits:
        console.print(f"No code matches {query!r}.")
        return
    table = Table(title=f"{query!r}: {len(hits)} best matches ({elapsed_ms:.1f} ms)")
    for column in ("code", "system", "billable", "description", "score"):
        table.add_column(column, justify="right" if column == "score" else "left")
    for hit in hits:
        table.add_row(
            hit.code,
            hit.system.value,
            "yes" if hit.billable else "no",
            hit.description,
            f"{hit.score:.3f}",
        )
    console.print(table)


@codes_app.command("build")
def codes_build(
    code: Annotated[str, typer.Argument(help="An ICD-10-CM code that takes a 7th character.")],
    character: Annotated[str, typer.Argument(help="The 7th character, e.g. A, D or S.")],
    as_json: JsonOption = False,
) -> None:
    """Add a 7th character, padding with placeholder X (S72.001 + A -> S72.001A)."""
    from medcode.terminology import icd10cm

    full = icd10cm.with_seventh(code, character)
    if as_json:
        typer.echo(json.dumps({"code": full, "description": icd10cm.description(full)}))
    else:
        console.print(f"[bold]{full}[/bold]  {icd10cm.description(full)}")


@app.command("demo")
def demo() -> None:
    """Run the end-to-end demonstration (for now: a tour of the code sets)."""
    from medcode.terminology.display import code_set_tour

    code_set_tour(console)


def main() -> None:
    """Console-script entry point: user errors become one line and a non-zero exit."""
    try:
        app()
    except MedcodeError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
