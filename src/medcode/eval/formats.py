"""Gold and prediction files: JSONL ``{"id": ..., "codes": [...]}`` (gold may also be a synth
output folder). Codes are normalised; every problem in a file is reported with its line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from medcode.errors import MedcodeError
from medcode.records import System

INVALID = "invalid"


@lru_cache(maxsize=1_000_000)
def normalize_code(raw: str) -> tuple[str, str]:
    """``(code, system)`` for a code written any way (case, dots, spaces); system is
    ``"invalid"`` for a code in no code set (it is still scored, as a false positive)."""
    from medcode.terminology import cpt, icd10cm

    text = str(raw).strip().upper().replace(" ", "")
    if not text:
        return text, INVALID
    if icd10cm.looks_like(text) and icd10cm.is_valid(text):
        return icd10cm.normalize(text), System.ICD10CM.value
    if "." not in text and cpt.looks_like(text):
        code = cpt.normalize(text)
        table = cpt.procedure_table()
        if code in table:
            return code, table[code].system.value
        return code, cpt.system_of(code).value  # a real-looking CPT/HCPCS code not in our table
    return text, INVALID


@dataclass(slots=True)
class NoteLabels:
    """One note's codes (normalised) and what the gold knows about it."""

    id: str
    codes: set[str]
    note_type: str | None = None
    split: str | None = None
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    line: int | None = None


@dataclass
class Problems:
    """Problems found while reading gold and predictions, each with file and line."""

    items: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    invalid_codes: dict[str, int] = field(default_factory=dict)

    def add(self, path: str | Path, line: int | None, message: str) -> None:
        self.items.append(f"{path}:{line}: {message}" if line else f"{path}: {message}")


_CHUNK = 20_000


def _parse_lines(handle):
    """``(line number, object, error)`` for each non-blank line. Lines are parsed a chunk at a
    time as one JSON array (one C call, far faster than one call per line); a chunk that
    fails is parsed line by line so each error keeps its line number."""
    chunk: list[tuple[int, str]] = []

    def flush():
        try:
            parsed = json.loads("[" + ",".join(text for _, text in chunk) + "]")
        except json.JSONDecodeError:
            parsed = None
        if parsed is not None and len(parsed) == len(chunk):
            for (number, _), data in zip(chunk, parsed, strict=True):
                yield number, data, None
            return
        for number, text in chunk:
            try:
                yield number, json.loads(text), None
            except json.JSONDecodeError as exc:
                yield number, None, exc

    for number, line in enumerate(handle, start=1):
        if line.strip():
            chunk.append((number, line))
            if len(chunk) == _CHUNK:
                yield from flush()
                chunk = []
    if chunk:
        yield from flush()


def _normalise_all(raw: list, canonical: dict[str, str], problems: Problems | None) -> set[str]:
    """Normalise a note's codes, remembering valid spellings; invalid predicted codes are
    counted in ``problems``."""
    codes = set()
    for value in raw:
        if value.__class__ is not str:  # synth rows carry {"code": ..., ...}
            value = str(value.get("code", "")) if isinstance(value, dict) else str(value)
        code, system = normalize_code(value)
        if system == INVALID:
            if problems is not None:
                problems.invalid_codes[code] = problems.invalid_codes.get(code, 0) + 1
        else:
            canonical[value] = code
        codes.add(code)
    return codes


def read_jsonl(path: Path, problems: Problems, *, role: str) -> dict[str, NoteLabels]:
    """Notes of a JSONL file; malformed lines, duplicates and empty files are reported."""
    notes: dict[str, NoteLabels] = {}
    canonical: dict[str, str] = {}  # raw spelling -> normalised code, valid codes only
    predictions = role == "prediction"
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise MedcodeError(f"{path}: cannot read the {role} file ({exc.strerror})") from None
    with handle:
        for number, data, error in _parse_lines(handle):
            if error is None:
                try:
                    note_id = str(data["id"])
                    raw = data.get("codes", [])
                    if not isinstance(raw, list):
                        raise ValueError("'codes' must be a list")
                except (KeyError, TypeError, AttributeError, ValueError) as exc:
                    error = exc
            if error is not None:
                problems.add(path, number, f"malformed {role} line skipped ({error})")
                continue
            if note_id in notes:
                problems.add(
                    path,
                    number,
                    f"duplicate id {note_id!r} (first on line "
                    f"{notes[note_id].line}); later line ignored",
                )
                continue
            try:  # fast path: every code already seen and valid
                codes = {canonical[value] for value in raw}
            except (KeyError, TypeError):
                codes = _normalise_all(raw, canonical, problems if predictions else None)
            notes[note_id] = NoteLabels(
                note_id, codes, data.get("note_type"), data.get("split"), line=number
            )
    if not notes:
        problems.add(path, None, f"the {role} file holds no notes")
    return notes


def read_gold(path: Path, problems: Problems) -> dict[str, NoteLabels]:
    """Gold from a JSONL file or a ``medcode synth`` output folder."""
    if path.is_dir():
        from medcode.synth.card import read_rows

        if not (path / "data").is_dir():
            raise MedcodeError(f"{path}: a gold folder must be a medcode synth output (data/)")
        notes = {}
        for row in read_rows(path, ["id", "split", "note_type", "codes"]):
            notes[row["id"]] = NoteLabels(
                row["id"],
                {c["code"] for c in row["codes"]},
                row["note_type"],
                row["split"],
                {c["code"]: tuple(c["categories"]) for c in row["codes"]},
            )
        if not notes:
            problems.add(path, None, "the gold folder holds no notes")
        return notes
    return read_jsonl(path, problems, role="gold")


def align(
    gold: dict[str, NoteLabels],
    predicted: dict[str, NoteLabels],
    problems: Problems,
    pred_path: Path,
) -> dict[str, NoteLabels]:
    """Report predictions for unknown note ids (ignored) and gold notes without a prediction
    (listed; they count as empty predictions when scored). Returns ``predicted``."""
    unknown = [note_id for note_id in predicted if note_id not in gold]
    for note_id in unknown[:50]:
        problems.add(
            pred_path,
            predicted[note_id].line,
            f"prediction for unknown note id {note_id!r} ignored",
        )
    if len(unknown) > 50:
        problems.add(pred_path, None, f"... and {len(unknown) - 50} more unknown note ids")
    problems.missing.extend(note_id for note_id in gold if note_id not in predicted)
    return predicted
