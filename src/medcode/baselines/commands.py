"""``medcode baseline train|predict``: the TF-IDF baseline coder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from medcode.errors import MedcodeError

app = typer.Typer(help="The fast TF-IDF + linear baseline coder.", no_args_is_help=True)
console = Console()


def _corpus_rows(corpus: Path, splits: set[str]) -> list[dict]:
    from medcode.synth.card import read_rows

    if not (corpus / "data").is_dir():
        raise MedcodeError(f"{corpus}: not a medcode synth corpus (no data/ inside)")
    return [r for r in read_rows(corpus, ["id", "text", "codes", "split"]) if r["split"] in splits]


@app.command("train")
def train(
    corpus: Annotated[Path, typer.Option("--corpus", help="A medcode synth output folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the model.")],
    min_count: Annotated[
        int, typer.Option("--min-count", min=1, help="Codes seen fewer times are not learned.")
    ] = 3,
) -> None:
    """Train on the corpus's train split; tune thresholds on its validation split."""
    from medcode.baselines.tfidf import BaselineConfig, TfidfCoder

    train_rows = _corpus_rows(corpus, {"train"})
    val_rows = _corpus_rows(corpus, {"validation"})
    if not train_rows:
        raise MedcodeError(f"{corpus}: no train notes")
    started = time.perf_counter()
    coder = TfidfCoder(BaselineConfig(min_code_count=min_count)).fit(
        [r["text"] for r in train_rows],
        [[c["code"] for c in r["codes"]] for r in train_rows],
        [r["text"] for r in val_rows],
        [[c["code"] for c in r["codes"]] for r in val_rows],
        progress=lambda message: console.print(f"[dim]{message}...[/dim]"),
    )
    coder.save(out)
    console.print(
        f"trained on {len(train_rows):,} notes ({len(coder.codes):,} codes) in "
        f"{time.perf_counter() - started:.0f} s; thresholds from {len(val_rows):,} "
        f"validation notes; saved to {out}"
    )


@app.command("predict")
def predict(
    model: Annotated[Path, typer.Option("--model", help="A folder written by baseline train.")],
    out: Annotated[Path, typer.Option("--out", help="Predictions JSONL to write.")],
    corpus: Annotated[Path | None, typer.Option("--corpus", help="A synth corpus to code.")] = None,
    split: Annotated[
        str, typer.Option("--split", help="Corpus split(s), comma-separated.")
    ] = "test",
    notes: Annotated[
        Path | None,
        typer.Option("--notes", help="JSONL of {id, text} (e.g. from medcode eval codiesp)."),
    ] = None,
) -> None:
    """Code notes; writes {"id", "codes", "scores"} per note."""
    from rich.progress import Progress

    from medcode.baselines.tfidf import TfidfCoder

    if (corpus is None) == (notes is None):
        raise MedcodeError("give either --corpus (with --split) or --notes")
    if corpus is not None:
        rows = _corpus_rows(corpus, set(split.split(",")))
    else:
        rows = []
        for number, line in enumerate(notes.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    data = json.loads(line)
                    rows.append({"id": str(data["id"]), "text": str(data["text"])})
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise MedcodeError(
                        f'{notes}:{number}: expected {{"id", "text"}} ({exc})'
                    ) from None
    coder = TfidfCoder.load(model)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle, Progress(console=console) as bar:
        task = bar.add_task("coding", total=len(rows))
        for start in range(0, len(rows), 512):
            batch = rows[start : start + 512]
            for row, found in zip(batch, coder.predict([r["text"] for r in batch]), strict=True):
                handle.write(
                    json.dumps(
                        {
                            "id": row["id"],
                            "codes": [c for c, _ in found],
                            "scores": [round(s, 4) for _, s in found],
                        }
                    )
                    + "\n"
                )
            bar.advance(task, len(batch))
    elapsed = time.perf_counter() - started
    console.print(
        f"coded {len(rows):,} notes in {elapsed:.1f} s "
        f"({len(rows) / max(elapsed, 1e-9):,.0f} notes/s) -> {out}"
    )
