"""``medcode demo``: the whole experiment, end to end, on this machine.

Generate a corpus of the default profile; train and score the TF-IDF baseline; fine-tune
the LLM within a time budget; score it zero-shot (the base model, same prompt) and
fine-tuned on the synthetic test, the out-of-template test and CodiEsp dev; check
knowledge retention; write the report and ``summary.json``. Every stage writes into
``OUT`` and is skipped when its output is already there, so an interrupted demo resumes.

The LLM is scored on the same seeded sample of notes per evaluation set as the baseline,
so all three systems are compared on identical notes.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medcode.errors import MedcodeError

SETS = ("test", "test_ood", "codiesp_dev")
SYSTEMS = ("zero_shot", "fine_tuned", "baseline")


@dataclass
class DemoConfig:
    """What the demo does; written to ``OUT/demo_config.json``."""

    out: str = "demo"
    model: str = "embedded"
    recipe: str = "configs/cpu/gemma3_270m_lora.yaml"
    overrides: list[str] = field(default_factory=list)
    notes: int = 6000  # synthetic corpus size (default profile)
    profile: str = "primary_care"
    eval_notes: int = 40  # notes per evaluation set scored by the LLMs and the baseline
    train_minutes: float = 12.0  # the fine-tuning time budget
    max_train_notes: int = 600
    mmlu: str | None = "../shared/mmlu_medical/test.jsonl"
    codiesp: str | None = "../shared/codiesp"
    knowledge_questions: int = 150
    knowledge_documents: int = 10
    batch_size: int = 4
    seed: int = 0

    @classmethod
    def quick(cls, **changes: Any) -> DemoConfig:
        """A smoke run of a few minutes: tiny corpus, a minute of training, a few notes."""
        values = dict(
            out="demo-quick",
            notes=800,
            eval_notes=4,
            train_minutes=0.5,
            max_train_notes=40,
            knowledge_questions=8,
            knowledge_documents=1,
        )
        values.update({k: v for k, v in changes.items() if v is not None})
        return cls(**values)


Say = Callable[[str], None]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def build_corpus(config: DemoConfig, out: Path, say: Say) -> Path:
    """The synthetic corpus (default profile)."""
    from medcode.synth.generate import SynthConfig, run

    corpus = out / "corpus"
    synth = SynthConfig(profile=config.profile, n=config.notes, seed=config.seed)
    say(f"synthetic corpus: {config.notes:,} notes ({config.profile})")
    run(synth, corpus)
    return corpus


def _note(row: dict) -> dict:
    """A corpus row as a notes-JSONL line: id, text, and the setting and patient its
    encounter gives (what ``medcode predict`` passes into the prompt)."""
    from medcode.model.prompt import NoteContext

    note = {"id": row["id"], "text": row["text"]}
    context = NoteContext.of_encounter(row.get("encounter"))
    if context is not None:
        note["setting"] = context.setting
        note["patient"] = {"age": context.age, "sex": context.sex}
    return note


def build_eval_sets(config: DemoConfig, corpus: Path, out: Path, say: Say) -> dict[str, Path]:
    """A seeded sample of ``eval_notes`` notes per set: notes.jsonl + gold.jsonl each."""
    from medcode.synth.card import read_rows

    sets: dict[str, Path] = {}
    rows = list(read_rows(corpus, ["id", "text", "codes", "split", "note_type", "encounter"]))
    for name in ("test", "test_ood"):
        folder = out / "eval_sets" / name
        if (folder / "gold.jsonl").exists():
            sets[name] = folder
            continue
        chosen = [r for r in rows if r["split"] == name]
        random.Random(config.seed).shuffle(chosen)
        chosen = sorted(chosen[: config.eval_notes], key=lambda r: r["id"])
        if not chosen:
            say(f"no {name} notes in a corpus of {config.notes}: {name} skipped (raise --notes)")
            continue
        sets[name] = folder
        _write_jsonl(folder / "notes.jsonl", [_note(r) for r in chosen])
        _write_jsonl(
            folder / "gold.jsonl",
            [
                {
                    "id": r["id"],
                    "codes": [c["code"] for c in r["codes"]],
                    "note_type": r["note_type"],
                    "split": r["split"],
                }
                for r in chosen
            ],
        )
    if config.codiesp:
        folder = out / "eval_sets" / "codiesp_dev"
        if not (folder / "gold.jsonl").exists():
            from medcode.eval.codiesp import load

            try:
                notes, gold = load(config.codiesp, "dev")
            except MedcodeError as error:
                say(f"CodiEsp skipped ({error}); give --codiesp DIR to include real text")
                return sets
            random.Random(config.seed).shuffle(notes)
            notes = sorted(notes[: config.eval_notes], key=lambda n: n["id"])
            _write_jsonl(folder / "notes.jsonl", notes)
            _write_jsonl(
                folder / "gold.jsonl",
                [{"id": n["id"], "codes": gold[n["id"]], "split": "codiesp_dev"} for n in notes],
            )
        sets["codiesp_dev"] = folder
    say("evaluation sets: " + ", ".join(f"{k} ({config.eval_notes} notes)" for k in sets))
    return sets


def score_run(
    run: Path, name: str, sets: dict[str, Path], predictions: dict[str, Path], extra: dict
) -> None:
    """Score each set's predictions into ``run/<set>/metrics.json`` and write ``run.json``."""
    from medcode.eval.commands import score

    for set_name, folder in sets.items():
        result = score(
            folder / "gold.jsonl",
            predictions[set_name],
            bootstrap=1000,
            diagnoses_only=set_name == "codiesp_dev",
        )
        result["inputs"]["split"] = set_name
        target = run / set_name
        target.mkdir(parents=True, exist_ok=True)
        (target / "metrics.json").write_text(json.dumps(result, indent=2))
    (run / "run.json").write_text(json.dumps({"name": name, "config": extra}, indent=2))


def run_baseline(
    config: DemoConfig, corpus: Path, sets: dict[str, Path], out: Path, say: Say
) -> None:
    """Train the TF-IDF baseline on the corpus; predict and score every set."""
    from medcode.baselines.tfidf import BaselineConfig, TfidfCoder
    from medcode.synth.card import read_rows

    run = out / "runs" / "baseline"
    model_dir = out / "baseline_model"
    if (model_dir / "config.json").exists():
        coder = TfidfCoder.load(model_dir)
    else:
        rows = list(read_rows(corpus, ["text", "codes", "split"]))
        pick = {s: [r for r in rows if r["split"] == s] for s in ("train", "validation")}
        say(f"baseline: TF-IDF + linear, {len(pick['train']):,} training notes")
        coder = TfidfCoder(BaselineConfig()).fit(
            [r["text"] for r in pick["train"]],
            [[c["code"] for c in r["codes"]] for r in pick["train"]],
            [r["text"] for r in pick["validation"]],
            [[c["code"] for c in r["codes"]] for r in pick["validation"]],
        )
        coder.save(model_dir)
    predictions = {}
    for set_name, folder in sets.items():
        notes = _read_jsonl(folder / "notes.jsonl")
        found = coder.predict([n["text"] for n in notes])
        path = run / set_name / "predictions.jsonl"
        _write_jsonl(
            path,
            [
                {"id": n["id"], "codes": [c for c, _ in f], "scores": [round(s, 4) for _, s in f]}
                for n, f in zip(notes, found, strict=True)
            ],
        )
        predictions[set_name] = path
    score_run(run, "baseline (TF-IDF)", sets, predictions, {"model": str(model_dir)})


def run_training(config: DemoConfig, corpus: Path, out: Path, say: Say) -> tuple[Path, dict]:
    """Fine-tune within the time budget (resumes an interrupted run)."""
    from medcode.model.train import train
    from medcode.model.train_config import TrainConfig

    adapter = out / "adapter"
    summary_path = adapter / "train_summary.json"
    if summary_path.exists():
        return adapter, json.loads(summary_path.read_text())
    overrides = [
        f"model={config.model}",
        f"corpus={corpus}",
        f"out={adapter}",
        f"max_train_notes={config.max_train_notes}",
        f"time_budget_minutes={config.train_minutes}",
        f"seed={config.seed}",
        *config.overrides,
    ]
    recipe = Path(config.recipe)
    if not recipe.is_file():
        raise MedcodeError(f"{recipe}: no such recipe (give --recipe PATH)")
    train_config = TrainConfig.load(recipe, overrides)
    say(f"fine-tuning {config.model} for {config.train_minutes:g} min ({recipe})")
    resume = (adapter / "checkpoints").exists() or any(adapter.glob("checkpoint-*"))
    summary = train(train_config, resume=resume)
    return adapter, summary


def run_llm(
    name: str,
    label: str,
    model: str,
    adapter: Path,
    sets: dict[str, Path],
    out: Path,
    config: DemoConfig,
    say: Say,
) -> None:
    """Predict every set with an LLM (base model zero-shot, or the adapter) and score it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from medcode.model.backends import load_coder
    from medcode.model.commands import read_notes
    from medcode.model.retriever import Retriever

    run = out / "runs" / name
    record = json.loads((adapter / "medcode_model.json").read_text())
    retriever = Retriever.load(adapter / record["retriever"]) if record.get("retriever") else None
    say(f"{label}: loading {model}")
    coder = load_coder(
        model,
        mode=record["mode"],
        k=record["k"],
        retriever=retriever,
        batch_size=config.batch_size,
    )
    predictions = {}
    started = time.perf_counter()
    total = 0
    for set_name, folder in sets.items():
        path = run / set_name / "predictions.jsonl"
        predictions[set_name] = path
        if path.exists():
            continue
        notes = read_notes(folder / "notes.jsonl", "")  # with each note's setting and patient
        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task(f"{label} on {set_name}", total=len(notes))
            found = coder.predict(
                [n["text"] for n in notes],
                [n["id"] for n in notes],
                progress=lambda n, task=task: bar.advance(task, n),
                contexts=[n["context"] for n in notes],
            )
        rows = []
        for note, prediction in zip(notes, found, strict=True):
            row = {"id": note["id"], "codes": prediction.codes}
            if prediction.scores is not None:
                row["scores"] = [round(s, 4) for s in prediction.scores]
            rows.append(row)
        _write_jsonl(path, rows)
        total += len(notes)
    elapsed = time.perf_counter() - started
    if total:
        say(f"{label}: {total} notes in {elapsed:.0f} s ({total / elapsed:.2f} notes/s)")
    score_run(run, label, sets, predictions, {"model": model, **record})


def run_knowledge(name: str, model: str, out: Path, config: DemoConfig, say: Say) -> dict | None:
    """MMLU-medical accuracy and CodiEsp perplexity for one model (skipped without data)."""
    from medcode.eval.knowledge import evaluate

    path = out / "runs" / name / "knowledge.json"
    if path.exists():
        return json.loads(path.read_text())
    mmlu = Path(config.mmlu) if config.mmlu and Path(config.mmlu).exists() else None
    codiesp = Path(config.codiesp) if config.codiesp and Path(config.codiesp).exists() else None
    if mmlu is None and codiesp is None:
        say("knowledge retention skipped: no MMLU-medical or CodiEsp folder (--mmlu, --codiesp)")
        return None
    say(f"knowledge retention: {name}")
    result = evaluate(
        model,
        mmlu=mmlu,
        codiesp=codiesp,
        limit=config.knowledge_questions,
        documents=config.knowledge_documents,
        seed=config.seed,
    ).to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def summarise(out: Path, train_summary: dict, knowledge: dict[str, dict | None]) -> dict:
    """``summary.json``: micro-F1 and per-category F1 of each system on each set."""
    summary: dict[str, Any] = {}
    for system in SYSTEMS:
        summary[system] = {}
        for set_name in SETS:
            path = out / "runs" / system / set_name / "metrics.json"
            if not path.exists():
                continue
            metrics = json.loads(path.read_text())
            summary[system][set_name] = {
                "micro_f1": metrics["micro"]["f1"],
                "micro_f1_ci": metrics["ci"]["micro"].get("f1"),
                "n_notes": metrics["n_notes"],
                "by_system": {k: v["f1"] for k, v in metrics["by_system"].items()},
                "by_category": {k: v["f1"] for k, v in metrics["by_category"].items()},
            }
    summary["knowledge"] = {
        name: (
            {
                "mmlu_medical_accuracy": result["mmlu_medical"]["accuracy"],
                "mmlu_medical_n": result["mmlu_medical"]["n"],
                "codiesp_perplexity": result["perplexity"]["codiesp"],
            }
            if result
            else None
        )
        for name, result in knowledge.items()
    }
    summary["train"] = {
        "tokens": train_summary.get("tokens"),
        "seconds": train_summary.get("seconds"),
        "tokens_per_second": train_summary.get("tokens_per_second"),
        "steps": train_summary.get("steps"),
    }
    return summary


def run_demo(config: DemoConfig, say: Say) -> dict:
    """Run every stage (skipping finished ones); returns the summary."""
    from medcode.eval.report import write_report

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_config.json").write_text(json.dumps(asdict(config), indent=2))
    started = time.perf_counter()
    corpus = build_corpus(config, out, say)
    sets = build_eval_sets(config, corpus, out, say)
    run_baseline(config, corpus, sets, out, say)
    adapter, train_summary = run_training(config, corpus, out, say)
    run_llm("zero_shot", "zero-shot", config.model, adapter, sets, out, config, say)
    run_llm("fine_tuned", "fine-tuned", str(adapter), adapter, sets, out, config, say)
    for log in ("train_log.jsonl", "config.yaml"):
        if (adapter / log).exists():
            shutil.copy(adapter / log, out / "runs" / "fine_tuned" / log)
    knowledge = {
        "base": run_knowledge("zero_shot", config.model, out, config, say),
        "fine_tuned": run_knowledge("fine_tuned", str(adapter), out, config, say),
    }
    summary = summarise(out, train_summary, knowledge)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    say("writing the report")
    runs = [out / "runs" / name for name in SYSTEMS]
    write_report(runs, out / "report", command="medcode demo")
    return summary
