import json

import numpy as np
import pytest

from medcode.baselines.tfidf import BaselineConfig, TfidfCoder
from medcode.errors import MedcodeError

TEXTS = [
    "type 2 diabetes with chronic kidney disease stage 3a",
    "T2DM and CKD 3a, metformin",
    "essential hypertension, stable on lisinopril",
    "HTN, well controlled",
    "type 2 diabetes, A1c 7.2",
    "hypertension and type 2 diabetes mellitus",
] * 4
LABELS = [
    ["E11.22", "N18.31"],
    ["E11.22", "N18.31"],
    ["I10"],
    ["I10"],
    ["E11.9"],
    ["I10", "E11.9"],
] * 4


@pytest.fixture(scope="module")
def coder() -> TfidfCoder:
    config = BaselineConfig(min_code_count=2, char_ngrams=(3, 4))
    return TfidfCoder(config).fit(TEXTS, LABELS, TEXTS[:12], LABELS[:12])


def test_learns_every_frequent_code(coder):
    assert coder.codes == ["E11.22", "E11.9", "I10", "N18.31"]
    assert coder.weights.shape[0] == 4 and coder.thresholds.shape == (4,)


def test_predicts_the_training_notes(coder):
    found = coder.predict(["HTN, well controlled", "T2DM and CKD 3a, metformin"])
    assert {c for c, _ in found[0]} == {"I10"}
    assert {"E11.22", "N18.31"} <= {c for c, _ in found[1]}
    scores = [s for _, s in found[1]]
    assert scores == sorted(scores, reverse=True)


def test_threshold_maximises_f1():
    scores = np.array([0.9, 0.8, 0.4, 0.3])
    truth = np.array([True, True, False, True])
    assert TfidfCoder._best_threshold(scores, truth) == pytest.approx(0.3)  # F1 6/7 at 0.3


def test_save_and_load_round_trip(coder, tmp_path):
    coder.save(tmp_path / "model")
    again = TfidfCoder.load(tmp_path / "model")
    assert again.codes == coder.codes
    assert again.predict(TEXTS[:3]) == coder.predict(TEXTS[:3])
    assert json.loads((tmp_path / "model" / "config.json").read_text())["kind"] == "tfidf_baseline"


def test_untrained_and_missing_model(tmp_path):
    with pytest.raises(MedcodeError, match="not trained"):
        TfidfCoder().predict(["x"])
    with pytest.raises(MedcodeError, match="no baseline model"):
        TfidfCoder.load(tmp_path)


def test_cli_train_predict_and_eval(cli, tmp_path):
    corpus, model, pred = tmp_path / "corpus", tmp_path / "model", tmp_path / "pred.jsonl"
    assert cli("synth", "--n", "300", "--seed", "4", "--out", str(corpus))[0] == 0
    status, _, err = cli(
        "baseline", "train", "--corpus", str(corpus), "--out", str(model), "--min-count", "2"
    )
    assert status == 0, err
    status, _, err = cli(
        "baseline",
        "predict",
        "--model",
        str(model),
        "--corpus",
        str(corpus),
        "--split",
        "test,test_ood",
        "--out",
        str(pred),
    )
    assert status == 0, err
    status, out, _ = cli(
        "eval", "--gold", str(corpus), "--split", "test,test_ood", "--pred", str(pred), "--json"
    )
    result = json.loads(out)
    assert status == 0 and result["missing_notes"] == []
    assert result["micro"]["f1"] > 0.1  # learns something even from ~240 notes
