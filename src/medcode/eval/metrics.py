"""Exact-code precision, recall and F1 (micro and macro), by code system, category, note type
and split, with seeded bootstrap intervals; update over batches, compute once.

Micro pools note x code pairs; macro is the mean over the codes that occur in the gold (a
code only predicted does not enter the macro mean). The 3-character score compares ICD-10-CM
categories (E11.22 and E11.9 both count as E11): a secondary, clearly labelled figure.
"""

from __future__ import annotations

from collections import Counter, _count_elements, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from medcode.eval.formats import INVALID, NoteLabels, normalize_code

CATEGORIES = ("advanced_illness", "frailty", "hcc", "chronic")


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 from counts; 0 where undefined, except that no gold and no
    prediction at all is perfect agreement (1.0)."""
    if tp == fp == fn == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _categories(code: str, system: str) -> list[str]:
    if system == INVALID:
        return []
    from medcode.records import System
    from medcode.terminology.categories import category_names

    return category_names(code, System(system))


@dataclass
class _Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, tp: int, fp: int, fn: int) -> None:
        self.tp += tp
        self.fp += fp
        self.fn += fn

    def scores(self) -> dict[str, float | int]:
        return {**prf(self.tp, self.fp, self.fn), "tp": self.tp, "fp": self.fp, "fn": self.fn}


@dataclass
class CodingMetrics:
    """Accumulates over batches of notes; :meth:`compute` gives the same result whether the
    notes came in one batch or many.

    Per note it keeps only counters (codes hit, missed and wrongly predicted; the note's
    (tp, fp, fn)); systems, categories, per-code and macro figures are derived from them
    at :meth:`compute`, so a million notes score in seconds.
    """

    bootstrap: int = 1000
    seed: int = 0
    tp_codes: Counter = field(default_factory=Counter)
    fp_codes: Counter = field(default_factory=Counter)
    fn_codes: Counter = field(default_factory=Counter)
    note_triples: Counter = field(default_factory=Counter)
    group_triples: Counter = field(default_factory=Counter)
    category3: _Counts = field(default_factory=_Counts)
    n_notes: int = 0
    n_gold: int = 0
    n_pred: int = 0
    _icd3: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def update(self, gold: Iterable[NoteLabels], predicted: dict[str, NoteLabels]) -> None:
        """Add notes: ``predicted[note.id]`` is the prediction for each gold note."""
        empty: set[str] = set()
        for note in gold:
            prediction = predicted.get(note.id)
            self._add(note, note.codes, prediction.codes if prediction is not None else empty)

    def _prefix(self, code: str) -> str:
        """The ICD-10-CM category of a code, or "-" for other systems (cached)."""
        prefix = code[:3] if normalize_code(code)[1] == "ICD-10-CM" else "-"
        self._icd3[code] = prefix
        return prefix

    def _categories3(self, codes: set[str]) -> set[str]:
        known = self._icd3
        found = set()
        for code in codes:
            prefix = known.get(code)
            if prefix is None:
                prefix = self._prefix(code)
            if prefix != "-":
                found.add(prefix)
        return found

    def _add(self, note: NoteLabels, gold: set[str], pred: set[str]) -> None:
        hits = gold & pred
        tp, fp, fn = len(hits), len(pred) - len(hits), len(gold) - len(hits)
        self.n_notes += 1
        self.n_gold += len(gold)
        self.n_pred += len(pred)
        self.note_triples[tp, fp, fn] += 1
        if note.note_type:
            self.group_triples["note_type", note.note_type, tp, fp, fn] += 1
        if note.split:
            self.group_triples["split", note.split, tp, fp, fn] += 1
        _count_elements(self.tp_codes, hits)
        _count_elements(self.fp_codes, pred - hits)
        _count_elements(self.fn_codes, gold - hits)
        gold3, pred3 = self._categories3(gold), self._categories3(pred)
        hits3 = len(gold3 & pred3)
        self.category3.add(hits3, len(pred3) - hits3, len(gold3) - hits3)

    def _code_counts(self) -> dict[str, _Counts]:
        codes = set(self.tp_codes) | set(self.fp_codes) | set(self.fn_codes)
        return {c: _Counts(self.tp_codes[c], self.fp_codes[c], self.fn_codes[c]) for c in codes}

    def macro(self) -> dict[str, float]:
        """Mean precision, recall and F1 over the codes that occur in the gold."""
        codes = [c for c in self._code_counts().values() if c.tp + c.fn > 0]
        if not codes:
            return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "codes": 0}
        scores = [prf(c.tp, c.fp, c.fn) for c in codes]
        return {
            key: sum(s[key] for s in scores) / len(scores) for key in ("precision", "recall", "f1")
        } | {"codes": len(codes)}

    def intervals(self) -> dict[str, list[float]]:
        """95% bootstrap intervals of micro P/R/F1, resampling notes with replacement (seeded).

        Notes with the same (tp, fp, fn) are interchangeable for micro scores, so a resample
        is a multinomial draw over the distinct triples: exact, and fast for a million notes.
        """
        if not self.n_notes or self.bootstrap <= 0:
            return {}
        triples = np.array(list(self.note_triples), dtype=np.int64)
        weights = np.array(list(self.note_triples.values()), dtype=np.float64)
        rng = np.random.default_rng(self.seed)
        draws = rng.multinomial(self.n_notes, weights / weights.sum(), size=self.bootstrap)
        tp, fp, fn = (draws @ triples).T.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
            f1 = np.where(
                precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0
            )
        return {
            name: [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
            for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
        }

    def compute(self) -> dict[str, object]:
        """All the figures as one JSON-ready object."""

        def table(groups: dict[str, _Counts]) -> dict[str, dict]:
            return {name: counts.scores() for name, counts in sorted(groups.items())}

        overall = _Counts()
        for (tp, fp, fn), count in self.note_triples.items():
            overall.add(tp * count, fp * count, fn * count)
        groups: dict[str, dict[str, _Counts]] = {
            "note_type": defaultdict(_Counts),
            "split": defaultdict(_Counts),
        }
        for (kind, name, tp, fp, fn), count in self.group_triples.items():
            groups[kind][name].add(tp * count, fp * count, fn * count)
        by_system: dict[str, _Counts] = defaultdict(_Counts)
        by_category: dict[str, _Counts] = defaultdict(_Counts)
        for code, counts in self._code_counts().items():
            system = normalize_code(code)[1]
            by_system[system].add(counts.tp, counts.fp, counts.fn)
            for category in _categories(code, system):
                if category in CATEGORIES:
                    by_category[category].add(counts.tp, counts.fp, counts.fn)
        false_positives = Counter(self.fp_codes).most_common(20)
        false_negatives = Counter(self.fn_codes).most_common(20)
        return {
            "n_notes": self.n_notes,
            "n_gold_codes": self.n_gold,
            "n_predicted_codes": self.n_pred,
            "micro": overall.scores(),
            "macro": self.macro(),
            "macro_note": "macro = mean over codes that occur in the gold",
            "ci": {
                "level": 0.95,
                "bootstrap": self.bootstrap,
                "seed": self.seed,
                "micro": self.intervals(),
            },
            "by_system": table(by_system),
            "by_category": table(by_category),
            "by_note_type": table(groups["note_type"]),
            "by_split": table(groups["split"]),
            "category3_secondary": self.category3.scores(),
            "top_false_positives": false_positives,
            "top_false_negatives": false_negatives,
        }
