"""`medcode demo` end to end with a tiny random model: every stage runs, summary.json has the
documented shape, its numbers are the ones the evaluation gives, and a rerun resumes."""

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from medcode.demo import SETS, SYSTEMS, DemoConfig, run_demo
from medcode.eval.commands import score

ROOT = Path(__file__).parents[1]
ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="module")
def demo_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    config = DemoConfig.quick(
        out=str(out),
        model=str(tiny_model),
        recipe=str(ROOT / "configs" / "cpu" / "gemma3_270m_lora.yaml"),
        notes=600,
        eval_notes=2,
        mmlu=str(ASSETS / "mmlu_tiny.jsonl"),
        codiesp=str(ASSETS / "codiesp_tiny"),
        knowledge_questions=2,
        knowledge_documents=1,
        overrides=["top_layers=0", "max_steps=2", "max_seq_len=4096", "max_train_notes=8"],
    )
    messages: list[str] = []
    summary = run_demo(config, messages.append)
    return config, out, summary, messages


def test_summary_has_every_system_set_and_section(demo_run):
    _, out, summary, _ = demo_run
    assert json.loads((out / "summary.json").read_text()) == summary
    for system in SYSTEMS:
        for name in SETS:
            found = summary[system][name]
            assert 0.0 <= found["micro_f1"] <= 1.0
            assert found["n_notes"] == 2
            assert isinstance(found["by_category"], dict)
    assert summary["train"]["tokens"] > 0 and summary["train"]["seconds"] > 0
    assert set(summary["knowledge"]) == {"base", "fine_tuned"}
    assert summary["knowledge"]["base"]["mmlu_medical_n"] == 2


def test_summary_numbers_are_the_evaluations(demo_run):
    _, out, summary, _ = demo_run
    for system in SYSTEMS:
        for name in SETS:
            result = score(
                out / "eval_sets" / name / "gold.jsonl",
                out / "runs" / system / name / "predictions.jsonl",
                bootstrap=0,
                diagnoses_only=name == "codiesp_dev",
            )
            assert summary[system][name]["micro_f1"] == result["micro"]["f1"]


def test_llm_predictions_are_valid_codes(demo_run):
    from medcode.eval.formats import normalize_code

    _, out, _, _ = demo_run
    for system in ("zero_shot", "fine_tuned"):
        for name in SETS:
            path = out / "runs" / system / name / "predictions.jsonl"
            for line in path.read_text().splitlines():
                for code in json.loads(line)["codes"]:
                    assert normalize_code(code)[1] != "invalid", code


def test_synthetic_eval_notes_carry_their_setting_and_patient(demo_run):
    from medcode.model.prompt import SETTINGS

    _, out, _, _ = demo_run
    for name in ("test", "test_ood"):
        path = out / "eval_sets" / name / "notes.jsonl"
        notes = [json.loads(line) for line in path.read_text().splitlines()]
        assert notes and all(n["setting"] in SETTINGS for n in notes)
        assert all(n["patient"]["sex"] in ("female", "male") for n in notes)
    assert json.loads((out / "adapter" / "medcode_model.json").read_text())["context"] is True


def test_report_and_training_curve_are_written(demo_run):
    _, out, _, _ = demo_run
    html = (out / "report" / "report.html").read_text()
    for name in ("zero-shot", "fine-tuned", "baseline"):
        assert name in html
    assert (out / "runs" / "fine_tuned" / "train_log.jsonl").exists()
    assert (out / "adapter" / "medcode_model.json").exists()


def test_rerun_resumes_without_redoing_stages(demo_run):
    config, out, summary, _ = demo_run
    before = (out / "runs" / "fine_tuned" / "test" / "predictions.jsonl").stat().st_mtime_ns
    messages: list[str] = []
    again = run_demo(config, messages.append)
    after = (out / "runs" / "fine_tuned" / "test" / "predictions.jsonl").stat().st_mtime_ns
    assert before == after
    assert not any("fine-tuning" in m for m in messages)
    assert {k: again[k] for k in SYSTEMS} == {k: summary[k] for k in SYSTEMS}
