"""The CodiEsp real-text benchmark (CLEF eHealth 2020, English): ``<split>D.tsv`` +
``text_en/*.txt`` into notes and gold JSONL. For evaluation only: never train on it."""

from __future__ import annotations

import json
from pathlib import Path

from medcode.errors import MedcodeError
from medcode.eval.formats import NoteLabels, normalize_code
from medcode.terminology import icd10cm


def load(folder: str | Path, split: str) -> tuple[list[dict[str, str]], dict[str, list[str]]]:
    """``(notes, gold)``: notes as ``{"id", "text"}``, gold codes (upper-cased) by note id."""
    root = Path(folder) / split
    table = root / f"{split}D.tsv"
    texts = root / "text_en"
    if not table.is_file() or not texts.is_dir():
        raise MedcodeError(f"{root}: expected {table.name} and text_en/ (the CodiEsp layout)")
    gold: dict[str, list[str]] = {}
    for number, line in enumerate(table.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise MedcodeError(f"{table}:{number}: expected 'case id<TAB>code'")
        gold.setdefault(parts[0].strip(), []).append(parts[1].strip().upper())
    notes = []
    for path in sorted(texts.glob("*.txt")):
        notes.append({"id": path.stem, "text": path.read_text(encoding="utf-8")})
        gold.setdefault(path.stem, [])
    missing = sorted(set(gold) - {n["id"] for n in notes})
    if missing:
        raise MedcodeError(f"{table}: {len(missing)} case(s) without text, e.g. {missing[0]}")
    return notes, gold


def write(folder: str | Path, split: str, out: str | Path) -> tuple[Path, Path]:
    """Write ``notes.jsonl`` and ``gold.jsonl`` for one split; returns their paths."""
    notes, gold = load(folder, split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notes_path, gold_path = out / "notes.jsonl", out / "gold.jsonl"
    with notes_path.open("w", encoding="utf-8") as handle:
        for note in notes:
            handle.write(json.dumps({"id": note["id"], "text": note["text"]}) + "\n")
    with gold_path.open("w", encoding="utf-8") as handle:
        for note in notes:
            handle.write(json.dumps({"id": note["id"], "codes": gold[note["id"]]}) + "\n")
    return notes_path, gold_path


def diagnoses_only(notes: dict[str, NoteLabels]) -> dict[str, NoteLabels]:
    """Keep only ICD-10-CM codes (CodiEsp-D scores diagnoses); invalid codes stay (as errors)."""
    return {
        key: NoteLabels(
            n.id,
            {
                c
                for c in n.codes
                if normalize_code(c)[1] != "CPT" and normalize_code(c)[1] != "HCPCS"
            },
            n.note_type,
            n.split,
        )
        for key, n in notes.items()
    }


def map_retired(
    gold: dict[str, NoteLabels], predicted: dict[str, NoteLabels]
) -> dict[str, NoteLabels]:
    """Gold with codes retired since 2018 (no longer billable, expanded into children, e.g.
    N18.3 -> N18.30/N18.31/N18.32) replaced by the predicted descendant when there is one: the
    second, labelled CodiEsp score."""
    mapped = {}
    for key, note in gold.items():
        pred = predicted.get(key)
        codes = set()
        for code in note.codes:
            if icd10cm.is_valid(code) and not icd10cm.is_billable(code) and pred is not None:
                stem = code.replace(".", "")
                match = next(
                    (
                        p
                        for p in sorted(pred.codes)
                        if p.replace(".", "").startswith(stem) and p != code
                    ),
                    None,
                )
                codes.add(match or code)
            else:
                codes.add(code)
        mapped[key] = NoteLabels(note.id, codes, note.note_type, note.split, note.categories)
    return mapped
