"""Checks over a generated sample: gold codes, evidence, distractors, splits, determinism."""

import json
import re
from pathlib import Path

import pytest

from medcode.policy import code as policy_code
from medcode.records import Encounter, Status
from medcode.synth.card import read_rows
from medcode.synth.catalog import shipped_catalog
from medcode.synth.generate import SynthConfig, run
from medcode.synth.phrasings import shipped_phrasings
from medcode.synth.sampler import long_tail_phrases
from medcode.synth.templates import shipped_templates
from medcode.synth.writer import marker_path
from medcode.terminology import cpt, icd10cm

N = 400
CONFIG = SynthConfig(n=N, seed=7, shards=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    summary = run(CONFIG, out)
    assert summary == {"shards": 2, "written": 2, "kept": 0, "complete": True}
    return out


@pytest.fixture(scope="module")
def rows(corpus) -> list[dict]:
    found = list(read_rows(corpus))
    assert len(found) == N
    return found


def test_every_gold_code_is_billable_and_passes_the_engines_edits(rows):
    table = cpt.procedure_table()
    for row in rows:
        for item in row["codes"]:
            if item["system"] == "ICD-10-CM":
                assert icd10cm.is_billable(item["code"]), item
            else:
                assert item["code"] in table
        result = policy_code(Encounter.from_dict(json.loads(row["encounter"])))
        assert result.warnings == ()
        assert result.code_list == [item["code"] for item in row["codes"]]


def _phrase_parts(documented: str) -> list[list[str]]:
    """Every phrase the catalog (or the tabular) offers for a documented code, attributes
    filled in, split around ``{side}`` into the parts that must appear verbatim."""
    options = []
    for concept in shipped_catalog().concepts.values():
        for form in concept.forms:
            if form.code != documented:
                continue
            for phrases in concept.form_phrases(form).values():
                for phrase in phrases:
                    filled = phrase.format_map({**form.attributes, "side": "\0"})
                    options.append([p.strip().lower() for p in filled.split("\0") if p.strip()])
    options += [[p.lower()] for p in long_tail_phrases(documented)]
    return options


def _names(code: str) -> set[str]:
    """Every name a note may print for a procedure: its description and the clinicians' names
    for it (data/synth/phrasings.yaml)."""
    description = cpt.procedure_table()[code].description
    return {name.lower() for name in shipped_phrasings().aliases(code, description)}


def _acceptable(row: dict, item: dict, span_text: str) -> bool:
    """Whether the span text mentions the fact behind the code."""
    encounter = json.loads(row["encounter"])
    span = span_text.lower()
    if item["rule"].startswith(("em.", "preventive.")):
        return bool(span.strip())
    if item["rule"] == "procedure.documented":
        return span in _names(item["code"])
    if item["rule"].startswith("procedure.") or item["rule"] == "immunization.z23":
        # a claim rule's code (a product for the date, the professional component, Z23)
        # stands on the procedure the note documents
        documented = {name for p in encounter["procedures"] for name in _names(p["code"])}
        if item["rule"] == "procedure.blood_pressure":
            return bool(re.search(r"\d{2,3}", span))
        # in the ED and hospital the ECG is written as the physician's reading (93010)
        ecg = item["code"] == "93010" and "ecg" in span and "interpreted" in span
        return span in documented or ecg
    if item["rule"] == "bmi.z68":
        return re.search(r"\d+\.\d", span) is not None
    if item["rule"] == "medication.z79":
        return span in {(m.get("name") or "").lower() for m in encounter["medications"]}
    for problem in encounter["problems"]:
        for documented in (problem["code"], *problem.get("symptoms", ())):
            for parts in _phrase_parts(icd10cm.normalize(documented)):
                if parts and all(part in span for part in parts):
                    return True
    return False


def test_every_gold_code_has_evidence_that_mentions_it(rows):
    for row in rows:
        for item in row["codes"]:
            assert item["evidence"], (row["id"], item["code"])
            for span in item["evidence"]:
                text = row["text"][span["start"] : span["end"]]
                assert text.strip(), (row["id"], item["code"])
                assert _acceptable(row, item, text), (row["id"], item["code"], text)


def test_negated_ruled_out_and_resolved_facts_give_no_code(rows):
    silent = {Status.NEGATED.value, Status.RULED_OUT.value, Status.RESOLVED.value}
    seen = 0
    for row in rows:
        encounter = json.loads(row["encounter"])
        cited = {span_fact for item in row["codes"] for span_fact in _facts(row, item)}
        coded_elsewhere = {p["code"] for p in encounter["problems"] if p["status"] not in silent}
        for index, problem in enumerate(encounter["problems"]):
            if problem["status"] in silent:
                seen += 1
                assert f"problems[{index}]" not in cited
                if problem["code"] not in coded_elsewhere:
                    assert problem["code"] not in [item["code"] for item in row["codes"]]
    assert seen > 50


def _facts(row: dict, item: dict) -> set[str]:
    result = policy_code(Encounter.from_dict(json.loads(row["encounter"])))
    facts = dict(zip(result.code_list, result.facts, strict=True))
    return set(facts.get(item["code"], ()))


def test_no_template_variable_is_left_unrendered(rows):
    for row in rows:
        text = row["text"]
        assert not re.search(r"{{|}}|{%|%}|\{\w+\}|\ue000|\ue001|\ue002|Undefined", text), row["id"]
        assert len(text.split()) > 40


def test_notes_carry_shorthand_and_a_share_of_artefacts(rows):
    from medcode.synth.realism import artefacts_in
    from medcode.synth.texture import shipped_texture

    shorts = [
        re.compile(rf"(?<![\w/]){re.escape(t.short)}(?![\w/])") for t in shipped_texture().terms
    ]
    with_shorthand = sum(any(p.search(row["text"]) for p in shorts) for row in rows)
    assert with_shorthand > 0.8 * N
    assert 0.1 * N < sum(bool(artefacts_in(row["text"])) for row in rows) < 0.5 * N


def test_office_notes_order_advanced_imaging_and_never_bill_it(rows):
    """CT, MRI and nuclear studies are done by an imaging center (encounters.yaml
    office_orders_only): an office, consult or preventive note orders them, uncoded."""
    from medcode.synth.clinical import shipped_rules

    orders_only = shipped_rules().encounters.office_orders_only
    assert "71250" in orders_only and "73130" not in orders_only
    for row in rows:
        encounter = json.loads(row["encounter"])
        if encounter["setting"] == "outpatient":
            codes = {c["code"] if isinstance(c, dict) else c for c in row["codes"]}
            assert not codes & orders_only, row["id"]


def test_held_out_families_never_appear_in_train(rows):
    ood = {(t.note_type, t.family) for t in shipped_templates() if t.ood}
    splits = {row["split"] for row in rows}
    assert splits == {"train", "validation", "test", "test_ood"}
    for row in rows:
        held_out = (row["note_type"], row["template_family"]) in ood
        assert held_out == (row["split"] == "test_ood"), row["id"]


def test_splits_are_by_patient(rows):
    split_of = {}
    for row in rows:
        base = "test" if row["split"] == "test_ood" else row["split"]
        assert split_of.setdefault(row["patient_id"], base) == base


def test_same_seed_gives_identical_files_and_resume_keeps_shards(corpus, tmp_path):
    again = tmp_path / "again"
    run(CONFIG, again)
    for path in sorted((corpus / "data").glob("*")):
        assert path.read_bytes() == (again / "data" / path.name).read_bytes(), path.name
    marker = marker_path(again, 1, 2)
    marker.unlink()  # as if killed before shard 1 completed
    summary = run(CONFIG, again)
    assert summary["written"] == 1 and summary["kept"] == 1
    for path in sorted((corpus / "data").glob("*")):
        assert path.read_bytes() == (again / "data" / path.name).read_bytes(), path.name


def test_other_options_into_the_same_folder_are_refused(corpus):
    from medcode.errors import MedcodeError

    with pytest.raises(MedcodeError, match="other options"):
        run(SynthConfig(n=N, seed=8, shards=2), corpus)


def test_hugging_face_datasets_loads_the_corpus(corpus, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from medcode.synth.card import write_card

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(corpus.parent / "hf-cache"))
    write_card(corpus, json.loads((corpus / "synth_config.json").read_text()))
    loaded = datasets.load_dataset(str(corpus))
    assert set(loaded) == {"train", "validation", "test", "test_ood"}
    assert sum(len(split) for split in loaded.values()) == N
    first = loaded["train"][0]
    assert first["codes"][0]["evidence"] and first["text"]
