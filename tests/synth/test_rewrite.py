"""The LLM rewrite under fact lock (medcode.synth.rewrite), against a fake OpenAI-compatible
server on 127.0.0.1 that answers with scripted rewrites of the note in the prompt."""

import json
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from medcode.model import backends
from medcode.synth.card import read_rows
from medcode.synth.generate import SynthConfig, run
from medcode.synth.rewrite import CACHE, FactLock, RewriteClient, build_prompt, max_tokens

NOTE = re.compile(r"<note>\n(.*)\n</note>", re.DOTALL)
PREFIX = "Dictated after clinic.\n"


class FakeServer:
    """``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions``: the answer is
    ``rewrite(note)`` for the note inside the prompt. ``chat=False``: the chat endpoint
    answers 404 (a server or model without one); the note ``refuse`` gets HTTP 422."""

    def __init__(self, rewrite, chat=True, refuse=None):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                outer.requests.append((self.path, None))
                self._send(200, {"object": "list", "data": [{"id": "fake-model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body))
                if self.path.endswith("/chat/completions"):
                    if not chat:
                        self._send(404, {"error": "not found"})
                        return
                    prompt = body["messages"][0]["content"]
                else:
                    prompt = body["prompt"]
                note = NOTE.search(prompt).group(1)
                if note == refuse:
                    self._send(422, {"error": "refused"})
                    return
                text = rewrite(note)
                if self.path.endswith("/chat/completions"):
                    choice = {"message": {"role": "assistant", "content": text}}
                else:
                    choice = {"text": text}
                self._send(200, {"choices": [{**choice, "finish_reason": "stop"}]})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def completions(self):
        return [r for r in self.requests if r[1] is not None]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A 6-note corpus as ``medcode synth --n 6 --format jsonl`` writes it, and its rows."""
    out = tmp_path_factory.mktemp("made") / "corpus"
    run(SynthConfig(n=6, format="jsonl"), out)
    return out, list(read_rows(out))


@pytest.fixture
def corpus(made, tmp_path):
    """A fresh copy of the corpus (the rewrite writes into it) and its original rows."""
    out = tmp_path / "corpus"
    shutil.copytree(made[0], out)
    return out, made[1]


@pytest.fixture(scope="module")
def lock():
    return FactLock()


def synth_rewrite(cli, out, url, *extra):
    return cli(
        "synth",
        "--n",
        "6",
        "--format",
        "jsonl",
        "--out",
        str(out),
        "--rewrite-with",
        url,
        *extra,
    )


def evidence_of(row, code):
    """The texts of a code's evidence spans."""
    return [row["text"][s["start"] : s["end"]] for s in code["evidence"]]


# --------------------------------------------------------------------------- (1) accepted


def test_faithful_rewrite_is_kept_and_spans_are_recomputed(cli, corpus):
    out, rows = corpus
    with FakeServer(lambda note: PREFIX + note + "\nReviewed with the patient.") as server:
        status, text, err = synth_rewrite(cli, out, server.url)
    assert status == 0, err
    # no --rewrite-model: the server's first listed model is asked for
    assert server.requests[0] == ("/v1/models", None)
    assert all(body["model"] == "fake-model" for _, body in server.completions())
    assert len(server.completions()) == 6
    new = {row["id"]: row for row in read_rows(out)}
    for row in rows:
        after = new[row["id"]]
        assert after["text"] == PREFIX + row["text"] + "\nReviewed with the patient."
        for before_code, after_code in zip(row["codes"], after["codes"], strict=True):
            shifted = sorted(
                (s["start"] + len(PREFIX), s["end"] + len(PREFIX)) for s in before_code["evidence"]
            )
            assert [(s["start"], s["end"]) for s in after_code["evidence"]] == shifted
            for span in after_code["evidence"]:
                start, end = span["start"], span["end"]
                assert (
                    after["text"][start:end] == row["text"][start - len(PREFIX) : end - len(PREFIX)]
                )
    summary = json.loads((out / "synth_config.json").read_text())["rewrite"]
    assert summary["notes"] == 6 and summary["accepted"] == 6
    assert summary["acceptance_rate"] == 1.0 and summary["model"] == "fake-model"
    assert "rewrite: 6 of 6 notes kept (100.0%)" in text
    card = (out / "README.md").read_text()
    assert "## LLM rewrite" in card and "kept: 6 of 6 notes (100.0%)" in card
    cached = [json.loads(line) for line in (out / CACHE).read_text().splitlines()]
    assert sorted(r["id"] for r in cached) == sorted(r["id"] for r in rows)
    assert all(r["accepted"] and r["reason"] == "" for r in cached)


# --------------------------------------------------------------------------- (2) dropped


def test_rewrite_that_drops_a_diagnosis_is_rejected(cli, corpus, lock):
    out, rows = corpus
    dropped = {}
    for row in rows:
        for code in row["codes"]:
            if code["system"] != "ICD-10-CM" or not code["rule"].startswith("diagnosis"):
                continue
            text = row["text"]
            for phrase in set(evidence_of(row, code)):
                text = text.replace(phrase, "")
            # a diagnosis the lexicon finds in the note and no longer in the rewrite
            if code["code"] in lock.lexicon.evidence(row["text"]) and code[
                "code"
            ] not in lock.lexicon.evidence(text):
                dropped[row["text"]] = text
                break
    assert dropped, "no note with a diagnosis to drop"
    with FakeServer(lambda note: dropped.get(note, note)) as server:
        status, _, err = synth_rewrite(cli, out, server.url, "--rewrite-model", "m")
    assert status == 0, err
    summary = json.loads((out / "synth_config.json").read_text())["rewrite"]
    assert summary["rejected"] == {"evidence missing": len(dropped)}
    assert summary["accepted"] == 6 - len(dropped)
    new = {row["id"]: row for row in read_rows(out)}
    for row in rows:
        if row["text"] in dropped:  # the note keeps its template text and spans
            assert new[row["id"]]["text"] == row["text"]
            assert new[row["id"]]["codes"] == row["codes"]
    assert "evidence missing" in (out / "README.md").read_text()


# --------------------------------------------------------------------------- (3) added


def test_rewrite_that_adds_a_condition_is_rejected(cli, corpus, lock):
    out, rows = corpus
    added = "\nAlso noted today: acute appendicitis."
    assert "K35.80" in {c for m in lock.lexicon.matches(added) for c in m.codes}
    assert not any("appendicitis" in row["text"].lower() for row in rows)
    with FakeServer(lambda note: note + added) as server:
        status, _, err = synth_rewrite(cli, out, server.url, "--rewrite-model", "m")
    assert status == 0, err
    summary = json.loads((out / "synth_config.json").read_text())["rewrite"]
    assert summary["rejected"] == {"new condition": 6} and summary["accepted"] == 0
    assert {r["id"]: r["text"] for r in read_rows(out)} == {r["id"]: r["text"] for r in rows}


# --------------------------------------------------------------------------- (4), (5)


def _with_line(row, line):
    """The row with a line appended to its text (spans unchanged)."""
    return {**row, "text": row["text"] + "\n" + line}


def _ask(server, row):
    client = RewriteClient(server.url, "m")
    return client.complete(build_prompt(row), max_tokens(row["text"]))


def test_negation_turned_into_a_finding_is_rejected(made, lock):
    row = next(r for r in made[1] if "chest pain" not in r["text"].lower())
    row = _with_line(row, "ROS: denies chest pain.")
    with FakeServer(lambda note: note.replace("denies chest pain", "chest pain")) as server:
        text, finished = _ask(server, row)
    assert text.endswith("ROS: chest pain.") and finished
    verdict = lock.check(row, text, finished)
    assert not verdict.accepted and verdict.reason == "new condition"


def test_changed_lab_value_is_rejected(made, lock):
    row = _with_line(made[1][0], "Potassium: 4.1 mmol/L")
    with FakeServer(lambda note: note.replace("Potassium: 4.1", "Potassium: 4.7")) as server:
        text, finished = _ask(server, row)
    verdict = lock.check(row, text, finished)
    assert text.endswith("Potassium: 4.7 mmol/L")
    assert not verdict.accepted and verdict.reason == "number changed"


def test_completions_endpoint_when_the_server_has_no_chat(made):
    row = made[1][0]
    with FakeServer(lambda note: note, chat=False) as server:
        client = RewriteClient(server.url, "m")
        assert client.complete(build_prompt(row), 100, seed=3)[0] == row["text"]
        client.complete(build_prompt(row), 100)
    paths = [path for path, _ in server.requests]
    assert paths == ["/v1/chat/completions", "/v1/completions", "/v1/completions"]
    body = server.requests[1][1]
    assert body["prompt"].endswith("<rewritten_note>\n") and body["seed"] == 3
    assert body["stop"] == ["</rewritten_note>"]


# --------------------------------------------------------------------------- checks in order

TEXT = (
    "Assessment: essential hypertension, stable.\n"
    "Medications: lisinopril 20 mg daily.\n"
    "Vitals: BP 132/84 mmHg, HR 72 bpm.\n"
    "Plan: continue lisinopril; recheck in 3 months."
)
ROW = {
    "id": "x",
    "text": TEXT,
    "codes": [
        {
            "code": "I10",
            "system": "ICD-10-CM",
            "rule": "diagnosis.documented",
            "evidence": [{"start": 12, "end": 34}],
        }
    ],
}


@pytest.mark.parametrize(
    ("rewrite", "finished", "reason"),
    [
        (TEXT, False, "truncated"),
        (TEXT[:40], True, "length"),
        (TEXT.replace("essential hypertension", "a raised pressure"), True, "evidence missing"),
        (TEXT.replace("Assessment: ", "Assessment: possible "), True, "context changed"),
        (TEXT + "\nHe also has asthma.", True, "new condition"),
        (TEXT.replace("lisinopril", "the ACE inhibitor"), True, "drug missing"),
        (TEXT.replace("daily.", "daily; metformin 500 mg daily."), True, "new drug"),
        (TEXT.replace("132/84", "128/84"), True, "number changed"),
        (TEXT.replace("HR 72 bpm", "HR 72 bpm, SpO2 97%"), True, "number changed"),
        (TEXT.replace("essential hypertension", "Essential  hypertension"), True, ""),
    ],
)
def test_fact_lock_checks(lock, rewrite, finished, reason):
    assert ROW["text"][12:34] == "essential hypertension"
    verdict = lock.check(ROW, rewrite, finished)
    assert verdict.reason == reason and verdict.accepted == (reason == "")
    if verdict.accepted:
        start, end = verdict.evidence[0][0]["start"], verdict.evidence[0][0]["end"]
        assert rewrite[start:end] == "Essential  hypertension"


def test_faithful_paraphrase_moves_the_spans(lock):
    rewrite = (
        "Meds: lisinopril 20 mg daily.\nVitals: BP 132/84 mmHg, HR 72 bpm.\n"
        "A/P: essential hypertension remains stable; continue lisinopril, see again in 3 months."
    )
    verdict = lock.check(ROW, rewrite)
    assert verdict.accepted, verdict.reason
    (span,) = verdict.evidence[0]
    assert rewrite[span["start"] : span["end"]] == "essential hypertension"


# --------------------------------------------------------------------------- (6) resume


def test_rerun_sends_nothing_for_notes_already_done(cli, corpus):
    out, rows = corpus
    refused = rows[-1]
    with FakeServer(lambda note: PREFIX + note, refuse=refused["text"]) as server:
        status, _, err = synth_rewrite(cli, out, server.url, "--rewrite-model", "m")
    assert status == 1 and "HTTP 422" in err and "Traceback" not in err
    done = {json.loads(line)["id"] for line in (out / CACHE).read_text().splitlines()}
    assert refused["id"] not in done
    with FakeServer(lambda note: PREFIX + note) as server:
        assert synth_rewrite(cli, out, server.url, "--rewrite-model", "m")[0] == 0
        sent = {NOTE.search(body["messages"][0]["content"]).group(1) for _, body in server.requests}
        assert sent == {row["text"] for row in rows if row["id"] not in done}
        assert len(server.requests) == 6 - len(done)
        first = {r["id"]: r for r in read_rows(out)}
        assert synth_rewrite(cli, out, server.url, "--rewrite-model", "m")[0] == 0
        assert len(server.requests) == 6 - len(done)  # all six in the cache: no request at all
    original = {row["id"]: row["text"] for row in rows}
    assert all(row["text"] == PREFIX + original[i] for i, row in first.items())
    # applying the cache to shards that already hold the rewrites changes nothing
    assert {r["id"]: r for r in read_rows(out)} == first
    assert len((out / CACHE).read_text().splitlines()) == 6
    assert json.loads((out / "synth_config.json").read_text())["rewrite"]["notes"] == 6
    # another model on a folder with notes left to do is refused
    lines = (out / CACHE).read_text().splitlines()
    (out / CACHE).write_text("\n".join(lines[:5]) + "\n")
    with FakeServer(lambda note: note) as server:
        status, _, err = synth_rewrite(cli, out, server.url, "--rewrite-model", "other")
    assert status == 1 and "by model m" in err and not server.requests


# --------------------------------------------------------------------------- (7) errors


def test_unreachable_server_is_a_clear_error(cli, corpus, monkeypatch):
    out, _ = corpus
    monkeypatch.setattr(backends, "_sleep", lambda seconds: None)
    url = f"http://127.0.0.1:{free_port()}/v1"
    status, _, err = synth_rewrite(cli, out, url)
    assert status == 1
    assert f"{url}/models" in err and "is the server running" in err
    assert "Traceback" not in err
    status, _, err = synth_rewrite(cli, out, url, "--rewrite-model", "m")
    assert status == 1 and f"{url}/chat/completions" in err and "Traceback" not in err
