from pathlib import Path

import pytest

from medcode.errors import DataFileError, MedcodeError
from medcode.synth.profiles import load_profile, profile_path

ASSETS = Path(__file__).parents[1] / "assets" / "synth"


@pytest.mark.parametrize("name", ["primary_care", "hospital_ed"])
def test_shipped_profiles_load(name):
    profile = load_profile(profile_path(name))
    assert abs(sum(v.weight for v in profile.visits) - 1) < 1e-9


def test_medicare_share_is_large():
    profile = load_profile(profile_path("primary_care"))
    assert profile.age["65-79"] + profile.age["80+"] >= 0.3


def test_probabilities_must_sum_to_one():
    with pytest.raises(DataFileError, match=r"age: probabilities sum to 0\.9, not 1"):
        load_profile(ASSETS / "bad_profile.yaml")


def test_ages_outside_range():
    with pytest.raises(DataFileError, match="min_age 130"):
        load_profile(ASSETS / "bad_age.yaml")


def test_unknown_profile_name():
    with pytest.raises(MedcodeError, match="unknown profile 'nope'"):
        profile_path("nope")


def _variant(tmp_path, old, new):
    text = profile_path("primary_care").read_text()
    assert old in text
    path = tmp_path / "variant.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("name", ["primary_care", "hospital_ed"])
def test_shipped_profiles_give_a_cited_em_mix_and_a_workload(name):
    profile = load_profile(profile_path(name))
    assert "OIG" in profile.em_mix.source
    assert profile.em_mix.targets["emergency"]["99285"] == 0.48
    assert profile.workload["emergency"].admission["high"] > 0.5
    if name == "primary_care":
        established = profile.em_mix.targets["office_established"]
        assert established["99213"] + established["99214"] > 0.8


def test_em_mix_codes_must_belong_to_the_group(tmp_path):
    path = _variant(tmp_path, '"99212": 0.04', '"99202": 0.04')
    with pytest.raises(DataFileError, match=r"office_established: unknown key\(s\) 99202"):
        load_profile(path)


def test_em_mix_needs_a_source(tmp_path):
    path = _variant(
        tmp_path, "  source: >-\n    Established office", "  cited: >-\n    Established"
    )
    with pytest.raises(DataFileError, match="em_mix: missing or empty 'source'"):
        load_profile(path)


def test_workload_fields_are_checked(tmp_path):
    path = _variant(
        tmp_path, "outpatient: {also_addressed: 0.32", "outpatient: {also_adressed: 0.32"
    )
    with pytest.raises(
        DataFileError, match=r"workload.outpatient: unknown field\(s\) also_adressed"
    ):
        load_profile(path)
