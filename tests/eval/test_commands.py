import json
from pathlib import Path

ASSETS = Path(__file__).parents[1] / "assets" / "eval"


def test_eval_json_prints_the_hand_computed_micro_f1(cli):
    # tp 3, fp 2, fn 3 (see test_metrics): micro F1 = 6/11.
    status, out, _ = cli(
        "eval", "--gold", str(ASSETS / "gold.jsonl"), "--pred", str(ASSETS / "pred.jsonl"), "--json"
    )
    result = json.loads(out)
    assert status == 0
    assert result["micro"]["f1"] == 6 / 11
    assert {"micro", "macro", "by_system", "by_category", "n_notes", "ci"} <= set(result)
    assert result["n_notes"] == 3 and result["n_gold_codes"] == 6
    assert result["ci"]["micro"]["f1"][0] <= 6 / 11 <= result["ci"]["micro"]["f1"][1]


def test_eval_table_and_out_folder(cli, tmp_path):
    status, out, _ = cli(
        "eval",
        "--gold",
        str(ASSETS / "gold.jsonl"),
        "--pred",
        str(ASSETS / "pred.jsonl"),
        "--out",
        str(tmp_path),
    )
    assert status == 0 and "macro (mean over 6 gold codes)" in out and "0.5455" in out
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["micro"]["tp"] == 3
    # per-code counts for the report: a's Z79.4 and c's R50.9 are the false positives
    assert written["by_code"]["Z79.4"] == {"tp": 0, "fp": 1, "fn": 0}
    assert written["by_code"]["E11.22"] == {"tp": 1, "fp": 0, "fn": 0}
    assert sum(c["fn"] for c in written["by_code"].values()) == 3


def test_bad_predictions_are_reported_with_line_numbers(cli):
    status, out, _ = cli(
        "eval",
        "--gold",
        str(ASSETS / "gold.jsonl"),
        "--pred",
        str(ASSETS / "pred_bad.jsonl"),
        "--json",
    )
    result = json.loads(out)
    problems = "\n".join(result["problems"])
    assert status == 0
    assert "pred_bad.jsonl:2: malformed prediction line" in problems
    assert "pred_bad.jsonl:3: prediction for unknown note id 'zzz'" in problems
    assert "pred_bad.jsonl:4: duplicate id 'a' (first on line 1)" in problems
    assert result["missing_notes"] == ["b", "c"]  # scored as empty predictions
    assert result["invalid_predicted_codes"] == {"XYZ.9": 1}
    assert result["micro"]["fp"] == 1 and result["micro"]["tp"] == 1


def test_empty_prediction_file(cli):
    status, out, _ = cli(
        "eval",
        "--gold",
        str(ASSETS / "gold.jsonl"),
        "--pred",
        str(ASSETS / "empty.jsonl"),
        "--json",
    )
    result = json.loads(out)
    assert status == 0 and "holds no notes" in result["problems"][0]
    assert result["micro"]["recall"] == 0.0 and len(result["missing_notes"]) == 3


def test_missing_file_is_a_clear_error(cli, tmp_path):
    status, _, err = cli(
        "eval", "--gold", str(ASSETS / "gold.jsonl"), "--pred", str(tmp_path / "nope.jsonl")
    )
    assert status == 1 and "cannot read the prediction file" in err


def test_gold_from_a_synth_folder(cli, tmp_path):
    out = tmp_path / "corpus"
    assert cli("synth", "--n", "30", "--seed", "3", "--out", str(out))[0] == 0
    from medcode.synth.card import read_rows

    rows = list(read_rows(out, ["id", "codes"]))
    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        "\n".join(
            json.dumps({"id": r["id"], "codes": [c["code"] for c in r["codes"]]}) for r in rows
        )
    )
    status, text, _ = cli("eval", "--gold", str(out), "--pred", str(pred), "--json")
    result = json.loads(text)
    assert status == 0 and result["micro"]["f1"] == 1.0 and result["by_split"]
    assert "frailty" in result["by_category"] or "chronic" in result["by_category"]
