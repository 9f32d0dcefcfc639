"""The texture pass: text inside the markers and evidence spans unchanged, cues intact, rates as
stated, deterministic, and a bad texture.yaml names its file and line."""

import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

import medcode.synth.texture as texture_module
from medcode.errors import DataFileError
from medcode.model.retriever import Lexicon, words
from medcode.synth.generate import SynthConfig, generate_scenarios
from medcode.synth.render import _MARK, strip_marks
from medcode.synth.texture import load_texture, misspelled, shipped_texture, texture

ASSETS = Path(__file__).parents[1] / "assets" / "synth"
# Words that mean something for coding and that no edit may add, drop or change.
FIXED = {"acute", "chronic", "right", "left", "rt", "lt", "bilateral", "bilat", "both"}
# Cue words a `cue` term rewrites into a shorthand the retriever reads as the same cue.
REWRITTEN = {"history", "hx", "pmh", "past", "without", "h", "o", "w"}


@pytest.fixture(scope="module")
def notes():
    """(family, marked note, textured result) of 300 notes, as ``medcode synth`` makes them."""
    found = []
    original = texture_module.texture

    def spy(marked, family, rng, rules=None):
        result = original(marked, family, rng, rules)
        found.append((family, marked, result))
        return result

    texture_module.texture = spy
    try:
        for _ in generate_scenarios(SynthConfig(n=300, seed=3), 0):
            pass
    finally:
        texture_module.texture = original
    assert len(found) == 300
    return found


def test_text_inside_markers_and_evidence_spans_are_unchanged(notes):
    changed = 0
    for _, marked, result in notes:
        assert _MARK.findall(result.text) == _MARK.findall(marked)
        before, before_spans = strip_marks(marked)
        after, after_spans = strip_marks(result.text)
        assert before_spans.keys() == after_spans.keys()
        for path, spans in before_spans.items():
            assert [before[s:e] for s, e in spans] == [after[s:e] for s, e in after_spans[path]]
        changed += before != after
    assert changed > 250


def test_numbers_headings_and_labels_are_kept(notes):
    for _, marked, result in notes:
        before, after = strip_marks(marked)[0], strip_marks(result.text)[0]
        assert re.findall(r"\d+", before) == re.findall(r"\d+", after)
        lines = before.split("\n")
        assert len(lines) == len(after.split("\n"))
        for old, new in zip(lines, after.split("\n"), strict=True):
            if re.fullmatch(r"[^a-z]*[A-Z][^a-z]*:?", old.strip()) or old.strip().endswith(":"):
                assert old == new  # headings in capitals and labels alone
            # a label: up to four words before a colon ("Medication management:"); a longer
            # lead-in ("Regarding the known neck pain:") is prose
            label = re.match(r"\s*([A-Za-z][A-Za-z/&]*(?: [A-Za-z/&]+){0,3}):", old)
            if label:
                assert new.startswith(old[: label.end()])


def _cue_counts(text: str) -> Counter:
    rules = shipped_texture()
    tokens = words(text)
    return Counter(t for t in tokens if (t in rules.cue_words or t in FIXED) and t not in REWRITTEN)


def test_no_cue_or_meaning_word_is_altered(notes):
    for _, marked, result in notes:
        before, after = strip_marks(marked)[0], strip_marks(result.text)[0]
        assert _cue_counts(before) == _cue_counts(after)


def test_the_retriever_reads_the_same_cues_around_every_evidence_span(notes):
    def read(lexicon: Lexicon, note: str) -> Counter:
        return Counter((m.phrase, m.context) for m in lexicon.matches(strip_marks(note)[0]))

    for _, marked, result in notes:
        lexicon = Lexicon()
        for path, text in _MARK.findall(marked):
            # a two-letter evidence ("AS", aortic stenosis) also matches an English word the
            # shorthand may rewrite ("as needed" -> "PRN"): that match is no evidence span
            if len(text.strip()) > 2:
                lexicon.add(text, [path])
        assert read(lexicon, marked) == read(lexicon, result.text)


def test_cue_terms_read_as_the_same_cue():
    lexicon = Lexicon()
    lexicon.add("pneumonia", ["J18.9"])
    for term in shipped_texture().terms:
        if not term.cue:
            continue
        for filler in ("", "a b c "):
            long = lexicon.matches(f"{term.long} {filler}pneumonia")
            short = lexicon.matches(f"{term.short} {filler}pneumonia")
            assert [m.context for m in long] == [m.context for m in short], term.long


def test_rates_are_as_stated(notes):
    rules = shipped_texture()
    by_family: dict[str, list[int]] = {}
    for family, _, result in notes:
        counts = by_family.setdefault(family, [0, 0])
        counts[0] += result.eligible
        counts[1] += result.abbreviated
    assert set(by_family) == {"terse_soap", "narrative", "problem_oriented", "ehr_export"}
    for family, (eligible, abbreviated) in by_family.items():
        assert eligible > 200, family
        assert abbreviated / eligible == pytest.approx(rules.rate(family), abs=0.07), family
    shares = {f: a / e for f, (e, a) in by_family.items()}
    assert shares["terse_soap"] > shares["problem_oriented"] > shares["narrative"]
    affected = sum(bool(result.artefacts) for *_, result in notes) / len(notes)
    assert affected == pytest.approx(rules.notes, abs=0.09)
    kinds = Counter(kind for *_, result in notes for kind in result.artefacts)
    assert set(kinds) == set(rules.kinds)


def test_the_same_seed_gives_the_same_text(notes):
    for family, marked, _ in notes[:40]:
        first = texture(marked, family, random.Random(11)).text
        assert texture(marked, family, random.Random(11)).text == first


def test_headers_labels_quotes_and_fixed_phrases_stay():
    marked = "\n".join(
        [
            "Clinic",
            "Patient: Test Person    MRN: 1000001",
            "",
            "HISTORY OF PRESENT ILLNESS:",
            'The patient says "the patient next door has a cough" and follows up as needed.',
            "Patient: seen with family.",
            "New patient visit. Regular rate and rhythm without murmurs.",
            "Lives at home with a spouse; independent in ADLs and IADLs.",
        ]
    )
    rules = replace(shipped_texture(), rates={"default": 1.0}, notes=0.0)
    result = texture(marked, "terse_soap", random.Random(1), rules).text
    lines = result.split("\n")
    assert lines[:4] == marked.split("\n")[:4]
    assert lines[4] == 'The pt says "the patient next door has a cough" and follows up PRN.'
    assert lines[5].startswith("Patient:")
    assert lines[6] == "New patient visit. Regular rate and rhythm without murmurs."
    assert lines[7] == "Lives at home with a spouse; independent in ADLs and IADLs."


def test_a_term_inside_a_marked_span_stays_spelled_out_in_the_note():
    marked = (
        "Plan: \ue000medications[0]\ue001metformin 500 mg twice daily\ue002; "
        "lisinopril twice daily."
    )
    rules = replace(shipped_texture(), rates={"default": 1.0}, notes=0.0)
    assert texture(marked, "terse_soap", random.Random(1), rules).text == marked


def test_misspellings_keep_the_first_and_last_letters():
    forms = misspelled("reviewed")
    assert "reveiwed" in forms and "reviwed" in forms and "reviewed" not in forms
    assert all(form[0] == "r" and form[-1] == "d" for form in forms)
    assert "report" not in misspelled("reports")


def test_the_audit_finds_no_typo_in_notes_without_the_pass(notes):
    from medcode.synth.realism import artefacts_in

    for _, marked, _ in notes:
        assert not artefacts_in(strip_marks(marked)[0]) & {"misspelling", "homophone"}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad_texture_cue.yaml", r"bad_texture_cue\.yaml:6: terms: 'denies' holds the cue word"),
        ("bad_texture_rate.yaml", r"bad_texture_rate\.yaml:2: rate: terse_soap: 1\.5"),
        ("bad_texture_typo.yaml", r"bad_texture_typo\.yaml:13: words: 'negative' is a cue word"),
    ],
)
def test_a_bad_texture_file_names_its_file_and_line(name, message):
    with pytest.raises(DataFileError, match=message):
        load_texture(ASSETS / name)


def test_shipped_texture_loads_with_a_source_for_every_rate():
    rules = load_texture()
    assert set(rules.rates) >= {"terse_soap", "narrative", "problem_oriented", "ehr_export"}
    assert rules.rate("terse_soap") > rules.rate("problem_oriented") > rules.rate("narrative")
    assert 0 < rules.notes < 0.5
