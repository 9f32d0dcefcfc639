"""Bootstrap intervals per category and for the paired gap between a category's micro F1 and
the overall micro F1 (``compute()["ci"]["by_category"]``)."""

import json
import math
import random

import pytest

from medcode.eval import metrics
from medcode.eval.formats import NoteLabels
from medcode.eval.metrics import CATEGORIES, CodingMetrics

# Categories (medcode.terminology): E11.22 chronic + hcc, I10 chronic, J44.9 advanced_illness
# + chronic + hcc; J18.9, R05.9 and 99214 none.
CODES = ["E11.22", "I10", "J44.9", "J18.9", "R05.9", "99214", "N18.31", "Z79.4"]


def scored(gold, predicted, bootstrap=300, seed=0, batches=1):
    result = CodingMetrics(bootstrap=bootstrap, seed=seed)
    size = math.ceil(len(gold) / batches)
    for start in range(0, len(gold), size):
        result.update(gold[start : start + size], predicted)
    return result


def random_notes(seed, n=80):
    rng = random.Random(seed)
    gold = [NoteLabels(f"n{i}", set(rng.sample(CODES, rng.randint(0, 4)))) for i in range(n)]
    predicted = {}
    for note in gold:
        codes = {c for c in note.codes if rng.random() < 0.7} | set(
            rng.sample(CODES, rng.randint(0, 2))
        )
        predicted[note.id] = NoteLabels(note.id, codes)
    return gold, predicted


def test_identical_notes_collapse_the_intervals_to_the_point():
    # Every note: gold E11.22, I10, J18.9; predicted E11.22, R05.9. Overall tp 1, fp 1, fn 2:
    # P 1/2, R 1/3, F1 2/5. chronic: E11.22 hit, I10 missed: F1 2/3; hcc: E11.22 hit: F1 1.
    # Every resample is the data again, so each interval is its point.
    gold = [NoteLabels(f"n{i}", {"E11.22", "I10", "J18.9"}) for i in range(5)]
    predicted = {n.id: NoteLabels(n.id, {"E11.22", "R05.9"}) for n in gold}
    result = scored(gold, predicted).compute()
    assert result["micro"]["f1"] == pytest.approx(2 / 5)
    ci = result["ci"]["by_category"]
    assert list(ci) == ["chronic", "hcc"]
    for name, f1 in (("chronic", 2 / 3), ("hcc", 1.0)):
        assert result["by_category"][name]["f1"] == pytest.approx(f1)
        assert ci[name]["f1"] == pytest.approx([f1, f1])
        assert ci[name]["gap_point"] == pytest.approx(f1 - 2 / 5)
        assert ci[name]["gap"] == pytest.approx([f1 - 2 / 5, f1 - 2 / 5])
    assert result["ci"]["micro"]["f1"] == pytest.approx([2 / 5, 2 / 5])


@pytest.mark.parametrize("seed", range(4))
def test_gap_interval_contains_the_point_gap(seed):
    gold, predicted = random_notes(seed)
    result = scored(gold, predicted, seed=seed).compute()
    ci = result["ci"]["by_category"]
    assert ci and set(ci) == set(result["by_category"])
    for name, figures in ci.items():
        point = result["by_category"][name]["f1"]
        assert figures["gap_point"] == pytest.approx(point - result["micro"]["f1"])
        low, high = figures["gap"]
        assert low <= figures["gap_point"] <= high
        low, high = figures["f1"]
        assert low <= point <= high
    json.dumps(result, allow_nan=False)  # no NaN: valid JSON


def test_same_seed_same_intervals_and_the_micro_interval_is_unchanged():
    gold, predicted = random_notes(7)
    one, two = scored(gold, predicted, seed=5), scored(gold, predicted, seed=5)
    assert one.compute()["ci"] == two.compute()["ci"]
    assert scored(gold, predicted, seed=6).compute()["ci"] != one.compute()["ci"]
    # the category resamples refine the micro resamples: ci.micro is what it always was
    assert one.compute()["ci"]["micro"] == one.intervals()


@pytest.mark.parametrize("batches", [2, 3, 7])
def test_two_batches_equal_one(batches):
    gold, predicted = random_notes(3)
    one = scored(gold, predicted, seed=2).compute()
    many = scored(gold, predicted, seed=2, batches=batches).compute()
    assert one["ci"]["by_category"]
    assert json.dumps(many) == json.dumps(one)


def test_absent_category_is_absent_from_the_intervals():
    # codes of chronic and hcc only: no frailty, and no advanced_illness (J44.9 left out)
    gold, predicted = random_notes(1)
    keep = {"E11.22", "I10", "J18.9", "R05.9"}
    gold = [NoteLabels(n.id, n.codes & keep) for n in gold]
    predicted = {k: NoteLabels(k, n.codes & keep) for k, n in predicted.items()}
    result = scored(gold, predicted).compute()
    assert set(result["by_category"]) == {"chronic", "hcc"}
    assert set(result["ci"]["by_category"]) == {"chronic", "hcc"}
    # only predicted, never in the gold: still a category with a figure and an interval
    predicted["n0"] = NoteLabels("n0", predicted["n0"].codes | {"J44.9"})
    result = scored(gold, predicted).compute()
    assert "advanced_illness" in result["ci"]["by_category"]


def test_no_bootstrap_or_no_notes_gives_no_intervals():
    gold, predicted = random_notes(2)
    assert scored(gold, predicted, bootstrap=0).compute()["ci"]["by_category"] == {}
    assert CodingMetrics().compute()["ci"]["by_category"] == {}
    none = [NoteLabels("x", {"J18.9"})]  # notes, but no category code
    assert scored(none, {}).compute()["ci"]["by_category"] == {}


def test_resamples_without_a_rare_category_are_left_out():
    # one note of 40 has the only hcc code: about a third of the resamples have no hcc code
    # at all (F1 undefined there), which must not drag the interval to 0 or 1 or give NaN
    gold = [NoteLabels(f"n{i}", {"I10"}) for i in range(39)] + [NoteLabels("x", {"E11.22"})]
    predicted = {n.id: NoteLabels(n.id, {"I10"}) for n in gold[:20]}
    predicted["x"] = NoteLabels("x", {"E11.22", "N18.31"})  # hcc: tp 1, fp 1: F1 2/3
    result = scored(gold, predicted, bootstrap=500).compute()
    hcc = result["ci"]["by_category"]["hcc"]
    assert hcc["f1"] == pytest.approx([2 / 3, 2 / 3])
    json.dumps(result, allow_nan=False)


def test_note_vectors_hold_each_notes_category_counts():
    gold = [NoteLabels("a", {"E11.22", "I10", "J18.9"}), NoteLabels("b", {"J44.9"})]
    predicted = {"a": NoteLabels("a", {"E11.22", "R05.9"}), "b": NoteLabels("b", {"J44.9"})}
    counted = scored(gold, predicted, bootstrap=0)
    per = {name: k for k, name in enumerate(CATEGORIES)}

    def vector(triple, **categories):
        counts = [0] * (3 * len(CATEGORIES))
        for name, (tp, fp, fn) in categories.items():
            counts[3 * per[name] : 3 * per[name] + 3] = [tp, fp, fn]
        return (*triple, *counts)

    assert counted.note_vectors == {
        vector((1, 1, 2), chronic=(1, 0, 1), hcc=(1, 0, 0)): 1,
        vector((1, 0, 0), advanced_illness=(1, 0, 0), chronic=(1, 0, 0), hcc=(1, 0, 0)): 1,
    }
    assert sum(counted.note_vectors.values()) == counted.n_notes


def test_row_ids_tell_rows_apart_like_tuples():
    import numpy as np

    rng = np.random.default_rng(0)
    columns = [rng.integers(0, high, 5000) for high in (3, 40, 1, 7, 2, 300, 5, 5, 9)]
    ids = metrics._row_ids(columns).tolist()
    rows = list(zip(*(c.tolist() for c in columns), strict=True))
    assert len(set(ids)) == len(set(rows))
    assert len(set(zip(ids, rows, strict=True))) == len(set(rows))
    assert max(ids) < 2 * len(rows) + 4096
