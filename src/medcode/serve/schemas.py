"""The API's request and response models (pydantic, the only place medcode uses it).

Requests forbid unknown fields, so a typo ("txt") is a 422 that names the field instead of a
note coded as empty. Responses are documented here for the OpenAPI schema; the service builds
them as plain dicts (the hot path) in the same shape.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TEXT_CHARS = 200_000  # about 30,000 words: far beyond any real note
MAX_BATCH_NOTES = 64
ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"

Setting = Literal["outpatient", "inpatient", "emergency"]
Sex = Literal["female", "male", "other", "unknown"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Patient(Strict):
    """What the service may know of the patient: used for the age and sex edits."""

    age: int | None = Field(None, ge=0, le=130, description="Age in years.")
    sex: Sex | None = Field(None, description="female, male, other or unknown.")


class CodeRequest(Strict):
    """One note to code."""

    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="The note's text (UTF-8). Never logged.",
        json_schema_extra={"pattern": r"\S"},  # not only whitespace (checked below)
    )
    setting: Setting = Field("outpatient", description="Care setting of the encounter.")
    patient: Patient | None = None
    id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="Your id for the note (letters, digits, . _ : -): echoed back and logged.",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the note is empty (only whitespace): send the note's text")
        return value


class BatchRequest(Strict):
    """Many notes, coded together; results come back in the same order."""

    notes: list[CodeRequest] = Field(min_length=1, max_length=MAX_BATCH_NOTES)


class ReviewedCode(Strict):
    """A code a coder accepted on the review page (for FHIR export)."""

    code: str = Field(min_length=1, max_length=16, description="E11.22, 99214, G0438 ...")


class ExportRequest(Strict):
    """Reviewed codes, first-listed first, to turn into a FHIR Bundle."""

    codes: list[ReviewedCode] = Field(max_length=200)
    setting: Setting = "outpatient"
    patient: Patient | None = None
    id: str | None = Field(None, pattern=ID_PATTERN)


# ----------------------------------------------------------------------------- responses


class EvidenceSpan(BaseModel):
    start: int = Field(description="Character offset in the note (inclusive).")
    end: int = Field(description="Character offset in the note (exclusive).")
    text: str = Field(description="note[start:end]")
    phrase: str = Field(description="The lexicon phrase the span matched.")
    source: str = Field(description="catalog, description, inclusion, parent, procedure, ...")
    relation: Literal["direct", "history", "family_history", "combination", "category"]
    cues: list[Literal["negated", "uncertain", "history", "family"]]


class HCCInfo(BaseModel):
    number: int
    label: str
    chronic: bool


class CodeSuggestion(BaseModel):
    code: str
    system: Literal["ICD-10-CM", "CPT", "HCPCS"]
    description: str
    billable: bool
    categories: list[str] = Field(description="advanced_illness, frailty, chronic, hcc, ...")
    hcc: list[HCCInfo] = Field(description="CMS-HCC V28 payment HCCs (ICD-10-CM only).")
    confidence: float | None = Field(
        None, description="The model's probability for the code, when the backend gives one."
    )
    score: float | None = Field(None, description="The backend's raw score, if any.")
    evidence: list[EvidenceSpan]
    warnings: list[str] = Field(
        description="Age, sex and setting edits the code fails; a note when the policy tables "
        "added the code (a combination, a partner or a manifestation the listed codes "
        "require) rather than the model."
    )


class CodeResponse(BaseModel):
    id: str = Field(description="Your id for the note, else the request id.")
    model: str
    codes: list[CodeSuggestion] = Field(description="First-listed first.")
    truncated: bool = Field(description="The note was cut to fit the model's context.")
    invalid_dropped: int = Field(description="Model outputs that were not valid codes.")
    elapsed_ms: float


class BatchResponse(BaseModel):
    results: list[CodeResponse]


class ErrorDetail(BaseModel):
    field: str
    problem: str


class ErrorInfo(BaseModel):
    status: int
    type: str
    message: str = Field(description="What is wrong and how to fix it.")
    details: list[ErrorDetail] = []


class ErrorResponse(BaseModel):
    error: ErrorInfo
    request_id: str


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    model: str | None = None
    kind: str | None = None
    detail: str | None = None


# ----------------------------------------------------------------------------- FHIR input


class FhirAttachment(BaseModel):
    model_config = ConfigDict(extra="allow")
    contentType: str | None = Field(None, description="text/plain (charset utf-8).")
    data: str | None = Field(None, description="The note, base64-encoded UTF-8.")


class FhirContent(BaseModel):
    model_config = ConfigDict(extra="allow")
    attachment: FhirAttachment


class FhirDocumentReference(BaseModel):
    """A FHIR R4 DocumentReference whose attachment holds the note (``data``, base64); the
    whole resource is validated as FHIR."""

    model_config = ConfigDict(extra="allow")
    resourceType: Literal["DocumentReference"]
    status: Literal["current", "superseded", "entered-in-error"]
    content: list[FhirContent] = Field(min_length=1)
