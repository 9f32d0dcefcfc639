"""The texture pass (``data/synth/texture.yaml``): clinicians' shorthand ("pt", "h/o", "BID") and
dictation artefacts (a swapped or dropped letter, a doubled word, a misheard word, a missing
period) written into a rendered note, validated on load.

:func:`texture` reads the *marked* note (before :func:`medcode.synth.render.strip_marks`) and
rewrites only text outside the evidence markers, so every evidence span still names the same
text. It leaves alone the note header, registration lines, labels, headings in capitals, quoted
words, numbers and the protected words: cue phrases (cues.yaml, the retriever's cue words) are
rewritten only by a term marked ``cue`` whose short form the retriever reads as the same cue;
fixed phrases (course and episode cues, laterality, new-patient markers, normal exam and
functional statements, ``protect``) never. An edit that changes how many words the retriever
sees in a sentence is made only where that sentence holds no other cue word, so no cue moves
in or out of the retriever's window. A term that occurs inside a marked span of the note stays
spelled out in the whole note (an abbreviation never tells evidence from the rest). Choices
come from the caller's generator (derive it with ``derived_rng(rng, "texture")``).
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from medcode.errors import DataFileError

_SECTIONS = {"abbreviations", "artefacts", "function_words", "protect"}
KINDS = ("transposition", "dropped_letter", "doubled_word", "homophone", "missing_period")
_PHRASE = re.compile(r"^[A-Za-z](?:[A-Za-z' -]*[A-Za-z])?$")
_SHORT = re.compile(r"^[A-Za-z][A-Za-z/&']*$")
_SENTENCE = re.compile(r"\n|[.;!?](?=\s)")  # where the retriever ends a sentence
_LABEL = re.compile(r"\s*:")
_QUOTED = re.compile(r'"[^"\n]*"')
# a label of up to four words at the start of a line or after a stop ("Medication management:")
_LABELS = re.compile(r"(?:^|(?<=[.;|] ))\s*[A-Za-z][\w/&'()-]*(?: [\w/&'()-]+){0,3}:(?=\s|$)")


@dataclass(frozen=True)
class Term:
    long: str
    short: str
    cue: bool
    pattern: re.Pattern
    line: int
    lowered: str = ""  # ``long`` in lower case, for a quick substring test

    def __post_init__(self) -> None:
        object.__setattr__(self, "lowered", self.long.lower())


@dataclass(frozen=True)
class Homophone:
    right: str
    wrong: str
    pattern: re.Pattern
    line: int


@dataclass(frozen=True)
class TextureRules:
    path: str
    rates: dict[str, float]  # template family -> share of eligible terms abbreviated
    terms: tuple[Term, ...]
    notes: float  # share of notes with an artefact
    per_note: dict[int, float]  # artefacts in an affected note -> weight
    kinds: dict[str, float]
    words: tuple[str, ...]  # words that may get a swapped or dropped letter
    doubled: tuple[str, ...]
    homophones: tuple[Homophone, ...]
    fixed: re.Pattern  # phrases nothing rewrites
    cues: re.Pattern  # cue phrases only a `cue` term rewrites
    cue_words: frozenset[str]  # words of the cue phrases and the retriever's cue words
    misspellings: frozenset[str] = field(default=frozenset())

    def rate(self, family: str) -> float:
        return self.rates.get(family, self.rates["default"])


@dataclass
class Textured:
    """A textured note (still marked) and what the pass did to it."""

    text: str
    eligible: int = 0  # term occurrences that could be abbreviated
    abbreviated: int = 0
    artefacts: list[str] = field(default_factory=list)  # kinds written


def texture_path() -> Path:
    from medcode.datafiles import package_data

    return package_data("synth/texture.yaml")


@cache
def shipped_texture() -> TextureRules:
    return load_texture(texture_path())


# ---------------------------------------------------------------------------------------------
# texture.yaml


def load_texture(path: str | Path | None = None) -> TextureRules:
    """Read and validate a texture file (the shipped one unless ``path``): any problem raises
    :class:`DataFileError` with the file and line."""
    from medcode.datafiles import load_yaml

    path = Path(path) if path is not None else texture_path()
    data = load_yaml(path, strings=True)
    if not isinstance(data, dict):
        raise DataFileError(path, None, f"expected a mapping with {', '.join(sorted(_SECTIONS))}")
    missing, unknown = sorted(_SECTIONS - set(data)), sorted(set(data) - _SECTIONS)
    if missing or unknown:
        problem = f"missing {', '.join(missing)}" if missing else f"unknown section {unknown[0]!r}"
        raise DataFileError(path, data.line, problem)
    function_words = frozenset(w.lower() for w in _words(path, data, "function_words", data))
    fixed, cues, cue_words = _protection(path, data, function_words)
    abbreviations = _section(path, data, "abbreviations", {"rate", "source", "terms"})
    artefacts = _section(
        path,
        data,
        "artefacts",
        {"notes", "per_note", "source", "kinds", "words", "doubled", "homophones"},
    )
    _source(path, abbreviations)
    _source(path, artefacts)
    words = _typo_words(path, artefacts, cue_words)
    rules = TextureRules(
        path=str(path),
        rates=_rates(path, abbreviations),
        terms=_terms(path, abbreviations, cue_words),
        notes=_share(path, artefacts, "notes", artefacts["notes"]),
        per_note=_per_note(path, artefacts),
        kinds=_kinds(path, artefacts),
        words=words,
        doubled=_doubled(path, artefacts, cue_words),
        homophones=_homophones(path, artefacts, cue_words),
        fixed=fixed,
        cues=cues,
        cue_words=cue_words,
        misspellings=frozenset(m for w in words for m in misspelled(w)) - cue_words,
    )
    return rules


def _line(value, parent=None) -> int | None:
    return getattr(value, "line", None) or getattr(parent, "line", None)


def _section(path: Path, data: dict, key: str, allowed: set[str]) -> dict:
    value = data[key]
    if not isinstance(value, dict):
        raise DataFileError(path, _line(value, data), f"{key}: expected a mapping")
    missing, extra = sorted(allowed - set(value)), sorted(set(value) - allowed)
    if missing or extra:
        problem = f"missing {', '.join(missing)}" if missing else f"unknown key {extra[0]!r}"
        raise DataFileError(path, value.line, f"{key}: {problem}")
    return value


def _source(path: Path, section: dict) -> None:
    text = section["source"]
    if not isinstance(text, str) or len(text.split()) < 5:
        raise DataFileError(path, _line(text, section), "source: cite where the rate comes from")


def _share(path: Path, parent: dict, where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise DataFileError(
            path, _line(value, parent), f"{where}: {value!r} is not between 0 and 1"
        )
    return float(value)


def _words(path: Path, parent: dict, key: str, owner) -> tuple[str, ...]:
    items = parent[key]
    if not isinstance(items, list) or not items:
        raise DataFileError(path, _line(items, owner), f"{key}: expected a list of words")
    for item in items:
        if not isinstance(item, str) or not _PHRASE.match(item):
            raise DataFileError(path, _line(item, owner), f"{key}: {item!r} is not a word")
    return tuple(items)


def _rates(path: Path, section: dict) -> dict[str, float]:
    rates = section["rate"]
    if not isinstance(rates, dict) or "default" not in rates:
        raise DataFileError(path, _line(rates, section), "rate: a mapping with a default")
    return {str(k): _share(path, rates, f"rate: {k}", v) for k, v in rates.items()}


def _terms(path: Path, section: dict, cue_words: frozenset[str]) -> tuple[Term, ...]:
    items = section["terms"]
    if not isinstance(items, list) or not items:
        raise DataFileError(path, _line(items, section), "terms: expected a list")
    terms, seen = [], set()
    for item in items:
        line = _line(item, section)
        if not isinstance(item, dict) or not {"long", "short"} <= set(item):
            raise DataFileError(path, line, "terms: every entry needs long and short")
        extra = sorted(set(item) - {"long", "short", "cue", "ambiguous"})
        if extra:
            raise DataFileError(path, line, f"terms: unknown key {extra[0]!r}")
        long, short, cue = str(item["long"]), str(item["short"]), item.get("cue", False)
        if not _PHRASE.match(long) or not _SHORT.match(short):
            raise DataFileError(path, line, f"terms: {long!r} -> {short!r}: words only, no digits")
        if long.lower() in seen:
            raise DataFileError(path, line, f"terms: {long!r} is listed twice")
        if not isinstance(cue, bool):
            raise DataFileError(path, line, f"terms: {long!r}: cue must be true or false")
        named = set(_tokens(long)) & cue_words
        if named and not cue:
            raise DataFileError(
                path, line, f"terms: {long!r} holds the cue word {sorted(named)[0]!r}; mark cue"
            )
        seen.add(long.lower())
        terms.append(Term(long, short, cue, _whole(long), line or 0))
    # longest first, so "history of" is tried before "history"
    return tuple(sorted(terms, key=lambda t: -len(t.long)))


def _per_note(path: Path, section: dict) -> dict[int, float]:
    weights = section["per_note"]
    if not isinstance(weights, dict) or not weights:
        raise DataFileError(path, _line(weights, section), "per_note: expected a mapping")
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in weights):
        raise DataFileError(path, weights.line, "per_note: keys are counts of 1 or more")
    found = {k: _share(path, weights, f"per_note: {k}", v) for k, v in weights.items()}
    if abs(sum(found.values()) - 1) > 0.01:
        raise DataFileError(path, weights.line, "per_note: weights must add up to 1")
    return found


def _kinds(path: Path, section: dict) -> dict[str, float]:
    kinds = section["kinds"]
    if not isinstance(kinds, dict) or set(kinds) - set(KINDS) or not kinds:
        raise DataFileError(
            path, _line(kinds, section), f"kinds: a mapping of {', '.join(KINDS)} to weights"
        )
    return {str(k): _share(path, kinds, f"kinds: {k}", v) for k, v in kinds.items()}


def _typo_words(path: Path, section: dict, cue_words: frozenset[str]) -> tuple[str, ...]:
    words = _words(path, section, "words", section)
    for word in words:
        if len(word) < 5 or not word.isalpha() or word != word.lower():
            raise DataFileError(path, _line(word), f"words: {word!r}: 5 lower-case letters or more")
        if word in cue_words:
            raise DataFileError(path, _line(word), f"words: {word!r} is a cue word")
    return words


def _doubled(path: Path, section: dict, cue_words: frozenset[str]) -> tuple[str, ...]:
    words = _words(path, section, "doubled", section)
    for word in words:
        if word.lower() in cue_words or " " in word:
            raise DataFileError(path, _line(word), f"doubled: {word!r} is a cue word or phrase")
    return words


def _homophones(path: Path, section: dict, cue_words: frozenset[str]) -> tuple[Homophone, ...]:
    items = section["homophones"]
    if not isinstance(items, list) or not items:
        raise DataFileError(path, _line(items, section), "homophones: expected a list")
    found = []
    for item in items:
        line = _line(item, section)
        if not isinstance(item, dict) or set(item) != {"right", "wrong"}:
            raise DataFileError(path, line, "homophones: every entry needs right and wrong")
        right, wrong = str(item["right"]), str(item["wrong"])
        if not _PHRASE.match(right) or not _PHRASE.match(wrong) or right == wrong:
            raise DataFileError(path, line, f"homophones: {right!r} -> {wrong!r}: two phrases")
        touched = (set(_tokens(right)) ^ set(_tokens(wrong))) & cue_words
        if touched:
            raise DataFileError(
                path,
                line,
                f"homophones: {right!r} -> {wrong!r} changes the cue word {sorted(touched)[0]!r}",
            )
        found.append(Homophone(right, wrong, _whole(right), line or 0))
    return tuple(found)


def _protection(
    path: Path, data: dict, function_words: frozenset[str]
) -> tuple[re.Pattern, re.Pattern, frozenset[str]]:
    """The fixed phrases, the cue phrases and the cue words."""
    from medcode.datafiles import load_yaml, package_data
    from medcode.model.context import cue_phrases as multiword_cues
    from medcode.model.context import cue_words
    from medcode.synth.clinical import shipped_rules

    cues = load_yaml(package_data("synth/cues.yaml"))
    cue_phrases = {*cues["relatives"], *cue_words()}
    for key in ("negated", "uncertain", "ruled_out", "resolved", "history", "family_history"):
        cue_phrases.update(_pieces(cues[key], function_words))
    clinical = shipped_rules()
    fixed = {*_words(path, data, "protect", data), *cues["normal_exam"], *multiword_cues()}
    for key in ("chronic", "active", "exacerbation"):
        fixed.update(_pieces(cues[key], function_words))
    for group in ("laterality", "episodes"):
        fixed.update(word for words in cues[group].values() for word in words)
    fixed.update(clinical.encounters.new_patient_markers)
    fixed.update(clinical.exam.normals())
    for level in clinical.function.levels.values():
        fixed.update((*level.statements, *level.living))
    cue_words = frozenset(w for p in cue_phrases for w in _tokens(p)) - function_words
    return _alternation(fixed), _alternation(cue_phrases), cue_words


def _pieces(templates, function_words: frozenset[str]) -> set[str]:
    """The literal words of cue templates ("no evidence of {x}" -> "no evidence of")."""
    found = set()
    for template in templates:
        for piece in re.split(r"\{\w+\}|[():,]", str(template)):
            piece = piece.strip(" -")
            if piece and not set(_tokens(piece)) <= function_words:
                found.add(piece)
    return found


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


@cache
def _whole(phrase: str) -> re.Pattern:
    return re.compile(rf"(?<![\w/&-]){re.escape(phrase)}(?![\w/&-])", re.IGNORECASE)


def _alternation(phrases) -> re.Pattern:
    """One pattern for whole-word phrases, longest first at each place; written as a trie
    (shared prefixes once), which the regex engine scans several times faster than a flat
    list of alternatives."""
    trie: dict = {}
    for phrase in {str(p).strip().lower() for p in phrases} - {""}:
        node = trie
        for char in phrase:
            node = node.setdefault(char, {})
        node[""] = {}  # a phrase ends here
    return re.compile(rf"(?<![\w/&-])(?:{_trie(trie)})(?![\w/&-])", re.IGNORECASE)


def _trie(node: dict) -> str:
    """The regex of a trie node: its branches, optional where a phrase ends (greedy, so the
    longer phrase is tried first)."""
    branches = [re.escape(char) + _trie(child) for char, child in sorted(node.items()) if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
    return f"(?:{body})?" if "" in node else body


def misspelled(word: str) -> set[str]:
    """Every form of ``word`` with two neighbouring letters swapped or one letter dropped,
    the first and last letters kept ("reports" -> "report" is a word, not a typo)."""
    return _forms(word, "transposition") | _forms(word, "dropped_letter")


def _forms(word: str, kind: str) -> set[str]:
    """The forms of ``word`` with a ``transposition`` or a ``dropped_letter`` (first kept)."""
    if kind == "transposition":
        spots = range(1, len(word) - 2)
        forms = {word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in spots}
    else:
        forms = {word[:i] + word[i + 1 :] for i in range(1, len(word) - 1)}  # not the last
    return {form for form in forms if form.lower() != word.lower()}


# ---------------------------------------------------------------------------------------------
# the pass


@dataclass
class _Line:
    """One line of the marked note: its pieces (text, marked) and whether it may change."""

    pieces: list[list]  # [text, raw, marked]: raw is the marked piece with its markers
    editable: bool
    view: str = ""  # the line as the reader sees it (the pieces' texts), kept by ``replace``

    def __post_init__(self) -> None:
        self.view = "".join(piece[0] for piece in self.pieces)

    def free(self) -> list[bool]:
        """Per character of the view: outside markers, quotes and labels."""
        mask = []
        for text, _, marked in self.pieces:
            mask += [not marked] * len(text)
        for pattern in (_QUOTED, _LABELS):
            for match in pattern.finditer(self.view):
                mask[match.start() : match.end()] = [False] * (match.end() - match.start())
        return mask

    def replace(self, start: int, end: int, new: str) -> None:
        """Replace view[start:end], which lies in one unmarked piece."""
        offset = 0
        for piece in self.pieces:
            size = len(piece[0])
            if not piece[2] and offset <= start and end <= offset + size:
                text = piece[0]
                piece[0] = text[: start - offset] + new + text[end - offset :]
                self.view = self.view[:start] + new + self.view[end:]
                return
            offset += size
        raise ValueError("an edit must lie outside the markers")

    def render(self) -> str:
        return "".join(piece[0] if not piece[2] else piece[1] for piece in self.pieces)


def _split(marked: str) -> list[_Line]:
    from medcode.synth.realism import clinician_mask
    from medcode.synth.render import _MARK, CLOSE, OPEN, SEP

    lines = []
    for raw in marked.split("\n"):
        pieces, last = [], 0
        for match in _MARK.finditer(raw):
            if match.start() > last:
                pieces.append([raw[last : match.start()], None, False])
            pieces.append([match.group(2), match.group(0), True])
            last = match.end()
        if last < len(raw) or not pieces:
            pieces.append([raw[last:], None, False])
        # a line with part of a marker (a marked span over two lines) stays as it is
        whole = not any(c in p[0] for p in pieces if not p[2] for c in (OPEN, SEP, CLOSE))
        lines.append(_Line(pieces, whole))
    for line, keep in zip(lines, clinician_mask([line.view for line in lines]), strict=True):
        line.editable = line.editable and keep
    return lines


def texture(
    marked: str, family: str, rng: random.Random, rules: TextureRules | None = None
) -> Textured:
    """The marked note with shorthand and artefacts written outside its markers."""
    from medcode.synth.render import _MARK

    rules = rules or shipped_texture()
    lines = _split(marked)
    inside = " ".join(m.group(2) for m in _MARK.finditer(marked))
    lowered = inside.lower()
    held = {t.long for t in rules.terms if t.lowered in lowered and t.pattern.search(inside)}
    result = Textured(marked)
    rate = rules.rate(family)
    lowered = marked.lower()  # the terms of this note, in the rules' order, tried per line
    present = [t for t in rules.terms if t.lowered in lowered and t.long not in held]
    for line in lines:
        if line.editable and present:
            _abbreviate(line, rules, present, rate, rng, result)
    if rng.random() < rules.notes:
        count = _pick(rng, rules.per_note)
        for _ in range(count):
            kind = _artefact(lines, rules, rng)
            if kind:
                result.artefacts.append(kind)
    result.text = "\n".join(line.render() for line in lines)
    return result


def _pick(rng: random.Random, weights: dict):
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _blocked(
    line: _Line, rules: TextureRules, cue: bool, free: list[bool] | None = None
) -> list[bool]:
    """Per character of the view: may not change (markers, quotes, protected phrases);
    ``free`` is ``line.free()`` when the caller has it already."""
    view = line.view
    mask = [not free for free in (line.free() if free is None else free)]
    for pattern in (rules.fixed,) if cue else (rules.fixed, rules.cues):
        for match in pattern.finditer(view):
            mask[match.start() : match.end()] = [True] * (match.end() - match.start())
    return mask


def _shifts_cues(view: str, start: int, end: int, new: str, rules: TextureRules) -> bool:
    """Whether replacing view[start:end] by ``new`` changes the retriever's word count in a
    sentence that holds another cue word (a cue could move in or out of its window)."""
    from medcode.model.retriever import SHORTHAND_CUES, words

    if len(words(view[start:end])) == len(words(new)):
        return False
    bounds = [0] + [m.end() for m in _SENTENCE.finditer(view)] + [len(view)]
    low = max(b for b in bounds if b <= start)
    high = min((b for b in bounds if b >= end), default=len(view))
    rest = [*words(view[low:start]), ".", *words(view[end:high])]
    rest += [SHORTHAND_CUES[p] for p in itertools.pairwise(rest) if p in SHORTHAND_CUES]
    return bool(set(rest) & rules.cue_words)


def _shorten(found: str, short: str) -> str:
    return short[0].upper() + short[1:] if found[0].isupper() and short[0].islower() else short


def _abbreviate(
    line: _Line,
    rules: TextureRules,
    present: list[Term],
    rate: float,
    rng: random.Random,
    result: Textured,
) -> None:
    """Abbreviate, at ``rate``, the occurrences in ``line`` of the ``present`` terms (those of
    the note that no evidence holds)."""
    view = line.view
    lowered = view.lower()
    terms = [t for t in present if t.lowered in lowered]
    if not terms:  # the masks below cost more than the substring test
        return
    edits: list[tuple[int, int, str]] = []
    taken = [False] * len(view)
    free = line.free()
    masks: dict[bool, list[bool]] = {}
    for term in terms:
        for match in term.pattern.finditer(view):
            start, end, found = match.start(), match.end(), match.group(0)
            if term.cue not in masks:
                masks[term.cue] = _blocked(line, rules, term.cue, free)
            if any(masks[term.cue][start:end]) or any(taken[start:end]):
                continue
            if _LABEL.match(view, end) or found not in (found.lower(), found.capitalize()):
                continue  # a label ("Patient:") or a heading in capitals
            short = _shorten(found, term.short)
            if _shifts_cues(view, start, end, short, rules):
                continue
            taken[start:end] = [True] * (end - start)
            result.eligible += 1
            if rng.random() < rate:
                edits.append((start, end, short))
    for start, end, short in sorted(edits, reverse=True):
        line.replace(start, end, short)
        result.abbreviated += 1


def _artefact(lines: list[_Line], rules: TextureRules, rng: random.Random) -> str | None:
    """Write one artefact of a kind drawn by weight (another kind when it finds no place)."""
    kinds = dict(rules.kinds)
    while kinds:
        kind = _pick(rng, kinds)
        del kinds[kind]
        sites = [
            (line, *site) for line in lines if line.editable for site in _sites(line, kind, rules)
        ]
        if not sites:
            continue
        line, start, end, new = rng.choice(sites)
        if kind in ("transposition", "dropped_letter"):
            forms = sorted(f for f in _forms(new, kind) if f.lower() not in rules.cue_words)
            if not forms:
                continue
            new = rng.choice(forms)
        line.replace(start, end, new)
        return kind
    return None


def _sites(line: _Line, kind: str, rules: TextureRules) -> list[tuple[int, int, str]]:
    """Where ``kind`` may go in a line: (start, end, replacement) in the view; for a letter
    typo the replacement is the word itself (the caller draws the form)."""
    view = line.view
    lowered = view.lower()
    found: list[tuple[int, int, str]] = []
    if kind in ("transposition", "dropped_letter", "doubled_word"):
        words = rules.words if kind != "doubled_word" else rules.doubled
        present = [word for word in words if word.lower() in lowered]
        if not present:
            return found
        blocked = _blocked(line, rules, cue=False)
        for word in present:
            for match in _whole(word).finditer(view):
                start, end, text = match.start(), match.end(), match.group(0)
                if any(blocked[start:end]):
                    continue
                new = text if kind != "doubled_word" else f"{text} {text.lower()}"
                if kind == "doubled_word" and _shifts_cues(view, start, end, new, rules):
                    continue
                found.append((start, end, new))
    elif kind == "homophone":
        pairs = [pair for pair in rules.homophones if pair.right.lower() in lowered]
        blocked = _blocked(line, rules, cue=False) if pairs else []
        for pair in pairs:
            for match in pair.pattern.finditer(view):
                start, end, text = match.start(), match.end(), match.group(0)
                new = _shorten(text, pair.wrong) if text[0].isupper() else pair.wrong
                if any(blocked[start:end]) or _shifts_cues(view, start, end, new, rules):
                    continue
                found.append((start, end, new))
    elif kind == "missing_period":
        blocked = _blocked(line, rules, cue=False)
        stripped = view.rstrip()
        end = len(stripped)
        if (
            stripped.endswith(".")
            and len(stripped.split()) >= 4
            and end >= 2
            and stripped[end - 2].isalpha()
            and not blocked[end - 1]
        ):
            found.append((end - 1, end, ""))
    return found
