"""``medcode synth audit-sample``: a stratified, seeded blind-coding sample and its key."""

import json
import re
from pathlib import Path

import pytest

from medcode.synth.audit_sample import choose
from medcode.synth.card import read_rows
from medcode.synth.generate import SynthConfig, run

NOTE_FIELDS = {"id", "note_type", "setting", "visit", "new_patient", "text"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    run(SynthConfig(n=80, seed=5), out)
    return out


@pytest.fixture(scope="module")
def rows(corpus) -> dict[str, dict]:
    return {row["id"]: row for row in read_rows(corpus)}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def sample(cli, corpus, out, *options):
    status, text, err = cli("synth", "audit-sample", str(corpus), "--out", str(out), *options)
    assert status == 0, err
    return text


def test_every_note_type_is_represented(cli, corpus, rows, tmp_path):
    note_types = {row["note_type"] for row in rows.values()}
    assert len(note_types) >= 4  # the fixture is worth testing on
    out = tmp_path / "S"
    text = sample(cli, corpus, out, "--n", str(len(note_types) + 2), "--seed", "1")
    notes = lines(out / "notes.jsonl")
    assert len(notes) == len(note_types) + 2
    assert {note["note_type"] for note in notes} == note_types
    assert f"from {len(note_types)} of {len(note_types)} strata" in text
    written = json.loads((out / "sample.json").read_text())
    assert set(written["strata"]) == {f"primary_care/{t}" for t in note_types}


def test_fewer_notes_than_strata_takes_each_from_a_different_stratum(corpus, rows):
    chosen, available = choose(corpus, 3, seed=4)
    assert len(chosen) == 3 and len({stratum for _, stratum in chosen}) == 3
    assert sum(available.values()) == len(rows)


def test_round_robin_then_fill_balances_the_strata(corpus):
    chosen, available = choose(corpus, 40, seed=2)
    counts = {s: sum(1 for _, t in chosen if t == s) for s in available}
    top = max(counts.values())
    for stratum, count in counts.items():  # a stratum gets all it has, or its round-robin share
        assert count == available[stratum] or count >= top - 1, counts
    assert any(count < available[s] for s, count in counts.items())  # some strata were cut
    assert len({note_id for note_id, _ in chosen}) == 40


def test_the_same_seed_gives_the_same_files(cli, corpus, tmp_path):
    first, second, other = tmp_path / "A", tmp_path / "B", tmp_path / "C"
    sample(cli, corpus, first, "--n", "10", "--seed", "3")
    sample(cli, corpus, second, "--n", "10", "--seed", "3")
    sample(cli, corpus, other, "--n", "10", "--seed", "4")
    for name in ("notes.jsonl", "key.jsonl"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    ids = [note["id"] for note in lines(first / "notes.jsonl")]
    assert ids != [note["id"] for note in lines(other / "notes.jsonl")]


def test_the_key_is_the_corpus_gold(cli, corpus, rows, tmp_path):
    out = tmp_path / "K"
    sample(cli, corpus, out, "--n", "12", "--seed", "0")
    key = lines(out / "key.jsonl")
    assert [k["id"] for k in key] == [n["id"] for n in lines(out / "notes.jsonl")]
    for line in key:
        row = rows[line["id"]]
        assert line["codes"] == [c["code"] for c in row["codes"]]  # in gold order
        assert line["note_type"] == row["note_type"] and line["split"] == row["split"]
        for detail, gold in zip(line["detail"], row["codes"], strict=True):
            assert detail["code"] == gold["code"]
            assert detail["system"] == gold["system"]
            assert detail["description"] == gold["description"]
            assert detail["rule"] == gold["rule"] and detail["source"]
            assert [(e["start"], e["end"]) for e in detail["evidence"]] == [
                (e["start"], e["end"]) for e in gold["evidence"]
            ]
            for evidence in detail["evidence"]:
                assert evidence["text"] == row["text"][evidence["start"] : evidence["end"]]


def test_the_key_is_a_gold_file_eval_accepts(cli, corpus, tmp_path):
    from medcode.eval.formats import Problems, read_gold, read_jsonl_table

    out = tmp_path / "E"
    sample(cli, corpus, out, "--n", "8", "--seed", "0")
    key = out / "key.jsonl"
    problems = Problems()
    gold = read_gold(key, problems)  # the line reader
    table = read_jsonl_table(key, role="gold")  # and the fast reader
    assert not problems.items and len(gold) == 8 and table is not None
    assert {table.ids[i].as_py(): table.code_set(i) for i in range(len(table))} == {
        k: v.codes for k, v in gold.items()
    }
    predictions = tmp_path / "perfect.jsonl"
    predictions.write_text(
        "".join(json.dumps({"id": k["id"], "codes": k["codes"]}) + "\n" for k in lines(key))
    )
    status, text, _ = cli("eval", "--gold", str(key), "--pred", str(predictions), "--json")
    result = json.loads(text)
    assert status == 0 and result["micro"]["f1"] == 1.0 and result["n_notes"] == 8
    assert result["audit"]["notes_disagreeing"] == 0  # a key: the audit comes with it


def test_no_code_reaches_the_coder(cli, corpus, rows, tmp_path):
    out = tmp_path / "N"
    sample(cli, corpus, out, "--n", "30", "--seed", "9")
    for note in lines(out / "notes.jsonl"):
        assert set(note) <= NOTE_FIELDS and {"id", "text"} <= set(note)
        assert note["text"] == rows[note["id"]]["text"]
        header = json.dumps({k: v for k, v in note.items() if k != "text"})
        for gold in rows[note["id"]]["codes"]:
            for spelling in {gold["code"], gold["code"].replace(".", "")}:
                pattern = rf"(?<![\w.]){re.escape(spelling)}(?!\w)"
                assert not re.search(pattern, note["text"]), (note["id"], spelling)
                assert spelling not in header
    readme = (out / "README.md").read_text()
    assert "key.jsonl" in readme and f"medcode eval --gold {out}/key.jsonl" in readme


def test_split_restricts_the_sample(cli, corpus, rows, tmp_path):
    out = tmp_path / "T"
    in_train = sum(1 for row in rows.values() if row["split"] == "train")
    sample(cli, corpus, out, "--n", "20", "--split", "train")
    key = lines(out / "key.jsonl")
    assert len(key) == min(20, in_train) and {k["split"] for k in key} == {"train"}


def test_more_notes_than_the_corpus_writes_them_all(cli, corpus, rows, tmp_path):
    out = tmp_path / "ALL"
    text = sample(cli, corpus, out, "--n", "1000")
    assert len(lines(out / "key.jsonl")) == len(rows)
    assert f"--n 1000 is more than the {len(rows)} notes available" in text
    written = json.loads((out / "sample.json").read_text())
    assert written["n"] == 1000 and written["notes"] == written["available"] == len(rows)
    assert f"only {len(rows)} note(s)" in (out / "README.md").read_text()


def test_profiles_of_a_jsonl_corpus_are_strata(rows, tmp_path):
    corpus = tmp_path / "mixed"
    (corpus / "data").mkdir(parents=True)
    with (corpus / "data" / "train-00000-of-00001.jsonl").open("w") as handle:
        for number, row in enumerate(sorted(rows.values(), key=lambda r: r["id"])):
            profile = "hospital_ed" if number % 10 == 0 else "primary_care"
            handle.write(json.dumps({**row, "profile": profile}) + "\n")
    chosen, available = choose(corpus, 20, seed=0)
    profiles = {stratum.split("/")[0] for _, stratum in chosen}
    assert profiles == {"hospital_ed", "primary_care"}
    assert {stratum for _, stratum in chosen} == set(available)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["MISSING", "--n", "5"], "no such corpus folder"),
        (["CORPUS", "--n", "0"], "--n must be at least 1 (got 0)"),
        (["CORPUS", "--n", "-2"], "--n must be at least 1 (got -2)"),
        (["CORPUS", "--n", "5", "--split", "dev"], "unknown split(s) dev"),
        (["EMPTY", "--n", "5"], "not a corpus folder written by medcode synth"),
    ],
)
def test_errors_are_one_line_and_exit_2(cli, corpus, tmp_path, arguments, message):
    (tmp_path / "EMPTY").mkdir()
    places = {
        "CORPUS": str(corpus),
        "MISSING": str(tmp_path / "nope"),
        "EMPTY": str(tmp_path / "EMPTY"),
    }
    arguments = [places.get(a, a) for a in arguments]
    out = tmp_path / "OUT"
    status, _, err = cli("synth", "audit-sample", *arguments, "--out", str(out))
    assert status == 2 and message in err and err.strip().count("\n") == 0, err
    assert not out.exists()


def test_a_non_empty_out_needs_force(cli, corpus, tmp_path):
    out = tmp_path / "USED"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    status, _, err = cli("synth", "audit-sample", str(corpus), "--n", "3", "--out", str(out))
    assert status == 2 and "not empty" in err and "--force" in err
    assert err.strip().count("\n") == 0 and not (out / "key.jsonl").exists()
    sample(cli, corpus, out, "--n", "3", "--force")
    assert len(lines(out / "key.jsonl")) == 3 and (out / "mine.txt").read_text() == "keep"
