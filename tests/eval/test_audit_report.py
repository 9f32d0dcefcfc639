"""The coder audit of ``medcode eval``: agreement with a key, every disagreement with its rule.

The 3-note fixture (tests/assets/eval/audit/), by hand:

    note a  key E11.22 N18.31 99214     coder E11.22 99214          tp 2  fp 0  fn 1 (N18.31)
    note b  key J44.1 Z87.891 99213     coder j441 Z87.891 99214    tp 2  fp 1  fn 1 (99213)
    note c  key I10 99213               coder I10 99213             tp 2  fp 0  fn 0

    precision = 6 / 7 (the coder's codes the key holds too), recall = 6 / 8 (the key's codes
    the coder found); notes a and b disagree, c agrees.
"""

import json
from pathlib import Path

import pytest

from medcode.eval.audit import build_audit, render_markdown
from medcode.records import System
from medcode.terminology.lookup import describe

ASSETS = Path(__file__).parents[1] / "assets" / "eval"
KEY = ASSETS / "audit" / "key.jsonl"
CODER = ASSETS / "audit" / "coder.jsonl"


@pytest.fixture
def audited(cli, tmp_path):
    status, out, err = cli("eval", "--gold", str(KEY), "--pred", str(CODER), "--out", str(tmp_path))
    assert status == 0, err
    return out, json.loads((tmp_path / "audit.json").read_text()), (tmp_path / "audit.md")


def test_agreement_matches_the_hand_computed_values(audited):
    out, audit, _ = audited
    agreement = audit["agreement"]
    assert (agreement["tp"], agreement["fp"], agreement["fn"]) == (6, 1, 2)
    assert agreement["precision"] == pytest.approx(6 / 7)
    assert agreement["recall"] == pytest.approx(6 / 8)
    assert audit["notes"] == 3 and audit["notes_agreeing"] == 1 and audit["notes_disagreeing"] == 2
    assert (
        "audit: precision 0.857" in out and "recall 0.750" in out and "2 of 3 notes disagree" in out
    )
    cpt = audit["by_system"]["CPT"]  # 99214 of a and 99213 of c agree; b's 99213 vs 99214
    assert (cpt["tp"], cpt["fp"], cpt["fn"]) == (2, 1, 1)
    icd = audit["by_system"]["ICD-10-CM"]
    assert (icd["tp"], icd["fp"], icd["fn"]) == (4, 0, 1)


def test_the_audit_agrees_with_evals_micro_counts(cli, tmp_path):
    status, out, _ = cli("eval", "--gold", str(KEY), "--pred", str(CODER), "--json")
    result = json.loads(out)
    micro, audit = result["micro"], result["audit"]["agreement"]
    assert status == 0
    assert (micro["tp"], micro["fp"], micro["fn"]) == (audit["tp"], audit["fp"], audit["fn"])
    assert micro["precision"] == audit["precision"] and micro["recall"] == audit["recall"]


def test_disagreements_are_listed_with_their_rules(audited):
    _, audit, markdown = audited
    by_id = {note["id"]: note for note in audit["disagreements"]}
    assert sorted(by_id) == ["a", "b"]
    (missed,) = by_id["a"]["missed"]
    assert missed["code"] == "N18.31" and missed["rule"] == "combination.partner"
    assert "I.A.12.a" in missed["source"] and missed["evidence"] == ["CKD stage 3a"]
    assert missed["rule_summary"]  # from the policy's rule registry
    assert by_id["a"]["extra"] == [] and by_id["a"]["agreed"] == ["E11.22", "99214"]
    (missed,) = by_id["b"]["missed"]
    (extra,) = by_id["b"]["extra"]
    assert missed["code"] == "99213" and missed["rule"] == "em.office"
    assert extra == {
        "code": "99214",
        "system": "CPT",
        "description": describe(System.CPT, "99214").description,
    }
    assert by_id["a"]["text"].startswith("Follow-up of type 2 diabetes")  # from notes.jsonl
    rules = audit["by_rule"]
    assert rules["em.office"] == {**rules["em.office"], "gold": 3, "found": 2, "missed": 1}
    assert (
        rules["combination.partner"]["missed"] == 1 and rules["combination.partner"]["recall"] == 0
    )
    assert list(rules)[:2] == ["combination.partner", "em.office"]  # most missed first

    text = markdown.read_text()
    assert "| precision: the coder's codes the key holds too | 0.857 | 6 of 7 |" in text
    assert "| recall: the key's codes the coder found | 0.750 | 6 of 8 |" in text
    assert "### a (office_progress, test)" in text and "### b (office_progress, test)" in text
    assert "### c " not in text
    assert "**N18.31** Chronic kidney disease, stage 3a. Rule `combination.partner`" in text
    assert "Evidence: “CKD stage 3a”" in text
    assert "**99214** Office visit, established patient, moderate decision making" in text
    assert "COPD with acute exacerbation. Former smoker, quit 2015. MDM low." in text


def test_a_plain_gold_needs_audit_and_still_lists_the_disagreements(cli, tmp_path):
    gold, pred = ASSETS / "gold.jsonl", ASSETS / "pred.jsonl"
    assert cli("eval", "--gold", str(gold), "--pred", str(pred), "--out", str(tmp_path))[0] == 0
    assert not (tmp_path / "audit.md").exists()  # no rules in the gold: no audit unasked
    status, _, _ = cli(
        "eval", "--gold", str(gold), "--pred", str(pred), "--out", str(tmp_path), "--audit"
    )
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert status == 0 and not audit["key_has_rules"]
    assert (audit["agreement"]["tp"], audit["agreement"]["fp"], audit["agreement"]["fn"]) == (
        3,
        2,
        3,
    )
    by_id = {note["id"]: note for note in audit["disagreements"]}
    assert sorted(by_id) == ["a", "b", "c"]
    assert [m["code"] for m in by_id["b"]["missed"]] == ["I10"] and by_id["b"]["missed"][0][
        "rule"
    ] == ""
    assert by_id["a"]["extra"][0]["code"] == "Z79.4"
    text = (tmp_path / "audit.md").read_text()
    assert "The key names no rules" in text and "### b" in text and "**I10**" in text


def test_no_audit_turns_it_off(cli, tmp_path):
    status, out, _ = cli(
        "eval", "--gold", str(KEY), "--pred", str(CODER), "--out", str(tmp_path), "--no-audit"
    )
    assert status == 0 and not (tmp_path / "audit.md").exists() and "audit:" not in out


def test_notes_without_a_prediction_and_invalid_codes(tmp_path):
    pred = tmp_path / "coder.jsonl"
    pred.write_text(json.dumps({"id": "a", "codes": ["E11.22", "N18.31", "99214", "XYZ.9"]}) + "\n")
    audit = build_audit(KEY, pred)
    assert audit["notes_without_prediction"] == ["b", "c"]
    assert (audit["agreement"]["tp"], audit["agreement"]["fp"], audit["agreement"]["fn"]) == (
        3,
        1,
        5,
    )
    by_id = {note["id"]: note for note in audit["disagreements"]}
    assert by_id["a"]["extra"] == [
        {"code": "XYZ.9", "system": "invalid", "description": "(not a valid code)"}
    ]
    assert not by_id["c"]["predicted"] and by_id["c"]["agreed"] == []
    assert "the coder did not code this note" in render_markdown(audit)


def test_an_audit_on_a_corpus_folder(cli, tmp_path):
    from medcode.synth.card import read_rows
    from medcode.synth.generate import SynthConfig, run

    corpus = tmp_path / "corpus"
    run(SynthConfig(n=20, seed=11, format="jsonl"), corpus)
    rows = list(read_rows(corpus))
    first = rows[0]
    pred = tmp_path / "pred.jsonl"
    lines = []
    for row in rows:
        codes = [c["code"] for c in row["codes"]]
        lines.append(json.dumps({"id": row["id"], "codes": codes[1:] if row is first else codes}))
    pred.write_text("\n".join(lines) + "\n")
    audit = build_audit(corpus, pred)
    (note,) = audit["disagreements"]
    (missed,) = note["missed"]
    gold = first["codes"][0]
    assert note["id"] == first["id"] and note["text"] == first["text"]
    assert missed["code"] == gold["code"] and missed["rule"] == gold["rule"] and missed["source"]
    assert missed["evidence"] == [first["text"][e["start"] : e["end"]] for e in gold["evidence"]]
