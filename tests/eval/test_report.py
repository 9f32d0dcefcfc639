"""``medcode report``: two systems x two evaluation sets, scored for real, against hand-computed
figures."""

import contextlib
import io
import json
import re
import sys
from pathlib import Path

import pytest

from medcode.cli import main
from medcode.errors import MedcodeError
from medcode.eval.report import (
    anchor,
    band_scores,
    describe,
    frequency_bands,
    load_run,
    snippet,
)

# Set "test": gold counts E11.9 4, I10 2, 99213 1, J45.909 1, R05.9 1, Z79.4 1 (10 in all).
TEST_GOLD = [
    {"id": "n1", "codes": ["E11.9", "I10", "99213"], "text": "Type 2 diabetes and hypertension."},
    {"id": "n2", "codes": ["E11.9", "I10", "J45.909"], "text": "Diabetes, asthma, BP high."},
    {"id": "n3", "codes": ["E11.9", "R05.9"], "text": "Diabetic with a dry cough for 3 days."},
    {"id": "n4", "codes": ["E11.9", "Z79.4"], "text": "Diabetes on insulin <b>daily</b>."},
]
TEST_OOD_GOLD = [
    {"id": "m1", "codes": ["I50.9", "I10"]},
    {"id": "m2", "codes": ["N18.30"]},
]
PREDICTIONS = {
    # alpha/test: tp 7 (n1 2, n2 2, n3 1, n4 2), fp 2 (99214 in n1, R50.9 in n3),
    # fn 3 (99213 in n1, I10 in n2, R05.9 in n3): F1 = 14 / 19 = 0.7368.
    ("alpha", "test"): [
        {"id": "n1", "codes": ["E11.9", "I10", "99214"]},
        {"id": "n2", "codes": ["E11.9", "J45.909"]},
        {"id": "n3", "codes": ["E11.9", "R50.9"]},
        {"id": "n4", "codes": ["E11.9", "Z79.4"]},
    ],
    # beta/test: tp 6, fp 0, fn 4 (J45.909, R05.9, n4 missing: E11.9, Z79.4): F1 = 12/16.
    ("beta", "test"): [
        {"id": "n1", "codes": ["E11.9", "I10", "99213"]},
        {"id": "n2", "codes": ["E11.9", "I10"]},
        {"id": "n3", "codes": ["E11.9"]},
    ],
    # alpha/test_ood: tp 2, fp 1 (E11.9), fn 1 (I10): F1 = 4/6.
    ("alpha", "test_ood"): [
        {"id": "m1", "codes": ["I50.9"]},
        {"id": "m2", "codes": ["N18.30", "E11.9"]},
    ],
    # beta/test_ood: tp 1, fp 0, fn 2: F1 = 2/4.
    ("beta", "test_ood"): [{"id": "m1", "codes": ["I10"]}, {"id": "m2", "codes": []}],
}
MICRO_F1 = {
    ("alpha", "test"): "0.7368",
    ("beta", "test"): "0.7500",
    ("alpha", "test_ood"): "0.6667",
    ("beta", "test_ood"): "0.5000",
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def build_runs(cli, tmp_path: Path) -> Path:
    """runs/alpha (run.json, train log, knowledge, a YAML config) and runs/beta, each with
    test/ and test_ood/ scored by ``medcode eval --out``."""
    gold = {
        "test": write_jsonl(tmp_path / "gold" / "test.jsonl", TEST_GOLD),
        "test_ood": write_jsonl(tmp_path / "gold" / "test_ood.jsonl", TEST_OOD_GOLD),
    }
    for (system, name), rows in PREDICTIONS.items():
        pred = write_jsonl(tmp_path / "preds" / f"{system}_{name}.jsonl", rows)
        status, _, err = cli(
            "eval",
            "--gold",
            str(gold[name]),
            "--pred",
            str(pred),
            "--bootstrap",
            "50",
            "--out",
            str(tmp_path / "runs" / system / name),
        )
        assert status == 0, err
    alpha = tmp_path / "runs" / "alpha"
    (alpha / "run.json").write_text(
        json.dumps({"name": "alpha-coder", "config": {"model": "tfidf", "seed": 7}})
    )
    (alpha / "recipe.yaml").write_text("lr: 0.001  # <not html>\n")
    write_jsonl(
        alpha / "train_log.jsonl",
        [{"step": 1, "loss": 2.5, "tokens": 100}, {"step": 2, "loss": 1.25, "eval_f1": 0.4}],
    )
    (alpha / "knowledge.json").write_text(
        json.dumps(
            {
                "model": "gemma-270m+lora",
                "mmlu_medical": {"accuracy": 0.3125, "n": 16},
                "perplexity": {"codiesp": 12.5},
            }
        )
    )
    return tmp_path


@pytest.fixture
def runs(cli, tmp_path):
    return build_runs(cli, tmp_path)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of both systems, built once through the command line (read-only in tests)."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "200")

        def cli(*args: str) -> tuple[int, str, str]:
            patch.setattr(sys, "argv", ["medcode", *args])
            out, err = io.StringIO(), io.StringIO()
            with (
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
                pytest.raises(SystemExit) as caught,
            ):
                main()
            return caught.value.code or 0, out.getvalue(), err.getvalue()

        build_runs(cli, root)
        out = root / "report"
        status, stdout, err = cli(
            "report", str(root / "runs" / "alpha"), str(root / "runs" / "beta"), "--out", str(out)
        )
    assert status == 0, err
    assert "report.html" in stdout
    return out


def test_bands_by_hand():
    # 10 gold occurrences: A covers 0-4 (starts at 0%: head), B 4-6 (starts at 40%: head),
    # C, D, E start at 60%, 70%, 80% (torso), F at 90% (tail). X never in the gold: no band.
    counts = {"A": 4, "B": 2, "C": 1, "D": 1, "E": 1, "F": 1, "X": 0}
    assert frequency_bands(counts) == {
        "A": "head",
        "B": "head",
        "C": "torso",
        "D": "torso",
        "E": "torso",
        "F": "tail",
    }
    # One code over half of the gold: it alone is the head; the boundary-crossing code stays up.
    assert frequency_bands({"A": 6, "B": 3, "C": 1}) == {"A": "head", "B": "torso", "C": "tail"}
    by_code = {
        "A": {"tp": 3, "fp": 1, "fn": 1},
        "B": {"tp": 2, "fp": 0, "fn": 0},
        "C": {"tp": 0, "fp": 0, "fn": 1},
        "D": {"tp": 1, "fp": 0, "fn": 0},
        "E": {"tp": 0, "fp": 2, "fn": 1},
        "F": {"tp": 0, "fp": 0, "fn": 1},
        "X": {"tp": 0, "fp": 3, "fn": 0},
    }
    scores = band_scores(by_code)
    # head: tp 5, fp 1, fn 1 -> P = R = F1 = 5/6; torso: tp 1, fp 2, fn 2 -> 1/3; tail: 0.
    assert scores["head"]["f1"] == pytest.approx(5 / 6)
    assert (scores["head"]["codes"], scores["head"]["gold"]) == (2, 6)
    assert scores["torso"]["f1"] == pytest.approx(1 / 3)
    assert (scores["torso"]["tp"], scores["torso"]["fp"], scores["torso"]["fn"]) == (1, 2, 2)
    assert scores["tail"]["f1"] == 0.0
    assert scores["absent"] == {"fp": 3, "codes": 1}


def test_snippet_is_short_and_centred():
    text = "x" * 500 + " the patient has a persistent cough " + "y" * 500
    start = text.index("cough")
    cut = snippet(text, (start, start + 5))
    assert len(cut) <= 200 and "cough" in cut and cut.startswith("…") and cut.endswith("…")
    assert snippet("short\n\n text") == "short text"


def test_report_files_are_self_contained(report):
    html = (report / "report.html").read_text()
    assert (report / "report.md").is_file()
    assert "data:image/png;base64," in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<link" not in html and "<script" not in html
    plots = sorted(p.name for p in (report / "plots").glob("*.png"))
    assert {"micro_f1.png", "by_system.png", "by_category.png", "frequency_bands.png"} <= set(plots)
    assert "training.png" in plots


def test_micro_f1_by_hand_in_both(report):
    markdown = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    for value in MICRO_F1.values():
        assert value in markdown and value in html
    # the overview row of each system: the two sets side by side, alpha's name from run.json
    alpha_row = next(line for line in markdown.splitlines() if line.startswith("| alpha-coder |"))
    assert alpha_row.index("0.7368") < alpha_row.index("0.6667")
    beta_row = next(line for line in markdown.splitlines() if line.startswith("| beta |"))
    assert beta_row.index("0.7500") < beta_row.index("0.5000")


def test_frequency_bands_in_report(report):
    markdown = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    assert "head = the most frequent codes, covering the first 50% of gold occurrences" in markdown
    assert "torso = the next 40%" in html and "tail = the remaining 10%" in html
    # alpha/test: head E11.9 (tp 4) + I10 (tp 1, fn 1): F1 10/11; torso 99213 (fn), J45.909
    # (tp), R05.9 (fn): 2/4; tail Z79.4 (tp): 1. 99214 and R50.9 are absent from the gold.
    section = markdown.split("## F1 by code frequency band")[1].split("\n## ")[0]
    alpha_test = next(line for line in section.splitlines() if line.startswith("| alpha-coder"))
    assert "0.9091 (2 codes, 6 gold)" in alpha_test
    assert "0.5000 (3 codes, 3 gold)" in alpha_test
    assert "1.0000 (1 code, 1 gold)" in alpha_test
    assert "2 (2 codes)" in alpha_test
    # test_ood: I10, I50.9 (head), N18.30 (torso, starts at 2/3): no tail code, no tail F1
    ood = section.split("### test_ood")[1]
    alpha_ood = next(line for line in ood.splitlines() if line.startswith("| alpha-coder"))
    assert "– (0 codes, 0 gold)" in alpha_ood


def test_errors_with_examples(report):
    markdown = (report / "report.md").read_text()
    section = markdown.split("## Most frequent errors")[1].split("\n## ")[0]
    alpha_test = section.split("#### alpha-coder / test")[1].split("####")[0]
    false_positives, false_negatives = alpha_test.split("Top false negatives:")
    assert "| 99214 | Office visit, established patient" in false_positives
    assert "n1: “Type 2 diabetes and hypertension.”" in false_positives
    assert "| R50.9 |" in false_positives and "n3" in false_positives
    assert {"99213", "I10", "R05.9"} <= set(re.findall(r"^\| ([\w.]+) \|", false_negatives, re.M))
    assert "n3: “Diabetic with a dry cough for 3 days.”" in false_negatives
    beta_test = section.split("#### beta / test")[1].split("####")[0]
    assert "No false positives." in beta_test
    assert "| Z79.4 |" in beta_test and "n4" in beta_test  # a missing prediction
    html = (report / "report.html").read_text()
    assert "Diabetes on insulin &lt;b&gt;daily&lt;/b&gt;." in html  # escaped, never markup
    assert "<b>daily</b>" not in html


def test_links_to_predictions_and_metrics(report):
    markdown = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    for system, name in PREDICTIONS:
        pred = f"../preds/{system}_{name}.jsonl"
        metrics = f"../runs/{system}/{name}/metrics.json"
        assert f'href="{pred}"' in html and f'href="{metrics}"' in html
        assert f"]({pred})" in markdown and f"]({metrics})" in markdown
    assert f"[{MICRO_F1['alpha', 'test']} \\[" in markdown  # a table cell that is a link
    assert "## Sources" in markdown


def test_knowledge_training_and_configs(report):
    markdown = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    assert "gemma-270m+lora" in markdown and "0.3125" in markdown and "12.500" in html
    assert "| alpha-coder | 2 | 2 | 2.5000 | 1.2500 | 1.2500 | 100 | – | 0.4000 |" in markdown
    assert '"seed": 7' in markdown and "lr: 0.001  # <not html>" in markdown
    assert "<details><summary>recipe.yaml</summary>" in html
    assert "lr: 0.001  # &lt;not html&gt;" in html
    assert "medcode report" in html and "Generated" in markdown


def test_missing_predictions_file_keeps_the_counts(cli, runs):
    (runs / "preds" / "beta_test.jsonl").unlink()
    out = runs / "report2"
    status, _, err = cli("report", str(runs / "runs" / "beta"), "--out", str(out))
    assert status == 0, err
    markdown = (out / "report.md").read_text()
    section = markdown.split("#### beta / test")[1].split("####")[0]
    assert "No examples: the predictions file" in section
    assert "beta_test.jsonl no longer exists" in section
    assert "| Z79.4 |" in section and "(missing)" in markdown


def test_missing_run_dir_is_a_clear_error(cli, tmp_path):
    status, _, err = cli("report", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    assert status == 1 and "nope: no such run folder" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    status, _, err = cli("report", str(tmp_path / "empty"), "--out", str(tmp_path / "r"))
    assert status == 1 and "empty: no metrics.json" in err


def test_malformed_metrics_names_the_file(cli, tmp_path):
    (tmp_path / "run" / "test").mkdir(parents=True)
    (tmp_path / "run" / "test" / "metrics.json").write_text("{not json")
    status, _, err = cli("report", str(tmp_path / "run"), "--out", str(tmp_path / "r"))
    assert status == 1 and "metrics.json: the metrics file is not valid JSON" in err
    (tmp_path / "run" / "test" / "metrics.json").write_text('{"micro": 3}')
    with pytest.raises(MedcodeError, match=r"metrics\.json: not a metrics\.json written by"):
        load_run(tmp_path / "run")


def test_top_level_metrics_set_name(tmp_path):
    run = tmp_path / "sys"
    run.mkdir()
    metrics = {"micro": {"precision": 1.0, "recall": 1.0, "f1": 1.0}, "inputs": {}}
    (run / "metrics.json").write_text(json.dumps(metrics | {"by_split": {"test": {}}}))
    assert list(load_run(run).sets) == ["test"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert list(load_run(run).sets) == ["all"] and load_run(run).name == "sys"
    (run / "metrics.json").write_text(json.dumps(metrics | {"inputs": {"split": "dev"}}))
    assert list(load_run(run).sets) == ["dev"]


def test_snippet_anchor():
    text = "Header line. Assessment: obesity, class 2, stable. Family history: diabetes (mother)."
    spans = {"E66.812": [(25, 41)]}
    # false negative: its own evidence; false positive in the same category: the gold's
    assert anchor(text, spans, "E66.812", "fn") == (25, 41)
    assert anchor(text, spans, "E66.813", "fp", "Obesity, class 3") == (25, 41)
    # otherwise the first distinctive word of the description
    start, _ = anchor(text, spans, "Z83.3", "fp", "Family history of diabetes mellitus")
    assert text[start:].startswith("diabetes")
    assert anchor(text, {}, "99214", "fp", "Office visit, established patient") is None


def test_descriptions_prefer_procedures_for_undotted_codes():
    assert describe("G0439").startswith("Annual wellness visit")  # HCPCS, not ICD G04.39
    assert describe("E11.9") == "Type 2 diabetes mellitus without complications"
    assert describe("XYZ.9") == "(not a valid code)"


def test_module_import_is_light():
    import subprocess

    code = (
        "import sys, medcode.eval.report; "
        "heavy = {'matplotlib', 'jinja2', 'numpy', 'medcode.terminology'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_knowledge_file_of_eval_knowledge(tmp_path):
    # the full `medcode eval knowledge --out` format, with a skipped (null) measure
    from medcode.eval.report import write_report

    run = tmp_path / "base"
    run.mkdir()
    metrics = {"micro": {"precision": 0.5, "recall": 0.5, "f1": 0.5}, "inputs": {}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    knowledge = {
        "model": "embedded",
        "mmlu_medical": {"accuracy": None, "accuracy_norm": None, "n": 0, "by_subject": {}},
        "perplexity": {"codiesp": 21.75, "tokens": 12000, "documents": 10, "window": 512},
        "sources": {},
    }
    (run / "knowledge.json").write_text(json.dumps(knowledge))
    written = write_report([run], tmp_path / "out")
    markdown = written.markdown.read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| base | embedded"))
    assert "| – | – | 0 | 21.750 | 12,000 tokens, 10 documents, window 512 |" in row
    (run / "knowledge.json").write_text(json.dumps({"perplexity": {"codiesp": "high"}}))
    with pytest.raises(MedcodeError, match=r"knowledge\.json: malformed knowledge file"):
        load_run(run)


def test_category_intervals_and_gaps_in_both(report):
    # alpha/test's chronic row: its F1, the 95% interval, and the paired gap to the overall
    # micro F1 with its interval, as metrics.json has them
    metrics = json.loads((report.parent / "runs" / "alpha" / "test" / "metrics.json").read_text())
    chronic = metrics["ci"]["by_category"]["chronic"]
    f1 = metrics["by_category"]["chronic"]["f1"]
    assert metrics["by_category"]["chronic"]["tp"] + metrics["by_category"]["chronic"]["fn"] == 8
    assert chronic["gap_point"] == pytest.approx(f1 - metrics["micro"]["f1"])

    def signed(value):
        return f"{value:.4f}".replace("-", "\u2212")

    low, high = chronic["f1"]
    gap_low, gap_high = chronic["gap"]
    text = (
        f"{f1:.4f} [{low:.4f}–{high:.4f}] (8), gap {signed(chronic['gap_point'])} "
        f"[{signed(gap_low)}–{signed(gap_high)}]"
    )
    html = (report / "report.html").read_text()
    markdown = (report / "report.md").read_text()
    section = markdown.split("## F1 by category")[1].split("\n## ")[0]
    assert text.replace("[", "\\[").replace("]", "\\]") in section
    assert "gap: the category's F1 minus the overall micro F1" in section
    assert text in html


def test_moving_average_by_hand():
    from medcode.eval.report import _moving_average

    assert _moving_average([4.0, 2.0, 6.0, 0.0], 2) == [4.0, 3.0, 4.0, 3.0]
    assert _moving_average([1.0, 2.0, 3.0], 20) == [1.0, 1.5, 2.0]
    assert _moving_average([], 5) == []


def test_training_plot_with_answer_loss_and_kl(tmp_path):
    from PIL import Image

    from medcode.eval.report import _training_plot

    log = [
        {"step": float(s), "loss": 1.0 / s + 0.01 * s, "answer_loss": 1.0 / s, "kl": 0.01 * s}
        for s in range(1, 41)
    ]
    plain = [{"step": 1.0, "loss": 2.0}, {"step": 2.0, "loss": 1.0}]
    _training_plot(tmp_path / "kl.png", {"with kl": log, "without": plain})
    _training_plot(tmp_path / "plain.png", {"without": plain})
    # a panel more for the KL: the figure is twice as tall
    with Image.open(tmp_path / "kl.png") as kl, Image.open(tmp_path / "plain.png") as one:
        assert kl.size[0] == one.size[0] and kl.size[1] == 2 * one.size[1]
