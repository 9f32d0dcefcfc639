import json
import subprocess
import sys
from pathlib import Path

import pytest

from medcode import __version__

ASSETS = Path(__file__).parent / "assets"


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"medcode {__version__}"


def test_show_icd_billable(cli):
    code, out, _ = cli("codes", "show", "E11.22")
    assert code == 0
    assert "Type 2 diabetes mellitus with diabetic chronic kidney disease" in out
    assert "billable" in out and "not billable" not in out
    assert "HCC 37" in out and "Excludes1" in out


def test_show_cpt(cli):
    code, out, _ = cli("codes", "show", "99214")
    assert code == 0
    assert "Office visit, established patient" in out and "level 4" in out


def test_show_category_lists_children(cli):
    code, out, _ = cli("codes", "show", "E11.2")
    assert code == 0 and "not billable" in out
    for child in ("E11.21", "E11.22", "E11.29"):
        assert child in out


@pytest.mark.parametrize(
    ("arg", "problem"),
    [
        ("XYZ", "not an ICD-10-CM code"),
        ("E1!", "malformed code"),
        ("E11.99", "not an ICD-10-CM code"),
        ("12345", "CPT table"),
    ],
)
def test_show_bad_code_is_one_line_exit_2(cli, arg, problem):
    code, out, err = cli("codes", "show", arg)
    assert code == 2
    assert out == ""
    assert problem in err and arg in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_show_json(cli):
    code, out, _ = cli("codes", "show", "e1122", "--json")
    data = json.loads(out)
    assert code == 0 and data["code"] == "E11.22" and data["billable"] is True
    assert data["hcc"] == [{"number": 37, "label": data["hcc"][0]["label"], "chronic": True}]


def test_show_with_licensed_cpt_file(cli):
    args = ("--cpt-file", str(ASSETS / "licensed_cpt.csv"), "codes", "show", "27447", "--json")
    code, out, _ = cli(*args)
    assert code == 0 and json.loads(out)["description"] == "LICENSED TEXT FOR A KNEE ARTHROPLASTY"


def test_search_json(cli):
    code, out, _ = cli("codes", "search", "diabetes", "kidney", "--json")
    data = json.loads(out)
    assert code == 0 and data["query"] == "diabetes kidney"
    assert data["hits"][0]["code"].startswith("E1")


def test_search_table(cli):
    code, out, _ = cli("codes", "search", "chest", "pain", "-n", "3")
    assert code == 0 and "R07.9" in out


def test_empty_search_is_a_clear_message(cli):
    code, _, err = cli("codes", "search", "  ")
    assert code == 1 and "empty search" in err and "Traceback" not in err


def test_build_seventh(cli):
    code, out, _ = cli("codes", "build", "T36.0X5", "A", "--json")
    assert code == 0 and json.loads(out)["code"] == "T36.0X5A"


def test_bad_system_option(cli):
    code, _, err = cli("codes", "show", "I10", "--system", "snomed")
    assert code == 2 and "icd10cm" in err


def test_codes_tour(cli):
    code, out, _ = cli("codes", "tour")
    assert code == 0
    assert "S72.001A" in out and "T36.0X5A" in out and "HCC 37" in out
    assert "combination.diabetes" in out and "I12.9" in out


def test_console_script_exit_status():
    """The installed entry point (python -m medcode) gives exit 2 and no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "medcode", "codes", "show", "XYZ"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "XYZ" in result.stderr and "Traceback" not in result.stderr
