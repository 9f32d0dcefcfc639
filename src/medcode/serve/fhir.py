"""FHIR R4 in and out.

Out: a ``collection`` Bundle per coded note (or per reviewed export) holding a Patient, a
Claim (ICD-10-CM codes as ``diagnosis``, first-listed first with type ``principal``; CPT/HCPCS
codes as ``procedure`` and as billable ``item`` lines pointing at the diagnoses) and one
Condition per ICD-10-CM code (``verificationStatus`` provisional for suggestions, confirmed for
codes a coder accepted), each with its evidence as an annotation. Only R4 elements are used,
and the output validates with the ``fhir.resources`` package (its R4B models, the R4 line).

In: a DocumentReference whose first ``text/*`` attachment carries the note inline (``data``,
base64); the resource is validated with ``fhir.resources`` when it is installed.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

SYSTEM_URIS = {
    "ICD-10-CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
}
_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
CLAIM_TYPE = {
    "outpatient": "professional",
    "emergency": "professional",
    "inpatient": "institutional",
}
GENDER = {"female": "female", "male": "male", "other": "other", "unknown": "unknown"}
MAX_POINTERS = 4  # diagnosis pointers per claim line, as on a CMS-1500


class FhirInputError(ValueError):
    """A FHIR input the service cannot use: ``problems`` is a list of ``(field, problem)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in problems))


def _concept(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def bundle(
    results: Sequence[dict[str, Any]],
    requests: Sequence[dict[str, Any]],
    *,
    reviewed: bool = False,
) -> dict[str, Any]:
    """One Bundle for coded notes: ``results`` are the service's JSON results (``codes`` with
    ``code``, ``system``, ``description``, ``evidence``), ``requests`` their ``setting`` and
    ``patient``; ``reviewed`` marks codes accepted by a coder (Claim active, Conditions
    confirmed) rather than suggested (Claim draft, Conditions provisional)."""
    entries: list[dict[str, Any]] = []
    for result, request in zip(results, requests, strict=True):
        entries += _note_entries(result, request, reviewed)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "collection",
        "timestamp": _now(),
        "entry": entries,
    }


def _note_entries(result: dict[str, Any], request: dict[str, Any], reviewed: bool) -> list[dict]:
    patient_id, claim_id = str(uuid.uuid4()), str(uuid.uuid4())
    patient_ref = {"reference": f"urn:uuid:{patient_id}"}
    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    sex = (request.get("patient") or {}).get("sex")
    if sex in GENDER:
        patient["gender"] = GENDER[sex]
    setting = request.get("setting") or "outpatient"
    codes = result.get("codes", [])
    diagnoses = [c for c in codes if c["system"] == "ICD-10-CM"]
    procedures = [c for c in codes if c["system"] != "ICD-10-CM"]
    claim: dict[str, Any] = {
        "resourceType": "Claim",
        "id": claim_id,
        "identifier": [{"system": "urn:medcode:note", "value": str(result.get("id", ""))}],
        "status": "active" if reviewed else "draft",
        "type": _concept(f"{_TERMINOLOGY}/claim-type", CLAIM_TYPE.get(setting, "professional")),
        "use": "claim",
        "patient": patient_ref,
        "created": _now(),
        "provider": {"display": "unspecified provider"},
        "priority": _concept(f"{_TERMINOLOGY}/processpriority", "normal"),
        "insurance": [
            {"sequence": 1, "focal": True, "coverage": {"display": "unspecified coverage"}}
        ],
    }
    if diagnoses:
        claim["diagnosis"] = [
            {
                "sequence": i,
                "diagnosisCodeableConcept": _concept(
                    SYSTEM_URIS["ICD-10-CM"], c["code"], c.get("description", "")
                ),
                **(
                    {"type": [_concept(f"{_TERMINOLOGY}/ex-diagnosistype", "principal")]}
                    if i == 1
                    else {}
                ),
            }
            for i, c in enumerate(diagnoses, start=1)
        ]
    if procedures:
        claim["procedure"] = [
            {
                "sequence": i,
                "procedureCodeableConcept": _concept(
                    SYSTEM_URIS[c["system"]], c["code"], c.get("description", "")
                ),
            }
            for i, c in enumerate(procedures, start=1)
        ]
        pointers = list(range(1, min(len(diagnoses), MAX_POINTERS) + 1))
        claim["item"] = [
            {
                "sequence": i,
                "productOrService": _concept(
                    SYSTEM_URIS[c["system"]], c["code"], c.get("description", "")
                ),
                "procedureSequence": [i],
                **({"diagnosisSequence": pointers} if pointers else {}),
            }
            for i, c in enumerate(procedures, start=1)
        ]
    entries = [_entry(patient), _entry(claim)]
    for c in diagnoses:
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "id": str(uuid.uuid4()),
            "verificationStatus": _concept(
                f"{_TERMINOLOGY}/condition-ver-status", "confirmed" if reviewed else "provisional"
            ),
            "category": [_concept(f"{_TERMINOLOGY}/condition-category", "encounter-diagnosis")],
            "code": _concept(SYSTEM_URIS["ICD-10-CM"], c["code"], c.get("description", "")),
            "subject": patient_ref,
        }
        notes = [
            {"text": f"evidence: {span['text']!r} (characters {span['start']}-{span['end']})"}
            for span in c.get("evidence") or []
            if span.get("text")
        ]
        if notes:
            condition["note"] = notes
        entries.append(_entry(condition))
    return entries


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def validate(resource: dict[str, Any]) -> Any:
    """The resource as a ``fhir.resources`` R4B model (raises pydantic's ValidationError)."""
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def note_from_document_reference(data: dict[str, Any]) -> tuple[str, str | None]:
    """``(note text, resource id)`` from a DocumentReference (see the module docstring)."""
    try:
        from fhir.resources.R4B.documentreference import DocumentReference
    except ImportError:  # validation is optional; the fields used below are checked anyway
        DocumentReference = None
    if DocumentReference is not None:
        from pydantic import ValidationError

        try:
            DocumentReference.model_validate(data)
        except ValidationError as error:
            raise FhirInputError(
                [
                    (".".join(str(p) for p in e["loc"]) or "DocumentReference", e["msg"])
                    for e in error.errors(include_input=False, include_url=False)
                ]
            ) from None
    contents = data.get("content")
    if not isinstance(contents, list) or not contents:
        raise FhirInputError([("content", "a DocumentReference needs content[].attachment")])
    problems: list[tuple[str, str]] = []
    for i, content in enumerate(contents):
        where = f"content.{i}.attachment"
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(attachment, dict):
            problems.append((where, "missing"))
            continue
        content_type = str(attachment.get("contentType") or "text/plain")
        if not content_type.lower().startswith("text/"):
            problems.append(
                (f"{where}.contentType", f"{content_type} is not text: send text/plain")
            )
            continue
        encoded = attachment.get("data")
        if not encoded:
            problem = (
                "attachment.url is not fetched: put the note inline in attachment.data (base64)"
                if attachment.get("url")
                else "no data: put the note in attachment.data (base64-encoded UTF-8)"
            )
            problems.append((f"{where}.data", problem))
            continue
        try:
            raw = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            problems.append((f"{where}.data", "not valid base64"))
            continue
        charset = _charset(content_type)
        try:
            text = raw.decode(charset)
        except (UnicodeDecodeError, LookupError):
            problems.append((f"{where}.data", f"the decoded note is not valid {charset} text"))
            continue
        if not text.strip():
            problems.append((f"{where}.data", "the note is empty"))
            continue
        resource_id = data.get("id")
        return text, str(resource_id) if resource_id else None
    raise FhirInputError(problems or [("content", "no text attachment")])


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"
