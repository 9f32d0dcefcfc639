"""The column-by-column reader (fast path) against the line reader: identical results, key
order and ties included, on clean and on broken inputs (where it must step aside)."""

import json
import random

import pytest

from medcode.eval import commands, metrics
from medcode.eval.commands import score
from medcode.eval.formats import (
    Problems,
    align,
    align_tables,
    read_gold,
    read_gold_table,
    read_jsonl,
    read_jsonl_table,
)
from medcode.eval.metrics import CodingMetrics

POOL = [
    "E11.22",
    "e11.22",
    " E1122 ",
    "E1122",
    "N18.31",
    "I10",
    "i10",
    "E11",
    "J44.9",
    "Z00.00",
    "99213",
    " 99214",
    "g0439",
    "G0439",
    "XYZ.9",
    "not a code",
    "",
    "E11.9",
    "F32.A",
    "R05.9",
]


def slow(gold, pred, monkeypatch, **options):
    with monkeypatch.context() as patch:
        patch.setattr(commands, "_read_tables", lambda *args: None)
        return score(gold, pred, bootstrap=200, **options)


def same(gold, pred, monkeypatch, *, fast_expected=None, **options):
    """Score both ways; the JSON (key order included) must be identical."""
    if fast_expected is not None:
        taken = commands._read_tables(gold, pred, Problems(), options.get("splits"))
        assert (taken is not None) == fast_expected
    expected = slow(gold, pred, monkeypatch, **options)
    assert json.dumps(score(gold, pred, bootstrap=200, **options)) == json.dumps(expected)
    return expected


def note(rng, note_id, extras=True):
    row = {"id": note_id, "codes": rng.sample(POOL, rng.randint(0, 6))}
    if rng.random() < 0.3:
        row["codes"] += row["codes"][:1]  # a duplicate code in one note
    if extras and rng.random() < 0.5:
        row["note_type"] = rng.choice(["progress", "discharge", "", None])
    if extras and rng.random() < 0.5:
        row["split"] = rng.choice(["train", "test", "", None])
    if extras and rng.random() < 0.3:
        row["scores"] = {c: rng.random() for c in row["codes"]} or [1, "x", None]
    return row


def write(path, rows, end="\n"):
    path.write_text("".join(json.dumps(r) + end for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("seed", range(8))
def test_clean_files_take_the_fast_path_and_agree(tmp_path, monkeypatch, seed):
    if seed % 2:  # several slices of gold notes in CodingMetrics.update_table
        monkeypatch.setattr(metrics, "_PART", 7 * seed)
    rng = random.Random(seed)
    gold_rows = [note(rng, f"n{i}") for i in range(rng.randint(1, 300))]
    pred_rows = [note(rng, r["id"]) for r in gold_rows if rng.random() < 0.9]
    rng.shuffle(pred_rows)
    pred_rows += [note(rng, f"extra{i}") for i in range(rng.randint(0, 60))]  # unknown ids
    gold = write(tmp_path / "gold.jsonl", gold_rows)
    pred = write(tmp_path / "pred.jsonl", pred_rows, end=rng.choice(["\n", "\r\n"]))
    result = same(gold, pred, monkeypatch, fast_expected=True)
    assert result["n_notes"] == len(gold_rows)
    assert set(result["ci"]["by_category"]) == set(result["by_category"])  # compared above
    same(gold, pred, monkeypatch, splits={"train"})
    same(gold, pred, monkeypatch, splits={"test", "train", "nope"})


def test_same_order_of_ids_and_ties(tmp_path, monkeypatch):
    rng = random.Random(5)
    gold_rows = [note(rng, f"n{i}", extras=False) for i in range(200)]
    pred_rows = [note(rng, r["id"], extras=False) for r in gold_rows]
    gold, pred = write(tmp_path / "g.jsonl", gold_rows), write(tmp_path / "p.jsonl", pred_rows)
    result = same(gold, pred, monkeypatch, fast_expected=True)
    assert not result["missing_notes"] and result["invalid_predicted_codes"]


@pytest.mark.parametrize("part", [1 << 18, 1, 33])
def test_counters_and_their_key_order_match_update(tmp_path, monkeypatch, part):
    monkeypatch.setattr(metrics, "_PART", part)
    rng = random.Random(11)
    gold_rows = [note(rng, f"n{i}") for i in range(400)]
    pred_rows = [note(rng, r["id"]) for r in gold_rows[::2]] + [note(rng, "zz")]
    gold, pred = write(tmp_path / "g.jsonl", gold_rows), write(tmp_path / "p.jsonl", pred_rows)
    problems = Problems()
    gold_notes = read_gold(gold, problems)
    predicted = align(gold_notes, read_jsonl(pred, problems, role="prediction"), problems, pred)
    one = CodingMetrics(bootstrap=0)
    one.update(gold_notes.values(), predicted)
    fast_problems = Problems()
    gold_table = read_gold_table(gold)
    pred_table = read_jsonl_table(pred, role="prediction")
    rows = align_tables(gold_table, pred_table, fast_problems, pred)
    two = CodingMetrics(bootstrap=0)
    two.update_table(gold_table, pred_table, rows)
    names = ("tp_codes", "fp_codes", "fn_codes", "note_triples", "note_vectors", "group_triples")
    for name in names:
        assert list(getattr(one, name).items()) == list(getattr(two, name).items()), name
    assert (one.n_notes, one.n_gold, one.n_pred) == (two.n_notes, two.n_gold, two.n_pred)
    assert one.category3 == two.category3
    assert problems.items == fast_problems.items
    assert problems.missing == fast_problems.missing
    assert problems.invalid_codes == pred_table.invalid_codes
    # a second batch after the first: counters keep accumulating the same way
    one.update(gold_notes.values(), predicted)
    two.update_table(gold_table, pred_table, rows)
    assert one.compute() == two.compute()


@pytest.mark.parametrize("part", [1 << 18, 5])
def test_category_intervals_agree(tmp_path, monkeypatch, part):
    """ci.by_category (per-note category counts, then the paired bootstrap) is the same
    both ways, over one slice of gold notes or many."""
    monkeypatch.setattr(metrics, "_PART", part)
    rng = random.Random(21)
    pool = ["E11.22", "I10", "J44.9", "N18.31", "I50.22", "Z79.4", "J18.9", "99214", "XYZ.9"]
    gold_rows = [{"id": f"n{i}", "codes": rng.sample(pool, rng.randint(0, 5))} for i in range(90)]
    pred_rows = [
        {"id": r["id"], "codes": [c for c in r["codes"] if rng.random() < 0.6] + [rng.choice(pool)]}
        for r in gold_rows
        if rng.random() < 0.9
    ]
    gold, pred = write(tmp_path / "g.jsonl", gold_rows), write(tmp_path / "p.jsonl", pred_rows)
    result = same(gold, pred, monkeypatch, fast_expected=True)
    assert set(result["ci"]["by_category"]) == {"advanced_illness", "chronic", "hcc"}
    for figures in result["ci"]["by_category"].values():
        assert figures["gap"][0] <= figures["gap_point"] <= figures["gap"][1]


BROKEN = {
    "malformed": '{"id": "n1", "codes": ["I10"]}\n{not json\n',
    "blank line": '{"id": "n1", "codes": ["I10"]}\n\n{"id": "n2", "codes": []}\n',
    "trailing blank lines": '{"id": "n1", "codes": ["I10"]}\n\n\n',
    "duplicate id": '{"id": "n1", "codes": ["I10"]}\n{"id": "n1", "codes": ["E11.9"]}\n',
    "numeric id": '{"id": 1, "codes": ["I10"]}\n',
    "missing id": '{"codes": ["I10"]}\n',
    "null id": '{"id": null, "codes": ["I10"]}\n',
    "missing codes": '{"id": "n1"}\n{"id": "n2", "codes": ["I10"]}\n',
    "null codes": '{"id": "n1", "codes": null}\n',
    "codes not a list": '{"id": "n1", "codes": "I10"}\n',
    "numeric code": '{"id": "n1", "codes": [99213, "I10"]}\n',
    "null code": '{"id": "n1", "codes": [null, "I10"]}\n',
    "code objects": '{"id": "n1", "codes": [{"code": "I10"}]}\n',
    "numeric note type": '{"id": "n1", "codes": [], "note_type": 3}\n',
    "list row": '["n1", "I10"]\n',
    "two objects on a line": '{"id": "n1", "codes": []} {"id": "n2", "codes": ["I10"]}\n',
    "object over two lines": '{"id": "n1",\n "codes": ["I10"]}\n{"id": "n2", "codes": []}\n',
    "two per line, one over two": (
        '{"id": "n1", "codes": []} {"id": "n2", "codes": ["I10"]}\n{"id": "n3",\n"codes": []}\n'
    ),
    "lone carriage return": '{"id": "n1", "codes": []}\r{"id": "n2", "codes": ["I10"]}\n',
    "trailing spaces": '{"id": "n1", "codes": ["I10"]}  \n{"id": "n2", "codes": []}\n',
    "byte order mark": '\ufeff{"id": "n1", "codes": ["I10"]}\n',
    "Inf": '{"id": "n1", "codes": ["I10"], "p": Inf}\n',
    "-NaN": '{"id": "n1", "codes": ["I10"], "p": [-NaN]}\n',
    "NaN (valid for Python)": '{"id": "n1", "codes": ["I10"], "p": NaN}\n',
    "duplicate key": '{"id": "n1", "id": "n2", "codes": ["I10"]}\n',
    "empty": "",
    "only blank": "\n  \n",
    "escaped key and value": '{"i\\u0064": "n\\u0031", "codes": ["I\\u0031\\u0030"]}\n',
    "non-ASCII id": '{"id": "n\u00e9", "codes": ["I10"]}\n',
    "big number elsewhere": '{"id": "n1", "codes": ["I10"], "x": 1e400}\n',
}


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("side", ["gold", "pred"])
def test_broken_files_give_the_line_readers_result(tmp_path, monkeypatch, name, side):
    clean = '{"id": "n1", "codes": ["I10", "e11.22"]}\n{"id": "n2", "codes": ["N18.31"]}\n'
    broken = tmp_path / "broken.jsonl"
    broken.write_text(BROKEN[name], encoding="utf-8")
    other = tmp_path / "clean.jsonl"
    other.write_text(clean, encoding="utf-8")
    gold, pred = (broken, other) if side == "gold" else (other, broken)
    same(gold, pred, monkeypatch)


def test_invalid_utf8_fails_the_same_way(tmp_path, monkeypatch):
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "n1", "codes": ["I10"]}\n')
    pred = tmp_path / "pred.jsonl"
    pred.write_bytes(b'{"id": "n1", "codes": ["I10\xff"]}\n')
    assert read_jsonl_table(pred, role="prediction") is None
    with pytest.raises(UnicodeDecodeError):
        score(gold, pred, bootstrap=0)


def test_odd_spellings_are_normalised_once(tmp_path, monkeypatch):
    gold = write(tmp_path / "gold.jsonl", [{"id": "a", "codes": ["E11.22", "I10"]}])
    pred = write(tmp_path / "pred.jsonl", [{"id": "a", "codes": ["e11.22", " E1122 ", "XYZ.9"]}])
    result = same(gold, pred, monkeypatch, fast_expected=True)
    assert (result["micro"]["tp"], result["micro"]["fp"], result["micro"]["fn"]) == (1, 1, 1)
    assert result["invalid_predicted_codes"] == {"XYZ.9": 1}


def test_no_gold_note_in_the_split_is_the_same_error(tmp_path):
    gold = write(tmp_path / "gold.jsonl", [{"id": "a", "codes": ["I10"], "split": "train"}])
    pred = write(tmp_path / "pred.jsonl", [{"id": "a", "codes": ["I10"]}])
    from medcode.errors import MedcodeError

    with pytest.raises(MedcodeError, match="no gold note in split"):
        score(gold, pred, splits={"test"})


def test_many_unknown_ids_are_summarised_alike(tmp_path, monkeypatch):
    gold = write(tmp_path / "gold.jsonl", [{"id": "a", "codes": ["I10"]}])
    pred = write(tmp_path / "pred.jsonl", [{"id": f"u{i}", "codes": ["I10"]} for i in range(60)])
    result = same(gold, pred, monkeypatch, fast_expected=True)
    assert result["problems"][-1].endswith("... and 10 more unknown note ids")
    assert result["problems"][0].endswith(":1: prediction for unknown note id 'u0' ignored")


def test_synth_gold_folder(cli, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    assert cli("synth", "--n", "40", "--seed", "4", "--out", str(out))[0] == 0
    from medcode.synth.card import read_rows

    rng = random.Random(2)
    rows = list(read_rows(out, ["id", "codes"]))
    pred = write(
        tmp_path / "pred.jsonl",
        [
            {"id": r["id"], "codes": [c["code"] for c in r["codes"] if rng.random() < 0.7]}
            for r in rows
            if rng.random() < 0.9
        ],
    )
    result = same(out, pred, monkeypatch, fast_expected=True)
    assert result["by_split"] and result["by_note_type"]
    same(out, pred, monkeypatch, splits={"train"})
    same(out, pred, monkeypatch, diagnoses_only=True)
    same(out, pred, monkeypatch, map_retired=True)


@pytest.mark.parametrize("high", [5, 10**9])  # dense counting and sorting
def test_first_seen_matches_a_counter(high):
    from collections import Counter

    import numpy as np

    from medcode.eval.metrics import _first_seen

    values = np.random.default_rng(high).integers(0, high, 3000)
    seen, first, counts, inverse = _first_seen(values)
    expected = Counter(values.tolist())
    assert seen.tolist() == list(expected)
    assert counts.tolist() == list(expected.values())
    assert first.tolist() == [values.tolist().index(v) for v in expected]
    assert seen[inverse].tolist() == values.tolist()
