"""Exact-code precision, recall and F1 (micro and macro), by code system, category, note type
and split, with seeded bootstrap intervals; update over batches, compute once.

Micro pools note x code pairs; macro is the mean over the codes that occur in the gold (a
code only predicted does not enter the macro mean). Per category, the bootstrap also gives
an interval for the paired gap between the category's micro F1 and the overall micro F1
(:meth:`CodingMetrics.category_intervals`). The 3-character score compares ICD-10-CM
categories (E11.22 and E11.9 both count as E11): a secondary, clearly labelled figure.
"""

from __future__ import annotations

from collections import Counter, _count_elements, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from medcode.eval.formats import INVALID, NoteLabels, NoteTable, normalize_code

CATEGORIES = ("advanced_illness", "frailty", "hcc", "chronic")
_NO_CATEGORY = (0,) * (3 * len(CATEGORIES))  # a note's category counts with no category code


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 from counts; 0 where undefined, except that no gold and no
    prediction at all is perfect agreement (1.0)."""
    if tp == fp == fn == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Micro F1 of each resample (0 where undefined, as in :meth:`CodingMetrics.intervals`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        return np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)


def _percentiles(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def _categories(code: str, system: str) -> list[str]:
    if system == INVALID:
        return []
    from medcode.records import System
    from medcode.terminology.categories import category_names

    return category_names(code, System(system))


_PART = 1 << 18  # gold notes per slice in CodingMetrics.update_table


def _distinct(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort + neighbours: np.unique is many times slower here)."""
    keys = np.sort(keys)
    if len(keys) > 1:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return keys


def _first_seen(values: np.ndarray):
    """``(distinct values, first positions, counts, inverse)``, the distinct values in the
    order they first occur (a Counter's key order) and ``inverse`` numbering into them.
    ``values`` are non-negative int64."""
    top = int(values.max()) + 1 if len(values) else 0
    if top <= 2 * len(values) + 4096:  # few possible values (note triples): no sorting
        counts = np.bincount(values, minlength=top)
        first = np.full(top, len(values), dtype=np.int64)
        np.minimum.at(first, values, np.arange(len(values), dtype=np.int64))
        seen = np.flatnonzero(counts)
        seen = seen[np.argsort(first[seen], kind="stable")]
        rank = np.zeros(top, dtype=np.int64)
        rank[seen] = np.arange(len(seen))
        return seen, first[seen], counts[seen], rank[values]
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.ones(len(values), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    begin = np.flatnonzero(starts)
    counts = np.diff(np.append(begin, len(values)))
    first = order[begin]
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(len(begin), dtype=np.int64)
    rank[by_first] = np.arange(len(begin))
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = rank[np.cumsum(starts) - 1]
    return ordered[begin][by_first], first[by_first], counts[by_first], inverse


def _row_ids(columns: list[np.ndarray]) -> np.ndarray:
    """One non-negative int64 per row of equal-length non-negative integer columns, equal
    exactly where the rows are equal, below ``2 * rows + 4096`` (so :func:`_first_seen`
    counts instead of sorting): mixed radix, renumbered densely (a lookup table, no sort)
    whenever the bound grows past a few times the rows."""
    rows = len(columns[0])
    limit = 2 * rows + 4096
    key = np.zeros(rows, dtype=np.int64)
    bound = 1
    for column in (*columns, None):
        base = 1 if column is None else int(column.max()) + 1 if rows else 1
        if bound > limit or bound * base > 8 * limit:
            present = np.zeros(bound, dtype=bool)
            present[key] = True
            rank = np.cumsum(present) - 1
            key, bound = rank[key], int(rank[-1]) + 1
        if column is not None:
            key = key * base + column
            bound *= base
    return key


def _key_type(notes: int, bits: int) -> type:
    """int32 when every ``note << bits | value`` key fits: half the memory of int64, and
    arrays under glibc's 32 MiB mmap threshold are reused instead of freshly page-faulted."""
    return np.int32 if notes << bits < 2**31 else np.int64


def _note_code_keys(table: NoteTable, bits: int, dtype) -> np.ndarray:
    """Sorted distinct ``row << bits | code`` keys of a table's codes."""
    keys = np.repeat(np.arange(len(table), dtype=dtype), np.diff(table.offsets))
    keys <<= bits
    keys |= table.codes
    return _distinct(keys)


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
    # (tp, fp, fn, then tp, fp, fn of each of CATEGORIES) -> notes: the per-note counts that
    # the bootstrap resamples jointly for the overall and the category scores
    note_vectors: Counter = field(default_factory=Counter)
    group_triples: Counter = field(default_factory=Counter)
    category3: _Counts = field(default_factory=_Counts)
    n_notes: int = 0
    n_gold: int = 0
    n_pred: int = 0
    _icd3: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    _members: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False, compare=False)

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

    def _member(self, code: str) -> tuple[int, ...]:
        """The positions in :data:`CATEGORIES` of a code's categories (cached); the same
        categories as ``compute()["by_category"]``."""
        found = self._members.get(code)
        if found is None:
            names = set(_categories(code, normalize_code(code)[1]))
            found = tuple(k for k, name in enumerate(CATEGORIES) if name in names)
            self._members[code] = found
        return found

    def _category_counts(self, hits: set[str], wrong: set[str], missed: set[str]) -> tuple:
        """A note's (tp, fp, fn) for each of :data:`CATEGORIES`, flattened."""
        counts = None
        for offset, codes in enumerate((hits, wrong, missed)):
            for code in codes:
                member = self._members.get(code)
                for k in member if member is not None else self._member(code):
                    if counts is None:
                        counts = list(_NO_CATEGORY)
                    counts[3 * k + offset] += 1
        return _NO_CATEGORY if counts is None else tuple(counts)

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
        wrong, missed = pred - hits, gold - hits
        self.note_triples[tp, fp, fn] += 1
        self.note_vectors[(tp, fp, fn, *self._category_counts(hits, wrong, missed))] += 1
        if note.note_type:
            self.group_triples["note_type", note.note_type, tp, fp, fn] += 1
        if note.split:
            self.group_triples["split", note.split, tp, fp, fn] += 1
        _count_elements(self.tp_codes, hits)
        _count_elements(self.fp_codes, wrong)
        _count_elements(self.fn_codes, missed)
        gold3, pred3 = self._categories3(gold), self._categories3(pred)
        hits3 = len(gold3 & pred3)
        self.category3.add(hits3, len(pred3) - hits3, len(gold3) - hits3)

    def update_table(self, gold: NoteTable, predicted: NoteTable, pred_row: np.ndarray) -> None:
        """:meth:`update` for the fast reader's tables, vectorised: the same counters (and
        the same key order, ties included) as one :meth:`_add` per gold note.
        ``pred_row[i]`` is the row of gold row ``i``'s prediction, -1 for none.

        Runs over slices of ``_PART`` gold notes (like :meth:`update` over batches): small
        arrays are reused by the allocator instead of page-faulted afresh."""
        vocab = sorted(set(gold.vocab) | set(predicted.vocab))
        gold, predicted = gold.renumbered(vocab), predicted.renumbered(vocab)
        step = _PART
        for start in range(0, len(gold), step):
            rows = pred_row[start : start + step]
            matched = rows >= 0
            part_row = np.full(len(rows), -1, dtype=np.int64)
            part_row[matched] = np.arange(np.count_nonzero(matched))
            self._update_part(
                gold.slice(start, start + step), predicted.rows(rows[matched]), part_row
            )

    def _update_part(self, gold: NoteTable, predicted: NoteTable, pred_row: np.ndarray) -> None:
        """:meth:`update_table` for tables sharing one vocabulary, predictions in gold
        order (``pred_row`` increasing where not -1)."""
        n = len(gold)
        if n == 0:
            return
        vocab = gold.vocab
        index = {code: number for number, code in enumerate(vocab)}
        bits = max(len(vocab) - 1, 1).bit_length()  # key = note << bits | code
        dtype = _key_type(n, bits)
        gold_keys = _note_code_keys(gold, bits, dtype)
        pred_keys = _note_code_keys(predicted, bits, dtype)
        matched = pred_row >= 0
        if not matched.all():  # prediction rows to gold notes
            gold_of = np.flatnonzero(matched).astype(dtype)
            notes = gold_of[pred_keys >> bits]
            notes <<= bits
            pred_keys = notes | (pred_keys & ((1 << bits) - 1))
        where = np.searchsorted(gold_keys, pred_keys)
        hit = np.zeros(len(pred_keys), dtype=bool)
        if len(gold_keys):
            hit = gold_keys[np.minimum(where, len(gold_keys) - 1)] == pred_keys
        gold_hit = np.zeros(len(gold_keys), dtype=bool)
        gold_hit[where[hit]] = True
        size, low = len(vocab), (1 << bits) - 1
        gold_note, gold_code = gold_keys >> bits, gold_keys & low
        pred_note, pred_code = pred_keys >> bits, pred_keys & low
        n_gold = np.bincount(gold_note, minlength=n)
        n_pred = np.bincount(pred_note, minlength=n)
        tp = np.bincount(pred_note[hit], minlength=n)
        fp, fn = n_pred - tp, n_gold - tp
        self.n_notes += n
        self.n_gold += int(n_gold.sum())
        self.n_pred += int(n_pred.sum())

        base = int(max(tp.max(), fp.max(), fn.max())) + 1
        seen, _, counts, triple_of = _first_seen((tp * base + fp) * base + fn)
        triples = [(int(k // base // base), int(k // base % base), int(k % base)) for k in seen]
        for triple, count in zip(triples, counts.tolist(), strict=True):
            self.note_triples[triple] += count
        self._add_groups(gold, triples, triple_of)
        self._add_vectors(
            [tp, fp, fn], (gold_note, gold_code), (pred_note, pred_code), hit, vocab, n
        )

        sets: dict[int, dict[str, set[str]]] = {}

        def note_sets(row: int) -> dict[str, set[str]]:  # the sets _add would see
            if row not in sets:
                gold_set = gold.code_set(row)
                pred_set = predicted.code_set(pred_row[row]) if pred_row[row] >= 0 else set()
                hits = gold_set & pred_set
                sets[row] = {"tp": hits, "fp": pred_set - hits, "fn": gold_set - hits}
            return sets[row]

        for counter, which, notes, codes in (
            (self.tp_codes, "tp", pred_note[hit], pred_code[hit]),
            (self.fp_codes, "fp", pred_note[~hit], pred_code[~hit]),
            (self.fn_codes, "fn", gold_note[~gold_hit], gold_code[~gold_hit]),
        ):
            totals = np.bincount(codes, minlength=size)
            first = np.full(size, n, dtype=notes.dtype)  # same dtype: ufunc.at's fast loop
            np.minimum.at(first, codes, notes)
            present = np.flatnonzero(totals)
            present = present[np.argsort(first[present], kind="stable")]
            rows = first[present].tolist()
            start = 0
            for end in range(1, len(present) + 1):  # codes first counted in the same note
                if end < len(present) and rows[end] == rows[start]:
                    continue
                if end - start == 1:
                    ordered = [vocab[present[start]]]
                else:  # in the order _add's set iterates them
                    wanted = {vocab[c] for c in present[start:end].tolist()}
                    ordered = [c for c in note_sets(rows[start])[which] if c in wanted]
                for code in ordered:
                    counter[code] += int(totals[index[code]])
                start = end

        used = np.zeros(size, dtype=bool)
        used[gold_code] = True
        used[pred_code] = True
        prefixes = {}
        for number in np.flatnonzero(used).tolist():
            code = vocab[number]
            prefix = self._icd3.get(code)
            prefixes[number] = prefix if prefix is not None else self._prefix(code)
        names = sorted({p for p in prefixes.values() if p != "-"})
        rank = {name: number for number, name in enumerate(names)}
        width = max(len(names) - 1, 1).bit_length()
        category = np.full(size, -1, dtype=_key_type(n, width))
        for number, prefix in prefixes.items():
            category[number] = rank.get(prefix, -1)

        def category_keys(notes: np.ndarray, codes: np.ndarray) -> np.ndarray:
            found = category[codes]
            known = found >= 0
            keys = notes[known].astype(found.dtype)
            keys <<= width
            keys |= found[known]
            return _distinct(keys)

        gold3, pred3 = category_keys(gold_note, gold_code), category_keys(pred_note, pred_code)
        hits3 = int(np.isin(pred3, gold3, assume_unique=True).sum())
        self.category3.add(hits3, len(pred3) - hits3, len(gold3) - hits3)

    def _add_vectors(self, columns, gold_pairs, pred_pairs, hit, vocab, n) -> None:
        """``note_vectors`` from the part's per-note (tp, fp, fn) ``columns`` and its
        (note, code) pairs: per category, bincounts of the notes weighted by a code ->
        category membership matrix over the vocabulary; keys in first-seen order."""
        (gold_note, gold_code), (pred_note, pred_code) = gold_pairs, pred_pairs
        member = np.zeros((len(CATEGORIES), len(vocab)), dtype=bool)
        used = np.zeros(len(vocab), dtype=bool)
        used[gold_code] = True
        used[pred_code] = True
        for number in np.flatnonzero(used).tolist():
            code = vocab[number]
            found = self._members.get(code)
            member[list(found if found is not None else self._member(code)), number] = True
        zeros = np.zeros(n, dtype=np.int64)
        hit_note, hit_code = pred_note[hit], pred_code[hit]
        for inside in member.astype(np.float64):  # weights: no boolean selection to copy
            if not inside.any():
                columns += [zeros, zeros, zeros]
                continue
            n_gold, n_pred, tp = (
                np.bincount(notes, weights=inside[codes], minlength=n).astype(np.int64)
                for notes, codes in (
                    (gold_note, gold_code),
                    (pred_note, pred_code),
                    (hit_note, hit_code),
                )
            )
            columns += [tp, n_pred - tp, n_gold - tp]
        _, first, counts, _ = _first_seen(_row_ids(columns))
        vectors = np.stack([column[first] for column in columns], axis=1).tolist()
        for vector, count in zip(vectors, counts.tolist(), strict=True):
            self.note_vectors[tuple(vector)] += count

    def _add_groups(self, gold: NoteTable, triples: list, triple_of: np.ndarray) -> None:
        """``group_triples`` for note types and splits, keys in first-seen order."""
        import pyarrow.compute as pc

        entries = []
        for kind, names in (("note_type", gold.note_type), ("split", gold.split)):
            if names.null_count == len(names):
                continue
            encoded = pc.dictionary_encode(names)
            labels = encoded.dictionary.to_pylist()
            group = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
            falsy = [number for number, label in enumerate(labels) if not label]
            rows = np.flatnonzero((group >= 0) & ~np.isin(group, falsy))
            keys = group[rows].astype(np.int64) * len(triples) + triple_of[rows]
            seen, first, counts, _ = _first_seen(keys)
            for key, row, count in zip(
                seen.tolist(), rows[first].tolist(), counts.tolist(), strict=True
            ):
                name, triple = labels[key // len(triples)], triples[key % len(triples)]
                entries.append((row, kind == "split", (kind, name, *triple), count))
        for _, _, key, count in sorted(entries, key=lambda entry: entry[:2]):
            self.group_triples[key] += count

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
        _, triples, draws = self._triple_draws()
        tp, fp, fn = (draws @ triples).T.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
            f1 = np.where(
                precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0
            )
        return {
            name: _percentiles(values)
            for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
        }

    def _triple_draws(self):
        """``(rng, triples, draws)``: the seeded resamples of :meth:`intervals`, ``draws[b, t]``
        the notes of triple ``t`` in resample ``b``; ``rng`` goes on from there."""
        triples = np.array(list(self.note_triples), dtype=np.int64)
        weights = np.array(list(self.note_triples.values()), dtype=np.float64)
        rng = np.random.default_rng(self.seed)
        draws = rng.multinomial(self.n_notes, weights / weights.sum(), size=self.bootstrap)
        return rng, triples, draws

    def category_intervals(self) -> dict[str, dict[str, object]]:
        """Per category with a gold or predicted code: the 95% bootstrap interval of its
        micro F1 (``"f1"``), and of its gap to the overall micro F1 (``"gap"``: category F1
        minus overall F1 in the same resample, so paired), with the gap on the full data
        (``"gap_point"``).

        The resamples are those of :meth:`intervals` (same seed, same multinomial draws
        over the note triples, so the overall F1 of each resample is the one behind
        ``ci.micro``), refined per category: the notes a resample draws with one
        (tp, fp, fn) are split among that triple's distinct category (tp, fp, fn) in
        ``note_vectors`` by a multinomial draw in proportion to their notes (the same
        generator, going on after the draws of :meth:`intervals`; categories in
        :data:`CATEGORIES` order, triples in ``note_triples`` order, category counts
        sorted). Given the triple counts, which notes were drawn is a multinomial over
        the notes of each triple, so each refinement is exactly a resample of notes with
        replacement, jointly for the overall and that category's counts. (One joint
        refinement over all categories at once would give the same distribution of each
        category's figures, at the cost of a draw per distinct ``note_vectors`` key.)

        A resample with no gold and no predicted code of a category leaves that
        category's F1 undefined: it is left out of that category's percentiles.
        """
        if not self.n_notes or self.bootstrap <= 0:
            return {}
        present = [
            k
            for k in range(len(CATEGORIES))
            if any(any(vector[3 + 3 * k : 6 + 3 * k]) for vector in self.note_vectors)
        ]
        if not present:
            return {}
        profiles: dict[int, dict[tuple, Counter]] = {k: defaultdict(Counter) for k in present}
        for vector, count in self.note_vectors.items():
            for k in present:
                profiles[k][vector[:3]][vector[3 + 3 * k : 6 + 3 * k]] += count
        rng, triples, draws = self._triple_draws()
        overall = _f1(*(draws @ triples).T.astype(np.float64))
        point = prf(*(sum(t[i] * c for t, c in self.note_triples.items()) for i in range(3)))
        result: dict[str, dict[str, object]] = {}
        for k in present:
            sums = np.zeros((self.bootstrap, 3), dtype=np.int64)
            for column, triple in enumerate(self.note_triples):
                group = sorted(profiles[k].get(triple, {}).items())
                vectors = np.array([vector for vector, _ in group], dtype=np.int64)
                if len(group) == 1:
                    sums += np.outer(draws[:, column], vectors[0])
                elif len(group) > 1:  # notes with this (tp, fp, fn) differ in the category
                    shares = np.array([count for _, count in group], dtype=np.float64)
                    sums += rng.multinomial(draws[:, column], shares / shares.sum()) @ vectors
            tp, fp, fn = sums.T.astype(np.float64)
            defined = tp + fp + fn > 0
            if not defined.any():
                continue
            f1 = _f1(tp, fp, fn)[defined]
            totals = (
                sum(vector[i] * count for vector, count in self.note_vectors.items())
                for i in range(3 + 3 * k, 6 + 3 * k)
            )
            result[CATEGORIES[k]] = {
                "f1": _percentiles(f1),
                "gap": _percentiles(f1 - overall[defined]),
                "gap_point": prf(*totals)["f1"] - point["f1"],
            }
        return dict(sorted(result.items()))

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
                "by_category": self.category_intervals(),
            },
            "by_system": table(by_system),
            "by_category": table(by_category),
            "by_note_type": table(groups["note_type"]),
            "by_split": table(groups["split"]),
            "category3_secondary": self.category3.scores(),
            "top_false_positives": false_positives,
            "top_false_negatives": false_negatives,
            # Per-code counts (every code in the gold or the predictions), for frequency bands
            # and error analysis: derived from the counters, no per-note work.
            "by_code": {
                code: {
                    "tp": self.tp_codes[code],
                    "fp": self.fp_codes[code],
                    "fn": self.fn_codes[code],
                }
                for code in sorted(
                    self.tp_codes.keys() | self.fp_codes.keys() | self.fn_codes.keys()
                )
            },
        }
