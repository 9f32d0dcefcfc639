"""Context of a condition mention (present, negated, uncertain, history, family, hypothetical):
the retriever's hand-written cues (``medcode.model.retriever``, the baseline) against
medspaCy's ConText rules, on the same sentences, in the same run: accuracy per label,
overall and macro, and sentences per second, for each case file.

    .venv/bin/python benchmarks/bench_context.py [--cases FILE ...]

The cases were written blind by helpers acting as certified coders, who never read medcode's
cues: realistic chart sentences with one target condition each and the status a coder would
give it, a third or more deliberately hard (negation scope ending at "but", pseudo-negations
such as "gram negative sepsis", "history of present illness", a negative family history,
"return if fever develops"). ``context_cases.csv`` (180) was read when the cues were
rewritten from the NegEx and ConText trigger lists (``data/terminology/context_cues.yaml``);
``context_cases_heldout.csv`` (120, a second coder's) was written afterwards and never
looked at: its figures are the honest ones.

medspaCy (1.3.1) pins spaCy 3.7, which needs numpy < 2, while medcode needs numpy >= 2: the
two cannot share an environment. Measure medspaCy in a separate one::

    python -m venv /tmp/ctx && /tmp/ctx/bin/pip install medspacy -e . "numpy<2"
    /tmp/ctx/bin/python benchmarks/bench_context.py

Without medspaCy only the baseline is measured.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from pathlib import Path

LABELS = ("present", "negated", "uncertain", "history", "family", "hypothetical")
DATA = Path(__file__).resolve().parent / "data"
CASES = [DATA / "context_cases.csv", DATA / "context_cases_heldout.csv"]


def read_cases(path: Path) -> list[dict[str, str]]:
    """The cases, checked: a target occurs once in its sentence, labels are known."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for number, row in enumerate(rows, start=2):
        if row["sentence"].count(row["target"]) != 1:
            raise SystemExit(f"{path}:{number}: the target must occur once in the sentence")
        if row["label"] not in LABELS:
            raise SystemExit(f"{path}:{number}: unknown label {row['label']!r}")
    return rows


def label_of(negated: bool, family: bool, hypothetical: bool, uncertain: bool, history: bool):
    """One label from the attributes, in the order a coder would settle them (a negative family
    history is negated: there is nothing to code)."""
    for flag, label in (
        (negated, "negated"),
        (family, "family"),
        (hypothetical, "hypothetical"),
        (uncertain, "uncertain"),
        (history, "history"),
    ):
        if flag:
            return label
    return "present"


class Ours:
    """The retriever's lexicon: the target's codes, their cue flags in the sentence."""

    name = "medcode cues"

    def __init__(self) -> None:
        from medcode.model.retriever import shipped_lexicon

        self.lexicon = shipped_lexicon()

    def labels(self, cases: list[dict[str, str]]) -> list[str | None]:
        from medcode.model import retriever
        from medcode.model.retriever import FAMILY, HISTORY, NEGATED, UNCERTAIN

        hypothetical = getattr(retriever, "HYPOTHETICAL", 0)  # 0 in trees before the flag

        found: list[str | None] = []
        for case in cases:
            codes = set(self.lexicon.evidence(case["target"]))
            evidence = self.lexicon.evidence(case["sentence"])
            items = [evidence[code] for code in codes if code in evidence]
            if not items:
                found.append(None)  # the target was not read at all
                continue
            context = 0 if any(i.plain and not i.context for i in items) else items[0].context
            found.append(
                label_of(
                    bool(context & NEGATED),
                    bool(context & FAMILY),
                    bool(context & hypothetical),
                    bool(context & UNCERTAIN),
                    bool(context & HISTORY),
                )
            )
        return found


class MedSpacy:
    """medspaCy's default pipeline, a target rule per case's target, its ConText rules."""

    name = "medspaCy ConText"

    def __init__(self, cases: list[dict[str, str]]) -> None:
        import medspacy
        from medspacy.ner import TargetRule

        try:  # PyRuSH logs every sentence through loguru at DEBUG
            from loguru import logger

            logger.remove()
        except ImportError:
            pass
        self.nlp = medspacy.load()
        targets = sorted({case["target"].lower() for case in cases})
        self.nlp.get_pipe("medspacy_target_matcher").add(
            [TargetRule(target, "CONDITION") for target in targets]
        )

    def labels(self, cases: list[dict[str, str]]) -> list[str | None]:
        found: list[str | None] = []
        for case in cases:
            doc = self.nlp(case["sentence"])
            start = case["sentence"].index(case["target"])
            ents = [e for e in doc.ents if e.start_char <= start < e.end_char]
            if not ents:
                found.append(None)
                continue
            e = ents[0]._
            found.append(
                label_of(e.is_negated, e.is_family, e.is_hypothetical, e.is_uncertain,
                         e.is_historical)
            )  # fmt: skip
        return found


def score(cases: list[dict[str, str]], found: list[str | None]) -> dict[str, float]:
    """Accuracy per gold label, overall, and macro (the mean over labels)."""
    right, total = Counter(), Counter()
    for case, label in zip(cases, found, strict=True):
        total[case["label"]] += 1
        right[case["label"]] += label == case["label"]
    scores = {label: right[label] / total[label] for label in LABELS if total[label]}
    scores["accuracy"] = sum(right.values()) / len(cases)
    scores["macro"] = sum(scores[label] for label in LABELS if total[label]) / len(total)
    return scores


def timed(system, cases: list[dict[str, str]], rounds: int = 3) -> tuple[list, float]:
    """The labels and the best of ``rounds`` timings, in sentences per second."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        found = system.labels(cases)
        best = min(best, time.perf_counter() - started)
    return found, len(cases) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=Path, nargs="+", default=CASES)
    args = parser.parse_args()
    sets = {path.name: read_cases(path) for path in args.cases}
    every = [case for cases in sets.values() for case in cases]
    systems = [Ours()]
    try:
        systems.append(MedSpacy(every))
    except ImportError as error:
        print(f"medspaCy not measured ({error}): see this file's docstring")
    except ValueError as error:  # spaCy's thinc built for numpy 1 under numpy 2
        print(f"medspaCy not measured (it cannot load beside numpy 2: {error})")
    for name, cases in sets.items():
        _report(name, cases, systems)


def _report(name: str, cases: list[dict[str, str]], systems: list) -> None:
    counts = Counter(case["label"] for case in cases)
    print(f"\n{name}: {len(cases)} cases: " + ", ".join(f"{k} {counts[k]}" for k in LABELS))
    results = []
    for system in systems:
        found, speed = timed(system, cases)
        results.append((system, found, score(cases, found), speed))
    print(f"\n{'':<18}" + "".join(f"{k:>13}" for k in (*LABELS, "accuracy", "macro", "sent/s")))
    for system, found, scores, speed in results:
        row = "".join(f"{scores.get(k, float('nan')):>13.3f}" for k in (*LABELS, "accuracy"))
        print(f"{system.name:<18}{row}{scores['macro']:>13.3f}{speed:>13.0f}")
        print(f"{'':<18}targets not read: {sum(f is None for f in found)}")
    if len(results) == 2:
        (_, _, ours, ours_speed), (_, _, theirs, theirs_speed) = results
        print(
            f"\nmedspaCy / cues: accuracy {theirs['accuracy'] / ours['accuracy']:.2f}x, macro "
            f"{theirs['macro'] / ours['macro']:.2f}x, speed {theirs_speed / ours_speed:.2f}x"
        )
        print("\ncases the two label differently (gold: cues / medspaCy):")
        for case, mine, other in zip(cases, results[0][1], results[1][1], strict=True):
            if mine != other:
                print(f"  {case['id']} {case['label']}: {mine} / {other}  {case['sentence']}")


if __name__ == "__main__":
    main()
