"""The candidate retriever for the ``candidates`` prompt mode.

Two sources of candidates, merged by a small logistic model trained on held-out notes:

- the TF-IDF baseline's per-code scores (:class:`medcode.baselines.tfidf.TfidfCoder`), ranked,
  never thresholded;
- a lexicon of code phrasings (the synthetic catalog's phrases, ICD-10-CM descriptions and
  inclusion terms, the CPT/HCPCS table), matched in the note by word n-gram dict look-up,
  with the words around each match read for negation, uncertainty, history and family
  history; a history match also proposes the personal- or family-history Z code, two
  matched codes their combination code (diabetes with CKD), a drug its long-term use Z79.

The merged score is the model's probability that the code is gold, so ranking by it is what
maximises recall@k.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np

from medcode.model.context import (  # noqa: F401  (re-exported)
    FAMILY,
    HISTORY,
    HYPOTHETICAL,
    NEGATED,
    UNCERTAIN,
    context_cues,
    cue_phrases,
    cue_words,
)
from medcode.model.prompt import Candidate

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"\n|[.;!?](?=\s)")
_PARENTHESES = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_LETTERS = re.compile(r"[a-z]{2,}")  # the words a note's familiarity is judged on
MAX_KEY_WORDS = 8  # longer phrases are keyed on their first 8 words, the rest verified
SIDE_WORDS = {
    "right": ("right", "rt", "r"),
    "left": ("left", "lt", "l"),
    "bilateral": ("bilateral", "both", "bilat"),
}
# Where a phrase comes from.
CATALOG, DESCRIPTION, INCLUSION, PARENT, PROCEDURE, MEDICATION = range(6)
SOURCES = ("catalog", "description", "inclusion", "parent", "procedure", "medication")
_BEFORE, _AFTER = 5, 3  # words read before and after a match, within its sentence
COMBINATION = 16  # derived: a combination code of two matched codes (diabetes with CKD, ...)
_AGE_WORDS = re.compile(
    r"(?<![\d.])(\d{1,3})(?:[- ]?(?:year|yr)s?[- ]old|[ -]?y/?o\b|[ -]?y\.o\.)"
    r"|\bage[: ]+(\d{1,3})\b",
    re.IGNORECASE,
)
_AGE_SEX = re.compile(r"(?<![\d.])(\d{1,3}) ?/?[MF]\b")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits), plurals made singular, as the lexicon
    matches them."""
    return [_singular(w) for w in _WORD.findall(text.lower())]


_SINGULAR: dict[str, str] = {}


def _singular(word: str) -> str:
    found = _SINGULAR.get(word)
    if found is None:
        found = word
        if len(word) > 4 and word.endswith("ies"):
            found = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            found = word[:-1]
        if len(_SINGULAR) < 200_000:
            _SINGULAR[word] = found
    return found


# Shorthand the tokeniser splits at its slash ("h/o" -> "h", "o"), read as the cue word it
# stands for; the texture pass (medcode.synth.texture) writes it.
SHORTHAND_CUES = {("h", "o"): "history", ("w", "o"): "without"}


@dataclass(frozen=True)
class Match:
    """One lexicon phrase found in a note: word span, phrase, codes, weight, source, context."""

    start: int
    end: int
    phrase: str
    codes: tuple[str, ...]
    weight: float
    source: int
    context: int = 0


CUED_SHARE = 0.1  # a match under a negation, uncertainty, history or family cue: its share


@dataclass
class Evidence:
    """What the lexicon found for one code in one note."""

    weight: float = 0.0  # best weight of a phrase naming the code (shared among its codes)
    words: int = 0  # words of that phrase
    source: int = CATALOG
    inside: bool = True  # every match lies inside a longer match
    count: int = 0
    plain: bool = False  # some match has no negation/uncertainty/history/family cue
    context: int = 0  # union of the matches' cue flags
    derived: int = 0  # HISTORY, FAMILY (the history code of a matched code) or COMBINATION

    def score(self) -> float:
        """The lexicon's own score (see :meth:`Lexicon.scores`)."""
        score = self.weight * (0.5 if self.inside else 1.0)
        return score if self.plain or self.derived else score * CUED_SHARE


def _entry_key(tokens: list[str]) -> tuple[str, tuple[str, ...]]:
    """A phrase's look-up key (its first words) and the rest it verifies."""
    return " ".join(tokens[:MAX_KEY_WORDS]), tuple(tokens[MAX_KEY_WORDS:])


ORDER_FREE_WEIGHT = 0.8  # a phrase's words found in another order count a little less
ORDER_FREE_WORDS = (2, 4)  # phrases of this many words are also found in any order


class Lexicon:
    """Phrase -> codes, matched in a note by looking its word n-grams up in a dict.

    ``word_map`` (word -> word read instead: :mod:`medcode.terminology.clinical_english`)
    applies to phrases and notes alike; with ``free_order`` a phrase of two to four words is
    also found with its words in another order ("kidney disease, chronic")."""

    def __init__(self, word_map: dict[str, str] | None = None, free_order: bool = False) -> None:
        self.word_map = dict(word_map or {})
        self.free_order = free_order
        self._bags: dict[str, list[int]] = {}  # sorted words of a short phrase -> entries
        self._keys: dict[str, list[int]] = {}
        self._prefixes: set[str] = set()  # proper prefixes of keys: where a look-up goes on
        self._entry: dict[tuple[str, tuple[str, ...]], int] = {}
        self._rest: list[tuple[str, ...]] = []
        self._codes: list[tuple[str, ...]] = []
        self._weights: list[float] = []
        self._sources: list[int] = []
        self._phrases: list[str] = []
        self._history: dict[tuple[str, bool], str | None] = {}
        # The policy tables (history codes, combinations); set by build(), None: not derived.
        self.tables = None

    def __len__(self) -> int:
        return len(self._phrases)

    def add(self, phrase: str, codes: Iterable[str], source: int = CATALOG) -> None:
        """Add a phrase (``{placeholders}`` dropped) naming ``codes``; a phrase added twice
        keeps the union of its codes and its strongest source."""
        tokens = self.tokens(_PLACEHOLDER.sub(" ", phrase))
        codes = tuple(dict.fromkeys(codes))
        if not tokens or not codes:
            return
        key, rest = _entry_key(tokens)
        found = self._entry.get((key, rest))
        weight = _weight(source, len(tokens))
        if found is None:
            self._entry[key, rest] = len(self._phrases)
            self._keys.setdefault(key, []).append(len(self._phrases))
            low, high = ORDER_FREE_WORDS
            if low <= len(tokens) <= high and len(set(tokens)) == len(tokens):
                self._bags.setdefault(" ".join(sorted(tokens)), []).append(len(self._phrases))
            for n in range(1, min(len(tokens), MAX_KEY_WORDS)):
                self._prefixes.add(" ".join(tokens[:n]))
            self._rest.append(rest)
            self._codes.append(codes)
            self._weights.append(weight)
            self._sources.append(source)
            self._phrases.append(" ".join(tokens))
        else:
            self._codes[found] = tuple(dict.fromkeys(self._codes[found] + codes))
            if weight > self._weights[found]:
                self._weights[found], self._sources[found] = weight, source

    def add_acronyms(self, acronyms: dict[str, str]) -> list[str]:
        """Add each acronym with the codes and source of the phrase it stands for (a phrase
        already added); returns the acronyms whose phrase the lexicon does not hold."""
        missing = []
        for acronym, phrase in acronyms.items():
            entry = self._entry.get(_entry_key(self.tokens(phrase)))
            if entry is None:
                missing.append(acronym)
                continue
            self.add(acronym, self._codes[entry], self._sources[entry])
        return missing

    def tokens(self, text: str) -> list[str]:
        """The words of ``text`` as the lexicon reads them (:func:`words`, then the word map)."""
        found = words(text)
        if self.word_map:
            get = self.word_map.get
            found = [get(w, w) for w in found]
        return found

    def phrases_by_code(self) -> dict[str, list[str]]:
        """Each code's phrases as the lexicon matches them (lower-case singular words)."""
        found: dict[str, list[str]] = {}
        for phrase, codes in zip(self._phrases, self._codes, strict=True):
            for code in codes:
                found.setdefault(code, []).append(phrase)
        return found

    def matches(self, text: str) -> list[Match]:
        """Every phrase occurrence in ``text`` (overlapping ones included), with its cues."""
        tokens: list[str] = []
        lines: list[int] = []  # sentence number of each token
        ends: list[int] = []  # where each token's sentence ends: matches stay inside it
        for number, line in enumerate(_SENTENCE.split(text)):
            found = self.tokens(line)
            tokens += found
            lines += [number] * len(found)
            ends += [len(tokens)] * len(found)
        keys, rests, prefixes = self._keys, self._rest, self._prefixes
        result = []
        for i in range(len(tokens)):
            key = ""
            for n in range(min(MAX_KEY_WORDS, ends[i] - i)):
                key = tokens[i] if n == 0 else f"{key} {tokens[i + n]}"
                entries = keys.get(key)
                if entries is None:
                    if key in prefixes:
                        continue
                    break
                end = i + n + 1
                for e in entries:
                    rest = rests[e]
                    stop = end + len(rest)
                    if rest and (stop > ends[i] or tuple(tokens[end:stop]) != rest):
                        continue
                    result.append(
                        Match(
                            i,
                            stop,
                            self._phrases[e],
                            self._codes[e],
                            self._weights[e],
                            self._sources[e],
                            _context(tokens, lines, i, stop),
                        )
                    )
                if key not in prefixes:
                    break
        if self.free_order and self._bags:
            result += self._reordered(tokens, lines, ends)
        return result

    def _reordered(self, tokens: list[str], lines: list[int], ends: list[int]) -> list[Match]:
        """Short phrases whose words stand in another order within a sentence."""
        low, high = ORDER_FREE_WORDS
        bags, found = self._bags, []
        for i in range(len(tokens)):
            for n in range(low, min(high, ends[i] - i) + 1):
                window = tokens[i : i + n]
                entries = bags.get(" ".join(sorted(window)))
                if entries is None:
                    continue
                said = " ".join(window)
                for e in entries:
                    if self._phrases[e] == said:
                        continue  # in order: matched above
                    found.append(
                        Match(
                            i,
                            i + n,
                            self._phrases[e],
                            self._codes[e],
                            self._weights[e] * ORDER_FREE_WEIGHT,
                            self._sources[e],
                            _context(tokens, lines, i, i + n),
                        )
                    )
        return found

    def evidence(self, text: str) -> dict[str, Evidence]:
        """Code -> what the lexicon found for it in ``text`` (history codes included)."""
        found = self.matches(text)
        # A match lies inside a longer one when a match starting at or before it ends after
        # it, or one starting strictly before it ends at or after its end.
        size = max((m.end for m in found), default=0) + 1
        reach_at, reach_before = [0] * size, [0] * size
        for m in found:
            reach_at[m.start] = max(reach_at[m.start], m.end)
        best = 0
        for p in range(size):
            reach_before[p] = best
            best = max(best, reach_at[p])
            reach_at[p] = best
        result: dict[str, Evidence] = {}
        for m in found:
            length = m.end - m.start
            inside = reach_at[m.start] > m.end or reach_before[m.start] >= m.end
            share = m.weight / math.sqrt(len(m.codes))
            derived = []
            if self.tables is not None and m.context & (HISTORY | FAMILY):
                for flag in (HISTORY, FAMILY):
                    if m.context & flag:
                        derived += [(self._history_of(c, flag == FAMILY), flag) for c in m.codes]
            for code, flag in [(c, 0) for c in m.codes] + derived:
                if code is None:
                    continue
                item = result.get(code)
                if item is None:
                    item = result[code] = Evidence()
                item.count += 1
                item.inside = item.inside and inside
                item.derived |= flag
                item.context |= m.context
                item.plain = item.plain or (m.context == 0 and not flag)
                if share > item.weight:
                    item.weight, item.words, item.source = share, length, m.source
        if self.tables is not None:
            plain = [code for code, item in result.items() if item.plain]
            for code, parts in _combinations(plain, self.tables):
                item = result.setdefault(code, Evidence())
                weakest = min(parts, key=lambda c: result[c].weight)
                item.derived |= COMBINATION
                item.count += 1
                item.inside = False
                if result[weakest].weight > item.weight:
                    item.weight = result[weakest].weight
                    item.words, item.source = result[weakest].words, result[weakest].source
        return result

    def scores(self, text: str) -> dict[str, float]:
        """Code -> a simple lexicon score (the lexicon ranked alone): the best phrase weight,
        halved inside a longer match, a tenth when every match has a negation, uncertainty,
        history or family cue (and the code is not derived from it)."""
        return {code: item.score() for code, item in self.evidence(text).items()}

    def _history_of(self, code: str, family: bool) -> str | None:
        """The personal- or family-history code for a code (the policy's history table)."""
        key = (code, family)
        if key not in self._history:
            from medcode.terminology import icd10cm

            entry = self.tables.history_entry(code, family) if code[:1].isalpha() else None
            found = entry.code if entry is not None and icd10cm.is_billable(entry.code) else None
            self._history[key] = found
        return self._history[key]

    @classmethod
    def build(
        cls,
        icd_codes: Iterable[str] | None = None,
        catalog=None,
        table=None,
        index=True,
        clinical_english=True,
    ) -> Lexicon:
        """The lexicon of shipped data: catalog phrasings (placeholders filled from each
        form's attributes, ``{side}`` with side words), the ICD-10-CM tabular's descriptions
        and inclusion terms (of ``icd_codes``, default all; a non-billable code's terms name
        its default billable completion), with ``index`` the Alphabetic Index's clinical
        phrases of billable codes (data/terminology/index_terms.csv.gz: "klebsiella
        pneumonia", read as inclusion terms) and the CPT/HCPCS table's descriptions; with
        ``clinical_english`` it reads word variants (data/terminology/clinical_english.yaml)
        and short phrases in any word order."""
        from medcode.policy.tables import shipped_tables
        from medcode.synth.catalog import shipped_catalog
        from medcode.terminology import cpt, icd10cm
        from medcode.terminology.clinical_english import shipped_clinical_english

        english = shipped_clinical_english() if clinical_english else None
        lexicon = cls(english.words, free_order=True) if english else cls()
        catalog = catalog or shipped_catalog()
        table = table if table is not None else cpt.procedure_table()
        tabular = icd10cm.tabular()
        tables = lexicon.tables = shipped_tables()

        for concept in catalog.concepts.values():
            for form in concept.forms:
                codes = [
                    c
                    for side in concept.laterality or (None,)
                    for episode in concept.episodes or (None,)
                    for c in _completed(form.code, side, episode)
                ]
                lexicon.add(concept.label, codes, CATALOG)
                for options in concept.phrases.values():
                    for phrase in options:
                        filled = phrase.format_map(_Keep(form.attributes))
                        lexicon.add(filled, codes, CATALOG)
                        if "{side}" not in filled:
                            continue
                        for side, cues in SIDE_WORDS.items():
                            lateral = [
                                c
                                for episode in concept.episodes or (None,)
                                for c in _completed(form.code, side, episode)
                            ]
                            for cue in cues:
                                lexicon.add(filled.replace("{side}", cue), lateral, CATALOG)

        for code in icd10cm.all_codes() if icd_codes is None else icd_codes:
            code = icd10cm.normalize(code)
            if not tabular.is_valid_item(code):
                continue
            billable = tabular.is_leaf(code)
            targets = [code] if billable else _completed(code)
            terms = [*tabular.get_inclusion_term(code), *tabular.get_includes(code)]
            for text, source in [(tabular.get_description(code), DESCRIPTION)] + [
                (t, INCLUSION) for t in terms
            ]:
                for variant in _variants(text):
                    lexicon.add(variant, targets, source if billable else PARENT)

        if index:
            from medcode.terminology.index_terms import index_terms

            wanted = None if icd_codes is None else {icd10cm.normalize(c) for c in icd_codes}
            for record in index_terms():
                if (
                    record.source == "index"
                    and record.billable
                    and "," not in record.term
                    and (wanted is None or record.code in wanted)
                ):
                    lexicon.add(record.term, [record.code], INCLUSION)

        for entry in table.values():
            for variant in _variants(entry.description):
                lexicon.add(variant, [entry.code], PROCEDURE)

        # A drug of a class with a long-term drug therapy code (Z79) names that code.
        for concept in catalog.concepts.values():
            for medication in concept.medications:
                entry = tables.medications.get(medication.drug_class or "")
                if entry is None or not tabular.is_leaf(entry.code):
                    continue
                name = words(medication.name)
                drug = name[: next((i for i, w in enumerate(name) if w[0].isdigit()), len(name))]
                lexicon.add(" ".join(drug), [entry.code], MEDICATION)
        if english is not None:
            lexicon.add_acronyms(english.acronyms)
        return lexicon


def _combinations(codes: list[str], tables) -> list[tuple[str, tuple[str, ...]]]:
    """Combination codes the policy would make of these codes (diabetes with CKD, hypertension
    with heart failure and/or CKD, ...), with the codes each combines."""
    from medcode.policy.combinations import Confirmed, hypertension_merge, table_merges
    from medcode.terminology import icd10cm

    codes = [c for c in codes if c[:1].isalpha() and ("." in c or len(c) == 3)]
    confirmed = [Confirmed(i, code, [code], None) for i, code in enumerate(codes)]
    merges = table_merges(tables.combinations, confirmed)
    merge = hypertension_merge(confirmed)
    if merge is not None:
        merges.append(merge)
    return [
        (m.code, tuple(codes[i] for i in (m.base, *m.consumed)))
        for m in merges
        if icd10cm.is_billable(m.code)
    ]


class _Keep(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _completed(code: str, side: str | None = None, episode=None) -> list[str]:
    """Billable code(s) for a documented code (the policy's specificity rules); none when it
    cannot be completed."""
    from medcode.errors import CodeError
    from medcode.policy import specificity
    from medcode.terminology import icd10cm

    try:
        codes = specificity.resolve(code, laterality=side, episode=episode).codes
    except (CodeError, StopIteration):  # StopIteration: C44.102 and kin (see specificity)
        return []
    return [c for c in codes if icd10cm.is_billable(c)]


def _variants(text: str) -> list[str]:
    """A tabular term, and the term without its parenthesised (nonessential) words and NOS."""
    short = " ".join(_PARENTHESES.sub(" ", text).replace(" NOS", " ").split())
    return [text, short] if short and short != text else [text]


def _weight(source: int, n_words: int) -> float:
    base = (1.0, 1.0, 0.9, 0.7, 1.0, 0.8)[source]
    return base * min(1.0, 0.4 + 0.15 * n_words)


def _context(tokens: list[str], lines: list[int], start: int, end: int) -> int:
    line = lines[start]
    before = _window(tokens, lines, line, max(0, start - _BEFORE), start)
    after = _window(tokens, lines, line, end, min(len(tokens), end + _AFTER))
    return context_cues().flags_of(before, after)


def _window(tokens: list[str], lines: list[int], line: int, low: int, high: int) -> list[str]:
    """The words ``low``..``high`` of sentence ``line``, plus the cue word of each slash
    shorthand among them ("w", "o" -> "without"), one cut by the window's edge included."""
    found = [tokens[t] for t in range(low, high) if lines[t] == line]
    edges = range(max(0, low - 1), min(len(tokens), high + 1))
    wide = [tokens[t] for t in edges if lines[t] == line]
    return found + [SHORTHAND_CUES[p] for p in itertools.pairwise(wide) if p in SHORTHAND_CUES]


@cache
def shipped_lexicon() -> Lexicon:
    """The lexicon of the shipped catalog, tabular and CPT/HCPCS table, built once per process
    (about 10 s)."""
    return Lexicon.build()


FEATURES = (
    # TF-IDF: is the code one the baseline learned, its score, score over the code's spread,
    # rank in the note, top-5/top-20, log share of training notes with the code, E/M codes
    # (one per note) and the code's rank among them
    "tfidf",
    "tfidf_score",
    "tfidf_z",
    "tfidf_rank",
    "tfidf_top5",
    "tfidf_top20",
    "log_prior",
    "em",
    "em_top1",
    "em_top3",
    "age_fits",  # the note's age is in the code's age range (preventive visit codes)
    "age_misfits",
    # lexicon
    "lexicon",
    "lexicon_weight",
    "lexicon_words",
    "lexicon_inside",
    "lexicon_count",
    "lexicon_plain",
    "lexicon_negated",
    "lexicon_uncertain",
    "lexicon_history",
    "lexicon_family",
    "derived_history",
    "derived_family",
    "derived_combination",
    *(f"source_{name}" for name in SOURCES),
    # both
    "tfidf_and_lexicon",
    "tfidf_z_with_lexicon",
    "log_prior_with_lexicon",
)
_F = {name: i for i, name in enumerate(FEATURES)}
_LEXICON_FEATURES = _F["lexicon"]


@dataclass
class Merge:
    """The merge model: per-code statistics of the TF-IDF scores (aligned with the coder's
    codes) and the logistic weights over :data:`FEATURES`."""

    weights: list[float]
    intercept: float
    log_prior: list[float]
    scale: list[float]
    unseen_log_prior: float = math.log(0.5 / 1000)
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    # A note whose share of words unknown to the TF-IDF vocabulary is above this is unlike
    # the notes the merge was fitted on: the lexicon's plain matches may take every place.
    # The 99th percentile of the held-out synthetic notes' shares; None: never.
    unfamiliar_above: float | None = None


# The merge fitted on a 20,000-note development corpus (seed 5, its 15,935 training notes):
# the fallback when a retriever is built around a coder without fitting the merge, with every
# code at the typical log prior and score spread seen there.
DEFAULT_WEIGHTS = dict(
    tfidf=-6.74,
    tfidf_score=0.14,
    tfidf_z=0.25,
    tfidf_rank=-6.38,
    tfidf_top5=-1.29,
    tfidf_top20=-0.1,
    log_prior=1.43,
    em=2.17,
    em_top1=0.85,
    age_fits=1.48,
    age_misfits=-7.79,
    lexicon=0.31,
    lexicon_weight=7.46,
    lexicon_words=-0.68,
    lexicon_inside=-10.16,
    lexicon_count=-0.42,
    lexicon_plain=3.25,
    lexicon_negated=-2.23,
    lexicon_uncertain=-0.43,
    lexicon_history=-2.34,
    lexicon_family=-13.11,
    derived_history=9.59,
    derived_family=23.36,
    derived_combination=6.29,
    source_catalog=0.15,
    source_description=5.13,
    source_inclusion=0.26,
    source_parent=-1.02,
    source_procedure=1.66,
    source_medication=2.23,
    tfidf_and_lexicon=-2.51,
    tfidf_z_with_lexicon=0.1,
    log_prior_with_lexicon=-0.08,
)
DEFAULT_INTERCEPT = 9.07
DEFAULT_LOG_PRIOR, DEFAULT_UNSEEN_LOG_PRIOR, DEFAULT_SCALE = -6.0, -10.3, 0.73


@dataclass(frozen=True)
class RetrieverConfig:
    """What decides a retriever besides its coder; saved as ``retriever.json``."""

    k: int = 30
    holdout: float = 0.1  # share of the training notes kept out to fit thresholds and merge
    seed: int = 0
    far_negatives: float = 0.1  # share of low-ranked negatives kept to train the merge
    regularisation: float = 1.0  # inverse strength (scikit-learn's C)
    reserve: float = 0.25  # share of the k places kept for the lexicon's best plain matches
    # Candidates per note by the note's needs: a place for each code the lexicon plainly
    # finds, plus k/2 for what it cannot read (visit and procedure codes, ...), never fewer
    # than k nor more than k_max (0: every note gets k). On synthetic validation the count
    # of plain matches follows the gold count (r = 0.88; see :meth:`Retriever.note_k`).
    k_max: int = 0


class Retriever:
    """Top-k candidate codes for notes: TF-IDF scores and lexicon matches, merged."""

    def __init__(
        self,
        coder,
        lexicon: Lexicon | None = None,
        k: int = 30,
        *,
        merge: Merge | None = None,
        config: RetrieverConfig | None = None,
    ) -> None:
        self.coder = coder
        self._lexicon = lexicon
        self.config = replace(config, k=k) if config else RetrieverConfig(k=k)
        self.k = k
        self.merge = merge or _default_merge(len(coder.codes))
        self._prepare()

    @property
    def lexicon(self) -> Lexicon:
        if self._lexicon is None:
            self._lexicon = shipped_lexicon()
        return self._lexicon

    def _prepare(self) -> None:
        from medcode.terminology import cpt

        table = cpt.procedure_table()
        codes = self.coder.codes
        self._index = {code: j for j, code in enumerate(codes)}
        self._valid = np.array([_is_valid(code, table) for code in codes], dtype=bool)
        self._em = np.array(
            [code in table and table[code].em is not None for code in codes], dtype=bool
        )
        ranges = [
            table[code].em.age_range if self._em[j] and table[code].em.age_range else None
            for j, code in enumerate(codes)
        ]
        self._aged = np.array([r is not None for r in ranges], dtype=bool)
        self._age_low = np.array([r[0] if r else 0 for r in ranges], dtype=np.float32)
        self._age_high = np.array(
            [r[1] if r and r[1] is not None else 200 for r in ranges], dtype=np.float32
        )
        merge = self.merge
        vectorizer = getattr(self.coder, "vectorizer", None)
        words_of = dict(getattr(vectorizer, "transformer_list", ())).get("word")
        vocabulary = getattr(words_of, "vocabulary_", None) or {}
        self._vocabulary = frozenset(term for term in vocabulary if " " not in term)
        self._weights = np.asarray(merge.weights, dtype=np.float64)
        self._log_prior = np.asarray(merge.log_prior, dtype=np.float32)
        self._inverse_scale = 1.0 / np.maximum(np.asarray(merge.scale, dtype=np.float32), 1e-3)

    def unfamiliar_share(self, text: str) -> float:
        """The share of a note's words (two letters or more) the TF-IDF vocabulary lacks."""
        found = _LETTERS.findall(text.lower())
        if not found or not self._vocabulary:
            return 0.0
        return sum(w not in self._vocabulary for w in found) / len(found)

    def unfamiliar(self, text: str) -> bool:
        """Whether a note is unlike the merge's training notes (see :class:`Merge`)."""
        threshold = self.merge.unfamiliar_above
        return threshold is not None and self.unfamiliar_share(text) > threshold

    # -- features ------------------------------------------------------------------------

    def _features(self, scores: np.ndarray, text: str) -> tuple[list[str], np.ndarray]:
        """Candidate codes of one note (the coder's codes, then lexicon-only codes) and
        their feature rows."""
        codes, n = self.coder.codes, len(self.coder.codes)
        evidence = self.lexicon.evidence(text)
        extra = [c for c in evidence if c not in self._index]
        x = np.zeros((n + len(extra), len(FEATURES)), dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        x[:n, _F["tfidf"]] = 1.0
        x[:n, _F["tfidf_score"]] = np.clip(scores, -5.0, 20.0)
        x[:n, _F["tfidf_z"]] = np.clip(scores * self._inverse_scale, -10.0, 30.0)
        x[:n, _F["tfidf_rank"]] = np.log1p(rank) / math.log1p(max(n, 2))
        x[n:, _F["tfidf_rank"]] = 1.0
        x[:n, _F["tfidf_top5"]] = rank < 5
        x[:n, _F["tfidf_top20"]] = rank < 20
        x[:n, _F["log_prior"]] = self._log_prior
        x[n:, _F["log_prior"]] = self.merge.unseen_log_prior
        if self._em.any():
            em = np.nonzero(self._em)[0]
            em_order = em[np.argsort(-scores[em], kind="stable")]
            x[em, _F["em"]] = 1.0
            x[em_order[:1], _F["em_top1"]] = 1.0
            x[em_order[:3], _F["em_top3"]] = 1.0
        age = note_age(text)
        if age is not None and self._aged.any():
            fits = (self._age_low <= age) & (age <= self._age_high)
            x[:n, _F["age_fits"]] = self._aged & fits
            x[:n, _F["age_misfits"]] = self._aged & ~fits
        rows = [self._index.get(code, -1) for code in evidence]
        position = n
        for row, item in zip(rows, evidence.values(), strict=True):
            if row < 0:
                row, position = position, position + 1
            r = x[row]
            r[_F["lexicon"]] = 1.0
            r[_F["lexicon_weight"]] = item.weight
            r[_F["lexicon_words"]] = min(item.words, 10) / 10
            r[_F["lexicon_inside"]] = item.inside
            r[_F["lexicon_count"]] = math.log1p(item.count)
            r[_F["lexicon_plain"]] = item.plain
            r[_F["lexicon_negated"]] = bool(item.context & NEGATED)
            r[_F["lexicon_uncertain"]] = bool(item.context & UNCERTAIN)
            r[_F["lexicon_history"]] = bool(item.context & HISTORY)
            r[_F["lexicon_family"]] = bool(item.context & FAMILY)
            r[_F["derived_history"]] = bool(item.derived & HISTORY)
            r[_F["derived_family"]] = bool(item.derived & FAMILY)
            r[_F["derived_combination"]] = bool(item.derived & COMBINATION)
            r[_F["source_" + SOURCES[item.source]]] = 1.0
            r[_F["tfidf_and_lexicon"]] = r[_F["tfidf"]]
            r[_F["tfidf_z_with_lexicon"]] = r[_F["tfidf_z"]]
            r[_F["log_prior_with_lexicon"]] = r[_F["log_prior"]]
        return list(codes) + extra, x

    def _note_features(self, texts: Sequence[str], batch: int = 256):
        for start in range(0, len(texts), batch):
            chunk = list(texts[start : start + batch])
            scores = self.coder.decision(chunk)
            for row, text in zip(scores, chunk, strict=True):
                yield self._features(row, text)

    # -- candidates ----------------------------------------------------------------------

    def candidates(self, texts: Sequence[str], k: int | None = None) -> list[list[Candidate]]:
        """The top-k candidates of each note, best first; score = the merge's probability.

        ``config.reserve`` of the k places go to the lexicon's own best plain matches when the
        merge ranks them lower (a guard for text unlike the notes the merge was fitted on); when
        the note is :meth:`unfamiliar`, every place may go to the lexicon's matches, plain ones
        first, then those under a cue (history, uncertainty, ...)."""
        k = self.k if k is None else k
        per_note = self.config.k_max > k
        return [lists[k] for lists in self.candidate_lists(texts, (k,), per_note=per_note)]

    def note_k(self, k: int, plain: int) -> int:
        """The candidates of a note with ``plain`` codes the lexicon finds without a cue:
        ``plain + k // 2``, at least ``k``, at most ``config.k_max``."""
        return min(max(k, self.config.k_max), max(k, plain + k // 2))

    def candidate_lists(
        self, texts: Sequence[str], ks: Sequence[int], per_note: bool = False
    ) -> list[dict[int, list[Candidate]]]:
        """:meth:`candidates` for several k at once (the features are computed once); with
        ``per_note``, each k is the base of :meth:`note_k`."""
        found = []
        n = len(self.coder.codes)
        for text, (codes, x) in zip(texts, self._note_features(texts), strict=True):
            unfamiliar = self.unfamiliar(text)
            share = 1.0 if unfamiliar else self.config.reserve
            logits = x @ self._weights + self.merge.intercept
            logits[:n][~self._valid] = -np.inf
            order = np.argsort(-logits, kind="stable")
            order = order[: int(np.isfinite(logits).sum())]
            # on an unfamiliar note every lexicon match, plain first, then those under a cue,
            # comes before the TF-IDF's picks, which were learnt on other text
            lexical = _lexicon_score(x, CUED_SHARE if unfamiliar else 0.0) if share else None
            lists = {}
            ranked = (
                [j for j in np.argsort(-lexical, kind="stable") if lexical[j] > 0]
                if lexical is not None
                else []
            )
            plain = int(np.count_nonzero((_lexicon_score(x) > 0) & np.isfinite(logits)))
            for base in ks:
                k = self.note_k(base, plain) if per_note else base
                chosen = order[:k]
                reserve = int(k * share)
                # the lexicon's best ``reserve`` matches (valid codes) are in the list whatever
                # the merge thinks of them; the merge's best others take the other places
                wanted = [j for j in ranked if np.isfinite(logits[j])][:reserve]
                if wanted:
                    kept = set(wanted)
                    others = [j for j in order[:k] if j not in kept][: k - len(wanted)]
                    chosen = np.asarray(wanted + others, dtype=np.int64)
                    chosen = chosen[np.argsort(-logits[chosen], kind="stable")]
                lists[base] = [
                    Candidate(codes[j], describe(codes[j]), _probability(logits[j])) for j in chosen
                ]
            found.append(lists)
        return found

    # -- fitting -------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        texts: list[str],
        labels: list[list[str]],
        *,
        k: int = 30,
        progress=None,
        config: RetrieverConfig | None = None,
        lexicon: Lexicon | None = None,
        k_max: int = 0,
    ) -> Retriever:
        """Train the TF-IDF coder (default config) on all but a seeded held-out share of the
        notes (``config.holdout``, 10%), which tune its thresholds and fit the merge.
        ``progress`` is called with a message per step; ``k`` and ``k_max`` apply when
        ``config`` is not given; ``lexicon`` defaults to the shipped one."""
        from medcode.baselines.tfidf import TfidfCoder

        config = config or RetrieverConfig(k=k, k_max=k_max)
        step = progress or (lambda _message: None)
        rng = np.random.default_rng(config.seed)
        order = rng.permutation(len(texts))
        n_held = max(1, round(len(texts) * config.holdout)) if len(texts) > 1 else 0
        held, kept = sorted(order[:n_held]), sorted(order[n_held:])
        fit_texts, fit_labels = [texts[i] for i in kept], [labels[i] for i in kept]
        held_texts, held_labels = [texts[i] for i in held], [labels[i] for i in held]
        coder = TfidfCoder().fit(fit_texts, fit_labels, held_texts, held_labels, progress=step)
        retriever = cls(coder, lexicon, k=config.k, config=config)
        step("fitting the merge on held-out notes")
        retriever.fit_merge(fit_texts, fit_labels, held_texts, held_labels)
        return retriever

    def fit_merge(
        self,
        train_texts: list[str],
        train_labels: list[list[str]],
        held_texts: list[str],
        held_labels: list[list[str]],
    ) -> Retriever:
        """Per-code statistics from the coder's training notes, then the logistic merge on
        held-out notes (kept at its default when they hold too few positives)."""
        from collections import Counter

        codes = self.coder.codes
        counts = Counter(code for row in train_labels for code in set(row))
        total = max(1, len(train_labels))
        sample = train_texts[:: max(1, len(train_texts) // 5000)]
        spread = np.std(self.coder.decision(sample), axis=0) if sample else np.ones(len(codes))
        merge = Merge(
            weights=list(self.merge.weights),
            intercept=self.merge.intercept,
            log_prior=[math.log(max(counts[c], 0.5) / total) for c in codes],
            scale=[float(max(s, 1e-3)) for s in spread],
            unseen_log_prior=math.log(0.5 / total),
        )
        self.merge = merge
        self._prepare()
        if held_texts and self._vocabulary:
            shares = [self.unfamiliar_share(text) for text in held_texts]
            merge.unfamiliar_above = float(np.quantile(shares, 0.99))
        x, y, weight = self._training_rows(held_texts, held_labels)
        if y.sum() >= 20 and (~y).sum() >= 20:
            merge.weights, merge.intercept = _logistic(x, y, weight, self.config.regularisation)
            self._prepare()
        return self

    def _training_rows(self, texts, labels):
        rng = np.random.default_rng(self.config.seed + 1)
        keep_far = self.config.far_negatives
        xs, ys, ws = [], [], []
        n = len(self.coder.codes)
        for (codes, x), gold in zip(self._note_features(texts), labels, strict=True):
            gold = set(gold)
            y = np.array([c in gold for c in codes], dtype=bool)
            valid = np.ones(len(codes), dtype=bool)
            valid[:n] = self._valid
            near = (x[:, _F["tfidf_top20"]] > 0) | (x[:, _F["tfidf_rank"]] < 0.7)
            near |= x[:, _LEXICON_FEATURES] > 0
            sampled = rng.random(len(codes)) < keep_far
            keep = valid & (y | near | sampled)
            xs.append(x[keep])
            ys.append(y[keep])
            ws.append(np.where(y[keep] | near[keep], 1.0, 1.0 / keep_far))
        if not xs:
            return np.zeros((0, len(FEATURES))), np.zeros(0, dtype=bool), np.zeros(0)
        return np.vstack(xs), np.concatenate(ys), np.concatenate(ws)

    # -- persistence ---------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """The coder in ``coder/`` (its own format) and ``retriever.json``."""
        from medcode import __version__

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.coder.save(folder / "coder")
        state = {
            "kind": "retriever",
            "generator_version": __version__,
            "config": asdict(self.config),
            "k": self.k,
            "merge": asdict(self.merge),
        }
        (folder / "retriever.json").write_text(json.dumps(state))
        return folder

    @classmethod
    def load(cls, folder: str | Path, lexicon: Lexicon | None = None) -> Retriever:
        """A saved retriever; the lexicon is rebuilt from shipped data (once per process)."""
        from medcode.baselines.tfidf import TfidfCoder
        from medcode.errors import MedcodeError

        folder = Path(folder)
        path = folder / "retriever.json"
        if not path.is_file():
            raise MedcodeError(f"{folder}: no retriever here (retriever.json)")
        state = json.loads(path.read_text())
        merge = Merge(**state["merge"])
        if merge.features != list(FEATURES):
            raise MedcodeError(f"{path}: saved with other features; fit the retriever again")
        return cls(
            TfidfCoder.load(folder / "coder"),
            lexicon,
            k=state["k"],
            merge=merge,
            config=RetrieverConfig(**state["config"]),
        )


def _lexicon_score(x: np.ndarray, cued: float = 0.0) -> np.ndarray:
    """:meth:`Evidence.score` from feature rows: zero for absent matches, and ``cued`` times
    the weight for cued-only ones (:meth:`Evidence.score` uses a tenth; 0: left out)."""
    plain = x[:, _F["lexicon_plain"]] > 0
    for name in ("derived_history", "derived_family", "derived_combination"):
        plain |= x[:, _F[name]] > 0
    weight = x[:, _F["lexicon_weight"]] * np.where(x[:, _F["lexicon_inside"]] > 0, 0.5, 1.0)
    return np.where(plain, weight, cued * weight)


def _probability(logit: float) -> float:
    return float(1.0 / (1.0 + math.exp(-min(50.0, max(-50.0, float(logit))))))


def _default_merge(n_codes: int) -> Merge:
    weights = [DEFAULT_WEIGHTS.get(name, 0.0) for name in FEATURES]
    return Merge(
        weights,
        DEFAULT_INTERCEPT,
        [DEFAULT_LOG_PRIOR] * n_codes,
        [DEFAULT_SCALE] * n_codes,
        DEFAULT_UNSEEN_LOG_PRIOR,
    )


def _logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, c: float):
    """Logistic regression on standardised features, weights mapped back to raw features."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-6] = 1.0
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((x - mean) / std, y, sample_weight=weight)
    coef = model.coef_[0] / std
    return [float(v) for v in coef], float(model.intercept_[0] - coef @ mean)


def note_age(text: str) -> int | None:
    """The patient's age in years as a note states it ("67-year-old", "67 yo", "Age: 67",
    "67M"), or None."""
    found = _AGE_WORDS.search(text) or _AGE_SEX.search(text)
    if found is None:
        return None
    age = int(next(g for g in found.groups() if g))
    return age if age <= 120 else None


def _is_valid(code: str, table) -> bool:
    from medcode.terminology import icd10cm

    return code in table or (icd10cm.looks_like(code) and icd10cm.is_billable(code))


@cache
def describe(code: str) -> str:
    """The tabular description of an ICD-10-CM code, or the CPT/HCPCS table's."""
    from medcode.terminology import cpt, icd10cm

    table = cpt.procedure_table()
    if code in table:
        return table[code].description
    return icd10cm.description(code)


def recall_at_k(
    retriever: Retriever,
    texts: Sequence[str],
    gold: Sequence[Sequence[str]],
    ks: Sequence[int] = (5, 10, 20, 30, 50),
) -> dict[int, float]:
    """Micro recall@k: the share of gold (note, code) pairs among each note's top-k."""
    texts = list(texts)
    if hasattr(retriever, "candidate_lists"):
        lists = retriever.candidate_lists(texts, ks)
    else:
        per_k = {k: retriever.candidates(texts, k) for k in ks}
        lists = [{k: per_k[k][i] for k in ks} for i in range(len(texts))]
    return {k: recall_of([[c.code for c in row[k]] for row in lists], gold, (k,))[k] for k in ks}


def recall_of(
    ranked: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], ks: Sequence[int]
) -> dict[int, float]:
    """Micro recall@k of ranked code lists against gold code lists."""
    total = sum(len(set(g)) for g in gold)
    return {
        k: sum(len(set(g) & set(r[:k])) for r, g in zip(ranked, gold, strict=True)) / max(1, total)
        for k in ks
    }
