"""The E/M levels of a generated sample: computed from what each note documents, they land
near the profile's real-claims mix (issue 15)."""

import json
import re
from collections import Counter

import pytest

from medcode.records import MDM
from medcode.synth.card import visit_group
from medcode.synth.generate import SynthConfig, generate_notes
from medcode.synth.profiles import load_profile, profile_path
from medcode.terminology import cpt

N = 900  # about 500 established office visits; runs in a few seconds


@pytest.fixture(scope="module")
def rows():
    return list(generate_notes(SynthConfig(n=N, seed=21, shards=1), 0))


def _em(row) -> str:
    return next(c["code"] for c in row["codes"] if c["rule"].startswith("em."))


def test_established_office_mix_is_near_the_claims_mix(rows):
    target = load_profile(profile_path("primary_care")).em_mix.targets["office_established"]
    found = Counter(_em(r) for r in rows if visit_group(r["encounter"]) == "office_established")
    total = sum(found.values())
    assert total > 350
    shares = {code: found[code] / total for code in target}
    for code, share in target.items():
        assert abs(shares[code] - share) <= 0.08, (code, shares)
    assert shares["99213"] + shares["99214"] > 0.5
    assert shares["99212"] > 0 and shares["99215"] > 0


def test_the_explicit_mdm_line_is_a_minority_and_agrees_with_the_level(rows):
    with_level = [r for r in rows if json.loads(r["encounter"])["visit"].get("mdm")]
    explicit = 0
    for row in with_level:
        level = json.loads(row["encounter"])["visit"]["mdm"]
        found = re.search(r"MDM: (straightforward|low|moderate|high) \(problems", row["text"])
        if found:
            explicit += 1
            assert found.group(1) == level, row["id"]
    assert 0.15 <= explicit / len(with_level) <= 0.35


def test_without_time_the_code_follows_the_computed_mdm(rows):
    table = cpt.procedure_table()
    for row in rows:
        if row["note_type"] == "procedure":  # no E/M with a minor procedure
            continue
        visit = json.loads(row["encounter"])["visit"]
        entry = table[_em(row)].em
        if (
            visit.get("mdm")
            and not visit.get("minutes")
            and entry.setting
            in (
                cpt.EMSetting.OFFICE,
                cpt.EMSetting.EMERGENCY,
                cpt.EMSetting.CONSULT,
            )
        ):
            assert entry.mdm is MDM(visit["mdm"]), row["id"]


def test_documented_time_is_plausible_for_the_code(rows):
    table = cpt.procedure_table()
    for row in rows:
        if row["note_type"] == "procedure":  # no E/M with a minor procedure
            continue
        visit = json.loads(row["encounter"])["visit"]
        entry = table[_em(row)].em
        minutes = visit.get("minutes")
        if minutes and entry.setting in (cpt.EMSetting.OFFICE, cpt.EMSetting.CONSULT):
            assert entry.time_min <= minutes <= entry.time_min + 14, (row["id"], minutes)


def test_the_plan_names_what_drove_the_level(rows):
    for row in rows:
        visit = json.loads(row["encounter"])["visit"]
        text = row["text"].lower()
        explicit = "mdm: moderate (" in text
        if visit.get("mdm") == "moderate" and visit["kind"] == "office" and not explicit:
            drivers = (
                "prescription drug management",
                "reviewed",
                "ordered",
                "not at goal",
                "above goal",
                "worse",
                "independent",
                "decision regarding",
                "social needs",
                "procedure",
            )
            assert any(d in text for d in drivers), row["id"]
