"""The prompt and target format, shared by training and inference (one place, so they match).

Two modes:

- ``plain``: the note in, the codes out (the published set-up, for large models);
- ``candidates``: the prompt also lists the retriever's top-k codes with short descriptions;
  the model selects and composes (it may still write a valid code outside the list).

Both start with the same instruction, so a base model can be scored zero-shot with exactly
the prompt the fine-tuned model sees. Where the care setting or the patient's age and sex are
known (:class:`NoteContext`), they follow the instruction: the rules differ by setting (an
uncertain diagnosis is coded as if established for an inpatient stay, as its symptoms for an
outpatient visit; Official Guidelines Section II.H and IV.H) and the age and sex edits need the
patient. The target is the codes, one per line, first-listed first, then the tokenizer's
end-of-sequence token.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medcode.errors import MedcodeError

MODES = ("plain", "candidates")
INSTRUCTION = (
    "You are a certified medical coder. Read the clinical note and list its ICD-10-CM "
    "diagnosis codes and CPT/HCPCS procedure and visit codes, one code per line, "
    "first-listed diagnosis first."
)
ANSWER_HEADER = "Codes:\n"
DESCRIPTION_WORDS = 8


@dataclass(frozen=True)
class Candidate:
    """A code proposed by the retriever, with a short description and its score."""

    code: str
    description: str = ""
    score: float = 0.0


# the order a prompt lists its candidates in: the retriever's (best first), or by code, so
# that the model reads the note rather than the rank (see the README's "Recall in the model")
CANDIDATE_ORDERS = ("score", "code")


def check_order(order: str) -> str:
    """``order`` when it is one of :data:`CANDIDATE_ORDERS`, else a ValueError naming them."""
    if order not in CANDIDATE_ORDERS:
        raise ValueError(f"unknown candidate order {order!r}: use {' or '.join(CANDIDATE_ORDERS)}")
    return order


def ordered(candidates: Sequence[Candidate], order: str) -> list[Candidate]:
    """``candidates`` in the prompt's ``order`` (one of :data:`CANDIDATE_ORDERS`)."""
    if check_order(order) == "code":
        return sorted(candidates, key=lambda c: c.code)
    return list(candidates)


SETTINGS = ("outpatient", "inpatient", "emergency")
_SEXES = {"f": "female", "female": "female", "m": "male", "male": "male"}
_UNSAID = {"", "other", "unknown", "u", "o"}  # a sex the prompt does not state


@dataclass(frozen=True)
class NoteContext:
    """What the coder may know besides the note: the care setting and the patient's age and
    sex, each None when unknown (then the prompt leaves it out)."""

    setting: str | None = None
    age: int | None = None
    sex: str | None = None

    def __post_init__(self) -> None:
        if self.setting is not None and self.setting not in SETTINGS:
            raise MedcodeError(f"setting {self.setting!r}: use {', '.join(SETTINGS)}")
        if self.age is not None and not 0 <= self.age <= 130:
            raise MedcodeError(f"patient age {self.age!r}: expected 0-130 years")
        if self.sex is not None and self.sex not in ("female", "male"):
            raise MedcodeError(f"patient sex {self.sex!r}: expected female or male")

    @classmethod
    def of(
        cls, setting: Any = None, patient: Mapping[str, Any] | None = None
    ) -> NoteContext | None:
        """The context from a setting and a patient ``{"age", "sex"}`` as the API, a notes
        JSONL or a corpus encounter gives them (sex as female/male or F/M; other or unknown
        is left unsaid); None when nothing is known. Raises :class:`MedcodeError` naming
        the field that is wrong."""
        patient = patient or {}
        if not isinstance(patient, Mapping):
            raise MedcodeError(f"patient: expected an object with age and sex, got {patient!r}")
        age, sex = patient.get("age"), patient.get("sex")
        if age is not None and (isinstance(age, bool) or not isinstance(age, int)):
            raise MedcodeError(f"patient age {age!r}: expected a whole number of years")
        if sex is not None:
            said = str(sex).strip().lower()
            if said not in _SEXES and said not in _UNSAID:
                raise MedcodeError(f"patient sex {sex!r}: expected female, male, other or unknown")
            sex = _SEXES.get(said)
        setting = str(setting).strip().lower() if setting not in (None, "") else None
        context = cls(setting, age, sex)
        return context if context.lines() else None

    @classmethod
    def of_encounter(cls, encounter: Mapping[str, Any] | str | None) -> NoteContext | None:
        """The context of a corpus note's encounter (``records.Encounter.to_dict``, or the
        JSON string a corpus row holds); None without one."""
        if isinstance(encounter, str):
            encounter = json.loads(encounter)
        if not encounter:
            return None
        return cls.of(encounter.get("setting"), encounter.get("patient"))

    def lines(self) -> list[str]:
        """The prompt lines: ``Setting: inpatient``, ``Patient: 67-year-old female``."""
        found = []
        if self.setting:
            found.append(f"Setting: {self.setting}")
        if self.age is not None or self.sex:
            age = f"{self.age}-year-old" if self.age is not None else ""
            found.append(f"Patient: {' '.join(p for p in (age, self.sex) if p)}")
        return found


def left_out(note_id: str, share: float) -> bool:
    """Whether a training note's prompt leaves its context out (``share`` of the notes, the
    same notes in every run), so the model also codes notes that come without one."""
    return share > 0 and zlib.crc32(note_id.encode()) / 2**32 < share


def short_description(text: str, words: int = DESCRIPTION_WORDS) -> str:
    """The first ``words`` words of a description (candidates cost prompt tokens)."""
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def build_prompt(
    note: str,
    mode: str = "plain",
    candidates: Sequence[Candidate] | None = None,
    context: NoteContext | None = None,
) -> str:
    """The prompt for one note; ends where the model starts writing codes."""
    if mode not in MODES:
        raise ValueError(f"unknown prompt mode {mode!r}: use {' or '.join(MODES)}")
    said = context.lines() if context else []
    parts = [INSTRUCTION, "", *said, *([""] if said else []), "Note:", note.strip(), ""]
    if mode == "candidates":
        parts.append("Candidate codes:")
        parts.extend(
            f"{c.code} {short_description(c.description)}".rstrip() for c in candidates or ()
        )
        parts.append("")
    return "\n".join(parts) + ANSWER_HEADER


CUT_MARKER = "\n[...]\n"


def fit_prompt(
    tokenizer: Any,
    note: str,
    mode: str,
    candidates: Sequence[Candidate] | None,
    budget: int,
    context: NoteContext | None = None,
) -> tuple[str | None, list[int] | None, bool]:
    """The prompt within ``budget`` tokens: ``(text, ids, truncated)``. A note too long is cut
    in the middle (its start and its assessment and plan are kept, joined by ``[...]``), the
    same way for training and inference; ``text`` and ``ids`` are None when even an empty
    note does not fit."""
    text = build_prompt(note, mode, candidates, context)
    ids = tokenizer(text)["input_ids"]
    if len(ids) <= budget:
        return text, ids, False
    offsets = tokenizer(note, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    n = len(offsets)
    drop = len(ids) - budget + 4  # a few tokens for the cut marker
    for _ in range(8):
        keep = n - drop
        if keep <= 1:
            break
        head, tail = keep // 2, keep - keep // 2
        cut = note[: offsets[head - 1][1]].rstrip() + CUT_MARKER + note[offsets[n - tail][0] :]
        text = build_prompt(cut, mode, candidates, context)
        ids = tokenizer(text)["input_ids"]
        if len(ids) <= budget:
            return text, ids, True
        drop += len(ids) - budget
    text = build_prompt(CUT_MARKER.strip(), mode, candidates, context)
    ids = tokenizer(text)["input_ids"]
    return (text, ids, True) if len(ids) <= budget else (None, None, True)


def build_target(codes: Sequence[str]) -> str:
    """The answer text: codes one per line, in order (the end-of-sequence token is added by
    the tokenising step, not here)."""
    return "".join(f"{code}\n" for code in codes)


def parse_codes(answer: str) -> list[str]:
    """Codes from a generated answer: one per line (or separated by spaces/commas), stopping
    at the first empty line; duplicates dropped, order kept."""
    codes: list[str] = []
    for line in answer.splitlines():
        if not line.strip():
            if codes:
                break
            continue
        for token in line.replace(",", " ").split():
            token = token.strip().rstrip(".:;")
            if token and token not in codes:
                codes.append(token)
    return codes
