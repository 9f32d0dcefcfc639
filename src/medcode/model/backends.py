"""Inference backends behind one interface, :class:`Coder`: notes in, validated codes out.

- :class:`HFBackend`: a transformers model (with its adapter) run here, batched, with output
  constrained to valid codes (``constrained.py``) or, for comparison, plain greedy generation;
- :class:`OpenAIBackend`: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, TGI)
  sent the same prompt; its text is parsed and checked against the code set.

Both validate what they return: codes normalised (``e1122`` -> ``E11.22``), kept only when in
the code set (billable ICD-10-CM, CPT/HCPCS table), exact duplicates dropped, the Excludes1
edit applied (the later code of a conflicting pair is dropped), then the list completed by the
policy tables (:mod:`medcode.policy.completion`): codes listed apart that the policy combines
(I10 and I50.22 -> I11.0, I50.22), a combination code's "use additional code" partner (the
CKD stage the note names after E11.22), the hypertensive CKD code agreeing with the listed
stage, an etiology's manifestation (G30.9 -> F02.80). Other edits (sequencing) are left to
the evaluation and review steps.
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
from medcode.model.prompt import (
    MODES,
    Candidate,
    NoteContext,
    build_prompt,
    check_order,
    fit_prompt,
    ordered,
    parse_codes,
)
from medcode.model.record import RECORD, read_record

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
    that the model did not write (a combination code, a partner, a manifestation), with the
    reason (which names the codes it replaced, if any)."""

    codes: list[str]
    scores: list[float] | None = None
    truncated: bool = False
    dropped: list[str] = field(default_factory=list)
    finished: bool = True
    added: list[str] = field(default_factory=list)
    candidates: int | None = None  # candidates listed in the prompt (candidates mode)


Contexts = Sequence[NoteContext | None] | None  # per note, in the order of the texts


class Answer(NamedTuple):
    """A note's raw answer from :meth:`HFBackend.decode`: the decoded codes (a
    :class:`~medcode.model.constrained.Decoded`), the candidates its prompt listed
    (candidates mode) and whether the note was cut to fit."""

    decoded: Any
    candidates: list[Candidate] | None
    truncated: bool


class Coder(Protocol):
    """Anything that codes notes; ``contexts`` gives each note's setting and patient where
    known (a coder whose model was not trained with them leaves them out of its prompts)."""

    def predict(
        self,
        texts: list[str],
        ids: list[str] | None = None,
        progress: Progress | None = None,
        contexts: Contexts = None,
    ) -> list[Prediction]: ...


def _context_of(coder: Any, contexts: Contexts, index: int) -> NoteContext | None:
    return contexts[index] if contexts and coder.context else None


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
    ``policy=False`` leaves out the completion by the policy tables."""

    def __init__(
        self,
        codes: frozenset[str] | None = None,
        *,
        policy: bool = True,
        tables: Any = None,
        lexicon: Any = None,
    ) -> None:
        if codes is None:
            from medcode.model.constrained import code_set

            codes = code_set()
        self.codes = codes
        self.policy = policy
        self._tables = tables
        self._lexicon = lexicon

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

    def __call__(
        self, codes: Sequence[str], scores: Sequence[float] | None = None, text: str | None = None
    ) -> Validated:
        """The kept codes and their scores, order kept, duplicates removed, and the policy's
        edits applied: an ICD-10-CM code that an earlier-listed one excludes (or that excludes
        it) is dropped, noted as ``"CODE (Excludes1 with OTHER)"``; then the list is completed
        (:func:`medcode.policy.completion.complete`), the note ``text`` (when given) naming
        a combination code's partner through the lexicon."""
        from medcode.policy.completion import excludes1_partner

        kept: list[str] = []
        kept_scores: list[float] = []
        dropped: list[str] = []
        for index, raw in enumerate(codes):
            code = self.canonical(raw)
            if code is None:
                dropped.append(str(raw))
                continue
            conflict = excludes1_partner(code, kept)
            if conflict is not None:
                dropped.append(f"{code} (Excludes1 with {conflict})")
            elif code not in kept:
                kept.append(code)
                if scores is not None:
                    kept_scores.append(float(scores[index]))
        final_scores = kept_scores if scores is not None else None
        if not self.policy:
            return Validated(kept, final_scores, dropped, [])
        done = self.complete(kept, final_scores, text)
        # what the completion replaced is said by the code that replaced it (its reason)
        return Validated(done.codes, done.scores, dropped, done.added)

    def complete(
        self, codes: list[str], scores: list[float] | None = None, text: str | None = None
    ):
        """The codes completed by the policy tables (a
        :class:`~medcode.policy.completion.Completed`)."""
        from medcode.policy.completion import complete
        from medcode.policy.tables import shipped_tables

        if self._tables is None:
            self._tables = shipped_tables()
        named = self._namer(text) if text else None
        return complete(codes, scores, self._tables, code_set=self.codes, named=named)

    def _namer(self, text: str):
        """The family member the note names: the one code of the family with the lexicon's
        strongest plain (not negated, uncertain, historical or family) match; none when a
        phrase names several members alike ("chronic kidney disease" names every stage)."""
        found: list[dict] = []

        def named(family) -> str | None:
            from medcode.policy.tables import compact

            if not found:
                if self._lexicon is None:
                    from medcode.model.retriever import shipped_lexicon

                    self._lexicon = shipped_lexicon()
                found.append(self._lexicon.evidence(text))
            members = sorted(
                (
                    (item.weight, code)
                    for code, item in found[0].items()
                    if item.plain
                    and code in self.codes
                    and any(spec.matches(compact(code)) for spec in family)
                ),
                reverse=True,
            )
            if not members or (len(members) > 1 and members[1][0] == members[0][0]):
                return None  # named by no phrase, or by one naming several members alike
            return members[0][1]

        return named


def _candidates(coder: Any, texts: list[str]) -> list[list[Candidate]] | None:
    """The retriever's candidates for each note in the coder's prompt order (candidates
    mode), else None."""
    if coder.mode != "candidates":
        return None
    order = getattr(coder, "candidate_order", "score")
    return [ordered(found, order) for found in coder.retriever.candidates(texts, coder.k)]


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
        eos_min: float = 0.0,
        candidates_only: bool = False,
        candidate_order: str = "score",
        context: bool = True,
        validator: CodeValidator | None = None,
        warn: Warn | None = None,
    ) -> None:
        _check_mode(mode, retriever)
        self.candidate_order = check_order(candidate_order)  # as the model was trained
        # candidates mode, constrained: the answer may list only the prompt's candidates
        self.candidates_only = candidates_only and mode == "candidates"
        self.context = context  # whether prompts state the setting and patient
        self.loaded = loaded
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.mode, self.retriever, self.k = mode, retriever, k
        self.batch_size = max(1, batch_size)
        self.max_new_tokens, self.max_codes = max_new_tokens, max_codes
        self.eos_min = eos_min  # constrained: end the answer only when the end is this likely
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
        self,
        note: str,
        candidates: Sequence[Candidate] | None,
        note_id: str,
        context: NoteContext | None = None,
    ) -> tuple[str, bool]:
        """The prompt for ``note`` within ``max_prompt_tokens``, the note cut in the middle as
        in training (:func:`medcode.model.prompt.fit_prompt`); and whether it was cut."""
        prompt, ids, truncated = fit_prompt(
            self.tokenizer, note, self.mode, candidates, self.max_prompt_tokens, context
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
        contexts: Contexts = None,
    ) -> list[Prediction]:
        """Predictions in the order of ``texts``. Notes are batched by length (less padding);
        batching does not change a note's prediction."""
        ids = ids or [str(i) for i in range(len(texts))]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        predictions: list[Prediction | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            found = self._predict_batch(
                [texts[i] for i in chosen],
                [ids[i] for i in chosen],
                [_context_of(self, contexts, i) for i in chosen],
            )
            for index, prediction in zip(chosen, found, strict=True):
                predictions[index] = prediction
            if progress is not None:
                progress(len(chosen))
        return predictions  # type: ignore[return-value]

    def decode(
        self,
        batch: list[str],
        batch_ids: list[str],
        contexts: list[NoteContext | None],
        eos_min: float | None = None,
    ) -> list[Answer]:
        """One batch's raw answers, before validation: the decoded codes, the candidates the
        prompt listed and whether the note was cut. ``eos_min`` replaces the coder's own
        (constrained decoding)."""
        from medcode.model.constrained import constrained_generate, plain_generate

        candidates = _candidates(self, batch)
        fitted = [
            self.fit_prompt(text, candidates[i] if candidates else None, note_id, contexts[i])
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
                eos_min=self.eos_min if eos_min is None else eos_min,
                tries=self._candidate_tries(candidates) if self.candidates_only else None,
            )
        else:
            decoded = plain_generate(
                self.model, self.tokenizer, prompts, max_new_tokens=self.max_new_tokens
            )
        return [
            Answer(answer, candidates[i] if candidates else None, truncated)
            for i, ((_, truncated), answer) in enumerate(zip(fitted, decoded, strict=True))
        ]

    def _candidate_tries(self, candidates: list[list[Candidate]] | None) -> list[Any] | None:
        """Per note, the trie of its candidates (the valid ones)."""
        from medcode.model.constrained import CodeTrie

        if candidates is None:
            return None
        valid = self.validator.codes
        return [
            CodeTrie([c.code for c in listed if c.code in valid], self.tokenizer)
            for listed in candidates
        ]

    def _predict_batch(
        self, batch: list[str], batch_ids: list[str], contexts: list[NoteContext | None]
    ) -> list[Prediction]:
        return [
            self.prediction(text, answer)
            for text, answer in zip(batch, self.decode(batch, batch_ids, contexts), strict=True)
        ]

    def prediction(self, text: str, answer: Answer) -> Prediction:
        """The validated, policy-completed prediction of a raw answer for note ``text``."""
        decoded = answer.decoded
        codes, scores, dropped, added = self.validator(decoded.codes, decoded.scores, text)
        listed = None if answer.candidates is None else len(answer.candidates)
        return Prediction(codes, scores, answer.truncated, dropped, decoded.finished, added, listed)


# --------------------------------------------------------------------------- openai


class ServerRefused(MedcodeError):
    """An OpenAI-compatible server answered a request with a client error (4xx but 429);
    ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def post_json(
    url: str,
    payload: dict[str, Any] | None,
    *,
    api_key: str | None = None,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 120.0,
    what: str = "a completion",
) -> dict[str, Any]:
    """``POST`` ``payload`` as JSON to ``url`` (``GET`` when it is None) and return the JSON
    answer: the one HTTP client for OpenAI-compatible servers (:class:`OpenAIBackend`, the
    synth rewrite). Connection errors, 429 and 5xx are retried ``retries`` times with
    exponential backoff (``backoff`` seconds, doubling), then :class:`MedcodeError` naming
    the URL; another 4xx is :class:`ServerRefused` at once."""
    body = None if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    method = "GET" if body is None else "POST"
    problem = ""
    for attempt in range(retries + 1):
        if attempt:
            _sleep(backoff * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:200].strip()
            problem = f"HTTP {error.code} {detail}".strip()
            if error.code != 429 and error.code < 500:
                raise ServerRefused(
                    f"{url}: the server refused the request ({problem})", error.code
                ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            problem = str(getattr(error, "reason", error))
        except ValueError as error:
            raise MedcodeError(f"{url}: the server sent invalid JSON ({error})") from None
    raise MedcodeError(
        f"cannot get {what} from {url} after {retries + 1} tries ({problem}); "
        "is the server running?"
    )


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
        context: bool = True,
        candidate_order: str = "score",
        validator: CodeValidator | None = None,
    ) -> None:
        _check_mode(mode, retriever)
        self.candidate_order = check_order(candidate_order)  # as the model was trained
        self.context = context  # whether prompts state the setting and patient
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
        return post_json(
            self.url,
            self._payload(prompt),
            api_key=self.api_key,
            retries=self.retries,
            backoff=self.backoff,
            timeout=self.timeout,
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
        contexts: Contexts = None,
    ) -> list[Prediction]:
        predictions: list[Prediction] = []
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                candidates = _candidates(self, batch)
                prompts = [
                    build_prompt(
                        text,
                        self.mode,
                        candidates[i] if candidates else None,
                        _context_of(self, contexts, start + i),
                    )
                    for i, text in enumerate(batch)
                ]
                answers = pool.map(self.complete, prompts)
                for i, (note, (text, finished)) in enumerate(zip(batch, answers, strict=True)):
                    codes, _, dropped, added = self.validator(parse_codes(text), None, note)
                    listed = len(candidates[i]) if candidates else None
                    predictions.append(
                        Prediction(codes, None, False, dropped, finished, added, listed)
                    )
                if progress is not None:
                    progress(len(batch))
        return predictions


# --------------------------------------------------------------------------- loading


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
    options.setdefault("context", record.context)
    options.setdefault("candidate_order", record.candidate_order)
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

    options.setdefault("candidates_only", record.candidates_only)
    options.setdefault("eos_min", record.eos_min)
    loaded = load(model_spec, device=device, dtype=dtype)
    return HFBackend(loaded, mode=mode, retriever=retriever, k=k, **options)
