"""The hospital/ED course, surgical and social history and copied-forward problem list
(synth/course.py, data/synth/hospital_course.yaml): validation, the fact lock (the same checks
as the narrative's fragments), determinism and what the rendered notes say."""

import importlib.util
import re
import statistics
from pathlib import Path

import pytest

from medcode.datafiles import package_data
from medcode.errors import DataFileError
from medcode.synth.course import load_course, shipped_course
from medcode.synth.generate import SynthConfig, generate_notes

SHIPPED = package_data("synth/hospital_course.yaml")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _narrative_tests():
    """The narrative's fact-lock tables (tests/synth/test_narrative.py)."""
    path = Path(__file__).with_name("test_narrative.py")
    spec = importlib.util.spec_from_file_location("_narrative_lock", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOCK = _narrative_tests()
# words of this file that are not a condition's name, beyond the narrative's own list
NOT_NAMES = {
    **LOCK.NOT_NAMES,
    "symptoms": "the word 'symptoms' names no sign",
    "physical therapy": "therapy by the therapist's own claim; the physician codes nothing",
}
# Operations are named in the past surgical history; the condition each names (a repaired
# hernia) is not current and has no history or status code (see `reason` in the file).
SURGICAL = "surgical.operations"


@pytest.fixture(scope="module")
def course():
    return shipped_course()


@pytest.fixture(scope="module")
def lexicon():
    from medcode.model.retriever import shipped_lexicon

    return shipped_lexicon()


# -- validation -------------------------------------------------------------------------------


def _broken(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path = tmp_path / "hospital_course.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path, line


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            '    - "Initial labs showed {lab}."',
            '    - "Initial labs showed {labs}."',
            "unknown placeholder(s) labs",
        ),
        ("  rate: 0.4\n", "  rate: 1.4\n", "between 0 and 1"),
        (
            '    - {name: septoplasty, min_age: 18, avoid: [J34], reason: "no status code"}',
            "    - {name: septoplasty, min_age: 18, avoid: [J34]}",
            "missing 'reason'",
        ),
        ("  days: {1: 13,", "  days: {0: 13,", "whole number >= 1"),
    ],
)
def test_validation_errors_name_file_line_and_problem(tmp_path, old, new, problem):
    path, line = _broken(tmp_path, old, new)
    with pytest.raises(DataFileError) as caught:
        load_course(path)
    error = caught.value
    assert error.path == str(path)
    assert problem in error.problem
    assert error.line is not None and abs(error.line - line) <= 2, (error.line, line)


@pytest.mark.parametrize(
    "section", ["length_of_stay", "consults", "disposition", "surgical", "social", "problem_list"]
)
def test_every_distribution_has_a_source(tmp_path, section):
    text = SHIPPED.read_text(encoding="utf-8")
    old = f"{section}:\n  source:"
    assert old in text, old
    path = tmp_path / "hospital_course.yaml"
    path.write_text(text.replace(old, f"{section}:\n  sourse:", 1), encoding="utf-8")
    with pytest.raises(DataFileError, match="source"):
        load_course(path)


def test_length_of_stay_matches_the_cited_mean(course):
    nights, weights = course.stay
    mean = sum(n * w for n, w in zip(nights, weights, strict=True)) / sum(weights)
    assert 4.2 <= mean <= 5.2, mean  # HCUP: mean US stay about 4.5-5 days


# -- the fact lock ----------------------------------------------------------------------------


def test_no_fragment_names_a_condition_or_procedure(course, lexicon):
    failures = []
    for where, text, line in course.fragments():
        if where == SURGICAL:
            continue
        for match in lexicon.matches(PLACEHOLDER.sub(" ; ", text)):
            if match.phrase in NOT_NAMES:
                continue
            failures.append(f"line {line} {where}: {text!r} names {match.phrase!r}")
    assert not failures, "\n".join(failures)


def test_operations_have_a_reason_and_name_no_status_procedure(course, lexicon):
    """Each operation says why it has no status Z code; none is an organ removal, implant,
    replacement, bypass, transplant, amputation, ostomy, sterilization or cataract surgery."""
    forbidden = re.compile(
        r"ectomy|replacement|arthroplasty|bypass|cabg|transplant|amputation|ostomy|stoma|"
        r"tubal|vasectomy|cataract|implant|pacemaker|stent|fusion",
        re.I,
    )
    for op in course.operations:
        assert op.reason.strip(), op
        assert not forbidden.search(op.name), op.name
        # no procedure code's description is named (a CPT/HCPCS the coder could bill today)
        for match in lexicon.matches(op.name):
            assert not re.match(r"^\d{5}$|^[A-Z]\d{4}$", str(getattr(match, "code", ""))), (
                op.name,
                match,
            )


def test_no_fragment_names_a_drug(course):
    from medcode.synth.catalog import shipped_catalog

    names = LOCK._drug_names(shipped_catalog())
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(names)) + r")\b", re.I)
    failures = [
        f"line {line} {where}: {text!r}"
        for where, text, line in course.fragments()
        if pattern.search(PLACEHOLDER.sub(" ", text))
    ]
    assert not failures, "\n".join(failures)


# words a fragment of this file may not use beyond the narrative's list: E/M evidence
# (data reviewed/ordered, discussions, interpretations, time) and tests by name
EM_WORDS = {
    "reviewed": "data element (review of results/records)",
    "ordered": "data element (tests ordered)",
    "discussed": "discussion of management with an external physician",
    "independent": "independent historian/interpretation (except 'independent' ADL lists)",
    "interpretation": "independent interpretation",
    "minutes": "time",
    "records": "review of external records",
    "ecg": "a test with a CPT code",
    "ekg": "a test with a CPT code",
    "x-ray": "a test with a CPT code",
    "ct": "a test with a CPT code",
    "echo": "a test with a CPT code",
    "culture": "a test with a CPT code",
    "telemetry": "monitoring",
    "observation": "observation status (E/M category)",
    "fall": "history of falling Z91.81",
    "falls": "history of falling Z91.81",
    "long-term": "Z79 long-term drug use",
    "history": "history cue outside the social/surgical labels",
}


def test_no_fragment_uses_a_code_changing_or_em_word(course):
    banned = {**LOCK.BANNED, **EM_WORDS}
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(re.escape(w) for w in banned) + r")(?![\w-])", re.I
    )
    allowed = {
        ("social.tobacco.former", "history"),  # "former user (see past history)": Z87.891
        ("instructions.activity.independent", "independent"),
    }
    failures = []
    for where, text, line in course.fragments():
        for found in pattern.finditer(text):
            word = found.group(1).lower()
            if (where, word) in allowed:
                continue
            failures.append(f"line {line} {where}: {text!r} ({word}: {banned[word]})")
    assert not failures, "\n".join(failures)


def test_no_cue_changes_the_status_of_the_problem(course, lexicon):
    """Where a fragment names a problem ({x}), the phrase reads as current."""
    failures = []
    for where, text, line in course.fragments():
        if "{x}" not in text:
            continue
        filled = PLACEHOLDER.sub(
            lambda m: LOCK.PROBE if m.group(0) == "{x}" else "the patient", text
        )
        found = [m for m in lexicon.matches(filled) if m.phrase == LOCK.PROBE]
        assert found, filled
        context = 0
        for match in found:
            context |= match.context
        if context:
            failures.append(f"line {line} {where}: {text!r} (cues {context})")
    assert not failures, "\n".join(failures)


# -- rendered notes ---------------------------------------------------------------------------


def _rows(config):
    return [row for shard in range(config.shard_count()) for row in generate_notes(config, shard)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rows = []
    for profile in ("hospital_ed", "primary_care"):
        rows += _rows(SynthConfig(profile=profile, n=60, seed=11))
    return rows


def test_discharge_summaries_tell_a_day_by_day_course(corpus):
    discharge = [r for r in corpus if r["note_type"] == "discharge"]
    assert discharge
    for row in discharge:
        text = row["text"]
        assert re.search(r"(Hospital day|HD|Day) 1\b", text), text[:400]
        assert re.search(r"discharge", text, re.I)
    words = [len(r["text"].split()) for r in discharge]
    assert statistics.median(words) >= 650, statistics.median(words)


def test_ed_notes_have_a_course_consistent_with_the_disposition(corpus):
    for row in (r for r in corpus if r["note_type"] == "ed"):
        text = row["text"]
        admitted = "decision regarding hospitalization" in text.lower()
        if admitted:
            assert not re.search(r"Return precautions given|Return to the ED if", text)


def test_new_text_adds_no_new_code_words(corpus):
    """The course never says a test or an E/M element the note did not already state."""
    for row in corpus:
        if row["note_type"] not in ("discharge", "ed", "new_patient_hp"):
            continue
        assert "telemetry" not in row["text"].lower()


def test_course_is_deterministic_for_a_seed():
    config = SynthConfig(profile="hospital_ed", n=12, seed=5)
    assert [r["text"] for r in _rows(config)] == [r["text"] for r in _rows(config)]
