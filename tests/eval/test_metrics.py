"""Metrics against hand-computed values (as in Edin et al.'s replication: two batches equal one)."""

import pytest

from medcode.eval.formats import NoteLabels, normalize_code
from medcode.eval.metrics import CodingMetrics, prf


def notes(**codes):
    return [NoteLabels(note_id, set(c)) for note_id, c in codes.items()]


GOLD = notes(a=["E11.22", "N18.31", "99214"], b=["I10"], c=["J18.9", "R05.9"])
PRED = {n.id: n for n in notes(a=["E11.22", "99214", "Z79.4"], b=[], c=["J18.9", "R50.9"])}


def test_micro_by_hand():
    # tp: a 2 (E11.22, 99214), c 1 (J18.9) = 3; fp: a Z79.4, c R50.9 = 2;
    # fn: a N18.31, b I10, c R05.9 = 3. P = 3/5, R = 3/6, F1 = 2PR/(P+R) = 6/11.
    metrics = CodingMetrics(bootstrap=0)
    metrics.update(GOLD, PRED)
    micro = metrics.compute()["micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (3, 2, 3)
    assert micro["precision"] == pytest.approx(3 / 5)
    assert micro["recall"] == pytest.approx(3 / 6)
    assert micro["f1"] == pytest.approx(6 / 11)


def test_macro_over_gold_codes_only():
    # Gold codes: E11.22 (F1 1), N18.31 (0), 99214 (1), I10 (0), J18.9 (1), R05.9 (0).
    # Z79.4 and R50.9 occur only in predictions: not in the macro mean.
    metrics = CodingMetrics(bootstrap=0)
    metrics.update(GOLD, PRED)
    macro = metrics.macro()
    assert macro["codes"] == 6
    assert macro["f1"] == pytest.approx(3 / 6)
    assert macro["recall"] == pytest.approx(3 / 6)
    assert macro["precision"] == pytest.approx(3 / 6)


def test_by_system():
    metrics = CodingMetrics(bootstrap=0)
    metrics.update(GOLD, PRED)
    result = metrics.compute()
    cpt = result["by_system"]["CPT"]
    assert (cpt["tp"], cpt["fp"], cpt["fn"]) == (1, 0, 0)
    icd = result["by_system"]["ICD-10-CM"]
    assert (icd["tp"], icd["fp"], icd["fn"]) == (2, 2, 3)


def test_two_batches_equal_one():
    one = CodingMetrics(bootstrap=200, seed=3)
    one.update(GOLD, PRED)
    two = CodingMetrics(bootstrap=200, seed=3)
    two.update(GOLD[:1], PRED)
    two.update(GOLD[1:], PRED)
    assert one.compute() == two.compute()


def test_empty_gold_and_empty_predictions():
    metrics = CodingMetrics(bootstrap=0)
    metrics.update(notes(x=[]), {"x": NoteLabels("x", set())})
    assert metrics.compute()["micro"]["f1"] == 1.0  # nothing to find, nothing predicted
    metrics = CodingMetrics(bootstrap=0)
    metrics.update(notes(x=["I10"]), {})  # missing prediction = empty
    assert metrics.compute()["micro"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "tp": 0,
        "fp": 0,
        "fn": 1,
    }
    metrics = CodingMetrics(bootstrap=0)
    metrics.update(notes(x=[]), {"x": NoteLabels("x", {"I10"})})
    assert metrics.compute()["micro"]["precision"] == 0.0
    assert metrics.macro()["codes"] == 0


def test_duplicate_codes_in_one_note_count_once():
    gold = [NoteLabels("x", {normalize_code(c)[0] for c in ["E11.22", "e1122", " E11.22 "]})]
    metrics = CodingMetrics(bootstrap=0)
    metrics.update(gold, {"x": NoteLabels("x", {normalize_code("E11.22")[0]})})
    assert metrics.compute()["micro"]["tp"] == 1 and metrics.n_gold == 1


def test_three_character_category_score_is_secondary():
    metrics = CodingMetrics(bootstrap=0)
    metrics.update(notes(x=["E11.22"]), {"x": NoteLabels("x", {"E11.9"})})
    result = metrics.compute()
    assert result["micro"]["f1"] == 0.0
    assert result["category3_secondary"]["f1"] == 1.0


def test_bootstrap_is_reproducible_and_brackets_the_point():
    def run(seed):
        metrics = CodingMetrics(bootstrap=500, seed=seed)
        metrics.update(GOLD * 1, PRED)
        return metrics.intervals()

    assert run(1) == run(1)
    low, high = run(1)["f1"]
    assert low <= 6 / 11 <= high


def test_prf_edge_cases():
    assert prf(0, 0, 0)["f1"] == 1.0
    assert prf(0, 3, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert prf(2, 0, 2)["f1"] == pytest.approx(2 / 3)


def test_normalisation_and_invalid_codes():
    assert normalize_code("e1122") == ("E11.22", "ICD-10-CM")
    assert normalize_code(" 99214 ") == ("99214", "CPT")
    assert normalize_code("g0438") == ("G0438", "HCPCS")
    # undotted and in the procedure table: the HCPCS code, not ICD-10-CM G04.39
    assert normalize_code("G0439") == ("G0439", "HCPCS")
    assert normalize_code("G04.39") == ("G04.39", "ICD-10-CM")
    assert normalize_code("XYZ.1")[1] == "invalid"


def test_by_code_counts_by_hand():
    # a: E11.22 and 99214 hit, N18.31 missed, Z79.4 wrong; b: I10 missed; c: J18.9 hit,
    # R05.9 missed, R50.9 wrong.
    metrics = CodingMetrics(bootstrap=0)
    metrics.update(GOLD, PRED)
    by_code = metrics.compute()["by_code"]
    assert by_code == {
        "99214": {"tp": 1, "fp": 0, "fn": 0},
        "E11.22": {"tp": 1, "fp": 0, "fn": 0},
        "I10": {"tp": 0, "fp": 0, "fn": 1},
        "J18.9": {"tp": 1, "fp": 0, "fn": 0},
        "N18.31": {"tp": 0, "fp": 0, "fn": 1},
        "R05.9": {"tp": 0, "fp": 0, "fn": 1},
        "R50.9": {"tp": 0, "fp": 1, "fn": 0},
        "Z79.4": {"tp": 0, "fp": 1, "fn": 0},
    }
    assert list(by_code) == sorted(by_code)
