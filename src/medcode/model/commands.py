"""``medcode code``: code one note; ``medcode predict``: code a notes file or corpus split into a
predictions JSONL, written as batches finish and resumable."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from medcode.errors import MedcodeError

console = Console()
errors = Console(stderr=True)
CHUNK_BATCHES = 4  # predict writes its output every CHUNK_BATCHES batches

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="'embedded', a Hugging Face model folder or an adapter folder from medcode train "
        "(with --backend openai: the served model name, or the adapter folder).",
    ),
]
BackendOption = Annotated[
    str, typer.Option("--backend", help="hf (run the model here) or openai (a server).")
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        envvar="MEDCODE_BASE_URL",
        help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM, llama.cpp, Ollama).",
    ),
]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="OPENAI_API_KEY", help="Server API key.")
]
MaxTokensOption = Annotated[
    int, typer.Option("--max-new-tokens", min=1, help="Answer length limit in tokens.")
]
UnconstrainedOption = Annotated[
    bool,
    typer.Option(
        "--unconstrained",
        help="hf: plain greedy generate, codes parsed from text (default: decoding "
        "constrained to valid codes).",
    ),
]
DeviceOption = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 ...")]
EosMinOption = Annotated[
    float | None,
    typer.Option(
        "--eos-min",
        min=0.0,
        max=1.0,
        help="hf, constrained: end the answer only when the end is at least this likely "
        "between codes, else write the likeliest next code (0: at the first end; higher "
        "lists more codes; default: as the adapter's medcode_model.json says, else 0).",
    ),
]

CandidatesOnlyOption = Annotated[
    bool | None,
    typer.Option(
        "--candidates-only/--any-code",
        help="hf, constrained, candidates mode: list only the prompt's candidates, or any "
        "valid code (default: as the adapter's medcode_model.json says; else any code).",
    ),
]


SettingOption = Annotated[
    str | None,
    typer.Option(
        "--setting",
        help="outpatient, inpatient or emergency: stated in the prompt (predict: for notes "
        "that do not give their own).",
    ),
]
AgeOption = Annotated[
    int | None, typer.Option("--age", min=0, max=130, help="The patient's age in years.")
]
SexOption = Annotated[str | None, typer.Option("--sex", help="The patient's sex: female or male.")]


def _warn(message: str) -> None:
    errors.print(f"[yellow]warning[/yellow] {escape(message)}", highlight=False)


def _coder(
    model: str,
    backend: str,
    *,
    base_url: str | None,
    api_key: str | None,
    batch_size: int,
    max_new_tokens: int,
    unconstrained: bool,
    device: str | None,
    max_prompt_tokens: int | None = None,
    eos_min: float | None = None,
    candidates_only: bool | None = None,
) -> Any:
    from medcode.model.backends import load_coder

    if backend == "openai":
        options: dict[str, Any] = {"api_key": api_key}
    else:
        options = {
            "constrained": not unconstrained,
            "max_prompt_tokens": max_prompt_tokens,
            "device": device,
            "warn": _warn,
        }
        if candidates_only is not None:
            options["candidates_only"] = candidates_only
        if eos_min is not None:
            options["eos_min"] = eos_min
    with errors.status(f"loading {model}", spinner="dots"):
        return load_coder(
            model,
            backend,
            base_url=base_url,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            **options,
        )


def given_context(setting: str | None, age: int | None, sex: str | None) -> Any:
    """The :class:`~medcode.model.prompt.NoteContext` of the command's options (None: none)."""
    from medcode.model.prompt import NoteContext

    return NoteContext.of(setting, {"age": age, "sex": sex})


def describe(code: str) -> str:
    """A code's description (CPT/HCPCS table first, then the ICD-10-CM tabular)."""
    from medcode.terminology import cpt, icd10cm

    table = cpt.procedure_table()
    if code in table:
        return table[code].description
    try:
        return icd10cm.description(code)
    except MedcodeError:
        return ""


def code_command(
    note: Annotated[Path, typer.Argument(help="A text file holding one note ('-': stdin).")],
    model: ModelOption = "embedded",
    backend: BackendOption = "hf",
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    max_new_tokens: MaxTokensOption = 256,
    unconstrained: UnconstrainedOption = False,
    eos_min: EosMinOption = None,
    candidates_only: CandidatesOnlyOption = None,
    device: DeviceOption = None,
    setting: SettingOption = None,
    age: AgeOption = None,
    sex: SexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Code one clinical note: ICD-10-CM and CPT/HCPCS codes with descriptions."""
    context = given_context(setting, age, sex)
    if str(note) == "-":
        text = sys.stdin.read()
    else:
        try:
            text = note.read_text(encoding="utf-8")
        except OSError as error:
            raise MedcodeError(f"{note}: cannot read the note ({error.strerror})") from None
    if not text.strip():
        raise MedcodeError(f"{note}: the note is empty")
    coder = _coder(
        model,
        backend,
        base_url=base_url,
        api_key=api_key,
        batch_size=1,
        max_new_tokens=max_new_tokens,
        unconstrained=unconstrained,
        device=device,
        eos_min=eos_min,
        candidates_only=candidates_only,
    )
    prediction = coder.predict([text], [note.name], contexts=[context])[0]
    scores = prediction.scores or [None] * len(prediction.codes)
    rows = [
        {"code": c, "description": describe(c), "score": s}
        for c, s in zip(prediction.codes, scores, strict=True)
    ]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "codes": rows,
                    "truncated": prediction.truncated,
                    "dropped": prediction.dropped,
                    "added": prediction.added,
                },
                indent=2,
            )
        )
        return
    if not rows:
        console.print("no codes")
    for row in rows:
        score = f"  [dim]{row['score']:.2f}[/dim]" if row["score"] is not None else ""
        console.print(f"[bold]{row['code']:<9}[/bold] {escape(row['description'])}{score}")
    if prediction.dropped:
        _warn(
            f"dropped {len(prediction.dropped)} code(s) (invalid or an Excludes1 conflict): "
            + ", ".join(prediction.dropped)
        )
    for reason in prediction.added:
        console.print(f"[dim]added by the policy tables: {escape(reason)}[/dim]")


# --------------------------------------------------------------------------- predict


def read_notes(path: Path, split: str, default: Any = None) -> list[dict[str, Any]]:
    """Notes ``{"id", "text", "context"}`` from a JSONL file (``{"id", "text"}``, optionally
    ``"setting"`` and ``"patient": {"age", "sex"}``) or from a synth corpus folder's splits
    (the context from each note's encounter). ``default``: the context of a note that gives
    none of its own."""
    from medcode.model.prompt import NoteContext

    if path.is_dir():
        from medcode.synth.card import read_rows

        if not (path / "data").is_dir():
            raise MedcodeError(f"{path}: not a medcode synth corpus (no data/ inside)")
        wanted = set(split.split(","))
        rows = [
            {
                "id": str(r["id"]),
                "text": r["text"],
                "context": NoteContext.of_encounter(r.get("encounter")) or default,
            }
            for r in read_rows(path, ["id", "text", "split", "encounter"])
            if r["split"] in wanted
        ]
        if not rows:
            raise MedcodeError(f"{path}: no notes in split(s) {split}")
        return rows
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise MedcodeError(f"{path}: cannot read the notes ({error.strerror})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            note = {"id": str(data["id"]), "text": str(data["text"])}
        except (ValueError, KeyError, TypeError) as error:
            raise MedcodeError(f'{path}:{number}: expected {{"id", "text"}} ({error})') from None
        try:
            context = NoteContext.of(data.get("setting"), data.get("patient"))
        except MedcodeError as error:
            raise MedcodeError(f"{path}:{number}: {error}") from None
        rows.append({**note, "context": context or default})
    if not rows:
        raise MedcodeError(f"{path}: no notes")
    return rows


def done_ids(out: Path) -> set[str]:
    """Ids already in a predictions file; a partly written last line is removed."""
    if not out.exists():
        return set()
    done: set[str] = set()
    good: list[str] = []
    damaged = False
    for line in out.read_text(encoding="utf-8").splitlines():
        try:
            done.add(str(json.loads(line)["id"]))
            good.append(line)
        except (ValueError, KeyError, TypeError):
            damaged = True
    if damaged:
        out.write_text("".join(f"{line}\n" for line in good), encoding="utf-8")
    return done


def predict_command(
    model: ModelOption,
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help="Notes JSONL ({id, text}, e.g. from medcode eval codiesp) or a synth corpus "
            "folder.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions JSONL to write.")],
    split: Annotated[
        str, typer.Option("--split", help="Corpus split(s) to code, comma-separated.")
    ] = "test",
    backend: BackendOption = "hf",
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Code the first N.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Keep the output's predictions; code the rest.")
    ] = False,
    max_new_tokens: MaxTokensOption = 256,
    max_prompt_tokens: Annotated[
        int | None,
        typer.Option("--max-prompt-tokens", min=16, help="Cut longer notes (default: context)."),
    ] = None,
    unconstrained: UnconstrainedOption = False,
    eos_min: EosMinOption = None,
    candidates_only: CandidatesOnlyOption = None,
    device: DeviceOption = None,
    setting: SettingOption = None,
    age: AgeOption = None,
    sex: SexOption = None,
) -> None:
    """Code notes into a predictions JSONL: {"id", "codes", "scores"} per line.

    A note's setting and patient (JSONL "setting", "patient": {"age", "sex"}; a corpus note's
    encounter) go into the prompt; --setting, --age and --sex stand for notes without them.
    Lines are appended as batches finish: stop any time and --resume carries on."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    rows = read_notes(input, split, given_context(setting, age, sex))
    if limit is not None:
        rows = rows[:limit]
    skipped = 0
    if resume:
        done = done_ids(out)
        skipped = sum(r["id"] in done for r in rows)
        rows = [r for r in rows if r["id"] not in done]
    if not rows:
        console.print(f"nothing to do: all {skipped:,} notes are already in {out}")
        return
    coder = _coder(
        model,
        backend,
        base_url=base_url,
        api_key=api_key,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        unconstrained=unconstrained,
        device=device,
        max_prompt_tokens=max_prompt_tokens,
        eos_min=eos_min,
        candidates_only=candidates_only,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    dropped = added = truncated = coded = 0
    with (
        out.open("a" if resume else "w", encoding="utf-8") as handle,
        Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=errors,
        ) as bar,
    ):
        task = bar.add_task("coding", total=len(rows), rate="")

        def advance(notes: int) -> None:
            nonlocal coded
            coded += notes
            rate = coded / max(time.perf_counter() - started, 1e-9)
            bar.update(task, advance=notes, rate=f"{rate:.2f} notes/s")

        # Chunks of a few batches: the coder batches each chunk by length (less padding);
        # each chunk's lines are written (and flushed) as soon as it is done.
        chunk = batch_size * CHUNK_BATCHES
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            found = coder.predict(
                [r["text"] for r in part],
                [r["id"] for r in part],
                advance,
                contexts=[r["context"] for r in part],
            )
            for row, prediction in zip(part, found, strict=True):
                scores = prediction.scores
                line = {
                    "id": row["id"],
                    "codes": prediction.codes,
                    "scores": [round(s, 4) for s in scores] if scores is not None else None,
                }
                if prediction.candidates is not None:  # candidates listed in the prompt
                    line["k"] = prediction.candidates
                if prediction.added:  # codes the policy tables added, each with its reason
                    line["added"] = prediction.added
                if prediction.dropped:  # invalid output, or Excludes1 with an earlier code
                    line["dropped"] = prediction.dropped
                handle.write(json.dumps(line) + "\n")
                dropped += len(prediction.dropped)
                added += len(prediction.added)
                truncated += prediction.truncated
            handle.flush()
    elapsed = time.perf_counter() - started
    record = {
        "model": model,
        "backend": backend,
        "base_url": base_url,
        "constrained": backend == "hf" and not unconstrained,
        "input": str(input),
        "split": split if input.is_dir() else None,
        "limit": limit,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "max_prompt_tokens": max_prompt_tokens,
        "context": getattr(coder, "context", False),  # whether prompts stated setting, patient
        "eos_min": getattr(coder, "eos_min", None),  # the decoding the coder used (hf)
        "candidates_only": getattr(coder, "candidates_only", None),
        "candidate_order": getattr(coder, "candidate_order", None),
        "notes_with_context": sum(r["context"] is not None for r in rows),
        "notes_coded": coded,
        "notes_resumed": skipped,
        "seconds": round(elapsed, 2),
        "codes_dropped": dropped,  # invalid, or in an Excludes1 conflict with an earlier code
        "codes_added": added,  # combination, partner or manifestation codes (policy tables)
        "notes_truncated": truncated,
    }
    out.with_suffix(".run.json").write_text(json.dumps(record, indent=2) + "\n")
    console.print(
        f"coded {coded:,} notes in {elapsed:.1f} s ({coded / max(elapsed, 1e-9):.2f} notes/s)"
        + (f", {skipped:,} already done" if skipped else "")
        + (f"; dropped {dropped:,} codes (invalid or Excludes1)" if dropped else "")
        + (f"; added {added:,} codes (policy tables)" if added else "")
        + (f"; {truncated:,} notes cut to fit the context" if truncated else "")
        + f" -> {out}"
    )


def register(app: typer.Typer) -> None:
    """Add ``code`` and ``predict`` to the ``medcode`` command."""
    app.command("code")(code_command)
    app.command("predict")(predict_command)
