"""The review page end to end in headless Chromium (Playwright): paste or upload a note, see
the codes with their evidence highlighted, accept and reject, export JSON, CSV and FHIR.

Needs the Python ``playwright`` package (dev extra) and a Chromium: Debian's ``chromium``
(scripts/install.sh dev installs it when it can), or ``MEDCODE_CHROMIUM=/path/to/chrome``.
The screenshot is kept in ``test-artifacts/review_page.png`` (or ``$MEDCODE_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

NOTE = (
    "Assessment: type 2 diabetes with chronic kidney disease stage 3a. "
    "Essential hypertension, stable on lisinopril. No chest pain."
)
ARTIFACTS = Path(
    os.environ.get("MEDCODE_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)


def chromium_path() -> str | None:
    found = os.environ.get("MEDCODE_CHROMIUM")
    if found:
        return found
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (dev extra)"
    )
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no Chromium found: apt-get install chromium (scripts/install.sh dev does it as "
            "root) or set MEDCODE_CHROMIUM"
        )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, live):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.on(  # the browser's own "Failed to load resource" for a 4xx is expected
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    opened.goto(f"{live.url}/review")
    yield opened
    context.close()
    assert problems == [], problems


def _download(page, button: str) -> str:
    with page.expect_download() as caught:
        page.click(button)
    return Path(caught.value.path()).read_text(encoding="utf-8")


def test_review_a_note_end_to_end(page):
    from fhir.resources.R4B.bundle import Bundle

    page.fill("#note", NOTE)
    page.fill("#age", "70")
    page.click("#code-btn")
    page.wait_for_selector("tr.code-row")
    codes = page.locator("tr.code-row").evaluate_all("rows => rows.map(r => r.dataset.code)")
    assert {"E11.22", "N18.31", "I10"} <= set(codes)
    assert "code(s) from model" in page.inner_text("#status")

    # The note is shown whole, its evidence highlighted.
    assert page.locator("#note-view").text_content() == NOTE
    marked = page.locator("#note-view mark").all_text_contents()
    assert "Essential hypertension" in marked
    assert any("type 2 diabetes" in m for m in marked)

    # Selecting a code highlights its evidence.
    page.click("tr[data-code='I10'] td.code")
    assert page.locator("#note-view mark.active").all_text_contents() == ["Essential hypertension"]
    page.click("tr[data-code='I10'] td.code")
    assert page.locator("#note-view mark.active").count() == 0

    page.click("tr[data-code='E11.22'] button[data-action=accept]")
    page.click("tr[data-code='N18.31'] button[data-action=accept]")
    page.click("tr[data-code='I10'] button[data-action=reject]")
    summary = page.inner_text("#summary")
    assert summary.startswith("2 accepted, 1 rejected")
    assert "Essential hypertension" not in page.locator("#note-view mark").all_text_contents()

    page.click("tr[data-code='E11.22'] td.code")  # its evidence stands out in the shot
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review_page.png"), full_page=True)
    assert (ARTIFACTS / "review_page.png").stat().st_size > 10_000

    exported = json.loads(_download(page, "#export-json"))
    decisions = {c["code"]: c["decision"] for c in exported["codes"]}
    assert decisions["E11.22"] == "accepted" and decisions["I10"] == "rejected"
    assert exported["codes"][0]["evidence"]

    rows = list(csv.DictReader(io.StringIO(_download(page, "#export-csv"))))
    assert {r["code"]: r["decision"] for r in rows}["N18.31"] == "accepted"
    assert rows[0].keys() >= {"code", "system", "description", "decision", "evidence"}

    bundle = json.loads(_download(page, "#export-fhir"))
    Bundle.model_validate(bundle)
    conditions = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition"
    ]
    assert [c["code"]["coding"][0]["code"] for c in conditions] == ["E11.22", "N18.31"]
    assert "exported a FHIR Bundle" in page.inner_text("#status")


def test_upload_a_text_file_and_a_document_reference(page):
    from playwright.sync_api import expect

    page.set_input_files(
        "#file", files=[{"name": "note.txt", "mimeType": "text/plain", "buffer": NOTE.encode()}]
    )
    # expect() polls from Playwright's own script: the page's CSP forbids eval
    expect(page.locator("#note")).to_have_value(NOTE)
    document = {
        "resourceType": "DocumentReference",
        "id": "doc-9",
        "status": "current",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(b"Essential hypertension, stable.").decode(),
                }
            }
        ],
    }
    page.set_input_files(
        "#file",
        files=[
            {
                "name": "doc.json",
                "mimeType": "application/json",
                "buffer": json.dumps(document).encode(),
            }
        ],
    )
    expect(page.locator("#note")).to_have_value("Essential hypertension, stable.")
    page.click("#code-btn")
    page.wait_for_selector("tr[data-code='I10']")


def test_errors_are_shown(page):
    page.click("#code-btn")
    assert "paste a note first" in page.inner_text("#status")
    page.fill("#note", "x" * 10)
    page.fill("#age", "500")
    page.click("#code-btn")
    page.wait_for_selector("#status.error")
    assert "patient.age" in page.inner_text("#status")
