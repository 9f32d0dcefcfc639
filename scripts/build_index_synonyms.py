"""List the Alphabetic Index synonyms of the catalog's conditions for review (development time).

    .venv/bin/python scripts/build_index_synonyms.py [--out FILE]

For every catalog form without laterality, the index phrases a coder reads back to the form's
code alone (:func:`medcode.synth.sampler.index_phrases`) that the catalog does not already
write become rows of ``src/medcode/data/synth/index_synonyms.csv`` (columns ``code, phrase,
decision, reason, index_path``). Rows already in the file keep their decision and reason;
new rows are ``pending`` until a coder reviews them (``accept``: a clinician writes it for
this condition and a coder assigns exactly this code from it; ``reject``: archaic, an
eponym nobody uses, another condition the index sends to the same code, or too vague).
Only accepted rows reach the notes (:mod:`medcode.synth.index_synonyms`).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from medcode.synth.index_synonyms import COLUMNS, synonyms_path

REPO = Path(__file__).resolve().parents[1]


def candidates() -> list[dict[str, str]]:
    """One row per (form code, index phrase) the catalog does not write yet, catalog order."""
    from medcode.synth.catalog import shipped_catalog
    from medcode.synth.sampler import _phrase_dict, index_phrases
    from medcode.terminology.index_terms import records_for

    rows, seen = [], set()
    for concept in shipped_catalog().concepts.values():
        for form in concept.forms:
            phrases = _phrase_dict(concept, form)
            if any("{side}" in p for options in phrases.values() for p in options):
                continue  # the index's phrase names no side: the code's laterality would go
            written = {p.lower() for options in phrases.values() for p in options}
            for phrase in index_phrases(form.code):
                if phrase in written or (form.code, phrase) in seen:
                    continue
                seen.add((form.code, phrase))
                path = next(r.path for r in records_for(form.code) if r.term == phrase)
                rows.append(
                    {"code": form.code, "phrase": phrase, "decision": "pending", "reason": "",
                     "index_path": path}
                )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=synonyms_path())
    args = parser.parse_args()
    kept: dict[tuple[str, str], dict[str, str]] = {}
    if args.out.exists():
        with args.out.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                kept[row["code"], row["phrase"]] = {k: row.get(k, "") for k in COLUMNS}
    rows = list(kept.values())
    new = [row for row in candidates() if (row["code"], row["phrase"]) not in kept]
    rows += new
    with args.out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    decided = sum(row["decision"] != "pending" for row in rows)
    print(f"{args.out}: {len(rows)} rows ({len(new)} new, {decided} decided)")


if __name__ == "__main__":
    main()
