"""Narrative fragments (synth/narrative.py, data/synth/narrative.yaml): validation, the fact
lock, slot filling, determinism, result directions and the variety of plans."""

import random
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from medcode.datafiles import load_yaml, package_data
from medcode.errors import DataFileError
from medcode.policy.mdm import ProblemKind
from medcode.records import Episode, Status, VisitKind
from medcode.synth.catalog import shipped_catalog
from medcode.synth.narrative import (
    SETTINGS,
    TYPES,
    facts_for,
    load_narrative,
    problem_type,
    setting_for,
    shipped_narrative,
    shown,
)
from medcode.synth.scenario import MedicationChange, ProblemFact, Result

SHIPPED = package_data("synth/narrative.yaml")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


@pytest.fixture(scope="module")
def narrator():
    return shipped_narrative()


@pytest.fixture(scope="module")
def catalog():
    return shipped_catalog()


def fact(catalog, concept_id, status=Status.CHRONIC, episode=None, code=None):
    concept = catalog.concepts[concept_id]
    return ProblemFact(
        concept, code or concept.forms[0].code, status, concept.phrases, None, episode
    )


def result(catalog, key, value):
    measure = catalog.labs.get(key) or catalog.vitals[key]
    return Result(measure, value, "")


# -- validation -------------------------------------------------------------------------------


def _broken(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """A copy of the shipped file with one change; the line of the change (1-based)."""
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path = tmp_path / "narrative.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path, line


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("  infection:\n    duration:", "  infektion:\n    duration:", "unknown type 'infektion'"),
        (
            '      - "{x} x{dur}, {course}."\n      - "Presents with {x} for',
            '      - "{x} x{dur}, {curse}."\n      - "Presents with {x} for',
            "unknown placeholder(s) curse",
        ),
        (
            "    course: [getting worse, about the same, slowly worse, worse each day, "
            "a little better, up and down, no better]",
            "    course: []",
            "is an empty list",
        ),
        (
            "    duration: {unit: days, range: [1, 10]}\n    course: [getting worse, about",
            "    duration: {unit: days, range: [10, 1]}\n    course: [getting worse, about",
            "bad duration range",
        ),
        (
            "    negatives: [constitutional, respiratory, gi]",
            "    negatives: [constitutional, gut]",
            "unknown pool 'gut'",
        ),
        ("  - concepts: [hand_laceration,", "  - concepts: [hand_lacerashun,", "unknown concept"),
        (
            "    types: [infection]\n    reasoning:",
            "    types: [infekshun]\n    reasoning:",
            "unknown type",
        ),
        ("    a1c: {bad: up,", "    a1c: {bad: sideways,", "bad must be up, down or both"),
        ("when: tests}", "when: lab}", "'when' must name one of"),
    ],
)
def test_validation_errors_name_file_line_and_problem(tmp_path, old, new, problem):
    path, line = _broken(tmp_path, old, new)
    with pytest.raises(DataFileError) as caught:
        load_narrative(path)
    error = caught.value
    assert error.path == str(path)
    assert problem in error.problem
    assert error.line is not None and abs(error.line - line) <= 1, (error.line, line)


def test_missing_type_and_missing_part_are_refused(tmp_path):
    text = SHIPPED.read_text(encoding="utf-8")
    start = text.index("  screening_or_z:\n")
    end = text.index("  uncertain:\n")
    path = tmp_path / "narrative.yaml"
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    with pytest.raises(DataFileError, match=r"missing type.*screening_or_z"):
        load_narrative(path)
    path, _ = _broken(tmp_path, "    hpi_suspected:\n", "    hpi_maybe:\n")
    with pytest.raises(DataFileError, match="unknown part 'hpi_maybe'"):
        load_narrative(path)


def test_a_yaml_error_names_the_line(tmp_path):
    path = tmp_path / "narrative.yaml"
    path.write_text("types:\n  infection: [\n", encoding="utf-8")
    with pytest.raises(DataFileError) as caught:
        load_narrative(path)
    assert caught.value.line is not None


def test_every_type_has_every_part(narrator):
    assert set(narrator.types) == set(TYPES)
    for name, parts in narrator.types.items():
        for part in ("duration", "course", "hpi", "context", "negatives", "reasoning"):
            assert getattr(parts, part), (name, part)
        assert set(parts.plan) == set(SETTINGS), name
        # every list can always be drawn from: one fragment needs no caller-given slot
        for part in ("hpi", "reasoning"):
            assert any(f.fits(frozenset()) for f in getattr(parts, part)), (name, part)
        for setting, options in parts.plan.items():
            assert any(f.fits(frozenset()) for f in options), (name, setting)
    assert narrator.types["uncertain"].hpi_suspected


def test_the_inventory_is_large(narrator):
    assert len(narrator.fragments()) >= 800


# -- the fact lock ----------------------------------------------------------------------------

# Lexicon entries that are English words in these fragments, not a condition's name.
NOT_NAMES = {
    "as": "the abbreviation AS (aortic stenosis) matches the word 'as'",
    "pcp": "the abbreviation PCP (phencyclidine) matches 'PCP', primary care provider",
    "symptom": "the word 'symptoms' (R68.89 inclusion term) names no sign or symptom",
    "concern": "the word 'concern' (a Z63.6 inclusion term) names no condition",
}


@pytest.fixture(scope="module")
def lexicon():
    from medcode.model.retriever import shipped_lexicon

    return shipped_lexicon()


def test_no_fragment_names_a_condition_or_procedure(narrator, lexicon):
    """Fragments (placeholders removed) match no lexicon phrase (ICD-10-CM terms, catalog
    phrases, CPT/HCPCS descriptions, Z79 drugs); pertinent negatives only negated."""
    from medcode.model.retriever import NEGATED

    failures = []
    for where, fragment in narrator.fragments():
        text = PLACEHOLDER.sub(" ; ", fragment.text)
        negative = where.startswith("negatives.")
        for match in lexicon.matches(text):
            if match.phrase in NOT_NAMES:
                continue
            if negative and match.context & NEGATED:
                continue
            failures.append(
                f"line {fragment.line} {where}: {fragment.text!r} names {match.phrase!r}"
            )
    assert not failures, "\n".join(failures)


def _drug_names(catalog) -> set[str]:
    data = load_yaml(package_data("synth/drugs.yaml"))
    names = {d.lower() for entry in data["classes"] for d in entry["drugs"]}
    for concept in catalog.concepts.values():
        for option in concept.medications:
            first = option.name.split()[0].lower().strip(",")
            if len(first) > 3:
                names.add(first)
    return names


def test_no_fragment_names_a_drug(narrator, catalog):
    names = _drug_names(catalog)
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(names)) + r")\b", re.I)
    failures = [
        f"line {f.line} {where}: {f.text!r}"
        for where, f in narrator.fragments()
        if pattern.search(PLACEHOLDER.sub(" ", f.text))
    ]
    assert not failures, "\n".join(failures)


# Words that change the code of the phrase next to them, or code a fact of their own.
BANNED = {
    "acute": "acute vs chronic forms (sinusitis, heart failure)",
    "chronic": "acute vs chronic forms",
    "exacerbation": "COPD/asthma with exacerbation (J44.1, J45.x1)",
    "flare": "a flare is an exacerbation",
    "severe": "severity axes (depression F32.x, asthma J45.x)",
    "mild": "severity axes",
    "moderate": "severity axes",
    "recurrent": "recurrent depressive disorder F33",
    "persistent": "persistent asthma, persistent atrial fibrillation",
    "intermittent": "intermittent asthma",
    "permanent": "permanent atrial fibrillation I48.21",
    "paroxysmal": "paroxysmal atrial fibrillation I48.0",
    "long-standing": "longstanding persistent atrial fibrillation I48.11",
    "longstanding": "longstanding persistent atrial fibrillation I48.11",
    "uncontrolled": "diabetes with hyperglycemia (Index: uncontrolled)",
    "poorly controlled": "diabetes with hyperglycemia",
    "out of control": "diabetes with hyperglycemia",
    "decompensated": "heart failure acuity",
    "remission": "in remission codes (F32.5, F10.21)",
    "resolved": "a resolved condition is not coded",
    "resolving": "reads as resolved",
    "complicated": "complicated vs uncomplicated forms",
    "infected": "infected wound codes",
    "sequela": "7th character S",
    "late effect": "7th character S",
    "benign": "benign neoplasm codes",
    "malignant": "malignant neoplasm/hypertension codes",
    "metastatic": "secondary neoplasm codes",
    "stage": "CKD/cancer stage codes",
    "class": "obesity class codes",
    "left": "laterality",
    "right": "laterality",
    "bilateral": "laterality",
    "dominant": "dominant side of hemiplegia (I69.35x)",
    "due to": "a causal link makes a combination or adverse-effect code",
    "secondary to": "a causal link",
    "caused by": "a causal link",
    "associated with": "a causal link",
    "related to": "a causal link",
    "induced": "drug-induced (adverse effect) codes",
    "history of": "history Z codes",
    "h/o": "history cue",
    "hx": "history cue",
    "family": "family history cue",
    "fell": "external cause (fall) codes",
    "slipped": "external cause codes",
    "tripped": "external cause codes",
    "missed doses": "underdosing codes (T-codes with 6th character 6, Z91.1x)",
    "noncompliance": "Z91.1x",
    "nonadherence": "Z91.1x",
}


def test_no_fragment_uses_a_code_changing_word(narrator):
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(re.escape(w) for w in BANNED) + r")(?![\w-])", re.I
    )
    failures = []
    for where, fragment in narrator.fragments():
        if where.startswith("negatives."):
            continue
        found = pattern.search(fragment.text)
        if found:
            reason = BANNED[found.group(1).lower()]
            failures.append(f"line {fragment.line} {where}: {fragment.text!r} ({reason})")
        if re.search(r"\{x\}\s+with\b", fragment.text):
            failures.append(f"line {fragment.line} {where}: '{{x}} with' joins facts")
    assert not failures, "\n".join(failures)


PROBE = "essential hypertension"
NEUTRAL = {
    "duration": "3 days",
    "dur": "3d",
    "course": "about the same",
    "finding": "tenderness",
    "normal": "lungs clear",
    "lab": "value 7",
    "drug": "study tablet",
    "reason": "cost",
    "side_effect": "side effects",
}


def _probe(lexicon, text: str) -> int:
    filled = text.format_map({**NEUTRAL, "x": PROBE})
    found = [m for m in lexicon.matches(filled) if m.phrase == PROBE]
    assert found, filled
    context = 0
    for match in found:
        context |= match.context
    return context


def test_no_cue_changes_the_status_of_the_problem(narrator, lexicon):
    """The problem phrase reads as current in every fragment: no negation, uncertainty,
    history or family cue around it; in `uncertain`, every mention of the suspected
    diagnosis carries an uncertainty cue and no other."""
    from medcode.model.retriever import FAMILY, HISTORY, NEGATED, UNCERTAIN

    failures = []
    for where, fragment in narrator.fragments():
        if "x" not in fragment.slots:
            continue
        context = _probe(lexicon, fragment.text)
        suspected = where in ("types.uncertain.reasoning", "types.uncertain.hpi_suspected")
        if suspected:
            ok = context & UNCERTAIN and not context & (NEGATED | HISTORY | FAMILY)
        else:
            ok = context == 0
        if not ok:
            failures.append(f"line {fragment.line} {where}: {fragment.text!r} (cues {context})")
    assert not failures, "\n".join(failures)


def test_reasoning_fragments_use_reasoning_language(narrator):
    """Each reasoning fragment counts in the realism audit's reasoning share."""
    from medcode.synth.realism import load_rules

    rules = load_rules()
    failures = []
    for where, fragment in narrator.fragments():
        if where.endswith(".reasoning") and not rules.reasons(fragment.text):
            failures.append(f"line {fragment.line} {where}: {fragment.text!r}")
    assert not failures, "\n".join(failures)


# -- problem types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("concept", "status", "kind", "course", "episode", "expected"),
    [
        ("cellulitis", Status.ACTIVE, None, "", None, "infection"),
        (
            "strep_pharyngitis",
            Status.ACTIVE,
            ProblemKind.ACUTE_UNCOMPLICATED,
            "",
            None,
            "infection",
        ),
        ("ankle_sprain", Status.ACTIVE, None, "", Episode.INITIAL, "injury"),
        ("ankle_sprain", Status.ACTIVE, None, "", Episode.SUBSEQUENT, "injury_followup"),
        ("chest_pain", Status.ACTIVE, ProblemKind.UNDIAGNOSED_NEW, "", None, "acute_symptom"),
        (
            "nephrolithiasis",
            Status.ACTIVE,
            ProblemKind.ACUTE_UNCOMPLICATED,
            "",
            None,
            "acute_other",
        ),
        ("type2_diabetes", Status.CHRONIC, ProblemKind.STABLE_CHRONIC, "", None, "chronic_stable"),
        ("type2_diabetes", Status.CHRONIC, None, "worse", None, "chronic_worse"),
        (
            "depression",
            Status.CHRONIC,
            ProblemKind.STABLE_CHRONIC,
            "",
            None,
            "mental_health_stable",
        ),
        (
            "depression",
            Status.CHRONIC,
            ProblemKind.CHRONIC_EXACERBATION,
            "",
            None,
            "mental_health_worse",
        ),
        ("breast_cancer", Status.CHRONIC, None, "", None, "neoplasm"),
        ("screening_colon_cancer", Status.ACTIVE, None, "", None, "screening_or_z"),
        ("pneumonia", Status.UNCERTAIN, None, "", None, "uncertain"),
        ("obesity", Status.ACTIVE, None, "", None, "chronic_new"),
        ("depression", Status.ACTIVE, None, "", None, "mental_health_worse"),
        (
            "essential_hypertension",
            Status.ACTIVE,
            ProblemKind.THREAT_TO_LIFE,
            "",
            None,
            "acute_other",
        ),
        ("accidental_fall", Status.ACTIVE, None, "", None, ""),
    ],
)
def test_problem_type(catalog, concept, status, kind, course, episode, expected):
    assert problem_type(fact(catalog, concept, status, episode), kind, course) == expected


def test_problem_type_of_long_tail_codes_and_past_problems(catalog):
    def tail(code, status=Status.ACTIVE):
        return ProblemFact(None, code, status, {"formal": ("x",)})

    assert problem_type(tail("J02.9")) == "infection"
    assert problem_type(tail("S93.401A")) == "injury"
    assert problem_type(tail("R51.9")) == "acute_symptom"
    assert problem_type(tail("C50.911", Status.CHRONIC)) == "neoplasm"
    assert problem_type(tail("F41.1", Status.CHRONIC)) == "mental_health_stable"
    assert problem_type(tail("Z23")) == "screening_or_z"
    assert problem_type(tail("J44.1")) == "chronic_worse"  # an exacerbation seen today
    assert problem_type(tail("D63.1")) == "chronic_worse"  # a chronic illness by its title
    assert problem_type(fact(catalog, "copd", Status.HISTORY)) == ""


def test_setting_for():
    assert setting_for(VisitKind.OFFICE) == "office"
    assert setting_for(VisitKind.TELEHEALTH) == "office"
    assert setting_for(VisitKind.EMERGENCY) == "ed"
    assert setting_for(VisitKind.EMERGENCY, admitted=True) == "hospital"
    assert setting_for(VisitKind.HOSPITAL_ADMISSION) == "hospital"
    assert setting_for(VisitKind.HOSPITAL_DISCHARGE) == "discharge"


# -- draws ------------------------------------------------------------------------------------


def _draws(narrator, seed):
    rng = random.Random(seed)
    out = []
    for name in TYPES:
        out.append(
            narrator.hpi(
                rng, "PHRASE", name, drugs=["metformin 500 mg daily"], age=60, **_symptoms(name)
            )
        )
        out.append(narrator.reasoning(rng, "PHRASE", name, findings=["mild erythema"], always=True))
        out.append(narrator.plan(rng, name, setting=rng.choice(SETTINGS), tests=True))
    return out


def _symptoms(name: str) -> dict:
    """An uncertain problem's history is told from its symptoms (the choice is required)."""
    return {"suspected": False} if name == "uncertain" else {}


def test_uncertain_history_needs_an_explicit_choice(narrator, lexicon):
    from medcode.model.retriever import UNCERTAIN

    rng = random.Random(23)
    with pytest.raises(ValueError, match="suspected"):
        narrator.hpi(rng, "pneumonia", "uncertain")
    for _ in range(50):
        text = narrator.hpi(rng, PROBE, "uncertain", suspected=True)
        assert _context_of(lexicon, text) & UNCERTAIN, text


def _context_of(lexicon, text: str) -> int:
    return next(m.context for m in lexicon.matches(text) if m.phrase == PROBE)


def test_draws_are_deterministic_for_a_seed(narrator):
    assert _draws(narrator, 7) == _draws(narrator, 7)
    assert _draws(narrator, 7) != _draws(narrator, 8)


def test_the_phrase_is_inserted_unchanged(narrator):
    marked = "\ue000problems[0]\ue001Acute cystitis\ue002"
    rng = random.Random(1)
    for _ in range(200):
        name = rng.choice(TYPES)
        text = narrator.reasoning(rng, marked, name, always=True)
        assert "{" not in text and "}" not in text
        if marked[:-1] in text or "\ue000" in text:
            assert marked in text
        text = narrator.hpi(rng, marked, name, **_symptoms(name))
        assert marked in text or "{x}" not in text


def test_slots_fall_back_when_the_facts_lack_them(narrator):
    rng = random.Random(3)
    for name in TYPES:
        for _ in range(100):
            text = narrator.reasoning(rng, "X", name, always=True)
            assert text and "{" not in text
            assert "None" not in text
            text = narrator.plan(rng, name)
            assert text and "{" not in text
            text = narrator.hpi(rng, "X", name, **_symptoms(name))
            assert text and "{" not in text


def test_slots_are_filled_from_the_facts_given(narrator):
    rng = random.Random(5)
    used_finding = used_lab = used_drug = 0
    for _ in range(300):
        text = narrator.reasoning(
            rng,
            "X",
            "chronic_worse",
            findings=["bibasilar crackles"],
            labs=["A1c 9.1%"],
            drugs=["metformin 1000 mg twice daily"],
            always=True,
        )
        used_finding += "bibasilar crackles" in text
        used_lab += "A1c 9.1%" in text
        used_drug += "metformin" in text
        assert "1000 mg" not in text  # a drug is named, not its dose
    assert used_finding and used_lab and used_drug


def test_plans_promise_results_only_when_there_are_tests(narrator):
    rng = random.Random(11)
    for name in TYPES:
        for setting in SETTINGS:
            for _ in range(200):
                assert "result" not in narrator.plan(rng, name, setting=setting).lower()


def test_reasoning_rate_is_applied(narrator):
    rng = random.Random(2)
    shares = {}
    for name in ("chronic_stable", "uncertain"):
        hits = sum(bool(narrator.reasoning(rng, "X", name)) for _ in range(2000))
        shares[name] = hits / 2000
        assert abs(shares[name] - narrator.rates.reasoning[name]) < 0.05
    assert shares["uncertain"] > shares["chronic_stable"]


def test_negatives_never_deny_what_the_note_states(narrator):
    rng = random.Random(9)
    denied = re.compile(r"\b(fevers?|f/c|sob|shortness of breath|cp|chest pain)\b")
    negatives = 0
    for _ in range(500):
        text = narrator.hpi(
            rng, "fever", "infection", present=["shortness of breath", "cough", "chest pain"]
        )
        for sentence in re.split(r"(?<=\.) ", text):
            if re.match(r"(denies|no)\b", sentence.lower()):
                negatives += 1
                assert not denied.search(sentence.lower()), text
    assert negatives > 100  # other negatives are still drawn


def test_overrides_take_precedence(narrator):
    rng = random.Random(4)
    # a replacing override: a viral infection's plans, never "finish the course"
    own = _own_plan(narrator, "infection", "upper_respiratory_infection")
    viral = {
        narrator.plan(
            rng, "infection", concept="upper_respiratory_infection", drugs=["benzonatate 100 mg"]
        )
        for _ in range(300)
    }
    assert viral == own
    assert not any("course" in text for text in viral)
    # an adding override: diabetes plans join the chronic ones
    generic = {f.text for f in narrator.types["chronic_stable"].plan["office"]}
    own = _own_plan(narrator, "chronic_stable", "type2_diabetes")
    diabetes = {
        narrator.plan(rng, "chronic_stable", concept="type2_diabetes", code="E11.9")
        for _ in range(300)
    }
    assert diabetes <= own | generic and diabetes & own and diabetes & generic
    # a code prefix override: immunization
    z23 = {narrator.plan(rng, "screening_or_z", code="Z23") for _ in range(200)}
    assert any("vaccine" in text.lower() for text in z23)
    # the most specific level first: concept, code prefix (longest first), domain, type
    chain = narrator.chain("infection", "cellulitis", "skin_wounds", "L03.115")
    assert chain[-1] is narrator.types["infection"]
    own = _own_plan(narrator, "infection", "cellulitis")
    assert "Margin marked with skin marker; return if redness spreads past it." in own


def _own_plan(narrator, type, concept):
    """The office plans of the most specific level that gives them."""
    chain = narrator.chain(type, concept)
    return {f.text for f in next(p for p in chain if "office" in p.plan).plan["office"]}


def test_reasoning_fits_the_setting(narrator):
    """Outpatient wording is never drawn in the hospital, nor hospital wording in the
    office."""
    rng = random.Random(21)
    for name in TYPES:
        for _ in range(200):
            text = narrator.reasoning(
                rng, "X", name, findings=["F"], labs=["L 1"], setting="hospital", always=True
            )
            assert "outpatient" not in text and "stable vitals" not in text, text
            text = narrator.reasoning(rng, "X", name, findings=["F"], setting="office", always=True)
            assert "responding to treatment" not in text and "reassessment" not in text, text
    with pytest.raises(ValueError, match="unknown setting"):
        narrator.reasoning(rng, "X", "infection", setting="clinic")


def test_durations_read_naturally(narrator):
    rng = random.Random(22)
    texts = [narrator.hpi(rng, "X", "neoplasm") for _ in range(300)]
    assert not any(re.search(r"\b(2[4-9]|3\d) months\b", t) for t in texts)
    assert not any(re.search(r"\b1 (days|weeks|months|years)\b", t) for t in texts)
    young = [narrator.hpi(rng, "X", "chronic_stable", age=8) for _ in range(300)]
    assert not any(re.search(r"\b([5-9]|1\d) years\b|x([5-9]|1\d)y\b", t) for t in young)


def test_setting_changes_the_plan(narrator):
    rng = random.Random(6)
    office = {narrator.plan(rng, "infection", setting="office") for _ in range(300)}
    hospital = {narrator.plan(rng, "infection", setting="hospital") for _ in range(300)}
    assert not office & hospital


@pytest.mark.parametrize("name", TYPES)
def test_plans_are_varied(narrator, name):
    """Over 500 seeded draws per type: at least 8 distinct plan sentences and none drawn in
    more than a quarter of them (office setting; with and without a drug to counsel on)."""
    for drugs in ((), ("lisinopril 10 mg daily",)):
        rng = random.Random(hash((name, drugs)) & 0xFFFF)
        counts = Counter(narrator.plan(rng, name, drugs=drugs, tests=True) for _ in range(500))
        assert len(counts) >= 8, (name, counts)
        assert max(counts.values()) <= 125, (name, counts.most_common(1))


def test_override_plans_are_varied(narrator):
    for index, override in enumerate(narrator.overrides):
        for setting, options in override.parts.plan.items():
            assert len({f.text for f in options}) >= 4, (index, setting)


# -- results ----------------------------------------------------------------------------------


def _prior(line: str, name: str, value: str, unit: str = "") -> float:
    """The number in a result line other than the value (name and units removed)."""
    rest = line.replace(name, " ", 1).replace(value, " ", 1)
    rest = rest.replace(unit, " ") if unit else rest
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", rest)]
    assert numbers, line
    return numbers[0]


@pytest.mark.parametrize(
    ("key", "value", "course", "direction"),
    [
        ("a1c", "8.4", "worse", "up"),
        ("a1c", "7.1", "improving", "down"),
        ("ldl", "88", "improving", "down"),
        ("egfr", "38", "worse", "down"),
        ("egfr", "52", "improving", "up"),
        ("potassium", "5.6", "worse", "up"),
        ("potassium", "3.1", "worse", "down"),
        ("hemoglobin", "9.2", "worse", "down"),
        ("bp_systolic", "152", "worse", "up"),
    ],
)
def test_result_lines_show_the_direction_of_the_course(
    narrator, catalog, key, value, course, direction
):
    rng = random.Random(12)
    for _ in range(100):
        line = narrator.result_line(rng, result(catalog, key, value), course)
        assert value in line
        measure = catalog.labs.get(key) or catalog.vitals[key]
        prior = _prior(line, measure.short, value, measure.unit)
        if direction == "up":
            assert prior < float(value), line
        else:
            assert prior > float(value), line
        assert f"{prior:.{measure.decimals}f}" in line


def test_stable_results_and_values_without_a_direction(narrator, catalog):
    rng = random.Random(13)
    for _ in range(50):
        line = narrator.result_line(rng, result(catalog, "creatinine", "1.32"), "stable")
        assert "1.32 mg/dL" in line
        assert not re.search(r"\b(up|down|worse|improved|rose|fell)\b", line)
        # potassium inside the normal range cannot be "worse" either way: stable wording
        line = narrator.result_line(rng, result(catalog, "potassium", "4.2"), "worse")
        assert not re.search(r"\b(up|down|worse|improved|rose|fell)\b", line), line
    assert narrator.result_line(rng, result(catalog, "ua_nitrite", "positive"), "worse") == ""


def test_prior_values_stay_in_the_plausible_range(narrator, catalog):
    rng = random.Random(14)
    for _ in range(300):
        line = narrator.result_line(rng, result(catalog, "a1c", "4.3"), "improving")
        prior = _prior(line, "A1c", "4.3")
        assert 4.0 <= prior <= 16.0, line


def test_results_accept_the_templates_lab_objects(narrator):
    rng = random.Random(15)
    lab = SimpleNamespace(name="Hemoglobin A1c", short="A1c", value="8.4", unit="%", flag="H")
    line = narrator.result_line(rng, lab, "worse")
    assert "8.4%" in line and "A1c" in line


def test_result_course(narrator, catalog):
    rng = random.Random(16)
    # an acute problem's result is new today: no prior to compare with, no line
    assert narrator.result_course(rng, "infection", result(catalog, "wbc", "14.2")) == ""
    assert narrator.result_line(rng, result(catalog, "wbc", "14.2"), "") == ""
    assert narrator.result_course(rng, "chronic_worse") == "worse"
    # a worse problem: the value off its range moved, the others did not
    assert narrator.result_course(rng, "chronic_worse", result(catalog, "a1c", "9.1")) == "worse"
    assert narrator.result_course(rng, "chronic_worse", result(catalog, "egfr", "38")) == "worse"
    normal = result(catalog, "creatinine", "0.9")
    assert narrator.result_course(rng, "chronic_worse", normal) == "stable"
    seen = {narrator.result_course(rng, "chronic_stable") for _ in range(100)}
    assert seen == {"improving", "stable"}


# -- medication changes -----------------------------------------------------------------------


def test_change_lines(narrator):
    rng = random.Random(17)
    for _ in range(100):
        start = narrator.change_line(rng, "start", "atorvastatin 40 mg nightly", "hyperlipidemia")
        assert "atorvastatin 40 mg nightly" in start
        stop = narrator.change_line(rng, "stop", "lisinopril 20 mg daily")
        assert "lisinopril" in stop and "20 mg" not in stop
        assert any(r in stop for r in (*narrator.reasons, *narrator.side_effects))
        up = narrator.change_line(rng, "increase", "metformin 500 mg twice daily", "T2DM")
        assert "metformin" in up and "{" not in up
        assert "{" not in narrator.change_line(rng, "decrease", "metoprolol 50 mg daily")
    with pytest.raises(ValueError):
        narrator.change_line(rng, "swap", "metformin")


# -- the scenario adapter ---------------------------------------------------------------------


def test_facts_for_a_scenario(catalog):
    from medcode.synth.scenario import MedicationFact

    diabetes = fact(catalog, "type2_diabetes")
    cellulitis = fact(catalog, "cellulitis", Status.ACTIVE)
    drug, started = (m.name for m in catalog.concepts["type2_diabetes"].medications[:2])
    scenario = SimpleNamespace(
        problems=[diabetes, cellulitis],
        exam=[catalog.concepts["cellulitis"].exam[0], "lungs clear"],
        labs=[result(catalog, "a1c", "8.9")],
        vitals=[result(catalog, "temperature", "101.2")],
        medications=[
            MedicationFact(drug, None),
            MedicationFact(started, None),
            MedicationFact("aspirin 81 mg daily", None),
        ],
        medication_changes=[MedicationChange("start", started, 0)],
    )
    own = facts_for(scenario, 0)
    assert own.labs == ("A1c 8.9%",)
    # the problem is "on" its listed drug, not on one started today
    assert own.drugs == (drug.split()[0],)
    assert own.findings == ()
    skin = facts_for(scenario, 1)
    assert skin.findings == (catalog.concepts["cellulitis"].exam[0],)
    assert "fever" in skin.present
    assert shown(result(catalog, "ldl", "131")) == "LDL 131 mg/dL"


def test_normal_and_abnormal_findings():
    from medcode.synth.narrative import is_normal_finding

    assert is_normal_finding("regular rate and rhythm")
    assert is_normal_finding("splint clean dry and intact")
    assert is_normal_finding("no accessory muscle use")
    assert not is_normal_finding("tonsillar exudates")
    assert not is_normal_finding("bulging erythematous tympanic membrane with loss of landmarks")
