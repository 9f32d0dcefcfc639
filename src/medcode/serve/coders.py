"""One small interface over what the service can serve: the TF-IDF baseline or an LLM coder.

``medcode serve --model M`` takes a baseline folder (written by ``medcode baseline train``:
``config.json`` + ``model.joblib``) or an LLM spec (``embedded``, a Hugging Face model folder,
an adapter folder from ``medcode train``, or with ``--backend openai`` a served model name).
Both come back as a :class:`ServedCoder`: ``predict(texts, ids, contexts)`` -> one
:class:`~medcode.model.backends.Prediction` per note, codes first-listed first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medcode.errors import MedcodeError
from medcode.model.backends import Contexts, Prediction

BASELINE_KIND = "tfidf_baseline"


class ServedCoder(Protocol):
    """What the service needs of a coder."""

    name: str  # shown in responses and /readyz
    kind: str  # "baseline" or "llm"
    max_batch: int  # notes per predict call (requests arriving together are batched)
    confidence: bool  # True when a prediction's scores are probabilities
    batch_wait_s: float  # how long the first note of a batch waits for others

    def predict(
        self, texts: list[str], ids: list[str] | None = None, contexts: Contexts = None
    ) -> list[Prediction]: ...


@dataclass
class BaselineCoder:
    """The TF-IDF baseline (:class:`medcode.baselines.tfidf.TfidfCoder`): codes over their
    thresholds, best score first; its scores are margins, not probabilities."""

    model: Any
    name: str = "baseline"
    max_batch: int = 64
    kind: str = "baseline"
    confidence: bool = False
    batch_wait_s: float = 0.0

    def predict(
        self, texts: list[str], ids: list[str] | None = None, contexts: Contexts = None
    ) -> list[Prediction]:
        """The baseline reads the text alone (``contexts`` are not used)."""
        return [
            Prediction([code for code, _ in row], [score for _, score in row])
            for row in self.model.predict(texts)
        ]


@dataclass
class LLMCoder:
    """An LLM coder from :func:`medcode.model.backends.load_coder` (``hf``: constrained
    decoding, scores are code probabilities; ``openai``: output validated, no scores)."""

    coder: Any
    name: str
    max_batch: int = 8
    kind: str = "llm"
    confidence: bool = True
    batch_wait_s: float = 0.02  # a batch costs about one note: let it fill

    def predict(
        self, texts: list[str], ids: list[str] | None = None, contexts: Contexts = None
    ) -> list[Prediction]:
        return self.coder.predict(texts, ids, contexts=contexts)


def is_baseline_folder(spec: str | Path) -> bool:
    """Whether ``spec`` names a folder written by ``medcode baseline train``."""
    folder = Path(str(spec)).expanduser()
    config = folder / "config.json"
    if not (folder / "model.joblib").is_file() or not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("kind") == BASELINE_KIND
    except (OSError, ValueError, AttributeError):
        return False


def load_served_coder(
    spec: str,
    *,
    backend: str = "hf",
    base_url: str | None = None,
    api_key: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    device: str | None = None,
) -> ServedCoder:
    """The coder ``spec`` names: a baseline folder, else an LLM (see the module docstring)."""
    if is_baseline_folder(spec):
        from medcode.baselines.tfidf import TfidfCoder

        return BaselineCoder(TfidfCoder.load(spec), name=_name(spec, "baseline"))
    folder = Path(spec).expanduser()
    if folder.is_dir() and (folder / "model.joblib").is_file():
        raise MedcodeError(f"{spec}: a model.joblib without a baseline config.json")
    from medcode.model.backends import HFBackend, load_coder

    options: dict[str, Any] = {"batch_size": batch_size, "max_new_tokens": max_new_tokens}
    if backend == "openai":
        options["api_key"] = api_key
    else:
        options["device"] = device
    coder = load_coder(spec, backend, base_url=base_url, **options)
    confidence = isinstance(coder, HFBackend) and coder.constrained
    return LLMCoder(coder, name=_name(spec, spec), max_batch=batch_size, confidence=confidence)


def _name(spec: str | Path, default: str) -> str:
    path = Path(str(spec))
    return path.name if path.name and path.exists() else str(default)
