from pathlib import Path

import pytest

from medcode.errors import DataFileError
from medcode.records import System
from medcode.terminology.categories import (
    category_names,
    load_category,
    memberships,
    shipped_categories,
)

ASSETS = Path(__file__).parent.parent / "assets"


def test_shipped_categories_load_with_groups():
    categories = shipped_categories()
    assert {"advanced_illness", "frailty", "chronic"} <= set(categories)
    frailty_groups = {entry.group for entry in categories["frailty"].entries}
    assert frailty_groups == {"diagnosis", "device", "encounter", "symptom"}
    for category in categories.values():
        assert category.source
        assert all(entry.source and entry.label for entry in category.entries)


@pytest.mark.parametrize(
    ("code", "system", "expected"),
    [
        ("I50.22", System.ICD10CM, {"advanced_illness", "chronic", "hcc"}),
        ("G30.9", System.ICD10CM, {"advanced_illness", "chronic", "hcc"}),
        ("R54", System.ICD10CM, {"frailty"}),
        ("E0100", System.HCPCS, {"frailty"}),
        ("E11.22", System.ICD10CM, {"chronic", "hcc"}),
        ("J06.9", System.ICD10CM, set()),
        ("99214", System.CPT, set()),
    ],
)
def test_memberships(code, system, expected):
    assert set(category_names(code, system)) == expected


def test_descendants_match_a_category_entry():
    entry = shipped_categories()["frailty"].match("W19.XXXA", System.ICD10CM)
    assert entry is not None and entry.code == "W19"


def test_hcc_membership_cites_cms():
    hcc = [m for m in memberships("N18.6", System.ICD10CM) if m.category == "hcc"]
    assert hcc and "V28" in hcc[0].source and "326" in hcc[0].label


def test_bad_category_names_file_line_and_code():
    with pytest.raises(DataFileError) as caught:
        load_category(ASSETS / "bad_category.yaml")
    assert caught.value.line == 10
    assert "bad_category.yaml:10" in str(caught.value) and "E11.99" in str(caught.value)


def test_small_category_file():
    category = load_category(ASSETS / "good_category.yaml")
    assert category.match("I50.9", System.ICD10CM).label == "Heart failure"
    assert category.match("E0100", System.HCPCS).group == "device"
    assert category.match("E0105", System.HCPCS) is None


def test_name_must_match_file(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text((ASSETS / "good_category.yaml").read_text())
    with pytest.raises(DataFileError, match="must equal the file name"):
        load_category(path)
