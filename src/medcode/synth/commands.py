"""``medcode synth``: write a corpus; ``medcode synth audit``: overlap with a reference;
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
    if summary["complete"]:
        card = write_card(out, json.loads((out / "synth_config.json").read_text()))
        console.print(f"dataset card: {card}")
    else:
        console.print("the corpus is not complete yet (other shards pending): no card written")


@app.command("audit")
def audit(
    corpus: Annotated[Path, typer.Argument(help="A corpus folder written by medcode synth.")],
    reference: Annotated[
        Path,
        typer.Option(
            "--reference",
            help="Folder of reference .txt files (e.g. ../shared/codiesp/dev/text_en).",
        ),
    ],
    n: Annotated[int, typer.Option("--ngram", min=4, help="n-gram length in words.")] = 8,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Notes to check at most.")] = 20000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Report verbatim n-gram overlap between generated notes and a reference corpus."""
    from medcode.synth.card import read_rows
    from medcode.synth.privacy import overlap, read_reference

    if not (corpus / "data").is_dir():
        raise MedcodeError(f"{corpus}: not a corpus folder (no data/ inside)")
    rows = read_rows(corpus, ["text"])
    texts = (row["text"] for _, row in zip(range(limit), rows, strict=False))
    report = overlap(texts, read_reference(reference), n=n)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ngram": report.n,
                    "notes": report.notes,
                    "notes_with_overlap": report.notes_with_overlap,
                    "share": report.share,
                    "top": report.top,
                },
                indent=2,
            )
        )
        return
    console.print(
        f"{report.notes:,} notes checked against {report.reference_ngrams:,} distinct "
        f"{report.n}-grams of the reference: {report.notes_with_overlap:,} notes "
        f"({report.share:.2%}) share at least one verbatim {report.n}-gram."
    )
    for gram, count in report.top[:10]:
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
