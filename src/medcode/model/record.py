"""The run record ``medcode_model.json`` that ``medcode train`` writes next to an adapter:
how the model was trained to be prompted and decoded (mode, k, retriever, context,
candidates only, candidate order, eos_min), read back by :func:`read_record`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medcode.model.loading import ModelError
from medcode.model.prompt import CANDIDATE_ORDERS, MODES

RECORD = "medcode_model.json"


@dataclass(frozen=True)
class ModelRecord:
    """What ``medcode train`` writes next to an adapter (``medcode_model.json``)."""

    base: str | None = None
    mode: str = "plain"
    k: int = 20
    retriever: Path | None = None
    # whether the model's prompts state the setting and patient: adapters trained before
    # medcode wrote them have no "context" in their record, and are prompted without
    context: bool = True
    # whether answers list only the prompt's candidates (hf, constrained decoding)
    candidates_only: bool = False
    candidate_order: str = "score"  # the order the prompts list the candidates in
    eos_min: float = 0.0  # where an answer may end (hf, constrained decoding)


def read_record(spec: str | Path) -> ModelRecord:
    """The record of an adapter folder, or defaults (plain mode) for anything else."""
    folder = Path(str(spec)).expanduser()
    path = folder / RECORD
    if not path.is_file():
        return ModelRecord()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        mode = str(data.get("mode", "plain"))
        k = int(data.get("k", 20))
        retriever = data.get("retriever")
        context = data.get("context", False) is True
        candidates_only = data.get("candidates_only", False) is True
        order = str(data.get("candidate_order", "score"))
        eos_min = float(data.get("eos_min", 0.0))
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise ModelError(f"{path}: corrupt model record ({error})") from None
    if mode not in MODES:
        raise ModelError(f"{path}: unknown mode {mode!r} (use {' or '.join(MODES)})")
    if order not in CANDIDATE_ORDERS:
        raise ModelError(f"{path}: unknown candidate_order {order!r}")
    if not 0.0 <= eos_min <= 1.0:
        raise ModelError(f"{path}: eos_min {eos_min} is not in [0, 1]")
    return ModelRecord(
        data.get("base"),
        mode,
        k,
        folder / retriever if retriever and mode != "plain" else None,
        context,
        candidates_only,
        order,
        eos_min,
    )
