"""Knowledge retention: does fine-tuning on synthetic notes cost general medical knowledge?

Two measures, run on the base model and on the fine-tuned one:

- multiple-choice accuracy on MMLU-medical by option log-likelihood: for each question the
  model scores every option's text as the continuation of ``Question: ...\\nAnswer:``; the
  option with the highest total log-likelihood is its answer (``accuracy``), and with the
  highest log-likelihood per character (``accuracy_norm``, as lm-evaluation-harness's
  ``acc_norm``). Chance is 25%.
- perplexity on real clinical text (CodiEsp English case reports), over non-overlapping
  windows of the tokenised documents.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcode.errors import MedcodeError

LETTERS = ("A", "B", "C", "D", "E")


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; ``answer`` indexes ``options``."""

    id: str
    question: str
    options: tuple[str, ...]
    answer: int
    subject: str = ""


@dataclass
class KnowledgeResult:
    """Scores of one model; :meth:`to_dict` is the ``knowledge.json`` format reports read."""

    model: str
    accuracy: float | None = None
    accuracy_norm: float | None = None
    n_questions: int = 0
    by_subject: dict[str, float] = field(default_factory=dict)
    perplexity: float | None = None
    tokens: int = 0
    documents: int = 0
    window: int = 0
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "mmlu_medical": {
                "accuracy": self.accuracy,
                "accuracy_norm": self.accuracy_norm,
                "n": self.n_questions,
                "method": "option log-likelihood",
                "by_subject": self.by_subject,
            },
            "perplexity": {
                "codiesp": self.perplexity,
                "tokens": self.tokens,
                "documents": self.documents,
                "window": self.window,
            },
            "sources": self.sources,
        }


def read_questions(path: str | Path, limit: int | None = None, seed: int = 0) -> list[Question]:
    """Questions from MMLU-medical JSONL (``question``, ``options`` {letter: text},
    ``answer_idx`` letter); ``limit`` takes a seeded sample, the same for every model."""
    path = Path(path)
    if path.is_dir():
        path = path / "test.jsonl"
    if not path.is_file():
        raise MedcodeError(f"{path}: no MMLU-medical file (give --mmlu PATH/test.jsonl)")
    questions = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                letters = sorted(row["options"])
                options = tuple(str(row["options"][k]) for k in letters)
                answer = letters.index(row["answer_idx"])
                questions.append(
                    Question(
                        id=str(row.get("realidx", number)),
                        question=str(row["question"]),
                        options=options,
                        answer=answer,
                        subject=str(row.get("subject", "")),
                    )
                )
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise MedcodeError(
                    f"{path}:{number}: expected question, options {{letter: text}} and "
                    f"answer_idx ({type(error).__name__}: {error})"
                ) from None
    if not questions:
        raise MedcodeError(f"{path}: no questions")
    if limit is not None and limit < len(questions):
        keep = sorted(random.Random(seed).sample(range(len(questions)), limit))
        questions = [questions[i] for i in keep]
    return questions


def _continuation_log_likelihoods(
    loaded: Any, pairs: list[tuple[str, str]], batch_size: int, progress: Any = None
) -> list[float]:
    """Total log-likelihood of each ``continuation`` given its ``context``."""
    import torch

    from medcode.model.head import hidden_states, token_log_probs

    tokenizer, model = loaded.tokenizer, loaded.model
    encoded = []
    for context, continuation in pairs:
        head = tokenizer(context).input_ids
        tail = tokenizer(continuation, add_special_tokens=False).input_ids
        encoded.append((head, tail))
    order = sorted(range(len(encoded)), key=lambda i: -sum(map(len, encoded[i])))
    scores = [0.0] * len(encoded)
    pad = tokenizer.pad_token_id or 0
    device = loaded.device
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            rows = [encoded[i][0] + encoded[i][1] for i in batch]
            width = max(map(len, rows))
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, row in enumerate(rows):
                ids[r, : len(row)] = torch.tensor(row)
                mask[r, : len(row)] = 1
            hidden = hidden_states(model, ids.to(device), mask.to(device))
            rows_at, cols_at, targets, owner = [], [], [], []
            for r, i in enumerate(batch):
                context_length, tail = len(encoded[i][0]), encoded[i][1]
                for k, token in enumerate(tail):
                    rows_at.append(r)
                    cols_at.append(context_length - 1 + k)
                    targets.append(token)
                    owner.append(i)
            picked = hidden[torch.tensor(rows_at), torch.tensor(cols_at)]
            log_probs = token_log_probs(model, picked, torch.tensor(targets, device=device))
            for i, value in zip(owner, log_probs.tolist(), strict=True):
                scores[i] += value
            if progress is not None:
                progress(len(batch))
    return scores


def multiple_choice(
    loaded: Any, questions: list[Question], batch_size: int = 8, progress: Any = None
) -> tuple[float, float, dict[str, float]]:
    """``(accuracy, accuracy_norm, accuracy by subject)`` by option log-likelihood."""
    pairs, owners = [], []
    for q, question in enumerate(questions):
        context = f"Question: {question.question.strip()}\nAnswer:"
        for o, option in enumerate(question.options):
            pairs.append((context, " " + option.strip()))
            owners.append((q, o))
    scores = _continuation_log_likelihoods(loaded, pairs, batch_size, progress)
    best: dict[int, tuple[float, int]] = {}
    best_norm: dict[int, tuple[float, int]] = {}
    for (q, o), score, (_, text) in zip(owners, scores, pairs, strict=True):
        norm = score / max(len(text), 1)
        if q not in best or score > best[q][0]:
            best[q] = (score, o)
        if q not in best_norm or norm > best_norm[q][0]:
            best_norm[q] = (norm, o)
    right = [best[q][1] == question.answer for q, question in enumerate(questions)]
    right_norm = [best_norm[q][1] == question.answer for q, question in enumerate(questions)]
    by_subject: dict[str, list[bool]] = defaultdict(list)
    for question, ok in zip(questions, right, strict=True):
        by_subject[question.subject or "all"].append(ok)
    return (
        sum(right) / len(right),
        sum(right_norm) / len(right_norm),
        {name: sum(v) / len(v) for name, v in sorted(by_subject.items())},
    )


def perplexity(
    loaded: Any, texts: list[str], window: int = 512, progress: Any = None
) -> tuple[float, int]:
    """``(perplexity, tokens scored)`` over non-overlapping ``window``-token pieces."""
    import torch

    from medcode.model.head import hidden_states, token_log_probs

    tokenizer, model, device = loaded.tokenizer, loaded.model, loaded.device
    total, count = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text).input_ids
            for start in range(0, max(len(ids) - 1, 0), window):
                piece = torch.tensor([ids[start : start + window + 1]], device=device)
                if piece.shape[1] < 2:
                    continue
                hidden = hidden_states(model, piece[:, :-1])[0]
                total -= token_log_probs(model, hidden, piece[0, 1:]).sum().item()
                count += piece.shape[1] - 1
            if progress is not None:
                progress(1)
    if not count:
        raise MedcodeError("no text to score for perplexity")
    return math.exp(total / count), count


def evaluate(
    model: str,
    *,
    mmlu: Path | None,
    codiesp: Path | None,
    split: str = "dev",
    limit: int | None = None,
    documents: int | None = None,
    window: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    device: str | None = None,
) -> KnowledgeResult:
    """Load ``model`` and score what was asked for (MMLU-medical, CodiEsp perplexity)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from medcode.model.loading import load, resolve

    resolve(model)  # a wrong model path is reported before any data is read
    if mmlu is None and codiesp is None:
        raise MedcodeError("nothing to evaluate: give --mmlu and/or --codiesp")
    questions = read_questions(mmlu, limit, seed) if mmlu is not None else []
    texts: list[str] = []
    if codiesp is not None:
        from medcode.eval.codiesp import load as load_codiesp

        notes, _ = load_codiesp(codiesp, split)
        texts = [note["text"] for note in notes][:documents]
    loaded = load(model, device=device)
    result = KnowledgeResult(model=loaded.source.label, window=window)
    columns = (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        if questions:
            total = sum(len(q.options) for q in questions)
            task = bar.add_task("MMLU-medical options", total=total)
            result.accuracy, result.accuracy_norm, result.by_subject = multiple_choice(
                loaded, questions, batch_size, lambda n: bar.advance(task, n)
            )
            result.n_questions = len(questions)
            result.sources["mmlu_medical"] = str(mmlu)
        if texts:
            task = bar.add_task("CodiEsp perplexity", total=len(texts))
            result.perplexity, result.tokens = perplexity(
                loaded, texts, window, lambda n: bar.advance(task, n)
            )
            result.documents = len(texts)
            result.sources["codiesp"] = f"{codiesp} ({split})"
    return result
