"""Rebuild the clinical term table from the ICD-10-CM Alphabetic Index (development time only).

    .venv/bin/python scripts/build_index_terms.py [--index-dir DIR] [--out FILE]

Reads the FY2025 Index to Diseases and Injuries (flattened CSV), the Table of Neoplasms and the
Table of Drugs and Chemicals (XML) from ``--index-dir`` (default ``../shared/icd10cm_index``
relative to the repository root), turns each index line that carries a code into a natural
clinical phrase ("Diabetes, diabetic" > "type 2" > "with" > "foot ulcer" becomes
"type 2 diabetes with foot ulcer"), maps every code to the FY2026 tabular through
:mod:`medcode.terminology.icd10cm` and writes one sorted, gzipped CSV
(``src/medcode/data/terminology/index_terms.csv.gz``) with columns
``term, code, source, path, level``. Nothing here runs at import or install time.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from medcode.datafiles import read_csv_rows
from medcode.errors import CodeError
from medcode.terminology import icd10cm

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INDEX_DIR = REPO.parent / "shared" / "icd10cm_index"
DEFAULT_OUT = REPO / "src" / "medcode" / "data" / "terminology" / "index_terms.csv.gz"
INDEX_FILE = "ICD10CM_2025_Index.csv"
NEOPLASM_FILE = "icd-10-cm-neoplasm-2025.xml"
DRUG_FILE = "icd-10-cm-drug-2025.xml"
INDEX_COLUMNS = ("RowID", "Letter", "Level", "Term", "See", "SeeAlso", "NonEssModif", "Code")
COLUMNS = ("term", "code", "source", "path", "level")
SOURCES = ("index", "neoplasm", "drug")  # preference order when one phrase has two sources

# Words that open a clause placed after the head ("diabetes with ...", "anemia in ...").
CONNECTORS = (
    "associated with", "resulting from", "secondary to", "related to", "induced by",
    "caused by", "due to", "as cause of", "with", "without", "in", "of", "from", "following",
    "after", "during", "complicating", "by", "on", "at", "to", "for", "affecting", "involving",
    "including", "into", "within", "not", "as", "than", "under", "except", "and", "or", "because",
    "complicated by", "requiring", "causing", "producing", "over", "via", "between",
    "limited to", "using", "without mention of",
)  # fmt: skip
_CONNECTOR = re.compile(r"^(" + "|".join(sorted(CONNECTORS, key=len, reverse=True)) + r")\b")
_ENDS_WITH_CONNECTOR = re.compile(
    r"\b(" + "|".join(sorted(CONNECTORS, key=len, reverse=True)) + r")$"
)
_CONNECTORS_ONLY = re.compile(
    r"(?:" + "|".join(sorted(CONNECTORS, key=len, reverse=True)) + r")"
    r"(?:\s+(?:" + "|".join(sorted(CONNECTORS, key=len, reverse=True)) + r"))*"
)
_INNER_CONNECTOR = re.compile(r"\s(with|without|following|due to|after|during|in|of|from)\s")
# Non-essential modifiers of a main term that name its connector ("Complication (of)").
_FRAME_NEMODS = ("of", "for", "with", "due to", "to", "from", "in")
# A clause about one of these leaves later modifiers to the main term:
# "hypertension" > "complicating" > "childbirth" > "pre-existing" is pre-existing hypertension.
_CONTEXT_HEADS = {"pregnancy", "childbirth", "puerperium", "labor", "delivery"}

_ADJECTIVE = re.compile(
    r"(ic|ical|ive|al|ous|ar|ary|oid|ed|ile|ant|ent|ory|less|form|like|eal|ian|ine|otic|atic|ior|"
    r"'s|s'|-induced|-related|-onset|-type|-sensitive|-resistant|-dependent|[0-9])$"
)
_NOT_ADJECTIVES = {
    "ear", "infant", "canal", "animal", "hospital", "urine", "vaccine", "patient", "ligament",
    "element", "agent", "implant", "tendon", "gland", "vein", "bar", "bed", "head", "hand",
    "seed", "blood", "serum", "plasma", "pupil", "spine", "uterine tube", "intestine", "saline",
    "medicine", "morphine", "cocaine", "nicotine", "caffeine", "cannabis", "iodine", "quinine",
    "adrenaline", "heroin", "toxin", "cartilage", "jaw", "reed", "weed", "fluid", "solid",
    "antidepressant", "stimulant", "sedative", "laxative", "diuretic", "narcotic", "antibiotic",
    "hypnotic", "anesthetic", "pathogen", "parent", "accident", "respondent",
}  # fmt: skip
_ADJECTIVE_WORDS = {
    "benign", "acute", "mild", "severe", "moderate", "complete", "incomplete", "simple",
    "multiple", "single", "double", "triple", "late", "early", "old", "new", "open", "closed",
    "left", "right", "upper", "lower", "deep", "minor", "major", "small", "large", "great",
    "total", "partial", "other", "first degree", "second degree", "third degree", "fourth degree",
    "partial thickness", "full thickness", "newborn", "adult", "elderly", "senile", "male",
    "female", "mixed", "pure", "true", "false", "low", "high", "short", "long", "slow", "rapid",
    "adequate", "inadequate", "intermediate", "immediate", "appropriate", "inappropriate",
    "premature", "mature", "immature", "obese", "insufficient", "excessive", "poor", "normal",
}  # fmt: skip
# Degrees and depths of an injury, placed before it ("third degree burn of right hand").
_INJURY_ADJECTIVES = {
    "first degree", "second degree", "third degree", "fourth degree", "partial thickness",
    "full thickness", "superficial", "open", "closed", "displaced", "nondisplaced",
}  # fmt: skip
# Main terms read "X of Y" with their first noun subterm ("personal history of ...").
_FRAME_CONNECTORS = {
    "history": "of", "sequelae": "of", "late effect": "of", "screening": "for",
    "encounter": "for", "admission": "for", "examination": "for", "problem": "with",
    "complication": "of", "attention": "to", "observation": "for", "exposure": "to",
    "contact": "with", "presence": "of", "absence": "of", "removal": "of", "fitting": "of",
    "counseling": "for", "aftercare": "following", "follow-up": "after", "dependence": "on",
    "disturbance": "of", "adverse effect": "of", "effect": "of",
}  # fmt: skip
_LATIN_ADJECTIVE = re.compile(
    r"^(?!umbilicus|vesica|lens|hallucis|pelvis|pubis)"
    r"[a-z]+(ica|icus|icum|alis|aris|osa|osus|osum|ata|atus|atum|ans|ens|formis|oides|ale)$"
)
# A condition word: after a main term that has an adjective form it reads
# "hypertensive crisis", "tuberculous meningitis" rather than "crisis hypertension".
_CONDITION = re.compile(
    r"(pathy|itis|osis|emia|algia|oma|crisis|emergency|urgency|disease|disorder|syndrome|"
    r"failure|edema|ulcer|coma|insufficiency|infarction|hemorrhage|shock|psychosis|dementia|"
    r"aneurysm|ism|abscess|cyst|lesion|fistula|stricture|gangrene|sclerosis|fibrosis|"
    r"malformation|stroke|infection)$"
)
# Latin adjectives that follow their noun ("diabetes insipidus", "acne vulgaris").
_POSTPOSITIVE = {
    "insipidus", "mellitus", "alba", "nigra", "nigricans", "vulgaris", "simplex", "multiplex",
    "gravis", "rubra", "migrans", "perstans", "tarda", "congenita", "acuminata", "lata",
    "pigmentosa", "verrucosa", "chronica", "acuta", "minor", "major", "maxima", "annulare",
    "circumscripta", "externa", "interna", "media", "lipoidica", "profunda", "recidivans",
    "senilis", "totalis", "universalis", "areata", "pedis", "capitis", "corporis", "cruris",
    "versicolor", "zoster", "obliterans", "nodosa", "nodosum", "communis", "pectoris",
    "majora", "minora", "uteri", "vaginalis", "cordis", "oris", "oculi", "ani", "valgus",
    "varus", "rigidus", "limitus", "cavus", "planus", "equinus", "equinovarus",
}  # fmt: skip
# Injury main terms: their noun subterms are body sites ("fracture of shaft of clavicle").
_INJURIES = {
    "fracture", "dislocation", "sprain", "strain", "laceration", "contusion", "abrasion", "bite",
    "burn", "corrosion", "frostbite", "wound", "injury", "crush", "crushing", "puncture",
    "amputation", "blister", "avulsion", "subluxation",
}  # fmt: skip
# Site words placed right before the site ("burn of left thumb"), not before the injury.
_SITE_ADJECTIVES = {
    "left", "right", "bilateral", "unilateral", "anterior", "posterior", "medial", "lateral",
    "upper", "lower", "distal", "proximal", "internal", "external", "superior", "inferior",
    "middle", "central", "dorsal", "ventral", "palmar", "plantar", "volar", "deep", "outer",
    "inner", "first", "second", "third", "fourth", "fifth", "great", "lesser", "greater",
}  # fmt: skip
# Sites that end a phrase as "of ..." ("palindromic rheumatism of wrist").
_BODY_SITES = {
    "wrist", "ankle", "hand", "foot", "knee", "hip", "shoulder", "elbow", "forearm",
    "upper arm", "lower leg", "thigh", "finger", "fingers", "toe", "toes", "thumb",
    "multiple sites", "vertebrae", "ankle and foot", "ankle and toes", "pelvic region and thigh",
    "spine", "hand joint", "foot joint", "knee joint", "hip joint", "shoulder region",
}  # fmt: skip
# Tissues that take their location after them ("muscle of forearm", "skin of calf").
_TISSUES = {
    "skin", "muscle", "tendon", "nerve", "blood vessel", "connective tissue", "bone", "cartilage",
    "ligament", "fascia", "lymph gland", "lymph node", "soft tissue", "subcutaneous tissue",
    "artery", "vein", "joint", "nail", "hair", "mucosa", "mucous membrane", "peripheral nerve",
}  # fmt: skip
# Heads that take a condition as their modifier ("food protein-induced enterocolitis syndrome").
_GENERIC_HEADS = {
    "syndrome", "disease", "disorder", "complication", "condition", "state", "reaction",
    "sequelae", "history", "status", "anomaly", "abnormality", "deformity", "malformation",
    "degeneration", "lesion", "change", "disturbance", "dysfunction", "failure", "infection",
}  # fmt: skip
_NUMBERED = {"class", "type", "stage", "grade", "group", "phase", "level", "degree", "category"}
_ADJECTIVE_PREFERENCE = ("tic", "ic", "ive", "al", "ous", "ar", "ary", "oid", "ed", "ing")


class PathStyle(Exception):
    """The nesting does not read naturally; the caller falls back to the path phrase."""


def clean(text: str) -> str:
    """Lower-case index text without NEC/NOS, brackets, parentheses or coder instructions."""
    text = re.sub(r"\s+-\s+(code|see|omit|use|assign)\b.*$", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\([^()]*\)", " ", text)
    text = re.sub(r"(?<=\w)\s+specified\s+NEC\b", " ", text)  # "foot specified NEC"
    text = re.sub(r"\b(NEC|NOS)\b", " ", text)
    text = re.sub(r"\s+,", ",", re.sub(r"\s+", " ", text)).strip(" ,;:")
    return text.lower()


def split_nemod(nemod: str) -> tuple[str, list[str]]:
    """``(essential tail, non-essential modifiers)`` of a NonEssModif cell.

    The flattened index keeps any title text after the first modifier in this cell:
    ``"(due to) schistosomiasis (bilharziasis)"`` gives ``("schistosomiasis", ["due to",
    "bilharziasis"])``.
    """
    groups: list[str] = []
    rest = nemod
    while True:
        found = re.findall(r"\(([^()]*)\)", rest)
        if not found:
            break
        groups.extend(found)
        rest = re.sub(r"\([^()]*\)", " ", rest)
    tail = re.sub(r"\s+", " ", rest.replace("(", " ").replace(")", " ")).strip(" ,")
    return tail, [re.sub(r"\s+", " ", g).strip() for g in groups if g.strip()]


def is_adjective(text: str) -> bool:
    """Whether a (lower-case) modifier reads as an adjective by its last word."""
    if text in _ADJECTIVE_WORDS or text.startswith(("type ", "stage ", "grade ", "class ")):
        return True
    if text in _NOT_ADJECTIVES or not text:
        return False
    last = text.split()[-1]
    if last in _NOT_ADJECTIVES or last.endswith(("ment", "ness", "ion")):
        return False
    return bool(_ADJECTIVE.search(last))


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class Forms:
    """A term's readings: noun form, adjective form (if any) and clauses split off by commas."""

    noun: str
    adjective: str | None = None
    clauses: tuple[str, ...] = ()


def forms(text: str) -> Forms:
    """Read comma forms: alternatives ("diabetes, diabetic"), inversions ("glomerulosclerosis,
    intercapillary" is "intercapillary glomerulosclerosis") and trailing clauses."""
    parts = [p.strip() for p in text.split(",") if p.strip() and _special(p.strip()) != ""]
    if len(parts) <= 1 or any(p[0].isdigit() for p in parts):
        return Forms(text.replace(",", ""))
    clauses = tuple(p for p in parts[1:] if _CONNECTOR.match(p))
    parts = [parts[0], *(p for p in parts[1:] if not _CONNECTOR.match(p))]
    if len(parts) == 1:
        return Forms(parts[0], None, clauses)
    stem = parts[0].split()[-1]
    alternatives = [p for p in parts[1:] if _common_prefix(stem, p.split()[0]) >= 3]
    if len(alternatives) == len(parts) - 1:
        nouns = [p for p in parts if not is_adjective(p)]
        adjectives = [p for p in parts if is_adjective(p)]
        noun = nouns[0] if nouns else parts[0]
        adjective = None
        for suffix in _ADJECTIVE_PREFERENCE:
            adjective = next((a for a in adjectives if a.endswith(suffix)), None)
            if adjective:
                break
        return Forms(noun, adjective or (adjectives[0] if adjectives else None), clauses)
    if len(parts) == 2 and " or " not in parts[1] and " and " not in parts[1]:
        first, second = parts
        connector = _CONNECTOR.match(first)
        if connector:  # "due to displacement, intervertebral disc"
            body = first[connector.end() :].strip()
            return Forms(f"{connector.group(1)} {second} {body}", None, clauses)
        if is_adjective(second) and not connector:
            return Forms(f"{second} {first}", None, clauses)  # "glomerulosclerosis, intercapillary"
        if " " not in first and " " not in second:
            if first.endswith("s") and second.endswith("s"):
                return Forms(f"{first} or {second}", None, clauses)  # "oils, essences"
            return Forms(f"{second} {first}", None, clauses)  # "inversion, uterus"
    return Forms(" ".join(parts), None, clauses)


@dataclass
class Segment:
    """One part of a phrase: ``connector mods head post``."""

    connector: str | None
    head: str
    mods: list[str] = field(default_factory=list)
    post: list[str] = field(default_factory=list)
    open: bool = False  # the head ends with a connector and waits for the next term
    site: bool = False  # an injury's site ("of ...")
    nouns: int = 0  # body-site nouns stacked into an injury site

    def text(self) -> str:
        words = [self.connector or "", *self.mods, self.head, *self.post]
        return " ".join(w for w in words if w)


@dataclass(frozen=True)
class Term:
    """One index level: its cleaned text and its non-essential modifiers."""

    text: str
    nemods: tuple[str, ...] = ()
    raw: str = ""


def _special(text: str) -> str | None:
    """Rewrite the index's "specified"/"unspecified" subterms; '' means drop the level."""
    if text in {"unspecified site", "site unspecified", "unspecified", "unspecified type"}:
        return ""
    if text in {"specified", "specified type", "specified form", "other specified", "other"}:
        return "other"
    if text in {"specified site", "specified sites", "other site", "other sites"}:
        return "of other site"
    match = re.match(r"^(?:other )?specified (.+)$", text)
    if match:
        return f"other {match.group(1)}"
    return None


def _is_connector_only(text: str) -> bool:
    return bool(text) and bool(_CONNECTORS_ONLY.fullmatch(text))


def _clauses(texts: Iterable[str]) -> list[Segment]:
    # Clauses split off by commas; an "or ..." alternative wording is dropped.
    found = []
    for clause in texts:
        connector = _CONNECTOR.match(clause)
        if connector and connector.group(1) not in {"or", "and"}:
            found.append(Segment(connector.group(1), clause[connector.end() :].strip()))
    return found


def natural_phrase(terms: list[Term], adjective_form: list[str] | None = None) -> str:
    """Build the clinical phrase of an index path (main term first); raise PathStyle when
    the nesting cannot be read naturally. A main term's "with" clause read with its adjective
    form ("diabetic retinopathy") is appended to ``adjective_form`` when given."""
    main = forms(terms[0].text)
    if not main.noun:
        raise PathStyle("empty main term")
    segments = [Segment(None, main.noun), *_clauses(main.clauses)]
    main_adjective = main.adjective
    trailing = _ENDS_WITH_CONNECTOR.search(main.noun)
    if trailing and trailing.start() > 0:  # "Lack of" > "housing": lack of housing
        segments[0].head = main.noun[: trailing.start()].strip()
    nemod_connectors = [n for n in terms[0].nemods if n in _FRAME_NEMODS]
    main_connector = (
        min(nemod_connectors, key=_FRAME_NEMODS.index)
        if nemod_connectors
        else _FRAME_CONNECTORS.get(main.noun)
    )
    if trailing and trailing.start() > 0:
        main_connector = trailing.group(1)
    frame: Segment | None = None  # the clause opened by main_connector
    if trailing and trailing.start() > 0:  # the clause waits for its object
        frame = Segment(main_connector, "")
        segments.append(frame)
    injury = main.noun.split()[-1] in _INJURIES
    pending: str | None = None
    previous = ""
    for term in terms[1:]:
        text = term.text
        special = _special(text)
        if special == "":
            continue
        text = special or text
        if not text:
            continue
        if not _is_connector_only(text):
            previous = text
        last = segments[-1]
        if _is_connector_only(text):
            target = segments[-1]
            if (
                not pending
                and target.mods
                and target.mods[0] == previous
                and previous.endswith("ed")
            ):
                target.mods.pop(0)  # "Delivery" > "complicated" > "by": delivery complicated by
                pending = f"{previous} {text}"
            else:
                pending = f"{pending} {text}" if pending else text
            previous = text
            continue
        if pending and text == "other":
            pending = f"{pending} other"
            continue
        if last.open:
            filled = forms(text)
            last.head = f"{last.head} {filled.noun}".strip()
            last.open = bool(_ENDS_WITH_CONNECTOR.search(filled.noun))
            segments.extend(_clauses(filled.clauses))
            continue
        connector = _CONNECTOR.match(text)
        if pending or connector:
            opener = pending or connector.group(1)  # type: ignore[union-attr]
            body = text if pending else text[connector.end() :].strip()  # type: ignore[union-attr]
            pending = None
            special_body = _special(body)
            if special_body and special_body.startswith("other"):
                body = special_body
            elif re.search(r"\bNEC\b", term.raw) and body and not body.startswith("other"):
                body = f"other {body}"  # "with" > "kidney complications NEC": other ...
            body_forms = forms(body)
            if body and " " not in body and is_adjective(body) and not body[-1].isdigit():
                raise PathStyle(f"'{text}' qualifies a word it does not repeat")
            segment = Segment(opener, body_forms.noun)
            segment.open = not body or bool(_ENDS_WITH_CONNECTOR.search(body))
            segments.append(segment)
            segments.extend(_clauses(body_forms.clauses))
            continue
        if _ENDS_WITH_CONNECTOR.search(text) and " " in text:
            segments.append(Segment(text, "", open=True))  # "complicated by", "coma due to"
            continue
        if any(s.connector == "of" and s.head == "other site" for s in segments):
            raise PathStyle("a modifier after 'other site'")
        term_forms = forms(text)
        target = segments[-1]
        if (target.head in _CONTEXT_HEADS and len(segments) > 1) or target.site:
            target = segments[0]  # "pre-existing" hypertension complicating childbirth
        modifier = term_forms.adjective or term_forms.noun
        adjective = bool(term_forms.adjective) or is_adjective(modifier)
        if injury and target is segments[0] and term_forms.adjective and " " not in term_forms.noun:
            modifier, adjective = term_forms.noun, False  # a site: "abdomen, abdominal"
        if any(" " in p for p in target.post) and modifier not in _POSTPOSITIVE:
            raise PathStyle("a modifier after a trailing phrase")
        if modifier.startswith("other ") and modifier != "other":
            noun = modifier[len("other ") :]
            if target.head.split()[-1:] == noun.split()[-1:] or noun in {"type", "form"}:
                modifier, adjective = "other", True
            else:
                raise PathStyle(f"'{text}' qualifies nothing in the phrase")
        if modifier == "of other site":
            segments.append(Segment("of", "other site"))
            continue
        if (
            not injury
            and target is segments[0]
            and (modifier in _BODY_SITES or modifier.endswith(" region"))
            and (target.mods or target.head != main.noun or len(segments) > 1)
        ):
            segments.append(Segment("of", modifier))  # "palindromic rheumatism of wrist"
            continue
        if frame is not None and target is frame and not frame.head and not adjective:
            frame.head = modifier  # "Lack of" > "adequate" > "food": lack of adequate food
        elif (
            re.fullmatch(r"[0-9]+[a-z]?|[ivx]+", modifier)
            and target.mods
            and target.mods[0] in _NUMBERED
        ):
            target.mods[0] = f"{target.mods[0]} {modifier}"  # "class" > "1": class 1
        elif modifier in _POSTPOSITIVE or _LATIN_ADJECTIVE.match(modifier):
            target.post.append(modifier)
        elif len(modifier.split()) > 1 and _INNER_CONNECTOR.search(modifier):
            target.post.append(modifier)  # "resolved following treatment"
        elif injury and target is segments[0] and modifier in _INJURY_ADJECTIVES:
            target.mods.insert(0, modifier)
        elif injury and target is segments[0] and not adjective:
            site = next((s for s in segments if s.site), None)
            if site is None:
                segments.insert(1, Segment("of", modifier, site=True, nouns=1))
            else:
                site.nouns += 1
                if site.nouns > 3:
                    raise PathStyle("more than three site nouns")
                if site.head in _TISSUES:
                    site.head = " ".join([site.head, "of", *site.mods, modifier])
                else:
                    site.head = " ".join([modifier, "of", *site.mods, site.head])
                site.mods = []
        elif injury and target is segments[0]:
            site = next((s for s in segments if s.site), None)
            if site is not None and (modifier in _SITE_ADJECTIVES or not site.mods):
                site.mods.insert(0, modifier)
            else:
                target.mods.insert(0, modifier)
        elif frame is not None and target is frame and not adjective:
            raise PathStyle("a second noun after a frame clause")
        elif (
            frame is None
            and target is segments[0]
            and len(segments) == 1
            and main_connector
            and not adjective
        ):
            frame = Segment(main_connector, modifier)
            segments.append(frame)
        elif (
            target is segments[0]
            and len(segments) == 1
            and not adjective
            and not target.mods
            and target.head == main.noun
            and " " not in main.noun
            and is_adjective(main.noun)
        ):
            target.head = f"{main.noun} {modifier}"  # "low" > "von willebrand factor"
        elif (
            target is segments[0]
            and len(segments) == 1
            and not main_adjective
            and not adjective
            and not target.mods
            and target.head == main.noun
            and main.noun not in _GENERIC_HEADS
            and _CONDITION.search(modifier)
        ):
            target.head = modifier  # "anthrax" > "colitis": anthrax colitis
            target.mods = [main.noun]
        elif (
            target is segments[0]
            and main_adjective
            and not adjective
            and not target.mods
            and target.head == main.noun
            and (_CONDITION.search(modifier) or len(modifier.split()) >= 4)
        ):
            target.head = modifier  # "hypertensive crisis"
            target.mods = [main_adjective]
        else:
            if len(target.mods) >= 3:
                raise PathStyle("more than three modifiers on one word")
            target.mods.insert(0, modifier)
        segments.extend(_clauses(term_forms.clauses))
    if pending:
        raise PathStyle(f"dangling '{pending}'")
    if any(s.open and not s.head.strip() for s in segments) or (frame and not frame.head):
        raise PathStyle("open clause")
    phrase = _joined(segments)
    if (
        adjective_form is not None
        and main.adjective
        and len(segments) == 2
        and segments[0].head == main.noun
        and not segments[0].post
        and segments[1].connector == "with"
        and segments[1].head
        and not segments[1].open
        and main.noun not in _GENERIC_HEADS
        and re.search(r"(ic|ive|ous|al|ar)$", main.adjective)
        and _CONDITION.search(segments[1].text())
    ):
        # "diabetes with retinopathy" is also "diabetic retinopathy".
        condition = segments[1].text()[len("with ") :]
        mods = [*segments[0].mods, main.adjective]
        if condition.startswith("other "):  # "other diabetic kidney complications"
            condition, mods = condition[len("other ") :], ["other", *mods]
        adjective_form.append(_joined([Segment(None, condition, mods)]))
    return phrase


def _joined(segments: list[Segment]) -> str:
    phrase = " ".join(s.text() for s in segments if s.text())
    phrase = re.sub(r"\s+", " ", phrase).strip()
    words = phrase.split()
    if any(a == b for a, b in pairwise(words)):
        raise PathStyle("a word twice in a row")
    return phrase


def path_phrase(terms: list[Term]) -> str:
    """The fallback: the cleaned index path, comma-joined ("burn, calf, left")."""
    parts = [forms(t.text).noun if "," in t.text else t.text for t in terms]
    return ", ".join(p for p in parts if p)


def phrases(terms: list[Term]) -> list[str]:
    """The natural phrase of a path (or its path phrase), then variants with the last level's
    non-essential modifiers ("pneumonia" (acute) -> "acute pneumonia")."""
    adjective_form: list[str] = []
    try:
        base = natural_phrase(terms, adjective_form)
    except PathStyle:
        return [path_phrase(terms)]
    found = [base]
    for variant in adjective_form:
        if variant not in found:
            found.append(variant)
    last = terms[-1]
    for nemod in last.nemods:
        words = clean(nemod)
        if (
            not words
            or len(words.split()) > 3
            or not re.fullmatch(r"[a-z][a-z' -]*[a-z]", words)
            or _CONNECTOR.match(words)
            or words in last.text.split()
            or words in {"poly", "s", "es", "any", "site", "sites"}
            or re.search(r"\b(any|site|sites|part|parts|all|unspecified|specified)\b", words)
        ):
            continue
        if len(words.split()) >= 2 and _CONDITION.search(words) and words not in found:
            found.append(words)  # a synonym: "Pringle's disease (tuberous sclerosis)"
            continue
        noun = forms(last.text).noun if len(terms) == 1 else last.text
        after = (
            _CONDITION.search(words)
            or words in _POSTPOSITIVE
            or _LATIN_ADJECTIVE.match(words)
            or re.search(r"(ae|i|us|um)$", words)
        ) and not is_adjective(words)
        connector = _CONNECTOR.match(noun)
        if is_adjective(words) and len(terms) > 1:
            variant_terms = [*terms, Term(words)]  # placed as the nesting places a modifier
        elif after:
            variant_terms = [*terms[:-1], Term(f"{noun} {words}", (), last.raw)]
        elif connector:
            continue  # "in schistosomiasis" (bilharziasis): a synonym, not a modifier
        else:
            variant_terms = [*terms[:-1], Term(f"{words} {noun}", (), last.raw)]
        try:
            variant = natural_phrase(variant_terms)
        except PathStyle:
            continue
        if variant not in found:
            found.append(variant)
    return found


# --- codes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mapped:
    code: str | None
    status: str  # "valid", "incomplete" (category kept for search), "dropped"


def map_code(raw: str) -> Mapped:
    """Map an index code to the FY2026 tabular; an incomplete one keeps its valid category."""
    raw = raw.strip()
    incomplete = "-" in raw
    compact = raw.replace("-", "").replace(".", "").upper()
    try:
        dotted = icd10cm.normalize(compact)
    except CodeError:
        return Mapped(None, "dropped")
    if not incomplete:
        return Mapped(dotted, "valid") if icd10cm.is_valid(dotted) else Mapped(None, "dropped")
    while len(compact) >= 3:
        dotted = icd10cm.normalize(compact)
        if icd10cm.is_valid(dotted):
            return Mapped(dotted, "incomplete")
        compact = compact[:-1]
    return Mapped(None, "dropped")


# --- readers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One phrase for one code, before de-duplication."""

    term: str
    code: str
    source: str
    path: str
    level: int


@dataclass
class Counts:
    rows_read: int = 0
    rows_with_code: int = 0
    path_style: int = 0
    codes_valid: int = 0
    codes_incomplete: int = 0
    codes_dropped: int = 0
    dropped: Counter = field(default_factory=Counter)


def _path_text(raw_terms: Iterable[str]) -> str:
    return " > ".join(re.sub(r"\s+", " ", t).strip() for t in raw_terms)


def index_entries(path: Path, counts: Counts) -> Iterator[Entry]:
    """Phrases of the Alphabetic Index CSV (rows with a code; see-only rows are skipped)."""
    stack: list[Term] = []
    for _line, row in read_csv_rows(path, INDEX_COLUMNS):
        counts.rows_read += 1
        level = int(row["Level"])
        tail, nemods = split_nemod(row["NonEssModif"])
        text = clean(f"{row['Term']} {tail}")
        stack = stack[:level]
        while len(stack) < level:  # a skipped level in a malformed file
            stack.append(Term(""))
        stack.append(Term(text, tuple(nemods), row["Term"]))
        if not row["Code"]:
            continue
        counts.rows_with_code += 1
        mapped = map_code(row["Code"])
        if mapped.code is None:
            counts.codes_dropped += 1
            counts.dropped[row["Code"]] += 1
            continue
        counts.codes_valid += mapped.status == "valid"
        counts.codes_incomplete += mapped.status == "incomplete"
        found = phrases(stack)
        counts.path_style += found[0] == path_phrase(stack) and not natural_ok(stack)
        for phrase in found:
            yield Entry(phrase, mapped.code, "index", _path_text(t.raw for t in stack), level)


def natural_ok(terms: list[Term]) -> bool:
    try:
        natural_phrase(terms)
    except PathStyle:
        return False
    return True


def _title(element: ET.Element) -> tuple[str, list[str]]:
    title = element.find("title")
    if title is None:
        return "", []
    text = [title.text or ""]
    nemods = []
    for child in title:
        if child.tag == "nemod":
            nemods.append("".join(child.itertext()))
        else:
            text.append("".join(child.itertext()))
        text.append(child.tail or "")
    return " ".join(text), nemods


def _walk(element: ET.Element, path: list[str]) -> Iterator[tuple[list[str], ET.Element]]:
    for term in element.findall("term"):
        title, _ = _title(term)
        yield [*path, title], term
        yield from _walk(term, [*path, title])


def _table_rows(path: Path) -> Iterator[tuple[list[str], ET.Element]]:
    root = ET.parse(path).getroot()
    for main in root.iter("mainTerm"):
        title, _ = _title(main)
        yield [title], main
        yield from _walk(main, [title])


_MORPHOLOGY = re.compile(r"(carcinoma|melanoma|sarcoma|lymphoma|adenoma|cell)$")


def neoplasm_site(parts: list[str]) -> tuple[str, str | None]:
    """``(site phrase, morphology)`` of a Table of Neoplasms path below "Neoplasm"."""
    site: Segment | None = None
    morphology = None
    for raw in parts:
        text = _special(clean(raw))
        text = clean(raw) if text is None else text
        if not text or text == "other":
            if text == "other":
                morphology = "other malignant neoplasm"
            continue
        if _MORPHOLOGY.search(text) and site is not None:
            morphology = text if not text.endswith("cell") else f"{text} carcinoma"
            continue
        form = forms(text)
        word = form.adjective or form.noun
        if site is None:
            site = Segment(None, form.noun)
        elif word in _POSTPOSITIVE or _LATIN_ADJECTIVE.match(word):
            site.post.append(word)
        elif form.adjective or is_adjective(word) or word in _SITE_ADJECTIVES:
            site.mods.insert(0, word)
        elif word.startswith(("overlapping", "of ", "with ")):
            site.post.append(word if word.startswith(("of ", "with ")) else f"- {word}")
        elif site.head in _TISSUES:
            site.head = f"{site.head} of {word}"
        else:
            site = Segment(None, f"{word} of {site.text()}")
    return (site.text() if site else ""), morphology


NEOPLASM_COLUMNS = {
    "2": ("malignant neoplasm of {site}", "{site} cancer"),
    "3": ("secondary malignant neoplasm of {site}", "metastasis to {site}"),
    "4": ("carcinoma in situ of {site}",),
    "5": ("benign neoplasm of {site}",),
    "6": ("neoplasm of uncertain behavior of {site}",),
    "7": ("neoplasm of unspecified behavior of {site}",),
}


def neoplasm_entries(path: Path, counts: Counts) -> Iterator[Entry]:
    """Phrases of the Table of Neoplasms, one per site and column holding a code."""
    for parts, element in _table_rows(path):
        site, morphology = neoplasm_site(parts[1:])
        level = len(parts) - 1
        path_text = _path_text(parts)
        for cell in element.findall("cell"):
            raw = (cell.text or "").strip()
            column = cell.get("col", "")
            if not raw.strip("-") or column not in NEOPLASM_COLUMNS:
                continue
            counts.rows_with_code += 1
            mapped = map_code(raw)
            if mapped.code is None:
                counts.codes_dropped += 1
                counts.dropped[raw] += 1
                continue
            counts.codes_valid += mapped.status == "valid"
            counts.codes_incomplete += mapped.status == "incomplete"
            if not site:
                templates: tuple[str, ...] = ("neoplasm",) if column == "7" else ()
            elif morphology and column == "2":
                templates = (f"{morphology} of {{site}}",)
            else:
                templates = NEOPLASM_COLUMNS[column]
            for template in templates:
                if template == "{site} cancer" and (
                    " of " in site or len(site.split()) > 3 or " - " in site
                ):
                    continue
                phrase = template.format(site=site).replace(" - ", " ")
                yield Entry(phrase, mapped.code, "neoplasm", path_text, level)


DRUG_COLUMNS = {
    "2": "accidental poisoning by {x}",
    "3": "intentional self-harm poisoning by {x}",
    "4": "assault poisoning by {x}",
    "5": "poisoning by {x}, undetermined intent",
    "6": "adverse effect of {x}",
    "7": "underdosing of {x}",
}


def drug_name(parts: list[str]) -> str:
    """A substance's name from its Table of Drugs path: adjectives go before, nouns after
    ("Potassium" > "perchlorate" > "medicinal" is medicinal potassium perchlorate)."""
    name = ""
    for raw in parts:
        text = clean(raw)
        special = _special(text)
        text = text if special is None else special
        if not text or text.startswith("of other"):
            continue
        form = forms(text)
        if name and (form.adjective or (is_adjective(form.noun) and " " not in form.noun)):
            name = f"{form.adjective or form.noun} {name}"
        else:
            name = f"{name} {form.noun}".strip()
    return name


def drug_entries(path: Path, counts: Counts) -> Iterator[Entry]:
    """Phrases of the Table of Drugs and Chemicals, one per substance and column."""
    for parts, element in _table_rows(path):
        name = drug_name(parts)
        level = len(parts) - 1
        path_text = _path_text(parts)
        for cell in element.findall("cell"):
            raw = (cell.text or "").strip()
            column = cell.get("col", "")
            if not raw.strip("-") or column not in DRUG_COLUMNS or not name:
                continue
            counts.rows_with_code += 1
            mapped = map_code(raw)
            if mapped.code is None:
                counts.codes_dropped += 1
                counts.dropped[raw] += 1
                continue
            counts.codes_valid += mapped.status == "valid"
            counts.codes_incomplete += mapped.status == "incomplete"
            yield Entry(DRUG_COLUMNS[column].format(x=name), mapped.code, "drug", path_text, level)


# --- table -------------------------------------------------------------------------------------


def deduplicate(entries: Iterable[Entry]) -> list[Entry]:
    """One row per (term, code): the index before the tables, then the shallowest, shortest
    path; sorted by term then code."""
    best: dict[tuple[str, str], Entry] = {}
    for entry in entries:
        key = (entry.term, entry.code)
        rank = (SOURCES.index(entry.source), entry.level, len(entry.path), entry.path)
        kept = best.get(key)
        if kept is None or rank < (
            SOURCES.index(kept.source),
            kept.level,
            len(kept.path),
            kept.path,
        ):
            best[key] = entry
    return sorted(best.values(), key=lambda e: (e.term, e.code))


def write_table(entries: list[Entry], out: Path) -> None:
    """Write the CSV (gzipped when ``out`` ends in .gz, with a fixed mtime: byte-stable)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in entries:
        writer.writerow([e.term, e.code, e.source, e.path, e.level])
    data = buffer.getvalue().encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".gz":
        with (
            out.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as handle,
        ):
            handle.write(data)
    else:
        out.write_bytes(data)


def build(index_dir: Path) -> tuple[list[Entry], Counts]:
    """Read the three index files of ``index_dir``; return the table rows and the counts."""
    counts = Counts()
    entries = [
        *index_entries(index_dir / INDEX_FILE, counts),
        *neoplasm_entries(index_dir / NEOPLASM_FILE, counts),
        *drug_entries(index_dir / DRUG_FILE, counts),
    ]
    return deduplicate(entries), counts


def report(entries: list[Entry], counts: Counts) -> str:
    codes = {e.code for e in entries}
    billable = {c for c in codes if icd10cm.is_billable(c)}
    all_billable = sum(1 for c in icd10cm.all_codes() if icd10cm.is_billable(c))
    by_source = Counter(e.source for e in entries)
    names = sorted(counts.dropped)
    dropped = f": {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}" if names else ""
    return "\n".join(
        [
            f"index rows read: {counts.rows_read:,} ({counts.rows_with_code:,} codes in the "
            "index and tables)",
            f"phrases written: {len(entries):,} "
            f"({', '.join(f'{s} {by_source[s]:,}' for s in SOURCES)})",
            f"index paths kept path-style (not natural): {counts.path_style:,}",
            f"codes kept as in FY2026: {counts.codes_valid:,}; incomplete codes kept as their "
            f"category: {counts.codes_incomplete:,}",
            f"codes dropped (not in the FY2026 tabular): {counts.codes_dropped:,} "
            f"({len(counts.dropped):,} distinct{dropped})",
            f"distinct codes covered: {len(codes):,}",
            f"billable codes covered: {len(billable):,} of {all_billable:,} "
            f"({len(billable) / all_billable:.1%})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-dir", type=Path, default=DEFAULT_INDEX_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    entries, counts = build(args.index_dir)
    write_table(entries, args.out)
    print(report(entries, counts))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
