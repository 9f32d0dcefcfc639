"""How the retriever's lexicon reads a match's context (negated, uncertain, history, family,
hypothetical): the cues of ``data/terminology/context_cues.yaml`` as word tuples, each
trigger's reach cut at a terminator, pseudo-triggers read as nothing."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

# Flags of a match's context.
NEGATED, UNCERTAIN, HISTORY, FAMILY = 1, 2, 4, 8
HYPOTHETICAL = 32  # "return if fever develops", "DVT prophylaxis" (16 is a derived flag)


def words(text: str) -> list[str]:
    """The lexicon's word tokens (:func:`medcode.model.retriever.words`)."""
    from medcode.model.retriever import words as tokens

    return tokens(text)


@dataclass(frozen=True)
class _Cues:
    """The context cues (``data/terminology/context_cues.yaml``) as word tuples: per flag,
    the phrases read before and after a match; pseudo-triggers; terminators."""

    flags: tuple[tuple[int, frozenset[tuple[str, ...]], frozenset[tuple[str, ...]]], ...]
    pseudo: frozenset[tuple[str, ...]]
    terminators: frozenset[tuple[str, ...]]
    longest: int

    def flags_of(self, before: list[str], after: list[str]) -> int:
        """The flags of a match with these words before and after it (in its sentence)."""
        before = self._scope(self._masked(before), last=True)
        after = self._scope(self._masked(after), last=False)
        ahead, behind = self._grams(before), self._grams(after)
        found = 0
        for flag, cues_before, cues_after in self.flags:
            if ahead & cues_before or behind & cues_after:
                found |= flag
        return found

    def _grams(self, found: list[str]) -> set[tuple[str, ...]]:
        return {
            tuple(found[i : i + n])
            for n in range(1, self.longest + 1)
            for i in range(len(found) - n + 1)
        }

    def _masked(self, found: list[str]) -> list[str]:
        """The words, those of a pseudo-trigger blanked ("gram negative" negates nothing)."""
        masked = list(found)
        for n in range(2, self.longest + 1):
            for i in range(len(found) - n + 1):
                if tuple(found[i : i + n]) in self.pseudo:
                    masked[i : i + n] = [""] * n
        return masked

    def _scope(self, found: list[str], last: bool) -> list[str]:
        """The words a cue may reach from: after the last terminator before the match, or
        before the first one after it."""
        cuts = [
            (i, i + n)
            for n in range(1, self.longest + 1)
            for i in range(len(found) - n + 1)
            if tuple(found[i : i + n]) in self.terminators
        ]
        if not cuts:
            return found
        return found[max(e for _, e in cuts) :] if last else found[: min(s for s, _ in cuts)]


@cache
def context_cues() -> _Cues:
    """The shipped context cues, read once."""
    from medcode.terminology.context_cues import shipped_context_cues

    cues = shipped_context_cues()

    def tuples(*names: str) -> frozenset[tuple[str, ...]]:
        return frozenset(tuple(words(p)) for name in names for p in cues[name])

    flags = (
        (NEGATED, tuples("negation_before"), tuples("negation_after")),
        (UNCERTAIN, tuples("uncertain_before"), tuples("uncertain_after")),
        (HISTORY, tuples("history_before"), tuples("history_after")),
        (FAMILY, tuples("family"), tuples("family")),
        (HYPOTHETICAL, tuples("hypothetical_before"), tuples("hypothetical_after")),
    )
    every = [t for _, ahead, behind in flags for t in (*ahead, *behind)]
    every += [*tuples("pseudo"), *tuples("terminators")]
    return _Cues(flags, tuples("pseudo"), tuples("terminators"), max(len(t) for t in every))


@cache
def cue_words() -> frozenset[str]:
    """The one-word context cues (two letters or more: "denies", "hx", "which"): words the
    texture pass leaves alone so that no cue moves in or out of a match's window."""
    return frozenset(p[0] for p in _cue_tuples() if len(p) == 1 and len(p[0]) > 1)


@cache
def cue_phrases() -> frozenset[str]:
    """The context cues of two words or more ("rule out", "gram negative"), as written: the
    texture pass never rewrites them."""
    from medcode.terminology.context_cues import SECTIONS, shipped_context_cues

    cues = shipped_context_cues()
    return frozenset(p for name in SECTIONS for p in cues[name] if len(words(p)) > 1)


def _cue_tuples() -> set[tuple[str, ...]]:
    cues = context_cues()
    found = {t for _, ahead, behind in cues.flags for t in (*ahead, *behind)}
    return found | cues.pseudo | cues.terminators
