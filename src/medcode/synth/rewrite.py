"""Optional LLM rewrite of a corpus under a fact lock (``medcode synth --rewrite-with URL``).

Each note is sent to an OpenAI-compatible server (vLLM, llama.cpp server, Ollama, TGI:
``/chat/completions``, falling back to ``/completions`` when the server has no chat endpoint
for the model) with :data:`PROMPT`: rewrite it in a clinician's voice, keep every fact, add
nothing, keep the phrases that are gold-code evidence word for word. A rewrite is kept only
when :class:`FactLock` finds the facts intact; the checks, in order, and the reason counted
for a note at the first that fails:

1. ``truncated``: the server stopped at its token limit;
2. ``length``: the rewrite is shorter than half or longer than twice the note (characters);
3. ``evidence missing``: a gold code is gone: the lexicon (:func:`shipped_lexicon`) finds it in
   the note but not in the rewrite, or (a code the lexicon does not name: E/M levels, some
   procedures and combinations) one of its evidence texts is not in the rewrite;
4. ``context changed``: the lexicon finds a gold code in the rewrite with other cues: asserted
   (some plain mention, or a combination) in one and not the other, or, when not asserted, other
   negation / uncertainty / history / family flags;
5. ``new condition``: an ICD-10-CM code the lexicon finds not negated in the rewrite that it
   finds only negated, or not at all, in the note ("denies chest pain" -> "chest pain");
6. ``drug missing`` / ``new drug``: the drug names of ``data/synth/drugs.yaml`` named in the
   note and in the rewrite differ;
7. ``new procedure``: a CPT/HCPCS phrase of the lexicon not negated in the rewrite and absent
   from the note;
8. ``number changed``: a number of the note's vital-sign, lab, dose or time lines is not a
   number of the rewrite, or such a line of the rewrite has a number the note does not;
9. ``evidence span lost``: an evidence text of a gold code cannot be located in the rewrite
   (case and runs of white space aside), so its spans cannot be recomputed.

A kept rewrite replaces the note's text, and every code's evidence spans are recomputed on it
(:meth:`FactLock.respan`). Verdicts depend only on the server's answers.
Each verdict is appended to ``rewrites.jsonl`` in the corpus folder (id, model, accepted,
reason, text, and the new spans when accepted): a rerun sends nothing for the notes listed
there, and applying the file to the shards again changes nothing. (Deleting the file makes
the next run send the notes again, the kept rewrites included, as they now stand in the
shards.) Requests run ``batch`` at a time in a thread pool; verdicts are written in corpus order.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from medcode.errors import MedcodeError

CACHE = "rewrites.jsonl"
REASONS = (
    "truncated",
    "length",
    "evidence missing",
    "context changed",
    "new condition",
    "drug missing",
    "new drug",
    "new procedure",
    "number changed",
    "evidence span lost",
)
MIN_RATIO, MAX_RATIO = 0.5, 2.0
TEMPERATURE = 0.7  # some variety of wording; the fact lock decides what is kept
CHAT_MISSING = (400, 404, 405, 501)  # a chat endpoint that is absent or has no chat template
QUALIFIERS_SHOWN = 8  # code-title qualifiers the prompt tells the model not to add

PROMPT = """\
Rewrite the clinical note below the way an experienced clinician would write it in the chart.

Rules:
- Keep every fact: each diagnosis, symptom, medication, dose, procedure, test, vital sign \
and lab value. Numbers stay exactly as written.
- Keep every negation ("denies", "no"), and every statement of past history, family history \
or uncertainty ("possible", "suspected"), as it is.
- Add nothing: no new diagnosis, finding, symptom, medication, test or procedure.
- Keep each of these phrases word for word:
{phrases}
- Do not add coding words such as {qualifiers}.
- Keep the sections in roughly the same order; headings may change. Vary the wording of \
everything else.
- Answer with the rewritten note only, without comments.

<note>
{text}
</note>
"""
COMPLETION_TAIL = "\n<rewritten_note>\n"
COMPLETION_STOP = "</rewritten_note>"

Progress = Callable[[int, int], None]  # (notes just done, of them accepted)

_NUMBER = re.compile(r"(?<![A-Za-z0-9.])\d+(?:\.\d+)?")
_WORDISH = re.compile(r"[A-Za-z0-9]")
# Cues of a dose or time line, besides the lab and vital-sign names and units of labs.yaml.
_EXTRA_CUES = (
    "BP",
    "blood pressure",
    "pulse",
    "temp",
    "vitals",
    "vital signs",
    "mg",
    "mcg",
    "mL",
    "units",
    "puffs",
    "minutes",
    "min",
)
_COMMON_WORDS = {"pain", "t", "k", "f"}  # measure labels too common (or short) to mark a line


# --------------------------------------------------------------------------- prompt


def evidence_texts(row: dict) -> list[str]:
    """The distinct evidence texts of a row's gold codes, in the order they occur."""
    text = row["text"]
    spans = sorted({(s["start"], s["end"]) for c in row["codes"] for s in c["evidence"]})
    return list(dict.fromkeys(text[start:end] for start, end in spans if end > start))


def _qualifiers() -> str:
    """Code-title qualifiers of realism.yaml, quoted, for the prompt."""
    from medcode.synth.realism import load_rules

    names = [
        rule.name.lstrip(", ")
        for rule in load_rules().qualifiers
        if "(" not in rule.name and "..." not in rule.name
    ]
    return ", ".join(f'"{name}"' for name in names[:QUALIFIERS_SHOWN])


def build_prompt(row: dict, qualifiers: str | None = None) -> str:
    """The rewrite prompt of a row (chat form; the completion form adds
    :data:`COMPLETION_TAIL`)."""
    phrases = "\n".join(f'  "{phrase}"' for phrase in evidence_texts(row)) or "  (none)"
    return PROMPT.format(
        phrases=phrases,
        qualifiers=qualifiers if qualifiers is not None else _qualifiers(),
        text=row["text"],
    )


def clean_answer(answer: str) -> str:
    """The note in a server's answer: white space, code fences and note tags stripped."""
    text = answer.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
        text = text.strip()
    for tag in ("<rewritten_note>", "<note>"):
        text = text.removeprefix(tag).strip()
    for tag in (COMPLETION_STOP, "</note>"):
        text = text.removesuffix(tag).strip()
    return text


# --------------------------------------------------------------------------- server


class RewriteClient:
    """An OpenAI-compatible server asked for rewrites: ``/chat/completions`` first; when the
    server answers that with 400, 404, 405 or 501 (no chat endpoint, or a base model without
    a chat template), ``/completions`` from then on. HTTP and retries are
    :func:`medcode.model.backends.post_json`'s (OpenAIBackend's client). ``model=None``: the
    first model the server lists at ``/models`` ("default" if it lists none)."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        temperature: float = TEMPERATURE,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 600.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._model = model
        self.api_key = api_key
        self.temperature = temperature
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.chat: bool | None = None  # None: not known yet

    def _post(self, url: str, payload: dict | None, what: str = "a completion") -> dict:
        from medcode.model.backends import post_json

        return post_json(
            url,
            payload,
            api_key=self.api_key,
            retries=self.retries,
            backoff=self.backoff,
            timeout=self.timeout,
            what=what,
        )

    @property
    def model(self) -> str:
        if self._model is None:
            from medcode.model.backends import ServerRefused

            try:
                data = self._post(f"{self.base_url}/models", None, "the model list")
                listed = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]
            except ServerRefused:
                listed = []
            except AttributeError:
                raise MedcodeError(f"{self.base_url}/models: unexpected answer") from None
            self._model = str(listed[0]) if listed and listed[0] else "default"
        return self._model

    def complete(self, prompt: str, max_tokens: int, seed: int = 0) -> tuple[str, bool]:
        """The server's rewrite for a prompt (cleaned) and whether it stopped by itself."""
        from medcode.model.backends import ServerRefused

        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "seed": seed,
        }
        if self.chat is not False:
            url = f"{self.base_url}/chat/completions"
            try:
                data = self._post(
                    url, {**payload, "messages": [{"role": "user", "content": prompt}]}
                )
                self.chat = True
                return self._answer(url, data, "message")
            except ServerRefused as error:
                if self.chat or error.status not in CHAT_MISSING:
                    raise
                self.chat = False
        url = f"{self.base_url}/completions"
        data = self._post(
            url, {**payload, "prompt": prompt + COMPLETION_TAIL, "stop": [COMPLETION_STOP]}
        )
        return self._answer(url, data, "text")

    @staticmethod
    def _answer(url: str, data: Any, kind: str) -> tuple[str, bool]:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if kind == "message" else choice["text"]
        except (KeyError, IndexError, TypeError):
            where = "message.content" if kind == "message" else "text"
            raise MedcodeError(f"{url}: unexpected response (no choices[0].{where})") from None
        return clean_answer(str(text or "")), choice.get("finish_reason") != "length"


# --------------------------------------------------------------------------- fact lock


@dataclass(frozen=True)
class Verdict:
    """A rewrite judged: kept or not, the first failed check, the text, and (kept) the new
    evidence spans, one list per gold code in the row's order."""

    accepted: bool
    reason: str
    text: str
    evidence: list[list[dict[str, int]]] | None = None


@dataclass(frozen=True)
class _Facts:
    """What the fact lock reads from one text."""

    evidence: dict  # code -> Evidence (the lexicon's)
    conditions: frozenset[str]  # ICD-10-CM codes named not negated
    procedures: frozenset[str]  # CPT/HCPCS codes named not negated
    drugs: frozenset[str]
    numbers: frozenset[str]  # every number
    measured: frozenset[str]  # numbers of vital-sign, lab, dose and time lines


def locate(phrase: str, text: str) -> list[tuple[int, int]]:
    """Every occurrence of ``phrase`` in ``text``, case and runs of white space aside, not
    inside a longer word."""
    body = r"\s+".join(re.escape(part) for part in phrase.split())
    if not body:
        return []
    if _WORDISH.match(phrase.strip()[0]):
        body = r"(?<![A-Za-z0-9])" + body
    if _WORDISH.match(phrase.strip()[-1]):
        body += r"(?![A-Za-z0-9])"
    return [(m.start(), m.end()) for m in re.finditer(body, text, re.IGNORECASE)]


def _signature(item) -> tuple[bool, int]:
    """How a text states a code: asserted (a plain mention, or a combination of asserted
    codes), else the union of its negation / uncertainty / history / family flags."""
    from medcode.model.retriever import COMBINATION, FAMILY, HISTORY, NEGATED, UNCERTAIN

    asserted = bool(item.plain or item.derived & COMBINATION)
    flags = 0 if asserted else item.context & (NEGATED | UNCERTAIN | HISTORY | FAMILY)
    return asserted, flags


class FactLock:
    """Judges a rewrite against its note (see the module docstring for the checks)."""

    def __init__(self, lexicon=None, drugs=None) -> None:
        self._lexicon = lexicon
        self._drugs = drugs

    @cached_property
    def lexicon(self):
        from medcode.model.retriever import shipped_lexicon

        return self._lexicon if self._lexicon is not None else shipped_lexicon()

    @cached_property
    def drugs(self):
        from medcode.synth.clinical import load_drugs

        return self._drugs if self._drugs is not None else load_drugs()

    @cached_property
    def _measure_line(self) -> re.Pattern:
        from medcode.synth.catalog import load_measures

        labs, vitals = load_measures()
        cues = set(_EXTRA_CUES)
        for measure in [*labs.values(), *vitals.values()]:
            cues.update((measure.name, measure.short, measure.unit))
        parts = []
        for cue in sorted(cues, key=len, reverse=True):
            if len(cue) < 2 or cue.lower() in _COMMON_WORDS:
                continue
            part = re.escape(cue)
            if _WORDISH.match(cue[0]):
                part = r"(?<![A-Za-z])" + part
            if _WORDISH.match(cue[-1]):
                part += r"(?![A-Za-z])"
            parts.append(part)
        return re.compile("|".join(parts), re.IGNORECASE)

    def warm(self) -> None:
        """Load the lexicon, drug names and measures now (the lexicon takes about 10 s)."""
        _ = self.lexicon, self.drugs, self._measure_line

    def facts(self, text: str) -> _Facts:
        from medcode.model.retriever import MEDICATION, NEGATED, PROCEDURE

        matches = self.lexicon.matches(text)
        asserted = [m for m in matches if not m.context & NEGATED]
        measured = {
            number
            for line in text.splitlines()
            if _NUMBER.search(line) and self._measure_line.search(line)
            for number in _NUMBER.findall(line)
        }
        return _Facts(
            evidence=self.lexicon.evidence(text),
            conditions=frozenset(
                code
                for m in asserted
                if m.source not in (MEDICATION, PROCEDURE)
                for code in m.codes
                if code[:1].isalpha()
            ),
            procedures=frozenset(c for m in asserted if m.source == PROCEDURE for c in m.codes),
            drugs=frozenset(match.name for match in self.drugs.match(text)),
            numbers=frozenset(_NUMBER.findall(text)),
            measured=frozenset(measured),
        )

    def check(self, row: dict, rewrite: str, finished: bool = True) -> Verdict:
        """The verdict on ``rewrite`` of ``row`` (a corpus row: text, codes with evidence)."""
        reason = self._first_failure(row, rewrite, finished)
        if reason is not None:
            return Verdict(False, reason, rewrite)
        evidence = self.respan(row, rewrite)
        if evidence is None:
            return Verdict(False, "evidence span lost", rewrite)
        return Verdict(True, "", rewrite, evidence)

    def _first_failure(self, row: dict, rewrite: str, finished: bool) -> str | None:
        original = row["text"]
        if not finished:
            return "truncated"
        if not MIN_RATIO * len(original) <= len(rewrite) <= MAX_RATIO * len(original):
            return "length"
        before, after = self.facts(original), self.facts(rewrite)
        for code in row["codes"]:
            found = before.evidence.get(code["code"])
            if found is None:
                texts = {original[s["start"] : s["end"]] for s in code["evidence"]}
                if any(not locate(text, rewrite) for text in texts if text.strip()):
                    return "evidence missing"
                continue
            again = after.evidence.get(code["code"])
            if again is None:
                return "evidence missing"
            if _signature(again) != _signature(found):
                return "context changed"
        if after.conditions - before.conditions:
            return "new condition"
        if before.drugs - after.drugs:
            return "drug missing"
        if after.drugs - before.drugs:
            return "new drug"
        if after.procedures - before.procedures:
            return "new procedure"
        if before.measured - after.numbers or after.measured - before.numbers:
            return "number changed"
        return None

    @staticmethod
    def respan(row: dict, rewrite: str) -> list[list[dict[str, int]]] | None:
        """Each gold code's evidence spans in ``rewrite``; None when an evidence text cannot be
        located there. A text found as often in the rewrite as in the note keeps its marked
        occurrences (the j-th occurrence in the note is the j-th in the rewrite); otherwise
        every occurrence of it in the rewrite is the code's evidence."""
        original = row["text"]
        result = []
        for code in row["codes"]:
            marked: dict[str, set[tuple[int, int]]] = {}
            for span in code["evidence"]:
                start, end = span["start"], span["end"]
                marked.setdefault(original[start:end], set()).add((start, end))
            spans: set[tuple[int, int]] = set()
            for text, places in marked.items():
                found = locate(text, rewrite)
                if not found:
                    return None
                before = locate(text, original)
                if len(before) == len(found) and places <= set(before):
                    spans.update(found[j] for j, place in enumerate(before) if place in places)
                else:
                    spans.update(found)
            result.append([{"start": start, "end": end} for start, end in sorted(spans)])
        return result


# --------------------------------------------------------------------------- the corpus


def note_seed(note_id: str) -> int:
    """The sampling seed sent with a note's request (servers that honour it repeat answers)."""
    return zlib.crc32(note_id.encode()) & 0x7FFFFFFF


def max_tokens(text: str) -> int:
    """Tokens allowed for a rewrite: room for twice the note (about 4 characters a token)."""
    return len(text) // 2 + 64


class Cache:
    """``rewrites.jsonl``: one verdict per line, appended as notes are done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict] = {}
        if path.exists():
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a killed run: that note is redone
                    if isinstance(record, dict) and "id" in record:
                        self.records[record["id"]] = record

    def models(self) -> set[str]:
        return {str(record.get("model")) for record in self.records.values()}

    def append(self, records: Iterable[dict]) -> None:
        with self.path.open("a+", encoding="utf-8") as handle:
            handle.seek(0, 2)
            if handle.tell():
                handle.seek(handle.tell() - 1)
                if handle.read(1) != "\n":
                    handle.write("\n")
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                self.records[record["id"]] = record


def _read_shard(out: Path, shard: int, shards: int, fmt: str, columns=None) -> dict[str, list]:
    from medcode.synth.writer import SPLITS, shard_name

    rows: dict[str, list] = {}
    for split in SPLITS:
        path = out / "data" / shard_name(split, shard, shards, fmt)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            rows[split] = pq.read_table(path, columns=columns).to_pylist()
        else:
            with path.open(encoding="utf-8") as handle:
                rows[split] = [json.loads(line) for line in handle if line.strip()]
    return rows


def apply(row: dict, record: dict) -> bool:
    """Put a kept rewrite (text and spans) into its row; whether the row changed."""
    if not record.get("accepted"):
        return False
    evidence = record.get("evidence") or []
    if len(evidence) != len(row["codes"]):
        raise MedcodeError(
            f"{CACHE}: note {row['id']} has {len(row['codes'])} codes in the corpus but "
            f"{len(evidence)} in the rewrite file, made for another corpus; choose a new --out"
        )
    if row["text"] == record["text"] and all(
        [(s["start"], s["end"]) for s in code["evidence"]]
        == [(s["start"], s["end"]) for s in spans]
        for code, spans in zip(row["codes"], evidence, strict=True)
    ):
        return False
    row["text"] = record["text"]
    for code, spans in zip(row["codes"], evidence, strict=True):
        code["evidence"] = [{"start": int(s["start"]), "end": int(s["end"])} for s in spans]
    return True


def summarise(cache: Cache, url: str, model: str | None) -> dict[str, Any]:
    """Acceptance rate and rejection reasons of every note in the rewrite file."""
    records = list(cache.records.values())
    accepted = sum(1 for r in records if r.get("accepted"))
    reasons = Counter(r.get("reason", "") for r in records if not r.get("accepted"))
    return {
        "url": url,
        "model": model,
        "notes": len(records),
        "accepted": accepted,
        "acceptance_rate": round(accepted / len(records), 4) if records else 0.0,
        "rejected": {reason: reasons[reason] for reason in REASONS if reasons[reason]},
    }


def record_summary(out: Path, summary: dict[str, Any]) -> None:
    """Add the rewrite summary to ``synth_config.json`` (key ``rewrite``)."""
    path = out / "synth_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["rewrite"] = summary
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(config, indent=2, sort_keys=True))
    temporary.replace(path)


def rewrite_corpus(
    out: Path,
    url: str,
    *,
    model: str | None = None,
    batch: int = 8,
    shards: int,
    only: Iterable[int] | None = None,
    fmt: str = "parquet",
    client: RewriteClient | None = None,
    lock: FactLock | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Rewrite the notes of a corpus's complete shards (of ``only``, default all), keep the
    rewrites the fact lock accepts, write the shards back, and record the summary in
    ``synth_config.json``; returns the summary. Notes already in ``rewrites.jsonl`` are not
    sent again."""
    from medcode.synth.writer import SPLITS, marker_path, write_shard

    if batch < 1:
        raise MedcodeError("--rewrite-batch must be at least 1")
    client = client or RewriteClient(url, model)
    lock = lock or FactLock()
    cache = Cache(out / CACHE)
    wanted = [s for s in (range(shards) if only is None else only)]
    ready = [s for s in wanted if marker_path(out, s, shards).exists()]
    ids = {
        s: [
            row["id"] for split in SPLITS for row in _read_shard(out, s, shards, fmt, ["id"])[split]
        ]
        for s in ready
    }
    pending = sum(1 for s in ready for note in ids[s] if note not in cache.records)
    used = model or next(iter(sorted(cache.models())), None)
    if pending:
        used = client.model  # asks the server when no --rewrite-model was given
        others = cache.models() - {used}
        if others:
            raise MedcodeError(
                f"{out / CACHE} holds rewrites by model {', '.join(sorted(others))}, not "
                f"{used}: choose a new --out (or --rewrite-model {sorted(others)[0]})"
            )
        lock.warm()
    qualifiers = _qualifiers()

    def work(row: dict) -> dict:
        prompt = build_prompt(row, qualifiers)
        text, finished = client.complete(prompt, max_tokens(row["text"]), note_seed(row["id"]))
        verdict = lock.check(row, text, finished)
        return {
            "id": row["id"],
            "model": used,
            "accepted": verdict.accepted,
            "reason": verdict.reason,
            "text": verdict.text,
            "evidence": verdict.evidence,
        }

    pool = ThreadPoolExecutor(max_workers=batch)
    try:
        for shard in ready:
            rows_by_split = _read_shard(out, shard, shards, fmt)
            rows = [row for split in SPLITS for row in rows_by_split[split]]
            todo = [row for row in rows if row["id"] not in cache.records]
            if progress is not None and len(rows) > len(todo):
                done = [cache.records[row["id"]] for row in rows if row["id"] in cache.records]
                progress(len(done), sum(1 for r in done if r.get("accepted")))
            futures = [pool.submit(work, row) for row in todo]
            for future in futures:
                record = future.result()
                cache.append([record])
                if progress is not None:
                    progress(1, int(record["accepted"]))
            changed = False
            for row in rows:
                record = cache.records.get(row["id"])
                if record is not None and apply(row, record):
                    changed = True
            if changed:
                write_shard(out, shard, shards, rows_by_split, fmt)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    summary = summarise(cache, client.base_url, used)
    record_summary(out, summary)
    return summary
