"""Ranked code search over ICD-10-CM descriptions, inclusion terms and Alphabetic Index
phrases, and the CPT/HCPCS table.

TF-IDF (scikit-learn) over words; each description, inclusion term and index phrase
(:mod:`medcode.terminology.index_terms`: "diabetes with chronic kidney disease" for E11.22)
is its own row and a code scores as its best row, so a short phrase ("high blood pressure"
under I10) is not diluted by a long description. Index phrases make a search work as a coder
uses the index, defaults included: the index's "Diabetes" > "with" > "chronic kidney disease"
is E11.22, so ``diabetes kidney`` finds E11.22 first. Among near-equal matches a billable code
wins (a non-billable one scores 2% less). A query word missing from the vocabulary is
expanded to the vocabulary words it prefixes (``diab`` -> diabetes, diabetic), so partial
words work. Building the index takes a few seconds; a query then takes a few milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from medcode.records import System
from medcode.terminology import cpt, icd10cm
from medcode.terminology.index_terms import index_terms
from medcode.terminology.lookup import resolve

_WORD = re.compile(r"[a-z0-9]+")
_MAX_PREFIX_EXPANSION = 25
# A non-billable code (a category, or an index entry whose full code needs more characters)
# scores this much of its match, so a billable code wins a tie.
_NON_BILLABLE_FACTOR = 0.98


@dataclass(frozen=True, slots=True)
class SearchHit:
    code: str
    system: System
    description: str
    billable: bool
    score: float


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _index_phrases() -> dict[str, tuple[str, ...]]:
    grouped: dict[str, list[str]] = {}
    for record in index_terms():
        grouped.setdefault(record.code, []).append(record.term)
    return {code: tuple(found) for code, found in grouped.items()}


class CodeSearch:
    """An in-memory search index; build once with :meth:`build`, query with :meth:`search`."""

    def __init__(self, codes: list[tuple[System, str, str, bool]], texts: list[list[str]]) -> None:
        """``texts[i]`` holds the phrases (description first) of ``codes[i]``."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._codes = codes
        rows = [phrase for phrases in texts for phrase in phrases]
        counts = np.array([len(phrases) for phrases in texts])
        if (counts == 0).any():
            raise ValueError("every code needs at least one phrase")
        self._row_starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._vectorizer = TfidfVectorizer(analyzer=_words, sublinear_tf=True, dtype=np.float32)
        # Word-major (vocabulary x rows): a query reads only the rows of its own words.
        self._by_word = self._vectorizer.fit_transform(rows).T.tocsr()
        self._n_rows = len(rows)
        self._factor = np.array(
            [1.0 if billable else _NON_BILLABLE_FACTOR for _, _, _, billable in codes],
            dtype=np.float32,
        )
        self._vocabulary = sorted(self._vectorizer.vocabulary_)
        self._position = {(system, code): i for i, (system, code, _, _) in enumerate(codes)}

    @classmethod
    def build(
        cls, table: cpt.ProcedureTable | None = None, with_index_terms: bool = True
    ) -> CodeSearch:
        """Index every ICD-10-CM code (description, inclusion terms and, unless
        ``with_index_terms`` is false, its Alphabetic Index phrases) and the CPT/HCPCS table."""
        table = table or cpt.procedure_table()
        codes: list[tuple[System, str, str, bool]] = []
        texts: list[list[str]] = []
        tabular = icd10cm.tabular()
        by_code = _index_phrases() if with_index_terms else {}
        for code in icd10cm.all_codes():
            text = tabular.get_description(code)
            codes.append((System.ICD10CM, code, text, tabular.is_leaf(code)))
            texts.append(
                [
                    text,
                    *tabular.get_inclusion_term(code),
                    *tabular.get_includes(code),
                    *by_code.get(code, ()),
                ]
            )
        for entry in table.values():
            codes.append((entry.system, entry.code, entry.description, True))
            texts.append([entry.description])
        return cls(codes, texts)

    def _expand(self, word: str) -> list[str]:
        if word in self._vectorizer.vocabulary_:
            return [word]
        start = np.searchsorted(self._vocabulary, word)
        found = []
        for candidate in self._vocabulary[start : start + _MAX_PREFIX_EXPANSION]:
            if not candidate.startswith(word):
                break
            found.append(candidate)
        return found

    def search(
        self,
        query: str,
        limit: int = 10,
        system: System | None = None,
        billable_only: bool = False,
    ) -> list[SearchHit]:
        """Best matches for ``query``, best first; an exact code match comes first."""
        if not query.strip():
            raise ValueError("empty search: give some words (e.g. 'diabetes kidney') or a code")
        exact: list[SearchHit] = []
        try:
            for found_system, code in resolve(query.strip()):
                exact.extend(self._hits_for(found_system, code))
        except ValueError:
            pass
        expansions = [found for word in _words(query) if (found := self._expand(word))]
        hits = list(exact)
        if expansions:
            scores = self._scores(expansions)
            candidates = np.flatnonzero(scores > 0)
            order = candidates[np.argsort(-scores[candidates], kind="stable")]
            for index in order:
                if len(hits) >= limit:
                    break
                hit_system, code, text, billable = self._codes[index]
                if system not in (None, hit_system) or (billable_only and not billable):
                    continue
                if any(h.code == code and h.system is hit_system for h in exact):
                    continue
                hits.append(
                    SearchHit(code, hit_system, text, billable, round(float(scores[index]), 4))
                )
        return hits[:limit]

    def _scores(self, expansions: list[list[str]]) -> np.ndarray:
        """Each code's score: cosine of its best row with the query, times its factor."""
        # Each query word weighs the same, whether it matched one word or was a prefix of
        # many (then each expansion carries an equal share of its weight).
        words = [w for found in expansions for w in found]
        weights = np.array([1.0 / len(found) for found in expansions for _ in found])
        vector = (weights @ self._vectorizer.transform(words)).ravel()
        columns = np.flatnonzero(vector)
        query = vector[columns] / np.linalg.norm(vector[columns])
        row_scores = np.asarray(query @ self._by_word[columns], dtype=np.float32).ravel()
        return np.maximum.reduceat(row_scores, self._row_starts) * self._factor

    def _hits_for(self, system: System, code: str) -> list[SearchHit]:
        index = self._position.get((system, code))
        if index is None:
            return []
        _, _, text, billable = self._codes[index]
        return [SearchHit(code, system, text, billable, 1.0)]
