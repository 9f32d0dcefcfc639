"""Phrasing pools (data/synth/phrasings.yaml): validation, determinism, what the variants may
say, and the repeated-line rate of a 400-note corpus."""

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from medcode.errors import DataFileError, MedcodeError
from medcode.synth import realism
from medcode.synth.clinical import shipped_rules
from medcode.synth.generate import SynthConfig, generate_notes
from medcode.synth.phrasings import FIELDS, Say, derived_rng, load_phrasings, shipped_phrasings
from medcode.synth.sampler import _NORMAL_EXAM
from medcode.terminology import cpt

TEMPLATES = Path(__file__).parents[2] / "src" / "medcode" / "data" / "templates"
N = 400
CONFIG = SynthConfig(n=N, seed=7)

# Words that would add an MDM data or risk element, a test, a time or a procedure to a stock
# sentence. A pool may use one only when its `allow` list names it (the template said it
# before); a procedure's name only when the code's own description says it.
DENYLIST = {
    "ordered": r"\border(?:ed|s|ing)?\b",
    "records": r"\brecords?\b",
    "historian": r"\bhistorian\b",
    "interpreted": r"\binterpret",
    "discussed": r"\bdiscuss|\bd/w\b",
    "ECG": r"\b(?:ecg|ekg|electrocardiogram)\b",
    "minutes": r"\bmin(?:ute)?s?\b",
    "independent": r"\bindependent",
    "external": r"\bexternal\b|\boutside\b",
    "consult": r"\bconsult",
    "spoke with": r"\bspoke\b",
    "test": r"\btest(?:s|ing|ed)?\b|\blabs?\b|\bx-ray|\bimaging\b|\bultrasound\b|\bscan\b",
    "admit": r"\badmi(?:t|ts|tted|ssions?)\b",
    "cessation": r"\bcessation\b",
    "care plan": r"\bcare plan",
}
# a procedure's name is the procedure: these may name its test or timing
PROCEDURE_DENYLIST = {
    k: v for k, v in DENYLIST.items() if k not in {"test", "admit", "cessation", "care plan"}
}


def _hits(text: str, denylist: dict[str, str]) -> set[str]:
    return {name for name, pattern in denylist.items() if re.search(pattern, text, re.I)}


@pytest.fixture(scope="module")
def phrasings():
    return shipped_phrasings()


@pytest.fixture(scope="module")
def rows():
    return list(generate_notes(CONFIG, 0))


# -- validation ----------------------------------------------------------------------------


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "phrasings.yaml"
    path.write_text(text)
    return path


GOOD_POOL = "\n".join(f"    - variant {i}" for i in range(8))


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("pools:\n  short:\n    - one\n    - two\n", 2, "2 entries; expected 8 to 20"),
        (
            f"pools:\n  ok:\n{GOOD_POOL}\n  twice:\n{GOOD_POOL}\n    - Variant 3\n",
            20,
            "listed twice",
        ),
        (
            f"pools:\n  fields:\n{GOOD_POOL}\n    - '{{Pronoun}} said {{nmae}}'\n",
            11,
            "unknown field {nmae}",
        ),
        (f"pools:\n  Bad-Key:\n{GOOD_POOL}\n", 2, "bad key"),
        (
            f"pools:\n  ok:\n{GOOD_POOL}\nprocedures:\n  '99999X': [a name]\n",
            12,
            "not a procedure code",
        ),
        (
            f"pools:\n  ok:\n{GOOD_POOL}\nprocedures:\n  '80061': [lipid profile, Lipid panel]\n",
            12,
            "is the description",
        ),
        (f"pools:\n  ok:\n{GOOD_POOL}\nextra: 1\n", 11, "unknown section"),
        (
            f"pools:\n  ok:\n    allow: [x]\n    items:\n{GOOD_POOL}\n",
            3,
            "a mapping needs 'variants'",
        ),
    ],
)
def test_a_bad_file_names_its_file_and_line(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    with pytest.raises(DataFileError) as caught:
        load_phrasings(path)
    assert caught.value.path == str(path)
    assert caught.value.line == line, str(caught.value)
    assert message in str(caught.value)


def test_the_shipped_file_loads_and_every_template_pool_exists(phrasings):
    used = set()
    for template in TEMPLATES.glob("*/*.j2"):
        used |= set(re.findall(r"say\('([^']+)'", template.read_text()))
    assert used, "the templates call say()"
    assert sorted(used - set(phrasings.pools)) == []
    assert sorted(set(phrasings.pools) - used) == [], "pools no template uses"


def test_an_unknown_pool_is_a_clear_error(phrasings):
    say = Say(random.Random(0), {}, phrasings)
    with pytest.raises(MedcodeError, match="no such pool"):
        say("no_such_pool")


# -- determinism ---------------------------------------------------------------------------


def test_say_is_deterministic_per_note_and_leaves_the_notes_generator_alone(phrasings):
    rng = random.Random("7:0")
    before = rng.getstate()
    first, second = derived_rng(rng, "phrasings"), derived_rng(rng, "phrasings")
    assert rng.getstate() == before  # drawing the note's facts is not disturbed
    fields = {name: name.upper() for name in FIELDS}
    a, b = Say(first, fields, phrasings), Say(second, fields, phrasings)
    keys = sorted(phrasings.pools)
    assert [a(k) for k in keys] == [b(k) for k in keys]
    assert derived_rng(rng, "other").random() != derived_rng(rng, "phrasings").random()


def test_the_same_seed_gives_the_same_notes():
    config = SynthConfig(n=12, seed=3)
    first = [row["text"] for row in generate_notes(config, 0)]
    again = [row["text"] for row in generate_notes(config, 0)]
    assert first == again


def test_every_variant_fills_its_fields(phrasings):
    fields = {name: "x" for name in FIELDS}
    for pool in phrasings.pools.values():
        for variant in pool.variants:
            assert "{" not in variant.format_map(fields), (pool.key, variant)


# -- what a variant may say ----------------------------------------------------------------


def _allowed(pool, name: str) -> bool:
    return any(re.search(DENYLIST[name], word, re.I) for word in pool.allow)


def test_no_variant_adds_an_mdm_element_test_or_time_unless_allowed(phrasings):
    bad = []
    for pool in phrasings.pools.values():
        for variant in pool.variants:
            bad += [
                (pool.key, name, variant)
                for name in _hits(variant, DENYLIST)
                if not _allowed(pool, name)
            ]
    assert bad == []


def test_every_allowance_is_used(phrasings):
    for pool in phrasings.pools.values():
        for word in pool.allow:
            names = [n for n, p in DENYLIST.items() if re.search(p, word, re.I)]
            assert names, (pool.key, word)
            assert any(_hits(v, {n: DENYLIST[n] for n in names}) for v in pool.variants)


def test_procedure_names_add_no_mdm_element_beyond_their_description(phrasings):
    table = cpt.procedure_table()
    bad = []
    for code, names in phrasings.procedures.items():
        said = _hits(table[code].description, PROCEDURE_DENYLIST)
        for name in names:
            bad += [(code, hit, name) for hit in _hits(name, PROCEDURE_DENYLIST) - said]
    assert bad == []


def test_procedure_names_are_unique_and_vaccines_stay_vaccines(phrasings):
    table = cpt.procedure_table()
    owners: dict[str, set[str]] = {}
    for code, names in phrasings.procedures.items():
        for name in (table[code].description, *names):
            owners.setdefault(name.lower(), set()).add(code)
        description = table[code].description.lower()
        # the preventive template says "influenza given today" from these words
        if "vaccine" in description and "administration" not in description:
            assert all("vaccine" in n.lower() or "prevnar" in n.lower() for n in names), code
            flu = "influenza" in description
            assert all(flu == bool(re.search(r"flu|influenza", n, re.I)) for n in names), code
    shared = {name: codes for name, codes in owners.items() if len(codes) > 1}
    assert shared == {}


def _normals() -> dict[str, set[str]]:
    exam = shipped_rules().exam
    return {text.lower(): {f.system for f in exam.classify(text)} for text in exam.normals()}


def _normal_systems(text: str) -> set[str]:
    """The body systems of the normal exam statements a text contains, matched as the
    coherence check matches them in a note."""
    lower = text.lower()
    found = set()
    for phrase, systems in _normals().items():
        if re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", lower):
            found |= systems
    return found


# pools printed only under the template's general.* guards, and the systems they may state
GUARDED = {
    "gen_nad": {"general"},
    "gen_oriented": {"orientation"},
    "breathing_ok": {"work_of_breathing"},
    "tele_general": {"general"},
}


def test_stock_sentences_state_no_exam_finding_outside_their_guard(phrasings):
    bad = []
    for pool in phrasings.pools.values():
        allowed = GUARDED.get(pool.key.split(".")[0], set())
        for variant in pool.variants:
            extra = _normal_systems(variant) - allowed
            if extra:
                bad.append((pool.key, variant, sorted(extra)))
    assert bad == []


def test_exam_wordings_speak_for_their_own_system_only(phrasings):
    exam = shipped_rules().exam
    assert set(phrasings.exam) <= set(_NORMAL_EXAM)
    for finding, wordings in phrasings.exam.items():
        systems = {f.system for f in exam.classify(finding)}
        assert systems, finding
        for wording in wordings:
            assert _normal_systems(wording) <= systems, (finding, wording)
            assert not _hits(wording, DENYLIST), (finding, wording)
            assert "abnormal" not in wording.lower(), (finding, wording)


def test_new_patient_words_and_functional_statements_stay_where_they_belong(phrasings):
    rules = shipped_rules()
    markers = [m.lower() for m in rules.encounters.new_patient_markers]
    function = [
        s.lower()
        for level in rules.function.levels.values()
        for s in (*level.statements, *level.living)
    ]
    for pool in phrasings.pools.values():
        new_patient_pool = pool.key.startswith("establish")
        for variant in pool.variants:
            lower = variant.lower()
            said = any(m in lower for m in markers)
            assert said == new_patient_pool, (pool.key, variant)
            assert not any(s in lower for s in function), (pool.key, variant)
            # a chronic problem is never called acute (coherence.check_acute_chronic)
            if "chronic" in lower:
                assert not re.search(r"\bacute\b", lower), (pool.key, variant)


def test_review_of_systems_variants_stay_negative(phrasings):
    for key, pool in phrasings.pools.items():
        if not key.startswith("ros_"):
            continue
        for variant in pool.variants:
            lower = variant.lower()
            assert re.search(r"\bneg(?:ative)?\b|\bdenies\b", lower), (key, variant)
            assert not re.search(r"\bpositive\b|\(\+\)", lower), (key, variant)
            if "except" in lower or "apart from" in lower or "other than" in lower:
                assert key.endswith("except_hpi") or key.endswith("except_above.narr"), variant


# -- the corpus ----------------------------------------------------------------------------


def test_a_400_note_corpus_repeats_few_lines(rows):
    report = realism.measure(rows)
    share = report.repeated_lines["per_1000"]["share"]
    assert share <= 0.05, report.repeated_lines["top"][:10]
    cpt_names = report.phrasings["by_system"]["CPT"]
    assert cpt_names["median"] >= 3, cpt_names


def test_procedure_names_cover_the_procedures_notes_mention(rows, phrasings):
    mentions = Counter(
        p["code"] for row in rows for p in json.loads(row["encounter"])["procedures"]
    )
    covered = sum(n for code, n in mentions.items() if code in phrasings.procedures)
    assert covered / sum(mentions.values()) >= 0.9, mentions.most_common(20)


def test_the_printed_procedure_name_carries_the_evidence(rows, phrasings):
    table = cpt.procedure_table()
    seen = set()
    for row in rows:
        for item in row["codes"]:
            if item["rule"] != "procedure.documented":
                continue
            names = {
                n.lower() for n in phrasings.aliases(item["code"], table[item["code"]].description)
            }
            for span in item["evidence"]:
                text = row["text"][span["start"] : span["end"]].lower()
                assert text in names, (row["id"], item["code"], text)
                seen.add(text)
    aliases = {n.lower() for names in phrasings.procedures.values() for n in names}
    assert len(seen & aliases) > 20  # the aliases are printed, not only the descriptions
