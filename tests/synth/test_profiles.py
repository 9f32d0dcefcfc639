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
