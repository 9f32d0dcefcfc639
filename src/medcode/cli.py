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
from medcode.model.commands import register as register_model_commands
from medcode.model.train_command import train as train_command
from medcode.policy.commands import app as policy_app
from medcode.records import System
from medcode.serve.commands import serve as serve_command
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
register_model_commands(app)  # medcode code, medcode predict
app.command("train")(train_command)
app.command("serve")(serve_command)

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


@app.command("report")
def report(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN_DIR",
            help="Run folders, one per system: metrics.json or <set>/metrics.json from "
            "medcode eval --out, optional run.json, train_log.jsonl, knowledge.json.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", metavar="DIR", help="Folder for report.md, report.html and plots/."),
    ],
) -> None:
    """Compare systems: Markdown and self-contained HTML report with PNG plots, every number
    linked to its predictions file."""
    import shlex

    from medcode.eval.report import write_report

    written = write_report(
        runs,
        out,
        command=shlex.join(["medcode", *sys.argv[1:]]),
        progress=lambda message: console.print(f"[dim]{message}...[/dim]"),
    )
    console.print(f"wrote {written.markdown}, {written.html} and {len(written.plots)} plot(s)")


@codes_app.command("tour")
def codes_tour() -> None:
    """A short tour of the code sets and the coding rules."""
    from medcode.terminology.display import code_set_tour

    code_set_tour(console)


@app.command("demo")
def demo(
    out: Annotated[Path | None, typer.Option("--out", help="Folder for everything.")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A smoke run of a few minutes (tiny corpus).")
    ] = False,
    model: Annotated[
        str, typer.Option("--model", help="Base model: 'embedded' or a model folder.")
    ] = "embedded",
    recipe: Annotated[Path, typer.Option("--recipe", help="Training recipe.")] = Path(
        "configs/cpu/gemma3_270m_lora.yaml"
    ),
    train_minutes: Annotated[
        float | None, typer.Option("--time-budget", min=0.1, help="Fine-tuning minutes.")
    ] = None,
    notes: Annotated[int | None, typer.Option("--notes", min=50, help="Corpus size.")] = None,
    eval_notes: Annotated[
        int | None, typer.Option("--eval-notes", min=1, help="Notes per evaluation set.")
    ] = None,
    mmlu: Annotated[
        str, typer.Option("--mmlu", help="MMLU-medical test.jsonl ('' to skip).")
    ] = "../shared/mmlu_medical/test.jsonl",
    codiesp: Annotated[
        str, typer.Option("--codiesp", help="CodiEsp folder ('' to skip).")
    ] = "../shared/codiesp",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Recipe overrides key=value.")
    ] = None,
) -> None:
    """The experiment end to end: synthesise a corpus, score the base model zero-shot,
    fine-tune within a time budget, score again, train and score the baseline, check
    knowledge retention, write the report and summary.json."""
    from medcode.demo import DemoConfig, run_demo

    changes = {
        "model": model,
        "recipe": str(recipe),
        "train_minutes": train_minutes,
        "notes": notes,
        "eval_notes": eval_notes,
        "mmlu": mmlu or None,
        "codiesp": codiesp or None,
        "seed": seed,
        "overrides": list(overrides or []),
        "out": str(out) if out else None,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    config = DemoConfig.quick(**changes) if quick else DemoConfig(**changes)
    summary = run_demo(config, lambda message: console.print(f"[bold cyan]>[/] {message}"))
    _print_summary(summary, Path(config.out))


def _print_summary(summary: dict, out: Path) -> None:
    table = Table(title="exact-code micro F1", title_justify="left")
    sets = ("test", "test_ood", "codiesp_dev")
    table.add_column("system")
    for name in sets:
        table.add_column(name, justify="right")
    for system in ("zero_shot", "fine_tuned", "baseline"):
        cells = []
        for name in sets:
            found = summary.get(system, {}).get(name)
            cells.append(f"{found['micro_f1']:.3f}" if found else "-")
        table.add_row(system.replace("_", "-"), *cells)
    console.print(table)
    knowledge = summary.get("knowledge", {})
    for name, found in knowledge.items():
        if found and found.get("mmlu_medical_accuracy") is not None:
            console.print(
                f"MMLU-medical accuracy ({name}): {found['mmlu_medical_accuracy']:.3f} "
                f"on {found['mmlu_medical_n']} questions"
            )
    train = summary.get("train", {})
    if train.get("tokens"):
        console.print(f"training: {train['tokens']:,} tokens in {train['seconds']:.0f} s")
    console.print(f"report: {out / 'report' / 'report.html'}; summary: {out / 'summary.json'}")


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
