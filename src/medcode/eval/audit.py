"""The coder audit: how far a coder (human or model) and a gold key agree, and every
disagreement note by note, with the rule that produced each missed gold code.

``medcode eval --gold DIR/key.jsonl --pred CODER.jsonl --out RUN`` writes it as
``RUN/audit.md`` and ``RUN/audit.json`` (automatically for a key written by ``medcode synth
audit-sample``; ``--audit`` for any gold). Agreement in each direction:

- precision: the share of the coder's codes that the key holds too (tp / (tp + fp));
- recall: the share of the key's codes that the coder found (tp / (tp + fn)).

The gold and predictions are read and normalised by :mod:`medcode.eval.formats`, the same as
for the metrics, so these counts are eval's micro counts.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from medcode.eval.formats import INVALID, NoteLabels, Problems, normalize_code

DETAIL = "detail"  # the key's per-code field (see medcode.synth.audit_sample)
TOP = 10
NO_RULE = "(no rule in the key)"


def is_audit_key(path: Path) -> bool:
    """Whether ``path`` is a JSONL gold whose first note carries per-code rules (a key from
    ``medcode synth audit-sample``)."""
    if not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    data = json.loads(line)
                    details = data.get(DETAIL) if isinstance(data, dict) else None
                    return isinstance(details, list) and any(
                        isinstance(d, dict) and d.get("rule") for d in details
                    )
    except (OSError, ValueError):
        return False
    return False


def code_description(code: str) -> str:
    """A normalised code's description from the terminology's one lookup
    (:func:`medcode.terminology.lookup.describe`), or why there is none."""
    from medcode.errors import CodeError
    from medcode.records import System
    from medcode.terminology.lookup import describe

    normalised, system = normalize_code(code)
    if system == INVALID:
        return "(not a valid code)"
    try:
        return describe(System(system), normalised).description
    except (CodeError, ValueError):
        return f"({system}, not in medcode's table)"


def _rule_info(rule: str) -> tuple[str, str]:
    """``(summary, guideline source)`` of a rule from the policy's rule registry ("" for a
    rule it does not know)."""
    from medcode.policy.rules import RULES

    registered = RULES.get(rule)
    return (registered.summary, registered.source) if registered else ("", "")


def _detail_by_code(details) -> dict[str, dict]:
    """The key's per-code entries by normalised code (first entry of a code wins)."""
    found: dict[str, dict] = {}
    for item in details or ():
        if isinstance(item, dict) and item.get("code"):
            found.setdefault(normalize_code(str(item["code"]))[0], item)
    return found


def _read_jsonl_details(path: Path, ids: set[str]) -> dict[str, tuple[str | None, dict]]:
    """``id -> (text or None, {code: detail})`` from a gold JSONL (a ``detail`` list, or codes
    written as objects like synth rows), with texts from the line's ``text`` or from the
    ``notes.jsonl`` beside the gold (the ``audit-sample`` and ``eval codiesp`` layouts)."""
    found: dict[str, tuple[str | None, dict]] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                data = json.loads(line)
                note_id = str(data["id"])
            except (ValueError, KeyError, TypeError):
                continue
            if note_id not in ids or note_id in found:
                continue
            details = data.get(DETAIL)
            if not isinstance(details, list):
                codes = data.get("codes")
                details = (
                    [c for c in codes if isinstance(c, dict)] if isinstance(codes, list) else []
                )
            text = data.get("text") if isinstance(data.get("text"), str) else None
            found[note_id] = (text, _detail_by_code(details))
    beside = path.parent / "notes.jsonl"
    missing = {i for i in ids if found.get(i, (None, {}))[0] is None}
    if missing and beside.is_file() and beside.resolve() != path.resolve():
        with beside.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    data = json.loads(line)
                    note_id, text = str(data["id"]), data["text"]
                except (ValueError, KeyError, TypeError):
                    continue
                if note_id in missing and isinstance(text, str):
                    found[note_id] = (text, found.get(note_id, (None, {}))[1])
                    missing.discard(note_id)
    return found


def _read_corpus_details(
    corpus: Path, ids: set[str], texts_for: set[str]
) -> dict[str, tuple[str | None, dict]]:
    """The same from a ``medcode synth`` folder; sources (which the policy engine is run for)
    only for the notes in ``texts_for``, the notes with a disagreement."""
    from medcode.synth.audit_sample import code_details
    from medcode.synth.card import read_rows

    found: dict[str, tuple[str | None, dict]] = {}
    for row in read_rows(corpus, ["id", "text", "codes", "encounter"]):
        note_id = str(row["id"])
        if note_id not in ids or note_id in found:
            continue
        if note_id in texts_for:
            details, _ = code_details(row)
            found[note_id] = (row.get("text"), _detail_by_code(details))
        else:
            found[note_id] = (None, _detail_by_code(row.get("codes")))
    return found


def build_audit(
    gold_path: Path,
    pred_path: Path,
    *,
    splits: set[str] | None = None,
    diagnoses_only: bool = False,
) -> dict[str, object]:
    """The audit as one JSON-ready object: agreement overall, by code system and by gold
    rule, the most frequent disagreements, and every note with one (text, missed gold codes
    with rule, source and evidence, extra codes with descriptions)."""
    from medcode.eval import codiesp
    from medcode.eval.formats import align, read_gold, read_jsonl
    from medcode.eval.metrics import prf

    problems = Problems()  # eval's scoring reports these; the audit reads quietly
    gold = read_gold(gold_path, problems)
    if splits:
        gold = {key: note for key, note in gold.items() if note.split in splits}
    predicted = align(gold, read_jsonl(pred_path, problems, role="prediction"), problems, pred_path)
    if diagnoses_only:
        gold, predicted = codiesp.diagnoses_only(gold), codiesp.diagnoses_only(predicted)
    empty = NoteLabels("", set())
    disagreeing = {
        note_id
        for note_id, note in gold.items()
        if note.codes != predicted.get(note_id, empty).codes
    }
    if gold_path.is_dir():
        known = _read_corpus_details(gold_path, set(gold), disagreeing)
    else:
        known = _read_jsonl_details(gold_path, set(gold))

    tp = fp = fn = 0
    by_system: dict[str, Counter] = {}
    by_rule: dict[str, Counter] = {}
    missed_codes: Counter = Counter()
    extra_codes: Counter = Counter()
    descriptions: dict[str, str] = {}
    notes = []
    has_rules = False

    def describe(code: str, detail: dict | None = None) -> str:
        if detail and detail.get("description"):
            return str(detail["description"])
        if code not in descriptions:
            descriptions[code] = code_description(code)
        return descriptions[code]

    for note_id, note in gold.items():
        pred = predicted.get(note_id, empty).codes
        text, details = known.get(note_id, (None, {}))
        order = [c for c in details if c in note.codes] + sorted(note.codes - set(details))
        agreed = [c for c in order if c in pred]
        missed = [c for c in order if c not in pred]
        extra = sorted(pred - note.codes)
        tp, fp, fn = tp + len(agreed), fp + len(extra), fn + len(missed)
        for code, kind in [(c, "tp") for c in agreed] + [(c, "fn") for c in missed]:
            detail = details.get(code) or {}
            system = detail.get("system") or normalize_code(code)[1]
            by_system.setdefault(system, Counter())[kind] += 1
            rule = str(detail.get("rule") or "")
            has_rules = has_rules or bool(rule)
            by_rule.setdefault(rule or NO_RULE, Counter())[kind] += 1
        for code in extra:
            by_system.setdefault(normalize_code(code)[1], Counter())["fp"] += 1
        missed_codes.update(missed)
        extra_codes.update(extra)
        if not missed and not extra:
            continue
        entry: dict[str, object] = {
            "id": note_id,
            "note_type": note.note_type,
            "split": note.split,
            "predicted": note_id in predicted,
            "agreed": agreed,
            "missed": [],
            "extra": [
                {"code": c, "system": normalize_code(c)[1], "description": describe(c)}
                for c in extra
            ],
            "text": text,
        }
        for code in missed:
            detail = details.get(code) or {}
            rule = str(detail.get("rule") or "")
            entry["missed"].append(
                {
                    "code": code,
                    "system": detail.get("system") or normalize_code(code)[1],
                    "description": describe(code, detail),
                    "rule": rule,
                    "rule_summary": _rule_info(rule)[0],
                    "source": str(detail.get("source") or ""),
                    "evidence": [
                        e.get("text") or (text[e["start"] : e["end"]] if text else "")
                        for e in detail.get("evidence") or ()
                        if isinstance(e, dict) and ("text" in e or "start" in e)
                    ],
                }
            )
        notes.append(entry)

    def scores(counts: Counter) -> dict[str, object]:
        return {
            **prf(counts["tp"], counts["fp"], counts["fn"]),
            **{k: counts[k] for k in ("tp", "fp", "fn")},
        }

    overall = Counter(tp=tp, fp=fp, fn=fn)
    rules = {
        rule: {
            "gold": counts["tp"] + counts["fn"],
            "found": counts["tp"],
            "missed": counts["fn"],
            "recall": counts["tp"] / (counts["tp"] + counts["fn"]),
            "summary": _rule_info(rule)[0],
            "source": _rule_info(rule)[1],
        }
        for rule, counts in sorted(by_rule.items(), key=lambda item: (-item[1]["fn"], item[0]))
    }
    return {
        "gold": str(gold_path),
        "predictions": str(pred_path),
        "splits": sorted(splits) if splits else None,
        "diagnoses_only": diagnoses_only,
        "key_has_rules": has_rules,
        "notes": len(gold),
        "notes_agreeing": len(gold) - len(notes),
        "notes_disagreeing": len(notes),
        "notes_without_prediction": sorted(set(gold) - set(predicted)),
        "agreement": scores(overall),
        "by_system": {system: scores(c) for system, c in sorted(by_system.items())},
        "by_rule": rules,
        "top_missed": [
            {"code": c, "count": n, "description": describe(c)}
            for c, n in sorted(missed_codes.items(), key=lambda i: (-i[1], i[0]))[:TOP]
        ],
        "top_extra": [
            {"code": c, "count": n, "description": describe(c)}
            for c, n in sorted(extra_codes.items(), key=lambda i: (-i[1], i[0]))[:TOP]
        ],
        "disagreements": notes,
    }


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fence(text: str) -> str:
    longest, run = 0, 0
    for character in text:
        run = run + 1 if character == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def render_markdown(audit: dict) -> str:
    """``audit.md``: the figures, then every disagreement note by note."""
    a = audit["agreement"]
    lines = [
        "# Coder audit",
        "",
        f"Gold key: `{audit['gold']}`; coder: `{audit['predictions']}`"
        + (f"; split(s) {', '.join(audit['splits'])}" if audit["splits"] else "")
        + ("; ICD-10-CM only" if audit["diagnoses_only"] else "")
        + ".",
        "",
        "Each disagreement is either the coder's error or the key's (a rule, the catalog or "
        "the note's wording): read the note and decide. A rule that many missed codes share "
        "is the first place to look for a corpus problem.",
        "",
        "## Agreement",
        "",
        "| measure | value | counts |",
        "|---|---:|---|",
        f"| precision: the coder's codes the key holds too | {a['precision']:.3f} | "
        f"{a['tp']} of {a['tp'] + a['fp']} |",
        f"| recall: the key's codes the coder found | {a['recall']:.3f} | "
        f"{a['tp']} of {a['tp'] + a['fn']} |",
        f"| F1 | {a['f1']:.3f} | |",
        f"| notes in full agreement | {audit['notes_agreeing']} of {audit['notes']} | |",
    ]
    if audit["notes_without_prediction"]:
        missing = audit["notes_without_prediction"]
        lines.append(
            f"| notes the coder did not code (scored as empty) | {len(missing)} | "
            f"{_cell(', '.join(missing[:10]))}{' …' if len(missing) > 10 else ''} |"
        )
    lines += ["", "## By code system", "", "| system | precision | recall | tp | fp | fn |"]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for system, s in audit["by_system"].items():
        lines.append(
            f"| {system} | {s['precision']:.3f} | {s['recall']:.3f} | {s['tp']} | {s['fp']} | "
            f"{s['fn']} |"
        )
    lines += ["", "## Gold codes by the rule that produced them", ""]
    if not audit["key_has_rules"]:
        lines += ["The key names no rules (a plain gold file): disagreements are listed below.", ""]
    lines += ["| rule | gold codes | found | missed | recall | what it does (source) |"]
    lines.append("|---|---:|---:|---:|---:|---|")
    for rule, r in audit["by_rule"].items():
        what = r["summary"] + (f" ({r['source']})" if r["source"] else "")
        lines.append(
            f"| {_cell(rule)} | {r['gold']} | {r['found']} | {r['missed']} | {r['recall']:.3f} | "
            f"{_cell(what)} |"
        )
    for key, title in (
        ("top_missed", "Most often missed (in the key, not coded)"),
        ("top_extra", "Most often added (coded, not in the key)"),
    ):
        if audit[key]:
            lines += ["", f"## {title}", "", "| code | notes | description |", "|---|---:|---|"]
            lines += [
                f"| {_cell(e['code'])} | {e['count']} | {_cell(e['description'])} |"
                for e in audit[key]
            ]
    lines += ["", f"## Disagreements, note by note ({audit['notes_disagreeing']})", ""]
    if not audit["disagreements"]:
        lines += ["None: the coder and the key agree on every note.", ""]
    for note in audit["disagreements"]:
        about = ", ".join(str(v) for v in (note["note_type"], note["split"]) if v)
        lines += [
            f"### {note['id']}" + (f" ({about})" if about else ""),
            "",
            f"{len(note['missed'])} missed, {len(note['extra'])} extra"
            + ("" if note["predicted"] else "; the coder did not code this note")
            + (f"; agreed: {', '.join(note['agreed'])}" if note["agreed"] else "; nothing agreed")
            + ".",
            "",
        ]
        if note["missed"]:
            lines += ["Missed (in the key, not in the coder's list):", ""]
            for m in note["missed"]:
                line = f"- **{m['code']}** {m['description']}"
                if m["rule"]:
                    line += f". Rule `{m['rule']}`"
                    if m["rule_summary"]:
                        line += f": {m['rule_summary']}"
                if m["source"]:
                    line += f". Source: {m['source']}"
                if m["evidence"]:
                    quoted = "; ".join(
                        f"“{' '.join(e.split())}”" for e in dict.fromkeys(m["evidence"])
                    )
                    line += f". Evidence: {quoted}"
                lines.append(line + ".")
            lines.append("")
        if note["extra"]:
            lines += ["Extra (in the coder's list, not in the key):", ""]
            lines += [f"- **{e['code']}** {e['description']}" for e in note["extra"]]
            lines.append("")
        if note["text"]:
            fence = _fence(note["text"])
            lines += ["Note:", "", f"{fence}text", note["text"].rstrip("\n"), fence, ""]
        else:
            lines += ["(no note text found beside the gold)", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_audit(audit: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    markdown, data = out / "audit.md", out / "audit.json"
    markdown.write_text(render_markdown(audit), encoding="utf-8")
    data.write_text(json.dumps(audit, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return markdown, data


def summary_lines(audit: dict) -> list[str]:
    a = audit["agreement"]
    lines = [
        f"audit: precision {a['precision']:.3f} (the coder's codes the key holds too, "
        f"{a['tp']} of {a['tp'] + a['fp']}), recall {a['recall']:.3f} (the key's codes the "
        f"coder found, {a['tp']} of {a['tp'] + a['fn']}); {audit['notes_disagreeing']} of "
        f"{audit['notes']} notes disagree"
    ]
    missed_rules = [(r, v["missed"], v["gold"]) for r, v in audit["by_rule"].items() if v["missed"]]
    if audit["key_has_rules"] and missed_rules:
        lines.append(
            "missed by rule: "
            + ", ".join(f"{r} {m} of {g}" for r, m, g in missed_rules[:5])
            + (" …" if len(missed_rules) > 5 else "")
        )
    return lines
