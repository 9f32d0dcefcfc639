from pathlib import Path

import pytest

from medcode.eval import codiesp
from medcode.eval.formats import NoteLabels

SHARED = Path(__file__).parents[3] / "shared" / "codiesp"


def test_map_retired_accepts_a_2026_descendant():
    gold = {"x": NoteLabels("x", {"N18.3", "I10"})}
    pred = {"x": NoteLabels("x", {"N18.31", "I10"})}
    assert codiesp.map_retired(gold, pred)["x"].codes == {"N18.31", "I10"}
    assert codiesp.map_retired(gold, {"x": NoteLabels("x", {"I10"})})["x"].codes == {"N18.3", "I10"}


def test_diagnoses_only_drops_procedure_codes():
    notes = {"x": NoteLabels("x", {"I10", "99214", "G0438"})}
    assert codiesp.diagnoses_only(notes)["x"].codes == {"I10"}


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/codiesp not present")
def test_load_dev_split(tmp_path):
    notes, gold = codiesp.load(SHARED, "dev")
    assert len(notes) == 250 and all(n["text"] for n in notes)
    assert all(code == code.upper() for codes in gold.values() for code in codes)
    _, gold_path = codiesp.write(SHARED, "dev", tmp_path)
    assert len(gold_path.read_text().splitlines()) == 250
