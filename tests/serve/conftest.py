"""Fixtures for the service tests: a tiny baseline trained in-process, a small lexicon, and
servers started with uvicorn on a free loopback port in a thread."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field

import pytest

TEXTS = [
    "Type 2 diabetes with chronic kidney disease stage 3a. Follow up in 3 months.",
    "T2DM and CKD stage 3a, on metformin.",
    "Essential hypertension, stable on lisinopril.",
    "HTN, well controlled. Continue current dose.",
    "Type 2 diabetes, A1c 7.2. Diet reviewed.",
    "Hypertension and type 2 diabetes mellitus, both stable.",
] * 4
LABELS = [
    ["E11.22", "N18.31"],
    ["E11.22", "N18.31"],
    ["I10"],
    ["I10"],
    ["E11.9"],
    ["I10", "E11.9"],
] * 4
NOTE = (
    "Assessment: type 2 diabetes with chronic kidney disease stage 3a. "
    "Essential hypertension, stable on lisinopril. No chest pain."
)
PHRASES = {
    "type 2 diabetes": ["E11.9"],
    "type 2 diabetes mellitus": ["E11.9"],
    "type 2 diabetes with chronic kidney disease": ["E11.22"],
    "chronic kidney disease stage 3a": ["N18.31"],
    "ckd stage 3a": ["N18.31"],
    "hypertension": ["I10"],
    "essential hypertension": ["I10"],
    "htn": ["I10"],
    "chest pain": ["R07.9"],
}


@pytest.fixture(scope="session")
def baseline_folder(tmp_path_factory):
    """A TF-IDF baseline trained on a few synthetic notes, saved as `medcode baseline train`
    saves it."""
    from medcode.baselines.tfidf import BaselineConfig, TfidfCoder

    config = BaselineConfig(min_code_count=2, char_ngrams=(3, 4))
    coder = TfidfCoder(config).fit(TEXTS, LABELS, TEXTS[:12], LABELS[:12])
    coder.thresholds[:] = 5.0  # too few notes to tune on: a threshold that fits them
    return coder.save(tmp_path_factory.mktemp("baseline") / "model")


@pytest.fixture(scope="session")
def baseline(baseline_folder):
    from medcode.serve.coders import load_served_coder

    return load_served_coder(str(baseline_folder))


@pytest.fixture(scope="session")
def lexicon():
    """A small lexicon over the notes' phrases, with the policy tables (history and
    combination codes), instead of the shipped one (which takes about 10 s to build)."""
    from medcode.model.retriever import Lexicon
    from medcode.policy.tables import shipped_tables

    found = Lexicon()
    for phrase, codes in PHRASES.items():
        found.add(phrase, codes)
    found.tables = shipped_tables()
    return found


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def data(self):
        return json.loads(self.body)


@dataclass
class Live:
    """A running server: ``call(method, path, json=..., body=..., headers=...)``."""

    port: int
    server: object
    thread: threading.Thread
    default_headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method, path, json_body=None, *, body=None, headers=None, timeout=30):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        sent = {**self.default_headers, **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return Reply(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()


def start(app, *, ready: bool = True) -> Live:
    """Run ``app`` under uvicorn on a free loopback port in a daemon thread."""
    uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed")

    config = uvicorn.Config(app, host="127.0.0.1", port=0, access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    live = Live(port, server, thread)
    while ready and live.call("GET", "/readyz").status != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not get ready")
        time.sleep(0.02)
    return live


def stop(live: Live) -> None:
    live.server.should_exit = True
    live.thread.join(timeout=10)


@pytest.fixture(scope="session")
def serve():
    """``serve(app)`` -> a running :class:`Live`; all are stopped at the end."""
    running = []

    def run(app, **options):
        live = start(app, **options)
        running.append(live)
        return live

    yield run
    for live in running:
        stop(live)


@pytest.fixture(scope="session")
def live(serve, baseline, lexicon):
    """The service over the tiny baseline, without an API key."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from medcode.serve.app import create_app

    return serve(create_app(baseline, lexicon=lexicon))
