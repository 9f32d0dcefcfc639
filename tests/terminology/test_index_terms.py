"""The Alphabetic Index term table: phrase construction (scripts/build_index_terms.py, on tiny
hand-written fixtures in tests/assets), the loader's validation, and the shipped table."""

import csv
import gzip
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medcode.errors import DataFileError
from medcode.terminology import icd10cm
from medcode.terminology import index_terms as it

ROOT = Path(__file__).parents[2]
ASSETS = ROOT / "tests" / "assets"


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "build_index_terms", ROOT / "scripts" / "build_index_terms.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


script = _load_script()


@pytest.fixture(scope="module")
def tiny():
    counts = script.Counts()
    entries = list(script.index_entries(ASSETS / "index_tiny.csv", counts))
    return entries, counts


# Hand-computed from tests/assets/index_tiny.csv.
EXPECTED = [
    ("diabetes", "E11.9"),
    ("diabetes mellitus", "E11.9"),  # non-essential modifier variant
    ("diabetes with chronic kidney disease", "E11.22"),  # "with" goes after
    ("diabetes with foot ulcer", "E11.621"),
    ("diabetes with other kidney complications", "E11.29"),  # "NEC" in a with-clause: other
    ("diabetes with coma due to ketoacidosis", "E11.11"),  # "coma due to" waits for its object
    ("diabetes insipidus", "E23.2"),  # a Latin adjective follows its noun
    ("type 1 diabetes", "E10.9"),  # a modifier goes before
    ("early-stage type 1 diabetes", "E10.A"),  # E10.A- is incomplete: its category
    ("type 2 diabetes", "E11.9"),
    ("type 2 diabetes with foot ulcer", "E11.621"),
    ("traumatic fracture of clavicle", "S42.00"),  # injuries: "of" + site
    ("traumatic fracture of shaft of clavicle", "S42.02"),
    ("nondisplaced traumatic fracture of shaft of clavicle", "S42.02"),
    ("hypertension", "I10"),  # "Hypertension, hypertensive": first form
    ("essential hypertension", "I10"),
    ("hypertensive crisis", "I16.9"),  # a condition takes the adjective form of the main term
    ("pulmonary hypertension", "I27.20"),
    ("portal hypertension in schistosomiasis", "B65.9"),  # text after a modifier is kept
    ("infection", "B99.9"),
    ("klebsiella pneumoniae infection", "A49.8"),  # bracketed text dropped
    ("pneumonia", "J18.9"),
    ("acute pneumonia", "J18.9"),
    ("pneumonia with lung abscess", "J85.1"),
    ("bacterial pneumonia", "J15.9"),
    ("other bacterial pneumonia", "J15.8"),  # "specified NEC"
    ("klebsiella pneumonia", "J15.0"),
    ("klebsiella pneumoniae pneumonia", "J15.0"),
    ("chronic congestive splenomegaly", "D73.2"),  # "congestive, chronic": inverted
    ("retinal hemorrhage", "H35.6"),  # "retina, retinal": the adjective form as modifier
    ("coronary arteriosclerosis", "I25.10"),
    ("bypass graft coronary arteriosclerosis with angina pectoris", "I25.709"),
    ("bypass graft coronary arteriosclerosis with other angina pectoris", "I25.708"),
]


def test_tiny_index_phrases(tiny):
    entries, _ = tiny
    found = {(e.term, e.code) for e in entries}
    missing = [pair for pair in EXPECTED if pair not in found]
    assert not missing
    assert all(e.source == "index" for e in entries)


def test_tiny_index_paths_and_levels(tiny):
    entries, _ = tiny
    by_pair = {(e.term, e.code): e for e in entries}
    assert by_pair["klebsiella pneumonia", "J15.0"].path == "Pneumonia > Klebsiella"
    assert by_pair["klebsiella pneumonia", "J15.0"].level == 1
    deep = by_pair["type 2 diabetes with foot ulcer", "E11.621"]
    assert deep.path == "Diabetes, diabetic > type 2 > with > foot ulcer"
    assert deep.level == 3


def test_tiny_index_skips_and_drops(tiny):
    entries, counts = tiny
    paths = " ".join(e.path for e in entries)
    assert "Abandonment" not in paths  # a "see" row without a code
    assert "apex" not in paths  # ditto, below a main term
    assert "retired" not in paths  # U99.9 is not in the FY2026 tabular
    assert counts.codes_dropped == 1 and dict(counts.dropped) == {"U99.9": 1}
    assert counts.codes_incomplete == 5  # S42.00-, S42.02- (twice), E10.A-, H35.6-
    assert counts.rows_read == 43
    for e in entries:
        assert not re.search(r"\bnec\b|\bnos\b|[\[\]()]", e.term), e.term
        assert e.term == e.term.lower()


@pytest.mark.parametrize(
    ("text", "noun", "adjective"),
    [
        ("diabetes, diabetic", "diabetes", "diabetic"),
        ("hypertension, hypertensive", "hypertension", "hypertensive"),
        ("glomerulosclerosis, intercapillary", "intercapillary glomerulosclerosis", None),
        (
            "due to displacement, intervertebral disc",
            "due to intervertebral disc displacement",
            None,
        ),
        ("oils, essences", "oils or essences", None),
        ("lung", "lung", None),
    ],
)
def test_comma_forms(text, noun, adjective):
    forms = script.forms(text)
    assert (forms.noun, forms.adjective) == (noun, adjective)


def test_clean_drops_coder_words():
    assert script.clean("Kidney complications NEC") == "kidney complications"
    assert script.clean("K. pneumoniae [Klebsiella pneumoniae]") == "k. pneumoniae"
    assert script.clean("lymphangitis - code by site under Abscess") == "lymphangitis"
    assert script.split_nemod("(due to) schistosomiasis (bilharziasis)") == (
        "schistosomiasis",
        ["due to", "bilharziasis"],
    )


def test_unreadable_nesting_keeps_the_path():
    terms = [script.Term(t) for t in ("complication", "heart", "valve", "graft", "embolism")]
    assert script.phrases(terms) == ["complication, heart, valve, graft, embolism"]


def test_map_code():
    assert script.map_code("E11.22") == script.Mapped("E11.22", "valid")
    assert script.map_code("S42.02-") == script.Mapped("S42.02", "incomplete")
    assert script.map_code("O16.-") == script.Mapped("O16", "incomplete")
    assert script.map_code("U99.9") == script.Mapped(None, "dropped")


def test_tables(tiny):
    counts = script.Counts()
    neoplasm = {
        (e.term, e.code) for e in script.neoplasm_entries(ASSETS / "neoplasm_tiny.xml", counts)
    }
    assert {
        ("malignant neoplasm of lung", "C34.9"),
        ("lung cancer", "C34.9"),
        ("secondary malignant neoplasm of lung", "C78.0"),
        ("metastasis to lung", "C78.0"),
        ("carcinoma in situ of lung", "D02.2"),
        ("benign neoplasm of lung", "D14.3"),
        ("neoplasm of uncertain behavior of lung", "D38.1"),
        ("neoplasm of unspecified behavior of lung", "D49.1"),
        ("malignant neoplasm of azygos lobe of lung", "C34.1"),
    } <= neoplasm
    drug = {(e.term, e.code) for e in script.drug_entries(ASSETS / "drug_tiny.xml", counts)}
    assert {
        ("accidental poisoning by aspirin", "T39.011"),
        ("intentional self-harm poisoning by aspirin", "T39.012"),
        ("adverse effect of aspirin", "T39.015"),
        ("underdosing of aspirin", "T39.016"),
        ("accidental poisoning by acetic acid", "T54.2X1"),
    } <= drug
    assert not any(code.startswith("T54.2X5") for _, code in drug)  # "--": no code


@pytest.fixture
def index_dir(tmp_path):
    folder = tmp_path / "index"
    folder.mkdir()
    shutil.copy(ASSETS / "index_tiny.csv", folder / script.INDEX_FILE)
    shutil.copy(ASSETS / "neoplasm_tiny.xml", folder / script.NEOPLASM_FILE)
    shutil.copy(ASSETS / "drug_tiny.xml", folder / script.DRUG_FILE)
    return folder


def test_script_writes_a_deterministic_valid_table(index_dir, tmp_path, capsys):
    first, second = tmp_path / "a.csv.gz", tmp_path / "b.csv.gz"
    assert script.main(["--index-dir", str(index_dir), "--out", str(first)]) == 0
    printed = capsys.readouterr().out
    assert "index rows read: 43" in printed
    assert "codes dropped (not in the FY2026 tabular): 1" in printed
    assert "billable codes covered:" in printed
    script.main(["--index-dir", str(index_dir), "--out", str(second)])
    assert first.read_bytes() == second.read_bytes()
    records = it.load_index_terms(first)
    pairs = [(r.term, r.code) for r in records]
    assert pairs == sorted(pairs) and len(pairs) == len(set(pairs))
    assert {r.source for r in records} == {"index", "neoplasm", "drug"}
    by_pair = {(r.term, r.code): r for r in records}
    assert by_pair["klebsiella pneumonia", "J15.0"].billable
    assert not by_pair["traumatic fracture of clavicle", "S42.00"].billable


# --- the loader's validation -------------------------------------------------------------------


def _write(path: Path, rows: list[list[str]], header=("term", "code", "source", "path", "level")):
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


GOOD = ["klebsiella pneumonia", "J15.0", "index", "Pneumonia > Klebsiella", "1"]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (["x pneumonia", "J15.99", "index", "P", "1"], "code 'J15.99'"),
        (["x pneumonia", "E1122", "index", "P", "1"], "write it as E11.22"),
        (["x pneumonia", "J15.0", "tabular", "P", "1"], "source 'tabular'"),
        (["x pneumonia", "J15.0", "index", "P", "one"], "level 'one'"),
        (["x pneumonia", "J15.0", "index", "", "1"], "empty path"),
        (["Pneumonia NEC", "J15.0", "index", "P", "1"], "not a clean lower-case phrase"),
        (GOOD, "listed twice"),
    ],
)
def test_loader_errors_name_file_and_line(tmp_path, bad, problem):
    path = _write(tmp_path / "terms.csv.gz", [GOOD, bad])
    with pytest.raises(DataFileError, match=re.escape(problem)) as caught:
        it.load_index_terms(path)
    assert caught.value.path == str(path)
    assert caught.value.line == 3
    assert f"{path}:3:" in str(caught.value)


def test_loader_missing_column(tmp_path):
    path = _write(tmp_path / "terms.csv.gz", [GOOD[:4]], header=("term", "code", "source", "path"))
    with pytest.raises(DataFileError, match=r"missing column.*level") as caught:
        it.load_index_terms(path)
    assert caught.value.line == 1 and str(path) in str(caught.value)


def test_loader_reads_plain_csv_and_reports_corrupt_gzip(tmp_path):
    plain = tmp_path / "terms.csv"
    plain.write_text("term,code,source,path,level\n" + ",".join(GOOD) + "\n", encoding="utf-8")
    assert it.load_index_terms(plain)[0].code == "J15.0"
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataFileError, match="unreadable") as caught:
        it.load_index_terms(broken)
    assert str(broken) in str(caught.value)


def test_no_io_at_import():
    code = (
        "import medcode.terminology.index_terms as m, medcode.terminology.search; "
        "print(m.index_terms.cache_info().currsize)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "0", result.stderr


# --- the shipped table -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return it.index_terms()


def test_shipped_table_key_phrases(shipped):
    assert "diabetes with chronic kidney disease" in it.terms_for("E11.22")
    assert "type 2 diabetes with chronic kidney disease" in it.terms_for("e1122")
    assert it.terms_for("J15.0")[0] == "klebsiella pneumonia"
    assert it.codes_for("Klebsiella  Pneumonia")[0] == "J15.0"
    assert it.codes_for("hypertension") == ("I10",)
    assert it.codes_for("diabetes")[0] == "E11.9"
    assert "lung cancer" in it.terms_for("C34.90") or "lung cancer" in it.terms_for("C34.9")
    assert it.codes_for("no such phrase") == ()


def test_terms_for_is_best_first(shipped):
    for code in ("E11.22", "I10", "J44.1", "C34.9", "T39.011"):
        records = it.records_for(code)
        assert records, code
        assert [r.rank() for r in records] == sorted(r.rank() for r in records)


def test_shipped_table_is_clean(shipped):
    assert len(shipped) > 100_000
    assert {r.source for r in shipped} == {"index", "neoplasm", "drug"}
    for record in shipped:
        assert not re.search(r"\bnec\b|\bnos\b|[\[\]()]", record.term, re.IGNORECASE), record
    # "unspecified" only where the index or the Table of Neoplasms (its column 7) says it.
    for record in shipped:
        if "unspecified" in record.term:
            assert "unspecified" in record.path.lower() or record.source == "neoplasm", record


def test_shipped_codes_are_fy2026(shipped):
    codes = {r.code for r in shipped}
    assert len(codes) > 20_000
    assert all(icd10cm.is_valid(code) for code in codes)
    assert all(r.billable == icd10cm.is_billable(r.code) for r in shipped[::97])


def test_shipped_table_is_sorted_and_unique():
    path = it.package_data(it.FILE)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(it.COLUMNS)
    pairs = [(row[0], row[1]) for row in rows[1:]]
    assert pairs == sorted(pairs) and len(pairs) == len(set(pairs))
