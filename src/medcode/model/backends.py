"""Inference backends behind one interface, :class:`Coder`: notes in, validated codes out.

- :class:`HFBackend`: a transformers model (with its adapter) run here, batched, with output
  constrained to valid codes (``constrained.py``) or, for comparison, plain greedy generation;
- :class:`OpenAIBackend`: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, TGI)
  sent the same prompt; its text is parsed and checked against the code set.

Both validate what they return: codes normalised (``e1122`` -> ``E11.22``), kept only when in
the code set (billable ICD-10-CM, CPT/HCPCS table), exact duplicates dropped, and two edits
of the policy tables applied: Excludes1 (the later code of a conflicting pair is dropped) and
etiology/manifestation pairs (``data/policy/manifestations.yaml``, guideline I.A.13: an
etiology such as G30.9 with no code of its manifestation's family gets the default
manifestation, F02.80, listed right after it). Other edits (sequencing) are left to the
evaluation and review steps.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from medcode.errors import MedcodeError
from medcode.model.loading import ModelError
from medcode.model.prompt import MODES, Candidate, build_prompt, fit_prompt, parse_codes

RECORD = "medcode_model.json"
BACKENDS = ("hf", "openai")
Progress = Callable[[int], None]  # called with the number of notes just finished
Warn = Callable[[str], None]
_sleep = time.sleep  # the retry wait (tests replace it)


@dataclass
class Prediction:
    """The codes for one note, first-listed first; ``scores`` a confidence per code when the
    backend has one; ``truncated`` when the note was cut to fit the model's context. ``dropped``
    lists model output that was not a valid code; ``finished`` is False when generation hit
    its token limit before the model stopped. ``added`` lists codes the policy tables required
    that the model did not write (a manifestation after its etiology), with the reason."""

    codes: list[str]
    scores: list[float] | None = None
    truncated: bool = False
    dropped: list[str] = field(default_factory=list)
    finished: bool = True
    added: list[str] = field(default_factory=list)


class Coder(Protocol):
    """Anything that codes notes."""

    def predict(
        self,
        texts: list[str],
        ids: list[str] | None = None,
        progress: Progress | None = None,
    ) -> list[Prediction]: ...


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


# --------------------------------------------------------------------------- validation


class Validated(NamedTuple):
    """A validator's answer: the codes kept (and added), their scores, what was dropped
    (``"CODE (reason)"``) and what the policy tables added (``"CODE (reason)"``)."""

    codes: list[str]
    scores: list[float] | None
    dropped: list[str]
    added: list[str]


class CodeValidator:
    """Normalise predicted codes and keep the valid ones (see the module docstring);
    ``manifestations=False`` leaves out the etiology/manifestation completion."""

    def __init__(
        self,
        codes: frozenset[str] | None = None,
        *,
        manifestations: bool = True,
        tables: Any = None,
    ) -> None:
        if codes is None:
            from medcode.model.constrained import code_set

            codes = code_set()
        self.codes = codes
        self.manifestations = manifestations
        self._tables = tables

    def canonical(self, raw: str) -> str | None:
        """The code-set spelling of ``raw``, or None when it is not a valid code."""
        from medcode.errors import CodeError
        from medcode.terminology import cpt, icd10cm

        text = str(raw).strip()
        if text in self.codes:
            return text
        for normalise in (icd10cm.normalize, cpt.normalize):
            try:
                code = normalise(text)
            except CodeError:
                continue
            if code in self.codes:
                return code
        return None

    def __call__(self, codes: Sequence[str], scores: Sequence[float] | None = None) -> Validated:
        """The kept codes and their scores, order kept, duplicates removed, and the policy's
        edits applied: an ICD-10-CM code that an earlier-listed one excludes (or that excludes
        it) is dropped, noted as ``"CODE (Excludes1 with OTHER)"``; an etiology without its
        manifestation gets it (see :meth:`complete`)."""
        kept: list[str] = []
        kept_scores: list[float] = []
        dropped: list[str] = []
        for index, raw in enumerate(codes):
            code = self.canonical(raw)
            if code is None:
                dropped.append(str(raw))
                continue
            conflict = _excludes1_partner(code, kept)
            if conflict is not None:
                dropped.append(f"{code} (Excludes1 with {conflict})")
            elif code not in kept:
                kept.append(code)
                if scores is not None:
                    kept_scores.append(float(scores[index]))
        final_scores = kept_scores if scores is not None else None
        added: list[str] = []
        if self.manifestations:
            kept, final_scores, added = self.complete(kept, final_scores)
        return Validated(kept, final_scores, dropped, added)

    def complete(
        self, codes: list[str], scores: list[float] | None = None
    ) -> tuple[list[str], list[float] | None, list[str]]:
        """Add each etiology's default manifestation (``manifestations.yaml``) when no code of
        the manifestation's family is listed: right after the etiology, with its score (I.A.13,
        "code first" the etiology). Skipped when the manifestation is not in the code set or
        would be in an Excludes1 conflict with a listed code."""
        from medcode.policy.tables import compact, shipped_tables

        if self._tables is None:
            self._tables = shipped_tables()
        codes, scores = list(codes), (list(scores) if scores is not None else None)
        added: list[str] = []
        for etiology in [c for c in codes if _is_icd(c)]:
            key = compact(etiology)
            for entry in self._tables.manifestations:
                if not entry.etiology.matches(key):
                    continue
                code = entry.manifestation
                if code not in self.codes or any(entry.family.matches(compact(c)) for c in codes):
                    continue
                if _excludes1_partner(code, codes) is not None:
                    continue
                at = codes.index(etiology) + 1
                codes.insert(at, code)
                if scores is not None:
                    scores.insert(at, scores[at - 1])
                added.append(f"{code} (manifestation of {etiology}: {entry.label})")
        return codes, scores, added


def _is_icd(code: str) -> bool:
    """An ICD-10-CM code, not CPT/HCPCS (G0438 is not ICD-10-CM G04.38)."""
    from medcode.terminology import icd10cm

    return icd10cm.looks_like(code) and icd10cm.is_valid(code)


def _excludes1_partner(code: str, kept: list[str]) -> str | None:
    """The first kept ICD-10-CM code in an Excludes1 conflict with ``code``, if any."""
    from medcode.errors import CodeError
    from medcode.policy.facts import excludes1_conflict

    if not _is_icd(code):
        return None
    for other in kept:
        if other == code or not _is_icd(other):
            continue
        try:
            if excludes1_conflict(other, code):
                return other
        except (CodeError, ValueError):
            continue
    return None


def _candidates(coder: Any, texts: list[str]) -> list[list[Candidate]] | None:
    """The retriever's candidates for each note (candidates mode), else None."""
    if coder.mode != "candidates":
        return None
    return coder.retriever.candidates(texts, coder.k)


def _check_mode(mode: str, retriever: Any) -> None:
    if mode not in MODES:
        raise MedcodeError(f"unknown prompt mode {mode!r}: use {' or '.join(MODES)}")
    if mode == "candidates" and retriever is None:
        raise MedcodeError("candidates mode needs a retriever (none was given or found)")


# --------------------------------------------------------------------------- hf


class HFBackend:
    """A loaded transformers model, batched; constrained decoding by default.

    ``max_prompt_tokens`` defaults to the model's context minus ``max_new_tokens``; a longer
    prompt has its note cut (from the end) to fit, with a warning naming the note.
    """

    def __init__(
        self,
        loaded: Any,
        *,
        mode: str = "plain",
        retriever: Any = None,
        k: int = 20,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        max_codes: int = 32,
        max_prompt_tokens: int | None = None,
        constrained: bool = True,
        validator: CodeValidator | None = None,
        warn: Warn | None = None,
    ) -> None:
        _check_mode(mode, retriever)
        self.loaded = loaded
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.mode, self.retriever, self.k = mode, retriever, k
        self.batch_size = max(1, batch_size)
        self.max_new_tokens, self.max_codes = max_new_tokens, max_codes
        self.constrained = constrained
        self.validator = validator or CodeValidator()
        self.warn = warn or _warn
        if max_prompt_tokens is None:
            from medcode.model.head import unwrap

            context = getattr(unwrap(self.model).config, "max_position_embeddings", None) or 8192
            max_prompt_tokens = context - max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self._trie = None

    @property
    def trie(self) -> Any:
        if self._trie is None:
            from medcode.model.constrained import trie_for

            self._trie = trie_for(self.tokenizer, self.validator.codes)
        return self._trie

    def fit_prompt(
        self, note: str, candidates: Sequence[Candidate] | None, note_id: str
    ) -> tuple[str, bool]:
        """The prompt for ``note`` within ``max_prompt_tokens``, the note cut in the middle as
        in training (:func:`medcode.model.prompt.fit_prompt`); and whether it was cut."""
        prompt, ids, truncated = fit_prompt(
            self.tokenizer, note, self.mode, candidates, self.max_prompt_tokens
        )
        if prompt is None:
            raise MedcodeError(
                f"note {note_id}: the prompt without the note already exceeds "
                f"--max-prompt-tokens {self.max_prompt_tokens}"
            )
        if truncated:
            self.warn(
                f"note {note_id}: the prompt exceeds the {self.max_prompt_tokens}-token limit; "
                f"the middle of the note was cut ({len(ids)} tokens kept)"
            )
        return prompt, truncated

    def predict(
        self,
        texts: list[str],
        ids: list[str] | None = None,
        progress: Progress | None = None,
    ) -> list[Prediction]:
        """Predictions in the order of ``texts``. Notes are batched by length (less padding);
        batching does not change a note's prediction."""
        ids = ids or [str(i) for i in range(len(texts))]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        predictions: list[Prediction | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            found = self._predict_batch([texts[i] for i in chosen], [ids[i] for i in chosen])
            for index, prediction in zip(chosen, found, strict=True):
                predictions[index] = prediction
            if progress is not None:
                progress(len(chosen))
        return predictions  # type: ignore[return-value]

    def _predict_batch(self, batch: list[str], batch_ids: list[str]) -> list[Prediction]:
        from medcode.model.constrained import constrained_generate, plain_generate

        candidates = _candidates(self, batch)
        fitted = [
            self.fit_prompt(text, candidates[i] if candidates else None, note_id)
            for i, (text, note_id) in enumerate(zip(batch, batch_ids, strict=True))
        ]
        prompts = [prompt for prompt, _ in fitted]
        if self.constrained:
            decoded = constrained_generate(
                self.model,
                self.tokenizer,
                prompts,
                trie=self.trie,
                max_new_tokens=self.max_new_tokens,
                max_codes=self.max_codes,
            )
        else:
            decoded = plain_generate(
                self.model, self.tokenizer, prompts, max_new_tokens=self.max_new_tokens
            )
        predictions = []
        for (_, truncated), answer in zip(fitted, decoded, strict=True):
            codes, scores, dropped, added = self.validator(answer.codes, answer.scores)
            predictions.append(
                Prediction(codes, scores, truncated, dropped, answer.finished, added)
            )
        return predictions


# --------------------------------------------------------------------------- openai


class OpenAIBackend:
    """An OpenAI-compatible server: ``POST {base_url}/completions`` (or ``/chat/completions``
    with ``chat=True``), greedy, the same prompt as :class:`HFBackend`; ``batch_size`` requests
    in flight at once. Connection errors, 429 and 5xx are retried ``retries`` times with
    exponential backoff (``backoff`` seconds, doubling); then :class:`MedcodeError`."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        mode: str = "plain",
        retriever: Any = None,
        k: int = 20,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        api_key: str | None = None,
        chat: bool = False,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 120.0,
        validator: CodeValidator | None = None,
    ) -> None:
        _check_mode(mode, retriever)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.mode, self.retriever, self.k = mode, retriever, k
        self.batch_size = max(1, batch_size)
        self.max_new_tokens = max_new_tokens
        self.api_key = api_key
        self.chat = chat
        self.retries, self.backoff, self.timeout = max(0, retries), backoff, timeout
        self.validator = validator or CodeValidator()

    @property
    def url(self) -> str:
        return f"{self.base_url}/{'chat/completions' if self.chat else 'completions'}"

    def _payload(self, prompt: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_new_tokens,
            "temperature": 0,
            "stop": ["\n\n"],
        }
        if self.chat:
            payload["messages"] = [{"role": "user", "content": prompt}]
        else:
            payload["prompt"] = prompt
        return payload

    def _post(self, prompt: str) -> dict[str, Any]:
        body = json.dumps(self._payload(prompt)).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                _sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                detail = error.read().decode("utf-8", "replace")[:200].strip()
                problem = f"HTTP {error.code} {detail}".strip()
                if error.code != 429 and error.code < 500:
                    raise MedcodeError(
                        f"{self.url}: the server refused the request ({problem})"
                    ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                problem = str(getattr(error, "reason", error))
            except ValueError as error:
                raise MedcodeError(f"{self.url}: the server sent invalid JSON ({error})") from None
        raise MedcodeError(
            f"cannot get a completion from {self.url} after {self.retries + 1} tries "
            f"({problem}); is the server running?"
        )

    def complete(self, prompt: str) -> tuple[str, bool]:
        """The server's answer text for one prompt, and whether it stopped by itself."""
        data = self._post(prompt)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.chat else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise MedcodeError(
                f"{self.url}: unexpected response (no choices[0]."
                f"{'message.content' if self.chat else 'text'})"
            ) from None
        return str(text or ""), choice.get("finish_reason") != "length"

    def predict(
        self,
        texts: list[str],
        ids: list[str] | None = None,
        progress: Progress | None = None,
    ) -> list[Prediction]:
        predictions: list[Prediction] = []
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                candidates = _candidates(self, batch)
                prompts = [
                    build_prompt(text, self.mode, candidates[i] if candidates else None)
                    for i, text in enumerate(batch)
                ]
                for text, finished in pool.map(self.complete, prompts):
                    codes, _, dropped, added = self.validator(parse_codes(text))
                    predictions.append(Prediction(codes, None, False, dropped, finished, added))
                if progress is not None:
                    progress(len(batch))
        return predictions


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class ModelRecord:
    """What ``medcode train`` writes next to an adapter (``medcode_model.json``)."""

    base: str | None = None
    mode: str = "plain"
    k: int = 20
    retriever: Path | None = None


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
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise ModelError(f"{path}: corrupt model record ({error})") from None
    if mode not in MODES:
        raise ModelError(f"{path}: unknown mode {mode!r} (use {' or '.join(MODES)})")
    return ModelRecord(
        data.get("base"), mode, k, folder / retriever if retriever and mode != "plain" else None
    )


def load_retriever(folder: Path) -> Any:
    """Load the candidates-mode retriever saved in ``folder``."""
    if not folder.exists():
        raise ModelError(f"{folder}: the retriever folder named by {RECORD} is missing")
    try:
        from medcode.model.retriever import Retriever
    except ImportError as error:
        raise MedcodeError(f"candidates mode needs the retriever module ({error})") from None
    return Retriever.load(folder)


def load_coder(
    model_spec: str | Path,
    backend: str = "hf",
    *,
    mode: str | None = None,
    k: int | None = None,
    retriever: Any = None,
    device: str | None = None,
    dtype: str | None = None,
    base_url: str | None = None,
    served_model: str | None = None,
    **options: Any,
) -> Coder:
    """A :class:`Coder` for ``model_spec`` ('embedded', a model folder, an adapter folder; for
    ``openai`` also a served model name). Mode, k and retriever come from the adapter's
    ``medcode_model.json`` unless given; other ``options`` go to the backend."""
    if backend not in BACKENDS:
        raise MedcodeError(f"unknown backend {backend!r}: use {' or '.join(BACKENDS)}")
    record = read_record(model_spec)
    mode = mode or record.mode
    k = k or record.k
    if retriever is None and mode == "candidates" and record.retriever is not None:
        retriever = load_retriever(record.retriever)
    if backend == "openai":
        if not base_url:
            raise MedcodeError(
                "the openai backend needs --base-url (e.g. http://localhost:8000/v1)"
            )
        name = served_model or (
            Path(str(model_spec)).name if Path(str(model_spec)).is_dir() else str(model_spec)
        )
        return OpenAIBackend(base_url, name, mode=mode, retriever=retriever, k=k, **options)
    from medcode.model.loading import load

    loaded = load(model_spec, device=device, dtype=dtype)
    return HFBackend(loaded, mode=mode, retriever=retriever, k=k, **options)
