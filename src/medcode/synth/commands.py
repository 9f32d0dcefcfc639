"""``medcode synth``: write a corpus; ``medcode synth audit``: realism report (and, with a
reference folder, a synthetic-vs-real classifier and verbatim overlap);
``medcode synth audit-sample``: a blind coding sample with its answer key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from medcode.errors import MedcodeError

app = typer.Typer(
    help="Generate synthetic coded notes.", invoke_without_command=True, no_args_is_help=False
)
console = Console()


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        index, total = (int(part) for part in text.split("/"))
    except ValueError:
        raise MedcodeError(f"--shard {text!r}: expected K/N, e.g. 3/10") from None
    if total < 1 or not 0 <= index < total:
        raise MedcodeError(f"--shard {text!r}: need N >= 1 and 0 <= K < N")
    return index, total


@app.callback()
def synth(
    context: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of notes.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    profile: Annotated[
        str, typer.Option("--profile", help="Profile name or YAML file.")
    ] = "primary_care",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
    shard: Annotated[
        str | None, typer.Option("--shard", help="Write only shard K of N (K/N).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or jsonl.")] = "parquet",
    templates: Annotated[
        Path | None, typer.Option("--templates", help="Your own template folder (with index.yaml).")
    ] = None,
    rewrite_with: Annotated[
        str | None,
        typer.Option(
            "--rewrite-with",
            help="Rewrite each note with the LLM of this OpenAI-compatible server (e.g. "
            "http://localhost:8000/v1), keeping a rewrite only if its facts survive.",
        ),
    ] = None,
    rewrite_model: Annotated[
        str | None,
        typer.Option(
            "--rewrite-model", help="Model name to ask for (default: the server's first)."
        ),
    ] = None,
    rewrite_batch: Annotated[
        int, typer.Option("--rewrite-batch", min=1, help="Rewrite requests in flight at once.")
    ] = 8,
) -> None:
    """Sample encounters, code them with the policy engine, render notes, write shards."""
    if context.invoked_subcommand is not None:
        return
    if out is None:
        raise MedcodeError("--out is required: the folder to write the corpus to")
    from medcode.synth.card import write_card
    from medcode.synth.generate import SynthConfig, run

    chosen = _parse_shard(shard)
    config = SynthConfig(
        profile=profile,
        n=n,
        seed=seed,
        shards=chosen[1] if chosen else 0,
        format=fmt,
        templates=str(templates) if templates else None,
    )
    with Progress(
        TextColumn("[bold]synth[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        total = (
            n
            if chosen is None
            else config.shard_range(chosen[0])[1] - config.shard_range(chosen[0])[0]
        )
        task = bar.add_task("notes", total=total, rate="")

        def advance(count: int) -> None:
            bar.advance(task, count)
            elapsed = bar.tasks[task].elapsed or 0
            if elapsed:
                bar.update(task, rate=f"{bar.tasks[task].completed / elapsed:,.0f} notes/s")

        summary = run(
            config,
            out,
            workers=min(workers, os.cpu_count() or 1) if workers else 1,
            only_shard=chosen[0] if chosen else None,
            progress=advance,
        )
    console.print(f"{summary['written']} shard(s) written, {summary['kept']} kept, in {out}/data")
    if rewrite_with:
        _rewrite(out, config, chosen, rewrite_with, rewrite_model, rewrite_batch)
    if summary["complete"]:
        card = write_card(out, json.loads((out / "synth_config.json").read_text()))
        console.print(f"dataset card: {card}")
    else:
        console.print("the corpus is not complete yet (other shards pending): no card written")


def _rewrite(out: Path, config, chosen, url: str, model: str | None, batch: int) -> None:
    """The LLM rewrite under fact lock (medcode.synth.rewrite) of the shards just made."""
    from medcode.synth.rewrite import rewrite_corpus

    with Progress(
        TextColumn("[bold]rewrite[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[kept]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        low, high = config.shard_range(chosen[0]) if chosen else (0, config.n)
        task = bar.add_task("notes", total=high - low, kept="")
        tally = {"kept": 0}

        def advance(count: int, accepted: int) -> None:
            tally["kept"] += accepted
            bar.update(task, advance=count, kept=f"{tally['kept']:,} kept")

        summary = rewrite_corpus(
            out,
            url,
            model=model,
            batch=batch,
            shards=config.shard_count(),
            only=[chosen[0]] if chosen else None,
            fmt=config.format,
            progress=advance,
        )
    rejected = ", ".join(f"{reason} {count:,}" for reason, count in summary["rejected"].items())
    console.print(
        f"rewrite: {summary['accepted']:,} of {summary['notes']:,} notes kept "
        f"({summary['acceptance_rate']:.1%}) by {summary['model']}"
        + (f"; kept as written: {rejected}" if rejected else ""),
        highlight=False,
    )


@app.command("audit")
def audit(
    corpus: Annotated[Path, typer.Argument(help="A corpus folder written by medcode synth.")],
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="Folder of real notes as .txt files (e.g. ../shared/codiesp/dev/text_en): "
            "adds the synthetic-vs-real classifier and the verbatim n-gram overlap.",
        ),
    ] = None,
    n: Annotated[int, typer.Option("--ngram", min=4, help="n-gram length in words.")] = 8,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Notes to check at most.")] = 20000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the classifier's sample.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Report how realistic the notes read (repeated lines, sentence openings, code-title
    leakage, reasoning language, note length, phrasings per code) and, with --reference, how
    well a classifier tells them from real notes and their verbatim n-gram overlap."""
    from rich.table import Table

    from medcode.synth.realism import RealismReport, audit_corpus, summary_rows

    progress_console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]audit[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=progress_console,
        transient=True,
        disable=as_json or not progress_console.is_terminal,
    ) as bar:
        task = bar.add_task("notes", total=None)

        def progress(stage: str, done: int, total: int | None) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        result = audit_corpus(corpus, reference, limit=limit, ngram=n, seed=seed, progress=progress)
    report = RealismReport(**result["realism"])
    real = RealismReport(**result["reference_realism"]) if reference is not None else None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return

    table = Table(title=f"Realism of {corpus} ({report.notes:,} notes)", show_lines=False)
    table.add_column("metric")
    table.add_column("corpus", justify="right")
    if real is not None:
        table.add_column(f"reference ({real.notes:,})", justify="right")
    table.add_column("detail")
    beside = {key: value for key, _, value, _ in summary_rows(real)} if real else {}
    for key, metric, value, detail in summary_rows(report):
        cells = [metric, value] + ([beside.get(key, "")] if real is not None else [])
        table.add_row(*cells, detail)
    console.print(table)
    console.print(
        f"Left out of the text metrics: {report.excluded_lines:,} registration and heading "
        f"lines (patient, identifiers, dates, provider, facility, signature, headings alone; "
        f"list in realism.yaml); {report.clinician_lines:,} clinician lines kept.",
        highlight=False,
    )
    top = report.repeated_lines["top"]
    if top:
        console.print("Most repeated clinician lines (notes):", highlight=False)
        for line, count in top:
            console.print(f"  {count:6,}  {line[:110]}", highlight=False, markup=False)
    openings = report.openings["top"]
    if openings:
        console.print("Most frequent sentence openings (sentences):", highlight=False)
        console.print(
            "  " + "; ".join(f"{start} {count:,}" for start, count in openings),
            highlight=False,
            markup=False,
        )
    leaks = report.leakage["top"]
    if leaks:
        console.print("Code-title qualifiers in clinician sentences (sentences, an example):")
        for item in leaks:
            console.print(
                f'  {item["sentences"]:6,}  {item["qualifier"]}: "{item["example"][:140]}"',
                highlight=False,
                markup=False,
            )
    fewest = report.phrasings.get("fewest") or []
    if fewest:
        console.print("Codes with the fewest phrasings (notes, phrasings, one phrasing):")
        for item in fewest:
            console.print(
                f"  {item['code']:8} {item['notes']:5,} notes  {item['phrasings']} phrasing(s)"
                f'  "{item["example"][:80]}"',
                highlight=False,
                markup=False,
            )
    if real is None:
        console.print(f"[yellow]skipped:[/yellow] {result['skipped']}.", highlight=False)
        return
    model = result["classifier"]
    if model is None:
        console.print(f"\n[yellow]skipped:[/yellow] {result['skipped']}.", highlight=False)
    else:
        folds = ", ".join(f"{auc:.3f}" for auc in model["fold_auc"])
        console.print(
            f"\nSynthetic vs reference ({reference}): TF-IDF word 1-2 grams + logistic "
            f"regression, {model['folds']}-fold cross-validated ROC AUC "
            f"[bold]{model['auc']:.3f}[/bold] (folds {folds}) on "
            f"{model['notes_per_class']:,} notes from each side (0.5: indistinguishable, 1.0: "
            "always told apart).",
            highlight=False,
        )
        console.print(
            "  most synthetic: " + ", ".join(f for f, _ in model["synthetic_features"]),
            highlight=False,
            markup=False,
        )
        console.print(
            "  most real:      " + ", ".join(f for f, _ in model["reference_features"]),
            highlight=False,
            markup=False,
        )
    console.print(
        f"\n{report.notes:,} notes checked against {result['reference_ngrams']:,} distinct "
        f"{result['ngram']}-grams of the reference: {result['notes_with_overlap']:,} notes "
        f"({result['share']:.2%}) share at least one verbatim {result['ngram']}-gram."
    )
    for gram, count in result["top"][:10]:
        console.print(f"  {count:6d}  {gram}", highlight=False)


@app.command("audit-sample")
def audit_sample(
    corpus: Annotated[Path, typer.Argument(help="A corpus folder written by medcode synth.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the sample (notes, key).")],
    n: Annotated[int, typer.Option("--n", help="Notes to sample.")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    split: Annotated[
        str | None,
        typer.Option("--split", help="Sample only these splits (comma-separated); default all."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a non-empty --out folder.")
    ] = False,
) -> None:
    """Draw N notes for blind coding (stratified by profile and note type, seeded): writes
    notes.jsonl (text only), key.jsonl (the gold, for medcode eval) and README.md."""
    from medcode.synth.audit_sample import parse_splits, write_audit_sample

    splits = parse_splits(split)
    sample = write_audit_sample(corpus, out, n=n, seed=seed, splits=splits, force=force)
    console.print(
        f"{len(sample.ids)} notes from {len(sample.strata)} of {len(sample.strata_available)} "
        f"strata (profile/note type) written to {out}: notes.jsonl for the coder, key.jsonl "
        "(the answers), README.md",
        highlight=False,
    )
    for stratum, count in sorted(sample.strata.items()):
        console.print(
            f"  {stratum}: {count} of {sample.strata_available[stratum]}", highlight=False
        )
    if sample.short:
        console.print(
            f"[yellow]note:[/yellow] --n {sample.requested} is more than the {sample.available} "
            "notes available: all of them were written",
            highlight=False,
        )
    if sample.policy_differs:
        console.print(
            f"[yellow]note:[/yellow] the policy engine now codes {len(sample.policy_differs)} of "
            "these encounters differently from the corpus (made by another version); the key "
            f"keeps the corpus's gold: {', '.join(sample.policy_differs[:5])}",
            highlight=False,
        )
    if sample.codes_in_text:
        console.print(
            f"[yellow]warning:[/yellow] {len(sample.codes_in_text)} note text(s) name one of "
            f"their gold codes, which a blind coder will see: "
            f"{', '.join(sample.codes_in_text[:5])}",
            highlight=False,
        )
    console.print(
        f"next: the coder writes CODER.jsonl, then medcode eval --gold {out}/key.jsonl "
        "--pred CODER.jsonl --out RUN",
        highlight=False,
    )
