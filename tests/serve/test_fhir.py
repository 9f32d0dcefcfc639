"""FHIR R4 output validates with fhir.resources; a DocumentReference is accepted as input."""

from __future__ import annotations

import base64
import json

import pytest

from medcode.serve import fhir

pytest.importorskip("fhir.resources")

NOTE = (
    "Assessment: type 2 diabetes with chronic kidney disease stage 3a. "
    "Essential hypertension, stable on lisinopril. No chest pain."
)
RESULT = {
    "id": "note-1",
    "codes": [
        {
            "code": "E11.22",
            "system": "ICD-10-CM",
            "description": "Type 2 diabetes mellitus with diabetic chronic kidney disease",
            "evidence": [{"start": 12, "end": 27, "text": "type 2 diabetes"}],
        },
        {"code": "I10", "system": "ICD-10-CM", "description": "Essential hypertension"},
        {"code": "99214", "system": "CPT", "description": "Office visit"},
        {"code": "G0438", "system": "HCPCS", "description": "Annual wellness visit"},
    ],
}


def document_reference(text: str | None = NOTE, **attachment) -> dict:
    if text is not None:
        attachment.setdefault("data", base64.b64encode(text.encode()).decode())
    attachment.setdefault("contentType", "text/plain; charset=utf-8")
    return {
        "resourceType": "DocumentReference",
        "id": "doc-42",
        "status": "current",
        "content": [{"attachment": attachment}],
    }


def validate_bundle(bundle: dict) -> dict:
    """Validate the Bundle and each resource in it; the resources by type."""
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)
    found: dict[str, list] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        fhir.validate(resource)
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
        found.setdefault(resource["resourceType"], []).append(resource)
    return found


def test_bundle_holds_a_claim_and_conditions_that_validate():
    bundle = fhir.bundle([RESULT], [{"setting": "inpatient", "patient": {"sex": "female"}}])
    found = validate_bundle(bundle)
    assert bundle["type"] == "collection"
    (patient,) = found["Patient"]
    assert patient["gender"] == "female"
    (claim,) = found["Claim"]
    assert claim["status"] == "draft"
    assert claim["type"]["coding"][0]["code"] == "institutional"
    diagnoses = [d["diagnosisCodeableConcept"]["coding"][0] for d in claim["diagnosis"]]
    assert [d["code"] for d in diagnoses] == ["E11.22", "I10"]
    assert diagnoses[0]["system"] == "http://hl7.org/fhir/sid/icd-10-cm"
    assert claim["diagnosis"][0]["type"][0]["coding"][0]["code"] == "principal"
    items = claim["item"]
    assert [i["productOrService"]["coding"][0]["code"] for i in items] == ["99214", "G0438"]
    assert items[0]["productOrService"]["coding"][0]["system"] == "http://www.ama-assn.org/go/cpt"
    assert items[0]["diagnosisSequence"] == [1, 2]
    assert [p["sequence"] for p in claim["procedure"]] == [1, 2]
    conditions = found["Condition"]
    assert [c["code"]["coding"][0]["code"] for c in conditions] == ["E11.22", "I10"]
    assert conditions[0]["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert "type 2 diabetes" in conditions[0]["note"][0]["text"]
    assert conditions[0]["subject"]["reference"] == f"urn:uuid:{patient['id']}"


def test_reviewed_bundle_is_active_and_confirmed():
    found = validate_bundle(fhir.bundle([RESULT], [{}], reviewed=True))
    assert found["Claim"][0]["status"] == "active"
    assert found["Condition"][0]["verificationStatus"]["coding"][0]["code"] == "confirmed"


def test_a_note_without_codes_still_makes_a_valid_bundle():
    found = validate_bundle(fhir.bundle([{"id": "x", "codes": []}], [{}]))
    assert "diagnosis" not in found["Claim"][0] and "Condition" not in found


def test_document_reference_in():
    assert fhir.note_from_document_reference(document_reference()) == (NOTE, "doc-42")
    latin = document_reference(None, data=base64.b64encode("café".encode("latin-1")).decode())
    latin["content"][0]["attachment"]["contentType"] = "text/plain; charset=iso-8859-1"
    assert fhir.note_from_document_reference(latin)[0] == "café"


@pytest.mark.parametrize(
    ("resource", "words"),
    [
        (document_reference(None, url="http://example.org/note.txt"), "not fetched"),
        (document_reference(None, data="!!notbase64!!"), "data"),
        (document_reference("", data=base64.b64encode(b"  ").decode()), "empty"),
        (document_reference(None, data=base64.b64encode(b"\xff\xfe").decode()), "not valid"),
        (document_reference(NOTE, contentType="application/pdf"), "is not text"),
        ({k: v for k, v in document_reference().items() if k != "status"}, "status"),
        ({**document_reference(), "status": 5}, "status"),
        ({**document_reference(), "bogus": 1}, "bogus"),
        ({**document_reference(), "content": []}, "content"),
    ],
)
def test_bad_document_references(resource, words):
    with pytest.raises(fhir.FhirInputError) as caught:
        fhir.note_from_document_reference(resource)
    assert words in str(caught.value)


# --------------------------------------------------------------------------- over HTTP


def test_format_fhir_over_http_validates(live):
    reply = live.call(
        "POST",
        "/v1/code?format=fhir",
        {"text": NOTE, "setting": "emergency", "patient": {"age": 60, "sex": "male"}},
    )
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/fhir+json"
    found = validate_bundle(reply.data)
    codes = [c["code"]["coding"][0]["code"] for c in found["Condition"]]
    assert {"E11.22", "N18.31", "I10"} <= set(codes)
    assert found["Patient"][0]["gender"] == "male"


def test_batch_format_fhir_is_one_bundle(live):
    notes = {"notes": [{"text": NOTE}, {"text": "Essential hypertension."}]}
    found = validate_bundle(live.call("POST", "/v1/code:batch?format=fhir", notes).data)
    assert len(found["Claim"]) == 2 and len(found["Patient"]) == 2


def test_document_reference_over_http(live):
    reply = live.call(
        "POST",
        "/v1/code?setting=inpatient",
        body=json.dumps(document_reference()).encode(),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert reply.status == 200, reply.body
    assert reply.data["id"] == "doc-42"
    assert "E11.22" in [c["code"] for c in reply.data["codes"]]
    bad = live.call("POST", "/v1/code", document_reference(None, url="http://x/y"))
    assert bad.status == 422 and "not fetched" in bad.data["error"]["message"]


def test_reviewed_codes_export(live):
    reply = live.call(
        "POST", "/v1/fhir", {"codes": [{"code": "e1122"}, {"code": "99214"}], "id": "n-1"}
    )
    assert reply.status == 200, reply.body
    found = validate_bundle(reply.data)
    assert found["Claim"][0]["identifier"][0]["value"] == "n-1"
    assert found["Condition"][0]["verificationStatus"]["coding"][0]["code"] == "confirmed"
    bad = live.call("POST", "/v1/fhir", {"codes": [{"code": "XYZ"}]})
    assert bad.status == 422 and "codes.0.code" in bad.data["error"]["message"]
