"""How much a corpus reads like clinicians' notes: the realism report of ``medcode synth audit``
and of the dataset card.

Every text metric works on a note's *clinician lines*: the lines left after removing blank
lines, lines without a letter, registration data (patient, identifiers, dates, provider,
facility, signature) and headings alone, as listed in ``data/synth/realism.yaml``.

1. Repeated lines: the share of clinician-line occurrences (stripped, lower-cased, runs of
   spaces collapsed) whose text occurs in at least T notes (counted once per note). Two rules:
   ``per_1000`` T = max(2, ceil(notes / 100)), i.e. 10 notes per 1,000; ``issue_10_of_400``
   T = max(2, ceil(10 * notes / 400)), i.e. 10 of 400 notes (2.5%).
2. Distinct 3-word openings: the clinician lines are split into sentences (at ., ! or ?
   followed by a space, except after the abbreviations of realism.yaml), list markers ("1.",
   "#2", "-") are dropped, and the first three words (lower-case letters/digits) of each sentence
   of at least three words are counted: distinct openings, and per 1,000 such sentences.
3. Code-title leakage: clinician sentences that contain an ICD-10-CM title qualifier of
   realism.yaml ("unspecified", "NOS", "encounter for", ...), with the most frequent
   qualifiers and one example sentence each.
4. Reasoning language: the share of notes whose clinician lines contain a reasoning cue of
   realism.yaml ("due to", "likely", "consistent with", ...).
5. Words per note type: whitespace-separated words of the whole note text (as the card's
   "words per note"): mean, median, 10th and 90th percentile (linear interpolation).
6. Phrasings per code: for each gold code, the distinct texts of its evidence spans across the
   corpus (lower-cased, spaces collapsed, outer punctuation stripped), i.e. the distinct ways
   the notes name that concept. E/M level codes (rule ``em.*``) are left out: their evidence
   is the visit type and the documented medical decision making, not a name. Reported for
   codes with evidence in at least 5 notes: median and 10th percentile.
7. Abbreviations per 100 words: the words (whitespace-separated, outer punctuation stripped)
   of the clinician lines that are abbreviations: a word of realism.yaml's ``shorthand`` list
   or of texture.yaml's short forms ("pt", "h/o", "prn"), or a word that matches its capitals
   pattern ("BP", "ROS", "A/P"); per 100 words, and the most frequent.
8. Typos and dictation artefacts: the share of notes whose clinician lines hold a doubled word
   ("the the"), a misspelling of a texture.yaml word ("reveiwed") or a misheard phrase of
   texture.yaml ("hear for"). A missing period is not detectable and is not counted.

:func:`classify` adds the synthetic-vs-reference classifier (TF-IDF + logistic regression,
cross-validated ROC AUC) of the audit.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from medcode.errors import DataFileError, MedcodeError

MIN_CODE_NOTES = 5
TOP = 10


# ---------------------------------------------------------------------------------------------
# realism.yaml


@dataclass(frozen=True)
class Rule:
    """One pattern of realism.yaml: a qualifier, a reasoning cue or an excluded-line rule."""

    name: str
    regex: re.Pattern
    unless: re.Pattern | None = None
    source: str = ""
    line: int = 0

    @property
    def loose(self) -> re.Pattern:
        """The pattern without a leading ``^``: it finds every place the rule may hit in a
        longer text (a whole note), to skip the rule for notes without one."""
        return _loose(self.regex)

    def hits(self, text: str) -> bool:
        return bool(self.regex.search(text)) and not (self.unless and self.unless.search(text))


@cache
def _loose(regex: re.Pattern) -> re.Pattern:
    pattern = regex.pattern
    return re.compile(pattern[1:], regex.flags) if pattern.startswith("^") else regex


@dataclass(frozen=True)
class RealismRules:
    path: str
    header_lines: int
    registration: tuple[Rule, ...]
    signature: tuple[Rule, ...]
    headings: tuple[Rule, ...]
    qualifiers: tuple[Rule, ...]
    left_out: tuple[tuple[str, str], ...]
    cues: tuple[Rule, ...]
    abbreviations: frozenset[str]
    shorthand: frozenset[str] = frozenset()  # words counted as abbreviations (lower case)
    capitals: re.Pattern | None = None  # a word matching it counts as an abbreviation
    doubled: re.Pattern | None = None  # a doubled word

    def leaked(self, sentence: str, rules: Iterable[Rule] | None = None) -> list[str]:
        """Names of the code-title qualifiers in a sentence (of ``rules``, default all)."""
        return [
            rule.name
            for rule in (self.qualifiers if rules is None else rules)
            if rule.hits(sentence)
        ]

    def reasons(self, text: str) -> list[str]:
        """Names of the reasoning cues in a text."""
        return [rule.name for rule in self.cues if rule.hits(text)]


_SECTIONS = {
    "excluded_lines",
    "code_title_qualifiers",
    "left_out_qualifiers",
    "reasoning_cues",
    "abbreviations",
}
_OPTIONAL = {"shorthand", "artefacts"}


def rules_path() -> Path:
    from medcode.datafiles import package_data

    return package_data("synth/realism.yaml")


@cache
def _default_rules() -> RealismRules:
    return _read_rules(rules_path())


def load_rules(path: str | Path | None = None) -> RealismRules:
    """The rules of ``realism.yaml`` (the shipped file unless ``path``), validated: a problem
    raises :class:`DataFileError` naming the file and line."""
    return _default_rules() if path is None else _read_rules(Path(path))


def _read_rules(path: Path) -> RealismRules:
    from medcode.datafiles import load_yaml

    data = load_yaml(path)
    if not isinstance(data, dict):
        raise DataFileError(path, None, "expected a mapping with " + ", ".join(sorted(_SECTIONS)))
    missing = sorted(_SECTIONS - set(data))
    if missing:
        raise DataFileError(path, getattr(data, "line", None), f"missing {', '.join(missing)}")
    unknown = sorted(set(data) - _SECTIONS - _OPTIONAL)
    if unknown:
        raise DataFileError(path, getattr(data, "line", None), f"unknown key(s) {unknown}")
    excluded = data["excluded_lines"]
    if not isinstance(excluded, dict):
        raise DataFileError(path, None, "excluded_lines: expected a mapping")
    header = excluded.get("header_lines")
    if not isinstance(header, int) or isinstance(header, bool) or header < 0:
        raise DataFileError(path, excluded.line, "header_lines: expected a whole number >= 0")
    extra = sorted(set(excluded) - {"header_lines", "registration", "signature", "headings"})
    if extra:
        raise DataFileError(path, excluded.line, f"excluded_lines: unknown key(s) {extra}")
    abbreviations = data["abbreviations"]
    if not isinstance(abbreviations, list) or not all(isinstance(a, str) for a in abbreviations):
        raise DataFileError(path, None, "abbreviations: expected a list of words")
    left_out = []
    for item in _entries(path, data, "left_out_qualifiers"):
        _keys(path, item, "left_out_qualifiers", {"phrase", "reason"}, {"phrase", "reason"})
        left_out.append((str(item["phrase"]), str(item["reason"])))
    qualifiers = _rules(path, data, "code_title_qualifiers", needs="source")
    cues = _rules(path, data, "reasoning_cues", needs=None)
    shorthand, capitals, doubled = _shorthand(path, data)
    return RealismRules(
        path=str(path),
        header_lines=header,
        registration=_rules(path, excluded, "registration", needs="reason", words=False),
        signature=_rules(path, excluded, "signature", needs="reason", words=False),
        headings=_rules(path, excluded, "headings", needs="reason", words=False),
        qualifiers=qualifiers,
        left_out=tuple(left_out),
        cues=cues,
        abbreviations=frozenset(a.lower().rstrip(".") for a in abbreviations),
        shorthand=shorthand,
        capitals=capitals,
        doubled=doubled,
    )


def _shorthand(
    path: Path, data: dict
) -> tuple[frozenset[str], re.Pattern | None, re.Pattern | None]:
    """The optional ``shorthand`` (words, capitals pattern) and ``artefacts`` (doubled-word
    pattern) sections."""
    section = data.get("shorthand") or {}
    words = section.get("words", [])
    if not isinstance(section, dict) or not isinstance(words, list):
        raise DataFileError(path, getattr(section, "line", None), "shorthand: words: a list")
    patterns = []
    for key, parent, name in (
        ("shorthand", section, "capitals"),
        ("artefacts", data.get("artefacts") or {}, "doubled_word"),
    ):
        source = parent.get(name) if isinstance(parent, dict) else None
        try:
            flags = 0 if name == "capitals" else re.IGNORECASE
            patterns.append(re.compile(str(source), flags) if source else None)
        except re.error as exc:
            line = getattr(parent, "line", None)
            raise DataFileError(path, line, f"{key}: {name}: bad pattern ({exc})") from None
    return frozenset(str(w).lower() for w in words), patterns[0], patterns[1]


def _entries(path: Path, data: dict, key: str) -> list:
    items = data.get(key)
    if not isinstance(items, list) or not items:
        raise DataFileError(path, getattr(data, "line", None), f"{key}: expected a list")
    for item in items:
        if not isinstance(item, dict):
            raise DataFileError(path, None, f"{key}: every entry must be a mapping, not {item!r}")
    return items


def _keys(path: Path, item: dict, key: str, required: set[str], allowed: set[str]) -> None:
    missing = sorted(name for name in required if not str(item.get(name) or "").strip())
    if missing:
        raise DataFileError(path, item.line, f"{key}: entry without {', '.join(missing)}")
    extra = sorted(set(item) - allowed)
    if extra:
        raise DataFileError(path, item.line, f"{key}: unknown key(s) {extra}")


def _rules(path: Path, data: dict, key: str, needs: str | None, words: bool = True):
    """Compile the entries of one list. Line rules (``words=False``) need a ``pattern``; the
    others may give just a ``phrase``, matched as whole words."""
    rules = []
    allowed = {"phrase", "pattern", "unless", "case_sensitive", "source", "reason", "note"}
    for item in _entries(path, data, key):
        required = {"phrase"} if words else {"pattern"}
        if needs:
            required.add(needs)
        _keys(path, item, key, required, allowed)
        flags = 0 if item.get("case_sensitive") else re.IGNORECASE
        name = str(item.get("phrase") or item["pattern"])
        text = item.get("pattern") or r"\b" + re.escape(name) + r"\b"
        compiled = []
        for field_name, source in (("pattern", text), ("unless", item.get("unless"))):
            if source is None:
                compiled.append(None)
                continue
            try:
                compiled.append(re.compile(str(source).strip(), flags))
            except re.error as exc:
                raise DataFileError(
                    path, item.line, f"{key}: {name!r}: bad {field_name} ({exc})"
                ) from None
        rules.append(
            Rule(
                name,
                compiled[0],
                compiled[1],
                str(item.get(needs) or item.get("note") or ""),
                item.line,
            )
        )
    return tuple(rules)


# ---------------------------------------------------------------------------------------------
# lines and sentences

_SPACES = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")
_LIST_MARKER = re.compile(r"^(?:[-*•>]+\s*|#?\d{1,2}[.)]\s+|#\d{1,2}\s+|\d{1,2}\)\s*)")
_BOUNDARY = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+(?:['’/-][a-z0-9]+)*")
_EDGE_PUNCT = " \t\n.,;:-–—()[]\"'"


class _AnyOf:
    """Searches with each of a group's rules in turn (the fallback of :func:`_any_of`)."""

    def __init__(self, patterns: tuple[re.Pattern, ...]) -> None:
        self.patterns = patterns

    def search(self, line: str) -> bool | None:
        return next((True for p in self.patterns if p.search(line)), None)


@cache
def _any_of(rules: tuple[Rule, ...]) -> re.Pattern | _AnyOf:
    """One pattern that matches where any rule's does (each keeps its own case flag), or a
    rule-by-rule search where they cannot be joined (groups by name or number, inline flags)."""
    patterns = tuple(rule.regex for rule in rules)
    parts = []
    for pattern in patterns:
        if re.search(r"\(\?P|\\\d|\(\?[aiLmsux-]", pattern.pattern):
            return _AnyOf(patterns)
        parts.append(f"(?{'i' if pattern.flags & re.IGNORECASE else '-i'}:{pattern.pattern})")
    try:
        return re.compile("|".join(parts) or r"(?!)")
    except re.error:
        return _AnyOf(patterns)


def clinician_lines(text: str, rules: RealismRules | None = None) -> list[str]:
    """The stripped lines of a note that a clinician wrote: without blank lines, lines without
    a letter, registration data, signatures and headings alone (see realism.yaml), and
    without the note header: the lines above the last registration line among the first
    ``header_lines`` lines, up to the first blank line after a registration line."""
    lines = [line.strip() for line in text.splitlines()]
    return [line for line, keep in zip(lines, clinician_mask(lines, rules), strict=True) if keep]


def clinician_mask(lines: list[str], rules: RealismRules | None = None) -> list[bool]:
    """For each line of a note, whether it is a clinician line (see :func:`clinician_lines`)."""
    rules = rules or load_rules()
    lines = [line.strip() for line in lines]
    registration = _any_of(rules.registration)
    header_end = 0
    for index, line in enumerate(lines[: rules.header_lines]):
        if not line and header_end:
            break
        if line and registration.search(line):
            header_end = index + 1
    excluded = _any_of((*rules.registration, *rules.signature, *rules.headings))
    return [
        index >= header_end
        and bool(line)
        and bool(_LETTER.search(line))
        and not excluded.search(line)
        for index, line in enumerate(lines)
    ]


def normalise_line(line: str) -> str:
    return _SPACES.sub(" ", line.strip().lower())


def split_sentences(line: str, rules: RealismRules | None = None) -> list[str]:
    """The sentences of one clinician line, list markers dropped: split at ., ! or ? followed
    by a space, unless the word before the stop is an abbreviation of realism.yaml or one
    letter (an initial)."""
    rules = rules or load_rules()
    line = _LIST_MARKER.sub("", line.strip())
    parts, start = [], 0
    for match in _BOUNDARY.finditer(line):
        before = line[start : match.start()].split()
        word = before[-1].lower().rstrip(".!?") if before else ""
        if word in rules.abbreviations or (len(word) == 1 and word.isalpha()):
            continue
        parts.append(line[start : match.start()])
        start = match.end()
    parts.append(line[start:])
    return [part.strip() for part in parts if part.strip() and _LETTER.search(part)]


def opening(sentence: str, words: int = 3) -> str | None:
    """The first ``words`` words of a sentence (lower case), or None when it is shorter."""
    tokens = _WORD.findall(sentence.lower())
    return " ".join(tokens[:words]) if len(tokens) >= words else None


def phrasing(text: str) -> str:
    return _SPACES.sub(" ", text.lower()).strip(_EDGE_PUNCT)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile with linear interpolation (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def repeat_thresholds(notes: int) -> dict[str, int]:
    """Notes a line must occur in to count as repeated, under the two rules of the report."""
    return {
        "per_1000": max(2, math.ceil(notes / 100)),
        "issue_10_of_400": max(2, math.ceil(10 * notes / 400)),
    }


# ---------------------------------------------------------------------------------------------
# the report


@dataclass
class RealismReport:
    notes: int = 0
    clinician_lines: int = 0
    excluded_lines: int = 0
    repeated_lines: dict = field(default_factory=dict)
    openings: dict = field(default_factory=dict)
    leakage: dict = field(default_factory=dict)
    reasoning: dict = field(default_factory=dict)
    words: dict = field(default_factory=dict)
    phrasings: dict = field(default_factory=dict)
    excluded_rule: str = ""
    abbreviations: dict = field(default_factory=dict)
    artefacts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class RealismMeter:
    """Accumulates notes one at a time (``add``) and computes the report (``report``)."""

    def __init__(self, rules: RealismRules | None = None) -> None:
        self.rules = rules or load_rules()
        self.notes = 0
        self.lines = 0
        self.excluded = 0
        self.line_notes: Counter[str] = Counter()  # line -> notes that contain it
        self.line_count: Counter[str] = Counter()  # line -> occurrences
        self.sentences = 0
        self.openings: Counter[str] = Counter()
        self.clinician_sentences = 0
        self.leaking_sentences = 0
        self.notes_with_leakage = 0
        self.qualifiers: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.notes_with_reasoning = 0
        self.cue_notes: Counter[str] = Counter()
        self.words: dict[str, list[int]] = defaultdict(list)
        self.code_notes: Counter[tuple[str, str]] = Counter()
        self.code_phrasings: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.clinician_words = 0
        self.shorthand: Counter[str] = Counter()
        self.artefact_kinds: Counter[str] = Counter()  # kind -> notes with one
        self.notes_with_artefact = 0

    def add(self, text: str, note_type: str | None = None, codes: Iterable[dict] = ()) -> None:
        self.notes += 1
        raw = sum(1 for line in text.splitlines() if line.strip())
        lines = clinician_lines(text, self.rules)
        self.lines += len(lines)
        self.excluded += raw - len(lines)
        normalised = [normalise_line(line) for line in lines]
        self.line_count.update(normalised)
        self.line_notes.update(set(normalised))
        body = "\n".join(lines)
        candidates = [rule for rule in self.rules.qualifiers if rule.loose.search(body)]
        leaked = False
        for line in lines:
            for sentence in split_sentences(line, self.rules):
                self.clinician_sentences += 1
                start = opening(sentence)
                if start is not None:
                    self.sentences += 1
                    self.openings[start] += 1
                found = self.rules.leaked(sentence, candidates) if candidates else []
                if found:
                    leaked = True
                    self.leaking_sentences += 1
                    for name in found:
                        self.qualifiers[name] += 1
                        self.examples.setdefault(name, sentence)
        self.notes_with_leakage += leaked
        cues = self.rules.reasons(body)
        self.notes_with_reasoning += bool(cues)
        self.cue_notes.update(cues)
        self._texture(lines)
        self.words[note_type or "all notes"].append(len(text.split()))
        seen = set()
        for item in codes or ():
            if str(item.get("rule", "")).startswith("em.") or not item.get("evidence"):
                continue
            key = (item.get("system", ""), item["code"])
            for span in item["evidence"]:
                said = phrasing(text[span["start"] : span["end"]])
                if said:
                    self.code_phrasings[key].add(said)
            seen.add(key)
        self.code_notes.update(seen)

    def _texture(self, lines: list[str]) -> None:
        """Count the abbreviations and the artefacts of a note's clinician lines."""
        known = self.rules.shorthand | _texture_words()[0]
        capitals = self.rules.capitals
        for line in lines:
            for token in line.split():
                word = token.strip(_EDGE_PUNCT)
                if not word:
                    continue
                self.clinician_words += 1
                if capitals is not None and capitals.fullmatch(word):
                    self.shorthand[word] += 1
                elif word.lower() in known:
                    self.shorthand[word.lower()] += 1
        kinds = artefacts_in("\n".join(lines), self.rules)
        self.artefact_kinds.update(kinds)
        self.notes_with_artefact += bool(kinds)

    def report(self) -> RealismReport:
        notes = self.notes
        repeated = {}
        for name, threshold in repeat_thresholds(notes).items():
            lines = [line for line, count in self.line_notes.items() if count >= threshold]
            occurrences = sum(self.line_count[line] for line in lines)
            repeated[name] = {
                "threshold_notes": threshold,
                "distinct_lines": len(lines),
                "occurrences": occurrences,
                "share": occurrences / self.lines if self.lines else 0.0,
            }
        repeated["top"] = [[line, count] for line, count in self.line_notes.most_common(TOP)]
        openings = {
            "sentences": self.sentences,
            "distinct": len(self.openings),
            "per_1000_sentences": 1000 * len(self.openings) / self.sentences
            if self.sentences
            else 0.0,
            "top": [[start, count] for start, count in self.openings.most_common(TOP)],
        }
        leakage = {
            "sentences": self.clinician_sentences,
            "leaking_sentences": self.leaking_sentences,
            "share": self.leaking_sentences / self.clinician_sentences
            if self.clinician_sentences
            else 0.0,
            "notes_with_leakage": self.notes_with_leakage,
            "top": [
                {"qualifier": name, "sentences": count, "example": self.examples[name]}
                for name, count in self.qualifiers.most_common(TOP)
            ],
        }
        reasoning = {
            "notes_with_reasoning": self.notes_with_reasoning,
            "share": self.notes_with_reasoning / notes if notes else 0.0,
            "by_cue": dict(self.cue_notes.most_common()),
        }
        words = {}
        everything = [n for counts in self.words.values() for n in counts]
        groups = dict(sorted(self.words.items()))
        if len(groups) > 1 or "all notes" not in groups:
            groups["all notes"] = everything
        for note_type, counts in groups.items():
            words[note_type] = {
                "notes": len(counts),
                "mean": sum(counts) / len(counts) if counts else 0.0,
                "median": percentile(counts, 50),
                "p10": percentile(counts, 10),
                "p90": percentile(counts, 90),
            }
        return RealismReport(
            notes=notes,
            clinician_lines=self.lines,
            excluded_lines=self.excluded,
            repeated_lines=repeated,
            openings=openings,
            leakage=leakage,
            reasoning=reasoning,
            words=words,
            phrasings=self._phrasings(),
            abbreviations={
                "words": self.clinician_words,
                "abbreviations": sum(self.shorthand.values()),
                "per_100_words": 100 * sum(self.shorthand.values()) / self.clinician_words
                if self.clinician_words
                else 0.0,
                "top": [[word, count] for word, count in self.shorthand.most_common(TOP)],
            },
            artefacts={
                "notes_with_artefact": self.notes_with_artefact,
                "share": self.notes_with_artefact / notes if notes else 0.0,
                "by_kind": dict(self.artefact_kinds.most_common()),
            },
            excluded_rule=(
                f"registration and heading lines as listed in {Path(self.rules.path).name} "
                "(excluded_lines) are left out"
            ),
        )

    def _phrasings(self) -> dict:
        eligible = {key: n for key, n in self.code_notes.items() if n >= MIN_CODE_NOTES}

        def summary(keys: list) -> dict:
            counts = [len(self.code_phrasings[key]) for key in keys]
            return {
                "codes": len(keys),
                "median": percentile(counts, 50) if counts else None,
                "p10": percentile(counts, 10) if counts else None,
            }

        result = {"min_notes": MIN_CODE_NOTES, **summary(list(eligible))}
        systems = sorted({system for system, _ in eligible})
        result["by_system"] = {
            system: summary([key for key in eligible if key[0] == system]) for system in systems
        }
        poorest = sorted(eligible, key=lambda k: (len(self.code_phrasings[k]), -eligible[k], k))
        result["fewest"] = [
            {
                "code": code,
                "system": system,
                "notes": eligible[(system, code)],
                "phrasings": len(self.code_phrasings[(system, code)]),
                "example": sorted(self.code_phrasings[(system, code)])[0],
            }
            for system, code in poorest[:5]
        ]
        return result


@cache
def _texture_words() -> tuple[frozenset[str], frozenset[str], tuple[re.Pattern, ...]]:
    """texture.yaml's short forms (lower case), misspellings and misheard phrases."""
    from medcode.synth.texture import _whole, shipped_texture

    rules = shipped_texture()
    shorts = frozenset(term.short.lower() for term in rules.terms)
    return shorts, rules.misspellings, tuple(_whole(h.wrong) for h in rules.homophones)


def artefacts_in(text: str, rules: RealismRules | None = None) -> set[str]:
    """The kinds of artefact a text holds: ``doubled_word``, ``misspelling``, ``homophone``."""
    rules = rules or load_rules()
    _, misspellings, misheard = _texture_words()
    found = set()
    if rules.doubled is not None and rules.doubled.search(text):
        found.add("doubled_word")
    if any(word in misspellings for word in _WORD.findall(text.lower())):
        found.add("misspelling")
    if any(pattern.search(text) for pattern in misheard):
        found.add("homophone")
    return found


def measure(
    rows: Iterable[dict],
    rules: RealismRules | None = None,
    progress: Callable[[int], None] | None = None,
) -> RealismReport:
    """The realism report of corpus rows (``text``, and ``note_type`` and ``codes`` when
    present) or of plain texts."""
    meter = RealismMeter(rules)
    for row in rows:
        if isinstance(row, str):
            meter.add(row)
        else:
            meter.add(row["text"], row.get("note_type"), row.get("codes") or ())
        if progress:
            progress(1)
    return meter.report()


# ---------------------------------------------------------------------------------------------
# synthetic vs reference


@dataclass
class ClassifierReport:
    notes_per_class: int
    folds: int
    auc: float
    fold_auc: list[float]
    synthetic_features: list[list]  # [feature, weight], most synthetic first
    reference_features: list[list]  # [feature, weight], most real first
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def classify(
    synthetic: list[str],
    reference: list[str],
    seed: int = 0,
    features: int = 15,
    rules: RealismRules | None = None,
) -> ClassifierReport:
    """How well a TF-IDF (word 1-2 grams) + logistic regression model tells synthetic notes
    from reference notes: ROC AUC of stratified k-fold cross-validation (k = 5, or fewer when a
    class has fewer notes), on the same number of notes from each side (a seeded sample of
    the larger side). Both sides are reduced to their clinician lines first, so registration
    headers (which a reference corpus may lack) do not give the answer away; words are runs
    of two or more letters, so numbers do not either. 0.5: indistinguishable; 1.0: always
    told apart."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    rules = rules or load_rules()
    size = min(len(synthetic), len(reference))
    if size < 2:
        raise MedcodeError(
            f"the classifier needs at least 2 notes on each side; got {len(synthetic)} "
            f"synthetic and {len(reference)} reference note(s)"
        )
    rng = random.Random(seed)
    chosen_synthetic = rng.sample(range(len(synthetic)), size)
    chosen_reference = rng.sample(range(len(reference)), size)
    texts = ["\n".join(clinician_lines(synthetic[i], rules)) for i in sorted(chosen_synthetic)] + [
        "\n".join(clinician_lines(reference[i], rules)) for i in sorted(chosen_reference)
    ]
    labels = [1] * size + [0] * size
    folds = min(5, size)

    def model():
        return make_pipeline(
            TfidfVectorizer(
                ngram_range=(1, 2),
                token_pattern=r"(?u)\b[^\W\d_]{2,}\b",
                sublinear_tf=True,
                min_df=2 if size >= 10 else 1,
            ),
            LogisticRegression(max_iter=2000),
        )

    scores = cross_val_score(
        model(),
        texts,
        labels,
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
        scoring="roc_auc",
    )
    fitted = model().fit(texts, labels)
    names = fitted[0].get_feature_names_out()
    weights = fitted[1].coef_[0]
    order = weights.argsort()
    return ClassifierReport(
        notes_per_class=size,
        folds=folds,
        auc=float(scores.mean()),
        fold_auc=[float(s) for s in scores],
        synthetic_features=[
            [str(names[i]), round(float(weights[i]), 3)] for i in order[::-1][:features]
        ],
        reference_features=[[str(names[i]), round(float(weights[i]), 3)] for i in order[:features]],
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------
# the audit


def audit_corpus(
    corpus: Path,
    reference: Path | None = None,
    *,
    limit: int = 20000,
    ngram: int = 8,
    seed: int = 0,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> dict:
    """Everything ``medcode synth audit`` reports, as one JSON-ready dict: ``notes``,
    ``realism`` (of the first ``limit`` notes) and, with a reference folder,
    ``reference_realism`` (the same metrics of the reference notes), ``classifier`` and the
    verbatim n-gram overlap (``ngram``, ``notes_with_overlap``, ``reference_ngrams``,
    ``share``, ``top``: top-level keys, as in earlier versions); ``skipped`` says why
    something is missing (no reference folder; ``classifier`` is None when a side has fewer
    than 2 notes). ``progress(stage, done, total)`` follows the work."""
    from itertools import islice

    from medcode.synth.card import read_rows
    from medcode.synth.privacy import overlap, read_reference

    def report(stage: str, done: int, total: int | None = None) -> None:
        if progress:
            progress(stage, done, total)

    corpus = Path(corpus)
    if not (corpus / "data").is_dir():
        raise MedcodeError(f"{corpus}: not a corpus folder (no data/ inside)")
    if reference is not None and not Path(reference).is_dir():
        raise MedcodeError(f"--reference {reference}: not a folder")
    rules = load_rules()
    meter = RealismMeter(rules)
    texts = []
    for row in islice(read_rows(corpus, ["note_type", "text", "codes"]), limit):
        texts.append(row["text"])
        meter.add(row["text"], row.get("note_type"), row.get("codes") or ())
        report("corpus notes", len(texts))
    if not texts:
        raise MedcodeError(f"{corpus}: the corpus has no notes")
    result: dict = {"notes": meter.notes, "realism": meter.report().to_dict()}
    if reference is None:
        result["skipped"] = (
            "no --reference folder: the synthetic-vs-real classifier and the n-gram overlap "
            "need one"
        )
        return result
    real = read_reference(Path(reference))
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        report("reference notes", done, len(real))

    result["reference_realism"] = measure(real, rules, progress=advance).to_dict()
    report("classifier", 0, 2)
    if min(len(texts), len(real)) >= 2:
        result["classifier"] = classify(texts, real, seed=seed, rules=rules).to_dict()
    else:
        result["classifier"] = None
        result["skipped"] = (
            f"the classifier needs at least 2 notes on each side; got {len(texts)} synthetic "
            f"and {len(real)} reference note(s)"
        )
    report("n-gram overlap", 1, 2)
    shared = overlap(texts, real, n=ngram)
    report("n-gram overlap", 2, 2)
    result.update(
        ngram=shared.n,
        notes_with_overlap=shared.notes_with_overlap,
        reference_ngrams=shared.reference_ngrams,
        share=shared.share,
        top=shared.top,
    )
    return result


# ---------------------------------------------------------------------------------------------
# presentation (shared by the command line and the dataset card)


def summary_rows(report: RealismReport) -> list[tuple[str, str, str, str]]:
    """(key, metric, value, detail) rows of the realism metrics 1-6; the key is the same for
    any report (to put a reference beside a corpus)."""
    rows = []
    rep = report.repeated_lines
    for name, label in (("per_1000", "10 per 1,000 notes"), ("issue_10_of_400", "10 of 400 notes")):
        item = rep.get(name)
        if item:
            rows.append(
                (
                    f"repeated.{name}",
                    f"repeated lines (in >= {label})",
                    f"{item['share']:.1%}",
                    f"in >= {item['threshold_notes']:,} of {report.notes:,} notes: "
                    f"{item['occurrences']:,} of {report.clinician_lines:,} clinician lines, "
                    f"{item['distinct_lines']:,} distinct",
                )
            )
    op = report.openings
    rows.append(
        (
            "openings",
            "distinct 3-word sentence openings",
            f"{op['distinct']:,} ({op['per_1000_sentences']:.0f}/1k)",
            f"{op['per_1000_sentences']:.0f} per 1,000 sentences ({op['sentences']:,} sentences)",
        )
    )
    lk = report.leakage
    rows.append(
        (
            "leakage",
            "code-title leakage (clinician sentences)",
            f"{lk['leaking_sentences']:,} ({lk['share']:.2%})",
            f"{lk['share']:.2%} of {lk['sentences']:,} sentences; "
            f"{lk['notes_with_leakage']:,} of {report.notes:,} notes",
        )
    )
    rs = report.reasoning
    top_cues = ", ".join(f"{cue} {n}" for cue, n in list(rs["by_cue"].items())[:5])
    rows.append(
        (
            "reasoning",
            "notes with reasoning language",
            f"{rs['share']:.1%}",
            f"{rs['notes_with_reasoning']:,} of {report.notes:,} notes"
            + (f"; {top_cues}" if top_cues else ""),
        )
    )
    for note_type, item in report.words.items():
        rows.append(
            (
                f"words.{note_type}",
                f"words per note: {note_type}",
                f"{item['mean']:.0f}",
                f"mean of {item['notes']:,} notes; median {item['median']:.0f}, "
                f"p10 {item['p10']:.0f}, p90 {item['p90']:.0f}",
            )
        )
    ph = report.phrasings
    label = f"phrasings per code (codes in >= {ph.get('min_notes', MIN_CODE_NOTES)} notes)"
    if ph.get("codes"):
        systems = "; ".join(
            f"{system} {item['codes']} codes, median {item['median']:g}, p10 {item['p10']:g}"
            for system, item in ph["by_system"].items()
        )
        rows.append(
            (
                "phrasings",
                label,
                f"{ph['median']:g}",
                f"median over {ph['codes']:,} codes; p10 {ph['p10']:g}; {systems}",
            )
        )
    else:
        rows.append(("phrasings", label, "n/a", "no code has evidence in enough notes"))
    ab = report.abbreviations
    if ab:
        top = ", ".join(f"{word} {n}" for word, n in ab["top"][:5])
        rows.append(
            (
                "abbreviations",
                "abbreviations per 100 words",
                f"{ab['per_100_words']:.1f}",
                f"{ab['abbreviations']:,} of {ab['words']:,} clinician-line words"
                + (f"; {top}" if top else ""),
            )
        )
    ar = report.artefacts
    if ar:
        kinds = ", ".join(f"{kind} {n}" for kind, n in ar["by_kind"].items())
        rows.append(
            (
                "artefacts",
                "notes with a typo or dictation artefact",
                f"{ar['share']:.1%}",
                f"{ar['notes_with_artefact']:,} of {report.notes:,} notes"
                + (f"; {kinds}" if kinds else "")
                + " (missing periods not detectable)",
            )
        )
    return rows


def card_lines(report: RealismReport, sampled: str = "") -> list[str]:
    """The dataset card's "Realism" section (Markdown)."""

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [
        "## Realism",
        "",
        f"Measured over {report.notes:,} notes{sampled} by `medcode synth audit` (which "
        "also compares with a folder of real notes: a classifier's ROC AUC and verbatim "
        "n-gram overlap). Registration lines (patient, identifiers, dates, provider, "
        "facility, signature) and headings alone are left out of the text metrics "
        f"({report.clinician_lines:,} clinician lines kept, {report.excluded_lines:,} left "
        "out; the list is in medcode's data/synth/realism.yaml).",
        "",
        "| metric | value | detail |",
        "|---|---|---|",
        *[f"| {cell(a)} | {cell(b)} | {cell(c)} |" for _, a, b, c in summary_rows(report)],
        "",
    ]
    top = report.repeated_lines.get("top") or []
    if top:
        lines += [
            "Most repeated clinician lines (notes that contain them):",
            "",
            *[f"- {count:,}: `{cell(line)[:120]}`" for line, count in top[:5]],
            "",
        ]
    leaks = report.leakage.get("top") or []
    if leaks:
        lines += [
            "Code-title qualifiers in clinician sentences (sentences; an example):",
            "",
            *[
                f"- {cell(item['qualifier'])}: {item['sentences']:,}; "
                f'"{cell(item["example"])[:160]}"'
                for item in leaks
            ],
            "",
        ]
    return lines
