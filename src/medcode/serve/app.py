"""The coding service: ``create_app(coder)`` -> a FastAPI application.

Endpoints: ``POST /v1/code`` (one note, JSON or a FHIR DocumentReference; ``?format=fhir`` for
a FHIR Bundle), ``POST /v1/code:batch``, ``POST /v1/fhir`` (reviewed codes -> Bundle),
``GET /v1/codes/{code}``, ``GET /healthz``, ``GET /readyz``, ``GET /review`` (the review page),
``GET /openapi.json`` and ``/docs``.

How it keeps clinical text safe and the service up:

- note text is never logged: one log line per request with its id, route, status and time;
  errors are logged by type, never by message (a message could quote the input);
- optional API key (``X-API-Key`` or ``Authorization: Bearer``), compared in constant time;
- a body size limit (413 before the body is read when ``Content-Length`` says so), a
  per-request timeout (504) and a bounded queue (503 when full);
- the coder runs in one worker thread that batches the notes waiting for it (an LLM codes a
  batch at the cost of about one note), and only codes in the code sets leave the service:
  the LLM's decoding is constrained to valid codes, and every code is checked again here and
  described from the terminology, never from model output;
- every bad input is a 4xx with a JSON body ``{"error": {status, type, message, details}}``
  whose message says what to fix.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from medcode import __version__
from medcode.serve import fhir
from medcode.serve.coders import ServedCoder
from medcode.serve.schemas import (
    MAX_BATCH_NOTES,
    BatchRequest,
    BatchResponse,
    CodeRequest,
    CodeResponse,
    ErrorResponse,
    ExportRequest,
    FhirDocumentReference,
    Health,
    Setting,
)

log = logging.getLogger("medcode.serve")
DEFAULT_MAX_BYTES = 1_000_000
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_QUEUE = 1024
DRAIN_LIMIT = 64_000_000  # an oversized body up to this is read and dropped before the 413
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/review", "/openapi.json", "/docs"})
JSON = "application/json"
FHIR_JSON = "application/fhir+json"
EM_SETTINGS = {
    "outpatient": {"office", "preventive", "annual_wellness", "care_management"},
    "inpatient": {"hospital"},
    "emergency": {"emergency"},
}
SEX_CODES = {"female": "F", "male": "M"}


class ApiError(Exception):
    """An error answered as ``{"error": ...}`` with ``status``; ``message`` says what to fix."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        details: Sequence[tuple[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.details = list(details)
        self.headers = headers or {}


def error_body(status: int, kind: str, message: str, details=(), request_id: str = "") -> bytes:
    return json.dumps(
        {
            "error": {
                "status": status,
                "type": kind,
                "message": message,
                "details": [{"field": f, "problem": p} for f, p in details],
            },
            "request_id": request_id,
        }
    ).encode()


def _request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


def _error_response(request: Request, error: ApiError) -> Response:
    return Response(
        error_body(error.status, error.kind, error.message, error.details, _request_id(request)),
        status_code=error.status,
        media_type=JSON,
        headers=error.headers,
    )


# ----------------------------------------------------------------------------- the guard


class Guard:
    """Outermost ASGI layer: request id, API key, early size check, one log line per request
    (ids and timings only), and no exception text ever reaching a log."""

    def __init__(self, app: Any, *, api_key: str | None, max_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        status = [0]

        async def tagged_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                if refusal.status == 413:
                    await _drain(receive)
                await _send_error(tagged_send, refusal, request_id)
            else:
                await self.app(scope, receive, tagged_send)
        except Exception as error:  # logged by type and place only: messages may quote input
            log.error(
                "request_id=%s unhandled %s at %s",
                request_id,
                type(error).__name__,
                " < ".join(
                    f"{frame.name}:{frame.lineno}"
                    for frame in reversed(traceback.extract_tb(error.__traceback__))
                )[:500],
            )
            if status[0] == 0:
                await _send_error(
                    tagged_send,
                    ApiError(500, "internal_error", "internal error; the request id is logged"),
                    request_id,
                )
        finally:
            route = scope.get("route")
            log.info(
                "request_id=%s method=%s route=%s status=%d ms=%.1f",
                request_id,
                scope.get("method", ""),
                getattr(route, "path", "-"),
                status[0],
                (time.perf_counter() - started) * 1000,
            )

    def _refusal(self, scope: dict) -> ApiError | None:
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and scope.get("path") not in OPEN_PATHS:
            given = headers.get(b"x-api-key")
            if given is None:
                bearer = headers.get(b"authorization", b"")
                if bearer[:7].lower() == b"bearer ":
                    given = bearer[7:].strip()
            if given is None:
                return ApiError(
                    401,
                    "unauthorized",
                    "missing API key: send it in the X-API-Key header "
                    "(or as Authorization: Bearer <key>)",
                    headers={"www-authenticate": 'Bearer realm="medcode"'},
                )
            if not hmac.compare_digest(given, self.api_key):
                return ApiError(
                    401,
                    "unauthorized",
                    "wrong API key: send the key the service was started with (MEDCODE_API_KEY)",
                    headers={"www-authenticate": 'Bearer realm="medcode"'},
                )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return ApiError(400, "bad_request", "Content-Length is not a number")
            if size > self.max_bytes:
                return _too_large(self.max_bytes, size)
        return None


def _too_large(limit: int, size: int | None = None) -> ApiError:
    got = f" ({size:,} bytes)" if size is not None else ""
    return ApiError(
        413,
        "too_large",
        f"the request body is too large{got}: the limit is {limit:,} bytes; "
        "send one note per request or fewer notes per batch",
    )


async def _drain(receive: Callable) -> None:
    """Read and drop a request body (up to DRAIN_LIMIT) so the client sees the answer."""
    read = 0
    while read <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _send_error(send: Callable, error: ApiError, request_id: str) -> None:
    body = error_body(error.status, error.kind, error.message, error.details, request_id)
    headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- code facts


@dataclass(frozen=True)
class CodeFacts:
    """What the service says about a code, and what its edits need."""

    public: dict[str, Any]
    em_setting: str | None = None
    age_range: tuple[int, int | None] | None = None


@lru_cache(maxsize=100_000)
def code_facts(raw: str) -> CodeFacts | None:
    """Facts on a code from the terminology, or None when it is in no code set (billable
    ICD-10-CM, the CPT/HCPCS table)."""
    from medcode.eval.formats import normalize_code
    from medcode.records import System
    from medcode.terminology import cpt, hcc, icd10cm
    from medcode.terminology.categories import category_names

    code, system = normalize_code(raw)
    if system == System.ICD10CM.value:
        if not icd10cm.is_billable(code):  # the code set: billable ICD-10-CM codes
            return None
        public = {
            "code": code,
            "system": system,
            "description": icd10cm.description(code),
            "billable": icd10cm.is_billable(code),
            "categories": category_names(code, System.ICD10CM),
            "hcc": [
                {"number": h.number, "label": h.label, "chronic": h.chronic} for h in hcc.hccs(code)
            ],
        }
        return CodeFacts(public)
    table = cpt.procedure_table()
    if system == "invalid" or code not in table:
        return None
    entry = table[code]
    public = {
        "code": entry.code,
        "system": entry.system.value,
        "description": entry.description,
        "billable": True,
        "categories": category_names(entry.code, entry.system),
        "hcc": [],
    }
    em = entry.em
    return CodeFacts(
        public, em.setting.value if em else None, em.age_range if em and em.age_range else None
    )


def code_warnings(code: str, facts: CodeFacts, request: CodeRequest) -> list[str]:
    """Age, sex and setting edits a suggested code fails for this request."""
    found: list[str] = []
    patient = request.patient
    if facts.em_setting and facts.em_setting not in EM_SETTINGS[request.setting]:
        found.append(f"{code} is a {facts.em_setting} E/M code; the setting is {request.setting}")
    if patient is None or (patient.age is None and patient.sex not in SEX_CODES):
        return found
    if facts.age_range and patient.age is not None:
        low, high = facts.age_range
        if patient.age < low or (high is not None and patient.age > high):
            found.append(f"{code} is for ages {low}-{high or ''}; the patient is {patient.age}")
    if facts.public["system"] == "ICD-10-CM":
        from medcode.policy.tables import shipped_tables

        sex_edits, age_edits = shipped_tables().edits_for(code)
        sex = SEX_CODES.get(patient.sex or "")
        for edit in sex_edits:
            if sex is not None and edit.sex != sex:
                found.append(f"{code} ({edit.label}) is for {edit.sex} patients")
        for edit in age_edits:
            low = edit.min_age if edit.min_age is not None else 0
            high = edit.max_age if edit.max_age is not None else 200
            if patient.age is not None and not low <= patient.age <= high:
                found.append(f"{code} ({edit.label}) is for ages {low}-{high}")
    return found


# ----------------------------------------------------------------------------- the batcher


@dataclass
class Job:
    request: CodeRequest
    request_id: str
    deadline: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future = field(repr=False)


def _context(request: CodeRequest) -> Any:
    """The prompt's setting and patient for a request (validated by its schema already)."""
    from medcode.model.prompt import NoteContext

    patient = request.patient.model_dump() if request.patient else None
    return NoteContext.of(request.setting, patient)


def _settle(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.done():  # timed out meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class Batcher:
    """One worker thread that codes the notes waiting for it, up to ``max_batch`` at a time
    (the coder is called from this thread only), after waiting up to ``wait_s`` for a batch to
    fill (worth it for an LLM, whose batch costs about one note). Jobs whose request timed out
    are skipped."""

    def __init__(
        self,
        work: Callable[[list[Job]], list[dict]],
        max_batch: int,
        max_queue: int,
        wait_s: float = 0.0,
    ) -> None:
        self.work = work
        self.max_batch = max(1, max_batch)
        self.max_queue = max_queue
        self.wait_s = wait_s
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="medcode-coder", daemon=True)
        self.thread.start()

    def submit(self, jobs: list[Job]) -> None:
        if self.queue.qsize() + len(jobs) > self.max_queue:
            raise ApiError(
                503,
                "busy",
                f"{self.max_queue} notes are waiting: retry in a moment",
                headers={"retry-after": "1"},
            )
        for job in jobs:
            self.queue.put(job)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            jobs = [job]
            until = time.monotonic() + self.wait_s
            while len(jobs) < self.max_batch:
                try:
                    left = until - time.monotonic()
                    more = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.queue.put(None)
                    break
                jobs.append(more)
            now = time.monotonic()
            live = [j for j in jobs if not j.future.done() and j.deadline > now]
            if not live:
                continue
            try:
                started = time.perf_counter()
                results = self.work(live)
                errors: list[BaseException | None] = [None] * len(live)
                log.debug(
                    "batch notes=%d ms=%.1f", len(live), (time.perf_counter() - started) * 1000
                )
            except Exception as error:  # answered per job; logged by type only
                log.error(
                    "request_ids=%s coder failed: %s",
                    ",".join(j.request_id for j in live),
                    type(error).__name__,
                )
                results = [None] * len(live)
                errors = [_coder_error(error)] * len(live)
            for j, result, error in zip(live, results, errors, strict=True):
                j.loop.call_soon_threadsafe(_settle, j.future, result, error)


def _coder_error(error: Exception) -> ApiError:
    from medcode.errors import MedcodeError

    if isinstance(error, MedcodeError):
        return ApiError(502, "model_unavailable", "the model backend failed; try again later")
    return ApiError(500, "internal_error", "the coder failed; the request id is logged")


# ----------------------------------------------------------------------------- the service


class Service:
    """The loaded coder, the evidence finder and their worker; ready once both are loaded."""

    def __init__(
        self,
        coder: ServedCoder | None,
        loader: Callable[[], ServedCoder] | None,
        lexicon: Any,
        *,
        timeout_s: float,
        max_queue: int,
    ) -> None:
        self.coder = coder
        self.loader = loader
        self.lexicon = lexicon
        self.finder: Any = None
        self.batcher: Batcher | None = None
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self.state: Literal["ok", "loading", "failed"] = "loading"
        self.detail: str | None = None

    # -- loading

    def load(self) -> None:
        """Load the coder and the lexicon, warm the terminology; then ready."""
        started = time.perf_counter()
        try:
            from medcode.serve.evidence import EvidenceFinder

            if self.coder is None:
                assert self.loader is not None
                self.coder = self.loader()
            self.finder = EvidenceFinder(self.lexicon)
            code_facts("E11.9")  # loads the tabular, the CPT table, categories, HCCs
            code_facts("99213")
            self.batcher = Batcher(
                self.code_jobs,
                self.coder.max_batch,
                self.max_queue,
                getattr(self.coder, "batch_wait_s", 0.0),
            )
            self.state = "ok"
            log.info("ready: model=%s in %.1f s", self.coder.name, time.perf_counter() - started)
        except Exception as error:
            self.state, self.detail = "failed", f"{type(error).__name__}: {error}"
            log.error("loading failed: %s", type(error).__name__)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    def require_ready(self) -> None:
        if self.state == "loading":
            raise ApiError(
                503,
                "loading",
                "the model is loading: retry in a few seconds (GET /readyz says when ready)",
                headers={"retry-after": "5"},
            )
        if self.state == "failed":
            raise ApiError(503, "not_ready", "the model failed to load; see the service's log")

    # -- coding (worker thread)

    def code_jobs(self, jobs: list[Job]) -> list[dict]:
        assert self.coder is not None
        texts = [j.request.text for j in jobs]
        contexts = [_context(j.request) for j in jobs]
        predictions = self.coder.predict(texts, [j.request_id for j in jobs], contexts)
        return [
            self._result(job, prediction) for job, prediction in zip(jobs, predictions, strict=True)
        ]

    def _result(self, job: Job, prediction: Any) -> dict:
        coder = self.coder
        scores = prediction.scores or [None] * len(prediction.codes)
        kept: list[tuple[str, CodeFacts, float | None]] = []
        invalid = len(prediction.dropped)
        for raw, score in zip(prediction.codes, scores, strict=True):
            facts = code_facts(str(raw))
            if facts is None or any(facts.public["code"] == k for k, _, _ in kept):
                invalid += facts is None
                continue
            kept.append((facts.public["code"], facts, score))
        spans = self.finder.find(job.request.text, [code for code, _, _ in kept])
        added = {reason.split(" ", 1)[0]: reason for reason in getattr(prediction, "added", [])}
        codes = []
        for code, facts, score in kept:
            probability = coder.confidence and score is not None
            codes.append(
                {
                    **facts.public,
                    "confidence": round(float(score), 4) if probability else None,
                    "score": None if probability or score is None else round(float(score), 4),
                    "evidence": [span.to_dict() for span in spans.get(code, ())],
                    "warnings": code_warnings(code, facts, job.request)
                    + ([f"added by the policy tables: {added[code]}"] if code in added else []),
                }
            )
        return {
            "id": job.request.id or job.request_id,
            "model": coder.name,
            "codes": codes,
            "truncated": bool(prediction.truncated),
            "invalid_dropped": invalid,
            "elapsed_ms": 0.0,
        }

    # -- coding (event loop)

    async def code(self, requests: list[CodeRequest], request_id: str) -> list[dict]:
        self.require_ready()
        assert self.batcher is not None
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.timeout_s
        jobs = [
            Job(
                r,
                request_id if len(requests) == 1 else f"{request_id}.{i}",
                deadline,
                loop,
                loop.create_future(),
            )
            for i, r in enumerate(requests)
        ]
        self.batcher.submit(jobs)
        try:
            async with asyncio.timeout(self.timeout_s):
                results = await asyncio.gather(*(j.future for j in jobs))
        except TimeoutError:
            for job in jobs:
                job.future.cancel()
            raise ApiError(
                504,
                "timeout",
                f"coding took longer than the {self.timeout_s:g} s limit: send fewer or "
                "shorter notes, or retry when the service is less busy",
            ) from None
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        for result in results:
            result["elapsed_ms"] = elapsed
        return results


# ----------------------------------------------------------------------------- requests


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request's JSON body, or an :class:`ApiError` that says what is wrong with it."""
    content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if content_type not in (JSON, FHIR_JSON) and not content_type.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {content_type!r} is not accepted: send application/json "
            "(or application/fhir+json for a DocumentReference)",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise ApiError(
            400, "empty_body", 'the request body is empty: send a JSON object like {"text": "..."}'
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(
            400,
            "invalid_encoding",
            f"the body is not valid UTF-8 (bad byte at offset {error.start}): encode the "
            "note as UTF-8",
        ) from None
    try:
        return json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as error:
        raise ApiError(
            400,
            "malformed_json",
            f"the body is not valid JSON ({error.msg} at line {error.lineno}, column "
            f"{error.colno}): send a JSON object",
        ) from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the JSON is nested too deeply") from None


def parse(model: type[BaseModel], data: Any) -> Any:
    """``data`` as ``model``, or a 422 listing each problem with its field."""
    if not isinstance(data, dict):
        raise ApiError(
            422,
            "invalid_request",
            f"expected a JSON object, got {type(data).__name__}: send "
            + ('{"text": "..."}' if model is CodeRequest else "a JSON object"),
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = error.errors(include_input=False, include_url=False)
        raise validation_error(problems, model) from None


def validation_error(errors: Sequence[dict], model: type[BaseModel] | None = None) -> ApiError:
    details = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        kind = e.get("type", "")
        if kind == "extra_forbidden":
            problem = "unknown field: remove it"
            if model is not None and len(e.get("loc", ())) == 1:
                problem += f" (the fields are {', '.join(model.model_fields)})"
        elif kind == "missing":
            problem = "required field is missing"
        else:
            problem = str(e.get("msg", "invalid"))
        details.append((where, problem))
    message = "; ".join(f"{f}: {p}" for f, p in details[:3])
    if len(details) > 3:
        message += f"; and {len(details) - 3} more (see details)"
    return ApiError(422, "invalid_request", message, details)


def _document_request(data: dict, setting: str | None) -> CodeRequest:
    try:
        text, resource_id = fhir.note_from_document_reference(data)
    except fhir.FhirInputError as error:
        raise ApiError(
            422,
            "invalid_fhir",
            "the DocumentReference is not usable: "
            + "; ".join(f"{f}: {p}" for f, p in error.problems[:3]),
            error.problems,
        ) from None
    fields: dict[str, Any] = {"text": text, "setting": setting or "outpatient"}
    if resource_id:
        fields["id"] = resource_id
    return parse(CodeRequest, fields)


def _respond(results: list[dict], requests: list[CodeRequest], fmt: str, batch: bool) -> Response:
    if fmt == "fhir":
        body = fhir.bundle(results, [r.model_dump() for r in requests])
        return Response(json.dumps(body), media_type=FHIR_JSON)
    payload: Any = {"results": results} if batch else results[0]
    return Response(json.dumps(payload), media_type=JSON)


# ----------------------------------------------------------------------------- the app


def _body_doc(*refs: str) -> dict:
    schema = (
        {"$ref": f"#/components/schemas/{refs[0]}"}
        if len(refs) == 1
        else {"oneOf": [{"$ref": f"#/components/schemas/{r}"} for r in refs]}
    )
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {"schema": schema},
                **({FHIR_JSON: {"schema": schema}} if len(refs) > 1 else {}),
            },
        }
    }


def _errors(*statuses: int) -> dict:
    return {status: {"model": ErrorResponse, "description": "error"} for status in statuses}


def _ok(model: type[BaseModel], fhir_too: bool = False) -> dict:
    content: dict[str, Any] = {JSON: {}}
    if fhir_too:
        content[FHIR_JSON] = {"schema": {"type": "object", "description": "A FHIR R4 Bundle"}}
    return {200: {"model": model, "content": content, "description": "coded"}}


def create_app(
    coder: ServedCoder | None = None,
    *,
    loader: Callable[[], ServedCoder] | None = None,
    lexicon: Any = None,
    api_key: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_queue: int = DEFAULT_MAX_QUEUE,
) -> Any:
    """The service over ``coder`` (or the coder ``loader`` returns, loaded in the background
    while ``/readyz`` says "loading"). ``lexicon`` defaults to the shipped one (built at
    start, about 10 s). Returns an ASGI app (FastAPI wrapped in the :class:`Guard`); the
    FastAPI object is its ``.app``."""
    if coder is None and loader is None:
        raise ValueError("create_app needs a coder or a loader")
    service = Service(coder, loader, lexicon, timeout_s=timeout_s, max_queue=max_queue)
    page = (resources.files("medcode") / "data" / "review" / "index.html").read_text("utf-8")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        thread = threading.Thread(target=service.load, name="medcode-load", daemon=True)
        thread.start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="medcode coding service",
        version=__version__,
        description="ICD-10-CM and CPT/HCPCS codes for clinical notes, with evidence; "
        "FHIR R4 in and out. Note text is never logged.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.service = service

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> Response:
        return _error_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        return _error_response(request, validation_error(error.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        messages = {
            404: "no such endpoint: see /docs for the API",
            405: "method not allowed for this endpoint: see /docs",
        }
        message = messages.get(error.status_code, str(error.detail))
        return _error_response(
            request, ApiError(error.status_code, "http_error", message, headers=error.headers)
        )

    @app.post(
        "/v1/code",
        summary="Code one note",
        description="Codes one note: a JSON request or a FHIR R4 DocumentReference (the note "
        "as a base64 text attachment; `setting` query parameter for its setting). "
        "`?format=fhir` answers with a FHIR Bundle (Patient, Claim, Conditions).",
        responses={**_ok(CodeResponse, True), **_errors(400, 401, 413, 415, 422, 503, 504)},
        openapi_extra=_body_doc("CodeRequest", "FhirDocumentReference"),
        response_model=None,
    )
    async def code_note(
        request: Request,
        format: Annotated[Literal["json", "fhir"], Query(description="json or fhir")] = "json",
        setting: Annotated[
            Setting | None,
            Query(description="The setting when the body gives none (a DocumentReference)."),
        ] = None,
    ) -> Response:
        service.require_ready()
        data = await read_json(request, max_bytes)
        if isinstance(data, dict) and "resourceType" in data:
            if data.get("resourceType") != "DocumentReference":
                raise ApiError(
                    422,
                    "invalid_fhir",
                    f"resourceType {str(data.get('resourceType'))[:40]!r} is not accepted: "
                    "send a DocumentReference",
                )
            note = _document_request(data, setting)
        else:
            if setting is not None and isinstance(data, dict) and "setting" not in data:
                data = {**data, "setting": setting}
            note = parse(CodeRequest, data)
        results = await service.code([note], _request_id(request))
        return _respond(results, [note], format, batch=False)

    @app.post(
        "/v1/code:batch",
        summary="Code many notes",
        description=f"Up to {MAX_BATCH_NOTES} notes;"
        " results in the same order. `?format=fhir`: one Bundle for all.",
        responses={**_ok(BatchResponse, True), **_errors(400, 401, 413, 415, 422, 503, 504)},
        openapi_extra=_body_doc("BatchRequest"),
        response_model=None,
    )
    async def code_batch(
        request: Request,
        format: Annotated[Literal["json", "fhir"], Query(description="json or fhir")] = "json",
    ) -> Response:
        service.require_ready()
        batch = parse(BatchRequest, await read_json(request, max_bytes))
        results = await service.code(batch.notes, _request_id(request))
        return _respond(results, batch.notes, format, batch=True)

    @app.post(
        "/v1/fhir",
        summary="Reviewed codes as a FHIR Bundle",
        description="Turns the codes a coder accepted into a FHIR R4 Bundle (Claim active, "
        "Conditions confirmed).",
        responses={
            200: {
                "content": {FHIR_JSON: {"schema": {"type": "object"}}},
                "description": "A FHIR R4 Bundle",
            },
            **_errors(400, 401, 413, 415, 422),
        },
        openapi_extra=_body_doc("ExportRequest"),
        response_model=None,
    )
    async def export_fhir(request: Request) -> Response:
        export = parse(ExportRequest, await read_json(request, max_bytes))
        codes, problems = [], []
        for i, item in enumerate(export.codes):
            facts = code_facts(item.code.strip())
            if facts is None:
                problems.append((f"codes.{i}.code", "not a code in the code sets"))
            else:
                codes.append({**facts.public, "evidence": []})
        if problems:
            raise ApiError(
                422, "invalid_request", "; ".join(f"{f}: {p}" for f, p in problems[:3]), problems
            )
        result = {"id": export.id or _request_id(request), "codes": codes}
        body = fhir.bundle([result], [export.model_dump()], reviewed=True)
        return Response(json.dumps(body), media_type=FHIR_JSON)

    @app.get(
        "/v1/codes/{code}",
        summary="Look up a code",
        description="Description, billable, hierarchy, notes, categories and HCC of a code "
        "written any way (E11.22, e1122, 99214); an undotted code may match two systems.",
        responses={200: {"description": "the matching codes"}, **_errors(401, 404, 422)},
    )
    async def lookup(
        code: Annotated[str, Path(min_length=1, max_length=16, description="E11.22, 99214")],
    ) -> dict:
        from medcode.errors import CodeError
        from medcode.terminology.lookup import describe, resolve

        try:
            found = resolve(code)
        except CodeError as error:
            raise ApiError(404, "unknown_code", f"{error.problem}: check the code") from None
        return {"query": code, "matches": [describe(s, c).to_dict() for s, c in found]}

    @app.get(
        "/healthz", summary="Liveness", response_model=Health, response_model_exclude_none=True
    )
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: 200 once the model and lexicon are loaded, else 503",
        response_model=Health,
        responses={503: {"model": Health, "description": "loading or failed"}},
    )
    async def readyz() -> Response:
        coder = service.coder
        body = {
            "status": service.state,
            "model": coder.name if coder is not None and service.state == "ok" else None,
            "kind": coder.kind if coder is not None and service.state == "ok" else None,
            "detail": service.detail,
        }
        return Response(
            json.dumps(body), status_code=200 if service.state == "ok" else 503, media_type=JSON
        )

    @app.get("/review", include_in_schema=False)
    async def review() -> HTMLResponse:
        return HTMLResponse(page, headers={"content-security-policy": CSP})

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/review")

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _, defs = models_json_schema(
                [
                    (m, "validation")
                    for m in (CodeRequest, BatchRequest, ExportRequest, FhirDocumentReference)
                ],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(defs.get("$defs", {}))
            if api_key:
                components["securitySchemes"] = {
                    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
                }
                schema["security"] = [{"ApiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    guarded = Guard(app, api_key=api_key, max_bytes=max_bytes)
    guarded.service = service  # type: ignore[attr-defined]
    return guarded


# The review page runs only its own inline script and talks only to this origin.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
