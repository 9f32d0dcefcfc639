"""``medcode eval``: score predictions against gold; ``medcode eval codiesp``: export CodiEsp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from medcode.errors import MedcodeError
from medcode.eval.audit import is_audit_key

app = typer.Typer(
    help="Evaluate coders: exact-code precision, recall, F1.", invoke_without_command=True
)
console = Console()


def score(
    gold_path: Path,
    pred_path: Path,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    diagnoses_only: bool = False,
    map_retired: bool = False,
    splits: set[str] | None = None,
) -> dict[str, object]:
    """Read, align and score; the result includes every input problem found."""
    import gc

    from medcode.eval.formats import Problems

    problems = Problems()
    collecting = gc.isenabled()
    gc.disable()  # millions of small sets: the cyclic collector would rescan them repeatedly
    try:
        return _score(
            gold_path, pred_path, problems, bootstrap, seed, diagnoses_only, map_retired, splits
        )
    finally:
        if collecting:
            gc.enable()


def _score(gold_path, pred_path, problems, bootstrap, seed, diagnoses_only, map_retired, splits):
    from medcode.eval import codiesp
    from medcode.eval.formats import align, read_gold, read_jsonl
    from medcode.eval.metrics import CodingMetrics

    metrics = CodingMetrics(bootstrap=bootstrap, seed=seed)
    fast = None
    if not (diagnoses_only or map_retired):  # the CodiEsp options work on notes, not tables
        fast = _read_tables(gold_path, pred_path, problems, splits)
    if fast is not None:
        metrics.update_table(*fast)
    else:  # the reference reader: every problem reported with its line
        gold = read_gold(gold_path, problems)
        if splits:
            gold = {key: note for key, note in gold.items() if note.split in splits}
            if not gold:
                raise MedcodeError(_no_split(gold_path, splits))
        predicted = read_jsonl(pred_path, problems, role="prediction")
        predicted = align(gold, predicted, problems, pred_path)
        if diagnoses_only:
            gold, predicted = codiesp.diagnoses_only(gold), codiesp.diagnoses_only(predicted)
        if map_retired:
            gold = codiesp.map_retired(gold, predicted)
        metrics.update(gold.values(), predicted)
    result = metrics.compute()
    result["inputs"] = {
        "gold": str(gold_path),
        "predictions": str(pred_path),
        "diagnoses_only": diagnoses_only,
        "map_retired": map_retired,
    }
    result["problems"] = problems.items
    result["missing_notes"] = problems.missing
    result["invalid_predicted_codes"] = dict(sorted(problems.invalid_codes.items()))
    return result


def _no_split(gold_path, splits) -> str:
    return f"{gold_path}: no gold note in split(s) {', '.join(sorted(splits))}"


def _read_tables(gold_path, pred_path, problems, splits):
    """``(gold, predictions, prediction row of each gold note)`` read column by column, or
    None when either file has a problem for the line reader to report (or the fast reader
    is unsure): then nothing has been added to ``problems``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from medcode.eval.formats import align_tables, read_gold_table, read_jsonl_table

    if splits and not all(isinstance(name, str) for name in splits):
        return None
    gold = read_gold_table(gold_path)
    if gold is None:
        return None
    gold_ids = gold.ids
    if splits:
        wanted = pc.is_in(gold.split, value_set=pa.array(sorted(splits), pa.string()))
        gold = gold.take(pc.fill_null(wanted, False).to_numpy(zero_copy_only=False))
        if not len(gold):
            raise MedcodeError(_no_split(gold_path, splits))
    predicted = read_jsonl_table(pred_path, role="prediction", unique_ids=gold_ids)
    if predicted is None:
        return None
    pred_row = align_tables(gold, predicted, problems, pred_path)
    for code, count in predicted.invalid_codes.items():
        problems.invalid_codes[code] = problems.invalid_codes.get(code, 0) + count
    return gold, predicted, np.asarray(pred_row)


def _print(result: dict) -> None:
    table = Table(
        title=f"{result['n_notes']:,} notes, {result['n_gold_codes']:,} gold codes, "
        f"{result['n_predicted_codes']:,} predicted codes",
        title_justify="left",
    )
    for column in ("scope", "precision", "recall", "F1", "tp", "fp", "fn"):
        table.add_column(column, justify="left" if column == "scope" else "right")

    def row(name: str, scores: dict) -> None:
        table.add_row(
            name,
            f"{scores['precision']:.4f}",
            f"{scores['recall']:.4f}",
            f"{scores['f1']:.4f}",
            *(str(scores.get(k, "")) for k in ("tp", "fp", "fn")),
        )

    row("micro (note x code pairs)", result["micro"])
    macro = result["macro"]
    table.add_row(
        f"macro (mean over {macro['codes']:,} gold codes)",
        f"{macro['precision']:.4f}",
        f"{macro['recall']:.4f}",
        f"{macro['f1']:.4f}",
        "",
        "",
        "",
    )
    for group in ("by_system", "by_category", "by_note_type", "by_split"):
        for name, scores in result[group].items():
            row(f"{group.removeprefix('by_').replace('_', ' ')}: {name}", scores)
    row("3-character category match (secondary)", result["category3_secondary"])
    console.print(table)
    ci = result["ci"]["micro"]
    if ci:
        console.print(
            f"micro F1 95% bootstrap interval ({result['ci']['bootstrap']} resamples, "
            f"seed {result['ci']['seed']}): {ci['f1'][0]:.4f} - {ci['f1'][1]:.4f}"
        )
    for problem in result["problems"][:20]:
        console.print(f"[yellow]warning[/yellow] {problem}", highlight=False)
    if result["missing_notes"]:
        console.print(
            f"[yellow]{len(result['missing_notes'])} note(s) without a prediction, "
            f"scored as empty:[/yellow] {', '.join(result['missing_notes'][:10])}"
        )
    if result["invalid_predicted_codes"]:
        invalid = ", ".join(
            f"{c} ({n})" for c, n in list(result["invalid_predicted_codes"].items())[:10]
        )
        console.print(f"[yellow]invalid predicted codes (false positives):[/yellow] {invalid}")


@app.callback()
def evaluate(
    context: typer.Context,
    gold: Annotated[
        Path | None, typer.Option("--gold", help="Gold JSONL or a synth output folder.")
    ] = None,
    pred: Annotated[Path | None, typer.Option("--pred", help="Predictions JSONL.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for metrics.json.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    split: Annotated[
        str | None, typer.Option("--split", help="Score only these gold splits (comma-separated).")
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0)] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    diagnoses: Annotated[
        bool, typer.Option("--diagnoses-only", help="Score ICD-10-CM only (CodiEsp-D).")
    ] = False,
    retired: Annotated[
        bool,
        typer.Option(
            "--map-retired",
            help="Map codes retired since 2018 to their 2026 descendants "
            "(a second, labelled score).",
        ),
    ] = False,
    audit: Annotated[
        bool | None,
        typer.Option(
            "--audit/--no-audit",
            help="Write the coder audit (audit.md, audit.json in --out): agreement and every "
            "disagreement with its note and gold rule. Default: on for a key written by "
            "medcode synth audit-sample.",
        ),
    ] = None,
) -> None:
    """Score predictions against gold: micro and macro P/R/F1, by system, category, note type
    and split, with bootstrap intervals; for an audit key, the coder audit too."""
    if context.invoked_subcommand is not None:
        return
    if gold is None or pred is None:
        raise MedcodeError("give --gold and --pred (see medcode eval --help)")
    result = score(
        gold,
        pred,
        bootstrap=bootstrap,
        seed=seed,
        diagnoses_only=diagnoses,
        map_retired=retired,
        splits=set(split.split(",")) if split else None,
    )
    if split:
        result["inputs"]["split"] = split
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
    report = None
    if audit or (audit is None and is_audit_key(gold)):
        from medcode.eval.audit import build_audit, write_audit

        report = build_audit(
            gold,
            pred,
            splits=set(split.split(",")) if split else None,
            diagnoses_only=diagnoses,
        )
        if out is not None:
            write_audit(report, out)
    if as_json:
        typer.echo(json.dumps(result if report is None else {**result, "audit": report}))
        return
    _print(result)
    if report is not None:
        from medcode.eval.audit import summary_lines

        for line in summary_lines(report):
            console.print(line, highlight=False)
        console.print(
            f"audit report: {out / 'audit.md'} (figures: {out / 'audit.json'})"
            if out is not None
            else "give --out RUN to write the audit report (audit.md, audit.json)",
            highlight=False,
        )


@app.command("codiesp")
def export_codiesp(
    data: Annotated[
        Path, typer.Option("--data", help="The CodiEsp folder, e.g. ../shared/codiesp.")
    ],
    split: Annotated[str, typer.Option("--split", help="train or dev.")] = "dev",
    out: Annotated[
        Path, typer.Option("--out", help="Folder for notes.jsonl and gold.jsonl.")
    ] = Path("codiesp"),
) -> None:
    """Turn the CodiEsp folder layout into notes.jsonl + gold.jsonl (evaluation only)."""
    from medcode.eval.codiesp import write

    notes, gold = write(data, split, out)
    console.print(f"wrote {notes} and {gold}")


@app.command("knowledge")
def knowledge(
    model: Annotated[
        str,
        typer.Option(
            "--model", help="'embedded', a Hugging Face model folder, or a medcode adapter folder."
        ),
    ] = "embedded",
    mmlu: Annotated[
        str,
        typer.Option("--mmlu", help="MMLU-medical test.jsonl (or its folder); '' to skip."),
    ] = "../shared/mmlu_medical/test.jsonl",
    codiesp_folder: Annotated[
        str,
        typer.Option("--codiesp", help="CodiEsp folder for perplexity; '' to skip."),
    ] = "../shared/codiesp",
    split: Annotated[str, typer.Option("--split", help="CodiEsp split for perplexity.")] = "dev",
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Score a seeded sample of N questions.")
    ] = None,
    documents: Annotated[
        int | None, typer.Option("--documents", min=1, help="Perplexity on the first N documents.")
    ] = None,
    window: Annotated[
        int, typer.Option("--window", min=8, help="Tokens per perplexity window.")
    ] = 512,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for knowledge.json.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Knowledge retention: MMLU-medical accuracy by option log-likelihood and perplexity on
    real clinical text (CodiEsp English); compare a fine-tuned model with its base."""
    from medcode.eval.knowledge import evaluate

    result = evaluate(
        model,
        mmlu=Path(mmlu) if mmlu else None,
        codiesp=Path(codiesp_folder) if codiesp_folder else None,
        split=split,
        limit=limit,
        documents=documents,
        window=window,
        batch_size=batch_size,
        seed=seed,
    ).to_dict()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "knowledge.json").write_text(json.dumps(result, indent=2))
    if as_json:
        typer.echo(json.dumps(result))
        return
    mc, ppl = result["mmlu_medical"], result["perplexity"]
    console.print(f"model: {result['model']}")
    if mc["n"]:
        console.print(
            f"MMLU-medical ({mc['n']} questions, option log-likelihood): "
            f"accuracy {mc['accuracy']:.4f}, per-character normalised {mc['accuracy_norm']:.4f}"
        )
    if ppl["codiesp"] is not None:
        console.print(
            f"CodiEsp perplexity ({ppl['documents']} documents, {ppl['tokens']:,} tokens, "
            f"window {ppl['window']}): {ppl['codiesp']:.3f}"
        )
