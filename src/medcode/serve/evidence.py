"""Evidence for suggested codes: the spans of a note that support each code.

Found with the retriever's lexicon (:class:`medcode.model.retriever.Lexicon`): the synthetic
catalog's phrasings, the ICD-10-CM tabular's descriptions and inclusion terms and the CPT/HCPCS
table's descriptions, matched by words. A code's evidence is, in order of preference:

- ``direct``: a phrase naming the code ("type 2 diabetes with diabetic CKD" -> E11.22);
- ``history`` / ``family_history``: a phrase naming a condition under a history cue, for the
  personal- or family-history Z code the policy tables give ("history of breast cancer" ->
  Z85.3);
- ``combination``: the phrases of the codes a combination code combines (diabetes and CKD ->
  E11.22), as the policy's combination rules make them;
- ``category``: a phrase naming another code of the same ICD-10-CM category (the note says
  "type 2 diabetes", the code is E11.65), the weakest kind.

Each span carries the lexicon phrase it matched, where the phrase comes from, and the cues
read around it (negated, uncertain, history, family), so a coder sees "no chest pain" flagged.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from medcode.model.retriever import (
    _SENTENCE,
    _WORD,
    FAMILY,
    HISTORY,
    HYPOTHETICAL,
    NEGATED,
    SOURCES,
    UNCERTAIN,
    Lexicon,
    Match,
    _combinations,
)

CUES = (
    (NEGATED, "negated"),
    (UNCERTAIN, "uncertain"),
    (HISTORY, "history"),
    (FAMILY, "family"),
    (HYPOTHETICAL, "hypothetical"),
)
RELATIONS = ("direct", "history", "family_history", "combination", "category")
MAX_SPANS = 12  # per code


@dataclass(frozen=True, slots=True)
class Span:
    """One supporting span: character offsets into the note (``text[start:end]``)."""

    start: int
    end: int
    text: str
    phrase: str  # the lexicon phrase it matched (normalised words)
    source: str  # catalog, description, inclusion, parent, procedure, medication
    relation: str  # see RELATIONS
    cues: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "phrase": self.phrase,
            "source": self.source,
            "relation": self.relation,
            "cues": list(self.cues),
        }


def token_offsets(text: str) -> list[tuple[int, int]]:
    """Character offsets of the word tokens :meth:`Lexicon.matches` reads, in its order
    (sentence by sentence, lower-cased letters and digits)."""
    offsets: list[tuple[int, int]] = []
    position = 0
    for separator in itertools.chain(_SENTENCE.finditer(text), (None,)):
        stop = separator.start() if separator is not None else len(text)
        segment = text[position:stop]
        lowered = segment.lower()
        if len(lowered) == len(segment):
            offsets += [(position + m.start(), position + m.end()) for m in _WORD.finditer(lowered)]
        else:  # a character whose lower case is longer ("İ"): map back character by character
            index: list[int] = []
            for i, character in enumerate(segment):
                index += [i] * len(character.lower())
            offsets += [
                (position + index[m.start()], position + index[m.end() - 1] + 1)
                for m in _WORD.finditer(lowered)
            ]
        position = separator.end() if separator is not None else len(text)
    return offsets


class EvidenceFinder:
    """Spans supporting codes in a note, from a :class:`Lexicon` (default: the shipped one,
    built once per process, about 10 s)."""

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        if lexicon is None:
            from medcode.model.retriever import shipped_lexicon

            lexicon = shipped_lexicon()
        self.lexicon = lexicon

    def find(self, text: str, codes: Iterable[str]) -> dict[str, list[Span]]:
        """Code -> its supporting spans (possibly none), strongest relation first, then by
        position; at most :data:`MAX_SPANS` per code."""
        wanted = list(dict.fromkeys(codes))
        found: dict[str, list[tuple[int, Match, str]]] = {code: [] for code in wanted}
        if not wanted:
            return {}
        matches = self.lexicon.matches(text)
        if not matches:
            return {code: [] for code in wanted}
        offsets = token_offsets(text)
        if len(offsets) < max(m.end for m in matches):  # tokenisation out of step: no spans
            return {code: [] for code in wanted}
        tables = self.lexicon.tables
        for m in matches:
            for code in m.codes:
                if code in found:
                    found[code].append((0, m, "direct"))
            if tables is not None and m.context & (HISTORY | FAMILY):
                for flag, family in ((HISTORY, False), (FAMILY, True)):
                    if not m.context & flag:
                        continue
                    for code in m.codes:
                        derived = self.lexicon._history_of(code, family)
                        if derived in found:
                            relation = "family_history" if family else "history"
                            found[derived].append((1, m, relation))
        missing = [code for code in wanted if not found[code]]
        if missing and tables is not None:
            plain = list(dict.fromkeys(c for m in matches if m.context == 0 for c in m.codes))
            for combined, parts in _combinations(plain, tables):
                if combined in found and not found[combined]:
                    parts_set = set(parts)
                    for m in matches:
                        if m.context == 0 and parts_set.intersection(m.codes):
                            found[combined].append((2, m, "combination"))
            missing = [code for code in wanted if not found[code]]
        for code in missing:
            if not code[:1].isalpha() or "." not in code:
                continue  # ICD-10-CM codes with a subcategory only; CPT/HCPCS have none
            category = code[:3]
            for m in matches:
                if any(c[:3] == category for c in m.codes):
                    found[code].append((3, m, "category"))
        return {code: self._spans(text, offsets, items) for code, items in found.items()}

    @staticmethod
    def _spans(
        text: str, offsets: list[tuple[int, int]], items: list[tuple[int, Match, str]]
    ) -> list[Span]:
        """Spans of the best relation found, a span inside a longer one of the same code
        dropped, ordered by position."""
        if not items:
            return []
        best = min(rank for rank, _, _ in items)
        chosen = sorted(
            {
                (m.start, m.end): (m, relation) for rank, m, relation in items if rank == best
            }.items(),
            key=lambda item: (item[0][0], -item[0][1]),
        )
        spans: list[Span] = []
        reach = -1
        for (start, end), (m, relation) in chosen:
            if end <= reach:  # inside the previous, longer span
                continue
            reach = max(reach, end)
            begin, finish = offsets[start][0], offsets[end - 1][1]
            cues = tuple(name for flag, name in CUES if m.context & flag)
            spans.append(
                Span(begin, finish, text[begin:finish], m.phrase, SOURCES[m.source], relation, cues)
            )
            if len(spans) == MAX_SPANS:
                break
        return spans
