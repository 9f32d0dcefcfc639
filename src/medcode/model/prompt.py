"""The prompt and target format, shared by training and inference (one place, so they match).

Two modes:

- ``plain``: the note in, the codes out (the published set-up, for large models);
- ``candidates``: the prompt also lists the retriever's top-k codes with short descriptions;
  the model selects and composes (it may still write a valid code outside the list).

Both start with the same instruction, so a base model can be scored zero-shot with exactly
the prompt the fine-tuned model sees. The target is the codes, one per line, first-listed
first, then the tokenizer's end-of-sequence token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def short_description(text: str, words: int = DESCRIPTION_WORDS) -> str:
    """The first ``words`` words of a description (candidates cost prompt tokens)."""
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def build_prompt(
    note: str, mode: str = "plain", candidates: Sequence[Candidate] | None = None
) -> str:
    """The prompt for one note; ends where the model starts writing codes."""
    if mode not in MODES:
        raise ValueError(f"unknown prompt mode {mode!r}: use {' or '.join(MODES)}")
    parts = [INSTRUCTION, "", "Note:", note.strip(), ""]
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
) -> tuple[str | None, list[int] | None, bool]:
    """The prompt within ``budget`` tokens: ``(text, ids, truncated)``. A note too long is cut
    in the middle (its start and its assessment and plan are kept, joined by ``[...]``), the
    same way for training and inference; ``text`` and ``ids`` are None when even an empty
    note does not fit."""
    text = build_prompt(note, mode, candidates)
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
        text = build_prompt(cut, mode, candidates)
        ids = tokenizer(text)["input_ids"]
        if len(ids) <= budget:
            return text, ids, True
        drop += len(ids) - budget
    text = build_prompt(CUT_MARKER.strip(), mode, candidates)
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
