"""``medcode synth audit-sample``: a seeded, stratified sample of a corpus for blind coding.

The sample folder holds ``notes.jsonl`` (what the coder sees: the note and its encounter
header, never a code), ``key.jsonl`` (the gold codes in order, each with its system,
description, rule, source and evidence; a gold file ``medcode eval --gold`` reads),
``README.md`` (the coder's instructions) and ``sample.json`` (the options, the seed and the
counts). ``medcode eval --gold DIR/key.jsonl --pred CODER.jsonl --out RUN`` then scores the
coder and writes the audit report (:mod:`medcode.eval.audit`).

Sampling: the notes of the chosen splits are grouped into strata (profile x note type); the
strata are visited round-robin in a seeded order, one note from each per round, a stratum
dropping out when it runs out, until N notes are taken. Every stratum is represented as
soon as N reaches the number of strata, and the sample is balanced across note types
rather than proportional to them.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medcode.errors import MedcodeError
from medcode.synth.writer import SPLITS

FILES = ("notes.jsonl", "key.jsonl", "README.md", "sample.json")


class SampleError(MedcodeError):
    """An audit sample that cannot be drawn or written."""

    exit_code = 2


@dataclass
class AuditSample:
    """What was written: the note ids in sample order and what the caller reports."""

    out: Path
    ids: list[str]
    requested: int
    available: int
    strata: Counter = field(default_factory=Counter)  # "profile/note_type" -> notes sampled
    strata_available: Counter = field(default_factory=Counter)
    policy_differs: list[str] = field(default_factory=list)  # notes the policy now codes otherwise
    codes_in_text: list[str] = field(default_factory=list)  # notes whose text names a gold code

    @property
    def short(self) -> bool:
        return self.requested > self.available


def _corpus_profile(corpus: Path) -> str:
    """The profile named in ``synth_config.json`` ("" when the corpus has none)."""
    try:
        config = json.loads((corpus / "synth_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    profile = config.get("profile") if isinstance(config, dict) else None
    return str(profile) if profile else ""


def check_corpus(corpus: Path) -> None:
    if not corpus.exists():
        raise SampleError(f"{corpus}: no such corpus folder")
    if not (corpus / "data").is_dir():
        raise SampleError(f"{corpus}: not a corpus folder written by medcode synth (no data/)")


def parse_splits(text: str | None) -> set[str] | None:
    """``--split`` (comma-separated) as a set; None for all splits."""
    if not text:
        return None
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(SPLITS))
    if unknown or not wanted:
        raise SampleError(
            f"--split {text!r}: unknown split(s) {', '.join(unknown) or '(none given)'}; "
            f"use {', '.join(SPLITS)}"
        )
    return wanted


def choose(
    corpus: Path, n: int, seed: int, splits: set[str] | None = None
) -> tuple[list[tuple[str, str]], Counter]:
    """``([(note id, stratum), ...] in sample order, notes available per stratum)``.

    Deterministic for (corpus, n, seed, splits): whatever order the shards list their rows
    in, ids are sorted within a stratum before the seeded shuffle."""
    from medcode.synth.card import read_rows

    profile = _corpus_profile(corpus)
    pool: dict[str, list[str]] = {}
    for row in read_rows(corpus, ["id", "split", "note_type"]):
        if splits is not None and row.get("split") not in splits:
            continue
        stratum = f"{row.get('profile') or profile or '-'}/{row.get('note_type') or '-'}"
        pool.setdefault(stratum, []).append(str(row["id"]))
    available = Counter({stratum: len(ids) for stratum, ids in pool.items()})
    rng = random.Random(f"medcode audit-sample {seed}")
    order = sorted(pool)
    rng.shuffle(order)
    for stratum in order:
        pool[stratum].sort()
        rng.shuffle(pool[stratum])
    chosen: list[tuple[str, str]] = []
    while len(chosen) < n and order:
        for stratum in order:
            if pool[stratum] and len(chosen) < n:
                chosen.append((pool[stratum].pop(), stratum))
        order = [stratum for stratum in order if pool[stratum]]
    return chosen, available


def _evidence(text: str, spans) -> list[dict[str, object]]:
    found = []
    for span in spans or ():
        start, end = int(span["start"]), int(span["end"])
        found.append({"start": start, "end": end, "text": text[start:end]})
    return found


def _policy_codes(encounter_json: str | None):
    """The policy engine's codes for a stored encounter now, or None when it cannot say."""
    if not encounter_json:
        return None
    from medcode.policy import code
    from medcode.records import Encounter

    try:
        return code(Encounter.from_dict(json.loads(encounter_json)), trace=False).codes
    except (MedcodeError, ValueError, TypeError, KeyError):
        return None


def code_details(row: dict) -> tuple[list[dict[str, object]], bool | None]:
    """Each gold code of a corpus row with its system, description, categories, rule, the
    rule's source and its evidence (offsets and the text they cover), in gold order; and
    whether the policy engine, run again on the row's encounter, gives the same codes
    (None when the row has no encounter).

    The source is the row's own when it carries one; else the one the policy engine gives
    for the same code and rule (a table entry's citation, e.g. a combination code's); else
    the rule's guideline section from the rule registry."""
    from medcode.policy.rules import RULES

    text = row.get("text") or ""
    now = _policy_codes(row.get("encounter"))
    sources = {(c.code, c.rule): c.source for c in now} if now is not None else {}
    details = []
    for item in row.get("codes") or ():
        rule = item.get("rule") or ""
        registered = RULES.get(rule)
        source = (
            item.get("source")
            or sources.get((item["code"], rule))
            or (registered.source if registered else "")
        )
        details.append(
            {
                "code": item["code"],
                "system": item.get("system") or "",
                "description": item.get("description") or "",
                "categories": list(item.get("categories") or ()),
                "rule": rule,
                "source": source,
                "evidence": _evidence(text, item.get("evidence")),
            }
        )
    agrees = None if now is None else [c.code for c in now] == [d["code"] for d in details]
    return details, agrees


def _header(row: dict) -> dict[str, object]:
    """What a coder knows besides the text: the encounter's registration data (setting,
    visit kind, new or established patient). None of it is a code."""
    try:
        encounter = json.loads(row.get("encounter") or "{}")
    except ValueError:
        encounter = {}
    visit = encounter.get("visit") or {}
    header: dict[str, object] = {"note_type": row.get("note_type")}
    if encounter.get("setting"):
        header["setting"] = encounter["setting"]
    if visit.get("kind"):
        header["visit"] = visit["kind"]
    if "new_patient" in visit:
        header["new_patient"] = bool(visit["new_patient"])
    return header


def _names_code(text: str, code: str) -> bool:
    """Whether ``text`` writes ``code`` (with or without its dot) as a word of its own."""
    spellings = {code, code.replace(".", "")}
    return any(re.search(rf"(?<![\w.]){re.escape(s)}(?![\w])", text) for s in spellings)


def _readme(sample: AuditSample, corpus: Path, seed: int, splits: set[str] | None) -> str:
    out = sample.out
    strata = "\n".join(
        f"| {stratum} | {count} | {sample.strata_available[stratum]} |"
        for stratum, count in sorted(sample.strata.items())
    )
    short = (
        f"\nThe corpus holds only {sample.available} note(s) in the chosen split(s), fewer than "
        f"the {sample.requested} asked for: all of them are here.\n"
        if sample.short
        else ""
    )
    return f"""# Coding audit: {len(sample.ids)} notes

A blind coding sample of the synthetic corpus `{corpus}` (seed {seed}; splits:
{", ".join(sorted(splits)) if splits else "all"}), drawn by `medcode synth audit-sample`.
{short}
## For the coder

Code each note in `notes.jsonl` from its text, as you would code the encounter for a
claim: ICD-10-CM diagnoses (first-listed first) and CPT/HCPCS procedures, including the E/M
level. Each line is one note:

```json
{{"id": "...", "note_type": "office_progress", "setting": "outpatient", "visit": "office",
 "new_patient": false, "text": "..."}}
```

`setting`, `visit` and `new_patient` are the encounter's registration data (place of
service, visit type, new or established patient): what a coder knows besides the note.

Write your codes to `CODER.jsonl`, one line per note, in any order:

```json
{{"id": "<the note's id>", "codes": ["<first-listed diagnosis>", "<other code>", "..."]}}
```

A code can be written with or without its dot, in any case (`E11.22`, `e1122`). A note left
out counts as coded with no codes.

Do not open `key.jsonl`: it holds the answers.

## For the auditor

Hand the coder `notes.jsonl` and this file only. When `CODER.jsonl` comes back:

```bash
medcode eval --gold {out}/key.jsonl --pred CODER.jsonl --out RUN
```

prints precision (the coder's codes the key agrees with) and recall (the key's codes the
coder found), and writes `RUN/metrics.json`, `RUN/audit.md` (every disagreement, note by
note, with the note's text, each missed code's rule, source and evidence, and each extra
code's description) and `RUN/audit.json` (the same figures for scripts). A machine coder can
code the same notes: `medcode predict --model MODEL --input {out}/notes.jsonl --out
CODER.jsonl`.

## The sample

| stratum (profile/note type) | notes here | notes in the corpus |
|---|---:|---:|
{strata}
"""


def write_audit_sample(
    corpus: Path,
    out: Path,
    *,
    n: int,
    seed: int = 0,
    splits: set[str] | None = None,
    force: bool = False,
) -> AuditSample:
    """Draw the sample and write ``notes.jsonl``, ``key.jsonl``, ``README.md`` and
    ``sample.json`` into ``out``. Asking for more notes than the corpus holds writes all of
    them (``AuditSample.short``)."""
    from medcode.synth.card import read_rows

    check_corpus(corpus)
    if n < 1:
        raise SampleError(f"--n must be at least 1 (got {n})")
    if out.exists() and not out.is_dir():
        raise SampleError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SampleError(
            f"{out}: folder exists and is not empty; choose another --out or add --force"
        )
    chosen, available = choose(corpus, n, seed, splits)
    total = sum(available.values())
    if not total:
        where = f" in split(s) {', '.join(sorted(splits))}" if splits else ""
        raise SampleError(f"{corpus}: no notes{where}")
    sample = AuditSample(
        out,
        [note_id for note_id, _ in chosen],
        n,
        total,
        Counter(stratum for _, stratum in chosen),
        available,
    )
    wanted = set(sample.ids)
    rows: dict[str, dict] = {}
    columns = ["id", "split", "note_type", "text", "codes", "encounter"]
    for row in read_rows(corpus, columns):
        if str(row["id"]) in wanted and str(row["id"]) not in rows:
            rows[str(row["id"])] = row
            if len(rows) == len(wanted):
                break
    out.mkdir(parents=True, exist_ok=True)
    notes_lines, key_lines = [], []
    for note_id in sample.ids:
        row = rows[note_id]
        text = row.get("text") or ""
        details, agrees = code_details(row)
        if agrees is False:
            sample.policy_differs.append(note_id)
        if any(_names_code(text, d["code"]) for d in details):
            sample.codes_in_text.append(note_id)
        notes_lines.append({"id": note_id, **_header(row), "text": text})
        key_lines.append(
            {
                "id": note_id,
                "codes": [d["code"] for d in details],
                "note_type": row.get("note_type"),
                "split": row.get("split"),
                "detail": details,
            }
        )
    for name, lines in (("notes.jsonl", notes_lines), ("key.jsonl", key_lines)):
        with (out / name).open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(_readme(sample, corpus, seed, splits), encoding="utf-8")
    (out / "sample.json").write_text(
        json.dumps(
            {
                "corpus": str(corpus),
                "n": n,
                "seed": seed,
                "splits": sorted(splits) if splits else None,
                "notes": len(sample.ids),
                "available": total,
                "strata": dict(sorted(sample.strata.items())),
                "strata_available": dict(sorted(available.items())),
                "policy_differs": sample.policy_differs,
                "codes_in_text": sample.codes_in_text,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return sample
