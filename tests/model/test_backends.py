"""Backends (hf with the tiny model, openai against a fake local server), load_coder and the
``medcode code`` / ``medcode predict`` commands."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from medcode.errors import MedcodeError
from medcode.model import backends
from medcode.model.backends import (
    CodeValidator,
    HFBackend,
    OpenAIBackend,
    Prediction,
    load_coder,
)
from medcode.model.loading import ModelError
from medcode.model.prompt import Candidate

NOTES = [
    "Type 2 diabetes with chronic kidney disease stage 3a; hypertension. Established patient, "
    "moderate MDM.",
    "Annual wellness visit, subsequent.",
    "Closed fracture of right femoral neck, initial encounter.",
]


class StubRetriever:
    def __init__(self):
        self.calls = []

    def candidates(self, texts, k):
        self.calls.append((list(texts), k))
        return [[Candidate("E11.22", "Type 2 diabetes mellitus with CKD", 1.0)] for _ in texts]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    pytest.importorskip("transformers")
    from medcode.model.loading import load

    return load(str(tiny_model), device="cpu")


# --------------------------------------------------------------------------- validation


def test_validator_normalises_and_drops_invalid_codes():
    validate = CodeValidator(policy=False)  # the normalisation alone
    codes, scores, dropped, added = validate(
        ["e1122", "E11.22", "E11", "99214", "BAD", "i10", "G0438"],
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],
    )
    assert codes == ["E11.22", "99214", "I10", "G0438"]
    assert scores == [0.9, 0.6, 0.4, 0.3]
    assert dropped == ["E11", "BAD"]  # E11 is a category, not billable
    assert added == []
    assert validate(["E11.22"])[1] is None


# --------------------------------------------------------------------------- hf


def test_hf_backend_predicts_valid_codes(tiny):
    coder = HFBackend(tiny, batch_size=2, max_new_tokens=30)
    done = []
    predictions = coder.predict(NOTES, ["a", "b", "c"], progress=done.append)
    assert len(predictions) == 3 and sum(done) == 3
    valid = CodeValidator().codes
    for prediction in predictions:
        assert isinstance(prediction, Prediction)
        assert all(code in valid for code in prediction.codes)
        assert len(prediction.scores) == len(prediction.codes)
        assert not prediction.truncated and prediction.dropped == []


def test_hf_backend_raw_answers_are_what_predict_validates(tiny):
    coder = HFBackend(tiny, batch_size=3, max_new_tokens=60, max_codes=4)
    answers = coder.decode(NOTES, ["a", "b", "c"], [None] * 3)
    assert [a.truncated for a in answers] == [False] * 3 and answers[0].candidates is None
    for answer in answers:
        assert len(answer.decoded.ends) >= len(answer.decoded.codes)
    predicted = coder.predict(NOTES, ["a", "b", "c"])  # batched in another order
    for note, answer, prediction in zip(NOTES, answers, predicted, strict=True):
        validated = coder.prediction(note, answer)
        assert validated.codes == prediction.codes and validated.finished == prediction.finished
        assert validated.scores == pytest.approx(prediction.scores, rel=1e-5)
    never = coder.decode(NOTES, ["a", "b", "c"], [None] * 3, eos_min=1.01)  # ends replaced
    assert all(len(a.decoded.codes) == 4 for a in never)  # only --max-codes stops it


def test_hf_backend_truncates_long_notes_with_a_warning(tiny):
    warnings = []
    coder = HFBackend(tiny, max_new_tokens=10, max_prompt_tokens=300, warn=warnings.append)
    long_note = "Patient reports chest pain on exertion. " * 40
    prompt, truncated = coder.fit_prompt(long_note, None, "note-7")
    assert truncated and len(tiny.tokenizer(prompt)["input_ids"]) <= 300
    assert prompt.endswith("Codes:\n")
    prediction = coder.predict([long_note, "short"], ["note-7", "note-8"])
    assert [p.truncated for p in prediction] == [True, False]
    assert any("note-7" in w for w in warnings)
    assert not any("note-8" in w for w in warnings)


def test_hf_backend_candidates_mode_uses_the_retriever(tiny):
    retriever = StubRetriever()
    coder = HFBackend(tiny, mode="candidates", retriever=retriever, k=7, max_new_tokens=8)
    coder.predict(NOTES[:2])
    assert [(sorted(texts), k) for texts, k in retriever.calls] == [(sorted(NOTES[:2]), 7)]
    with pytest.raises(MedcodeError, match="retriever"):
        HFBackend(tiny, mode="candidates")


def test_hf_backend_candidates_only_lists_nothing_but_the_candidates(tiny):
    retriever = StubRetriever()
    options = {"mode": "candidates", "retriever": retriever, "max_new_tokens": 40}
    free = HFBackend(tiny, eos_min=1.01, max_codes=3, **options)  # never ends before 3 codes
    assert any(p.codes != ["E11.22"] for p in free.predict(NOTES))
    only = HFBackend(tiny, candidates_only=True, eos_min=1.01, **options)
    for prediction in only.predict(NOTES):
        assert prediction.codes[0] == "E11.22" and prediction.finished
        assert len(prediction.codes) == 1 or prediction.added  # the policy may add a partner
    assert not HFBackend(tiny, candidates_only=True).candidates_only  # plain mode: no list


def test_the_prompts_list_the_candidates_in_the_model_s_order(tiny):
    class TwoCandidates(StubRetriever):
        def candidates(self, texts, k):
            return [[Candidate("I10", "Hypertension", 2.0), Candidate("E11.22", "DM CKD", 1.0)]]

    for order, first in (("score", "I10"), ("code", "E11.22")):
        coder = HFBackend(tiny, mode="candidates", retriever=TwoCandidates(), candidate_order=order)
        answer = coder.decode(NOTES[:1], ["a"], [None])[0]
        assert answer.candidates[0].code == first
    with pytest.raises(ValueError, match="candidate order"):
        HFBackend(tiny, mode="candidates", retriever=TwoCandidates(), candidate_order="rank")


def test_hf_backend_unconstrained_path(tiny):
    coder = HFBackend(tiny, constrained=False, max_new_tokens=12)
    prediction = coder.predict(NOTES[:1])[0]
    assert prediction.scores is None
    assert all(code in CodeValidator().codes for code in prediction.codes)


# --------------------------------------------------------------------------- openai


class FakeServer:
    """An OpenAI-compatible server on 127.0.0.1 that answers every prompt the same way, after
    failing the first ``failures`` requests with HTTP 503."""

    def __init__(self, text="E11.22\nXYZ99\n99214\ne1122\n", failures=0):
        self.requests = []
        self.failures = failures
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body, self.headers.get("Authorization")))
                if outer.failures > 0:
                    outer.failures -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path.endswith("/chat/completions"):
                    choice = {"message": {"role": "assistant", "content": text}}
                else:
                    choice = {"text": text}
                payload = json.dumps({"choices": [{**choice, "finish_reason": "stop"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

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


@pytest.mark.parametrize("chat", [False, True])
def test_openai_backend_against_a_fake_server(chat):
    with FakeServer() as server:
        coder = OpenAIBackend(server.url, "my-model", chat=chat, api_key="k", batch_size=2)
        predictions = coder.predict(NOTES)
    # the note is read for the CKD stage E11.22 asks for (use additional code): the first
    # names stage 3a, the others none (the unspecified stage)
    assert [p.codes for p in predictions] == [["E11.22", "N18.31", "99214"]] + [
        ["E11.22", "N18.9", "99214"]
    ] * 2
    assert predictions[0].dropped == ["XYZ99"]
    assert len(server.requests) == 3
    prompts = []
    for path, body, auth in server.requests:
        assert path == ("/v1/chat/completions" if chat else "/v1/completions")
        assert body["model"] == "my-model" and body["temperature"] == 0 and auth == "Bearer k"
        prompts.append(body["messages"][0]["content"] if chat else body["prompt"])
    assert all(prompt.endswith("Codes:\n") for prompt in prompts)
    assert any(NOTES[0] in prompt for prompt in prompts)


def test_openai_backend_states_each_note_s_context_when_its_model_reads_one():
    from medcode.model.prompt import NoteContext

    contexts = [NoteContext("inpatient", 80, "male"), None, NoteContext("emergency")]
    with FakeServer() as server:
        OpenAIBackend(server.url, "m", batch_size=1).predict(NOTES, contexts=contexts)
        OpenAIBackend(server.url, "m", context=False).predict(NOTES[:1], contexts=contexts[:1])
    prompts = [body["prompt"] for _, body, _ in server.requests]
    assert "Setting: inpatient\nPatient: 80-year-old male\n\nNote:\n" + NOTES[0] in prompts[0]
    assert "Setting:" not in prompts[1] and "Setting: emergency\n\nNote:" in prompts[2]
    assert "Setting:" not in prompts[3]  # a model trained without contexts is not shown one


def test_openai_backend_retries_server_errors(monkeypatch):
    waits = []
    monkeypatch.setattr(backends, "_sleep", waits.append)
    with FakeServer(failures=2) as server:
        coder = OpenAIBackend(server.url, "m", retries=3, backoff=0.25)
        assert coder.predict(NOTES[:1])[0].codes == ["E11.22", "N18.31", "99214"]
    assert waits == [0.25, 0.5]


def test_openai_backend_unreachable_server_is_a_clear_error():
    coder = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", retries=2, backoff=0.0)
    with pytest.raises(MedcodeError, match="after 3 tries"):
        coder.predict(NOTES[:1])


# --------------------------------------------------------------------------- load_coder


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    """A LoRA adapter on the tiny model with its medcode_model.json."""
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("adapter")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(folder)
    (folder / "medcode_model.json").write_text(
        json.dumps(
            {"base": str(tiny_model), "mode": "candidates", "k": 5, "retriever": "retriever"}
        )
    )
    (folder / "retriever").mkdir()
    return folder


def test_load_coder_reads_the_model_record(adapter, monkeypatch):
    stub = StubRetriever()
    monkeypatch.setattr(backends, "load_retriever", lambda folder: stub)
    coder = load_coder(adapter, device="cpu", max_new_tokens=6)
    assert isinstance(coder, HFBackend)
    assert (coder.mode, coder.k, coder.retriever) == ("candidates", 5, stub)
    assert coder.predict(NOTES[:1])[0].candidates == 1  # the candidates its prompt listed
    assert stub.calls == [(NOTES[:1], 5)]
    assert not coder.candidates_only and coder.eos_min == 0.0  # the record does not say so
    assert load_coder(adapter, device="cpu", candidates_only=True).candidates_only
    served = load_coder(adapter, "openai", base_url="http://127.0.0.1:9/v1")
    assert (served.mode, served.model) == ("candidates", adapter.name)


def test_the_record_says_whether_the_model_reads_a_context(adapter, tmp_path):
    # adapters trained before prompts stated the setting and patient have no "context"
    assert backends.read_record(adapter).context is False
    assert backends.read_record("embedded").context is True  # a base model is told
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "medcode_model.json").write_text(json.dumps({"mode": "plain", "context": True}))
    assert backends.read_record(folder).context is True
    assert backends.read_record(folder).candidates_only is False
    (folder / "medcode_model.json").write_text(json.dumps({"candidates_only": True}))
    assert backends.read_record(folder).candidates_only is True
    assert backends.read_record(folder).candidate_order == "score"  # as before the option
    (folder / "medcode_model.json").write_text(json.dumps({"candidate_order": "code"}))
    assert backends.read_record(folder).candidate_order == "code"
    (folder / "medcode_model.json").write_text(json.dumps({"candidate_order": "rank"}))
    with pytest.raises(ModelError, match="unknown candidate_order 'rank'"):
        backends.read_record(folder)
    (folder / "medcode_model.json").write_text(json.dumps({"eos_min": 0.8}))
    assert backends.read_record(folder).eos_min == 0.8
    assert backends.read_record("embedded").eos_min == 0.0
    (folder / "medcode_model.json").write_text(json.dumps({"eos_min": 2}))
    with pytest.raises(ModelError, match=r"eos_min 2\.0 is not in"):
        backends.read_record(folder)


def test_load_coder_errors(tmp_path, tiny_model):
    with pytest.raises(ModelError, match="no such model folder"):
        load_coder(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{}")
    (broken / "medcode_model.json").write_text("{not json")
    with pytest.raises(ModelError, match="corrupt"):
        load_coder(broken)
    with pytest.raises(MedcodeError, match="base-url"):
        load_coder("some/model", "openai")
    with pytest.raises(MedcodeError, match="backend"):
        load_coder(tiny_model, "tgi")


# --------------------------------------------------------------------------- cli


@pytest.fixture
def notes_file(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"n{i}", "text": text}) + "\n" for i, text in enumerate(NOTES))
    )
    return path


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_predict_writes_one_line_per_note_and_resumes(cli, tiny_model, notes_file, tmp_path):
    out = tmp_path / "pred.jsonl"
    args = ["predict", "--model", str(tiny_model), "--input", str(notes_file), "--out", str(out)]
    status, stdout, err = cli(*args, "--limit", "2", "--batch-size", "2", "--max-new-tokens", "16")
    assert status == 0, err
    first = read_lines(out)
    assert [row["id"] for row in first] == ["n0", "n1"]
    assert all(set(row) == {"id", "codes", "scores"} for row in first)
    assert json.loads(out.with_suffix(".run.json").read_text())["notes_coded"] == 2
    status, stdout, err = cli(*args, "--resume", "--max-new-tokens", "16")
    assert status == 0, err
    assert "2 already done" in stdout
    rows = read_lines(out)
    assert [row["id"] for row in rows] == ["n0", "n1", "n2"]
    assert rows[:2] == first  # not redone
    status, stdout, _ = cli(*args, "--resume")
    assert status == 0 and "nothing to do" in stdout


class PolicyCoder:
    """A coder whose model wrote G30.9, I10 and an invalid code: the validator drops the
    invalid code and adds F02.80 after G30.9."""

    def predict(self, texts, ids=None, progress=None, contexts=None):
        found = [CodeValidator()(["G30.9", "I10", "BAD1"], [0.9, 0.8, 0.1]) for _ in texts]
        if progress is not None:
            progress(len(texts))
        return [Prediction(v.codes, v.scores, dropped=v.dropped, added=v.added) for v in found]


def test_cli_reports_the_codes_the_policy_tables_added(cli, notes_file, tmp_path, monkeypatch):
    from medcode.model import commands

    monkeypatch.setattr(commands, "_coder", lambda *args, **kwargs: PolicyCoder())
    out = tmp_path / "pred.jsonl"
    status, stdout, err = cli(
        "predict", "--model", "m", "--input", str(notes_file), "--out", str(out)
    )
    assert status == 0, err
    reason = "F02.80 (manifestation of G30.9: Dementia in Alzheimer's disease)"
    rows = read_lines(out)
    assert [row["codes"] for row in rows] == [["G30.9", "F02.80", "I10"]] * 3
    assert all(row["added"] == [reason] and row["dropped"] == ["BAD1"] for row in rows)
    record = json.loads(out.with_suffix(".run.json").read_text())
    assert record["codes_added"] == 3 and record["codes_dropped"] == 3
    assert "added 3 codes (policy tables)" in stdout
    note = tmp_path / "note.txt"
    note.write_text("Alzheimer's disease, hypertension.")
    status, stdout, err = cli("code", "--model", "m", str(note), "--json")
    assert status == 0, err
    shown = json.loads(stdout)
    assert [c["code"] for c in shown["codes"]] == ["G30.9", "F02.80", "I10"]
    assert shown["added"] == [reason]
    status, stdout, err = cli("code", "--model", "m", str(note))
    assert status == 0 and "added by the policy tables" in stdout and "F02.80" in stdout


class ContextCoder:
    """A coder that records the contexts it is given."""

    context = True

    def __init__(self):
        self.contexts = []

    def predict(self, texts, ids=None, progress=None, contexts=None):
        self.contexts.extend(contexts)
        return [Prediction([]) for _ in texts]


def test_cli_passes_each_note_s_setting_and_patient(cli, tmp_path, monkeypatch):
    from medcode.model import commands
    from medcode.model.prompt import NoteContext

    coder = ContextCoder()
    monkeypatch.setattr(commands, "_coder", lambda *args, **kwargs: coder)
    notes = tmp_path / "notes.jsonl"
    lines = [
        {"id": "a", "text": "HTN.", "setting": "inpatient", "patient": {"age": 70, "sex": "F"}},
        {"id": "b", "text": "HTN."},
    ]
    notes.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "pred.jsonl"
    args = ("predict", "--model", "m", "--input", str(notes), "--out", str(out))
    status, _, err = cli(*args, "--setting", "emergency", "--age", "30")
    assert status == 0, err
    # the options stand for a note that gives no context of its own
    assert coder.contexts == [NoteContext("inpatient", 70, "female"), NoteContext("emergency", 30)]
    record = json.loads(out.with_suffix(".run.json").read_text())
    assert record["context"] is True and record["notes_with_context"] == 2
    note = tmp_path / "note.txt"
    note.write_text("HTN.")
    status, _, err = cli(
        "code", "--model", "m", str(note), "--setting", "inpatient", "--sex", "male"
    )
    assert status == 0, err
    assert coder.contexts[-1] == NoteContext("inpatient", sex="male")
    lines[1]["patient"] = {"sex": "x"}
    notes.write_text("".join(json.dumps(line) + "\n" for line in lines))
    status, _, err = cli(*args)
    assert status != 0 and f"{notes}:2: patient sex 'x'" in " ".join(err.split())
    status, _, err = cli("code", "--model", "m", str(note), "--setting", "ward")
    assert status != 0 and "setting 'ward'" in err


def test_cli_candidates_only_reaches_the_coder_and_defaults_to_the_record(
    cli, tmp_path, monkeypatch
):
    from medcode.model import backends as loaded

    seen = []
    monkeypatch.setattr(
        loaded, "load_coder", lambda *args, **options: seen.append(options) or ContextCoder()
    )
    note = tmp_path / "note.txt"
    note.write_text("HTN.")
    for flag, expected in (("--candidates-only", True), ("--any-code", False)):
        status, _, err = cli("code", "--model", "m", str(note), flag, "--eos-min", "0.7")
        assert status == 0, err
        assert seen[-1]["candidates_only"] is expected and seen[-1]["eos_min"] == 0.7
    status, _, err = cli("code", "--model", "m", str(note))
    assert status == 0, err
    assert "candidates_only" not in seen[-1] and "eos_min" not in seen[-1]  # the record's


def test_cli_reads_a_corpus_note_s_context_from_its_encounter(cli, tmp_path, monkeypatch):
    from medcode.model import commands
    from medcode.synth.generate import SynthConfig, run

    corpus = tmp_path / "corpus"
    run(SynthConfig(n=30, seed=2), corpus)
    coder = ContextCoder()
    monkeypatch.setattr(commands, "_coder", lambda *args, **kwargs: coder)
    out = tmp_path / "pred.jsonl"
    args = ("predict", "--model", "m", "--input", str(corpus), "--out", str(out))
    status, _, err = cli(*args, "--split", "train,validation,test,test_ood")
    assert status == 0, err
    assert len(coder.contexts) == 30
    assert all(c.setting and c.age is not None and c.sex for c in coder.contexts)


def test_cli_predict_resume_repairs_a_partial_last_line(cli, tiny_model, notes_file, tmp_path):
    out = tmp_path / "pred.jsonl"
    out.write_text(json.dumps({"id": "n0", "codes": [], "scores": []}) + '\n{"id": "n1", "co')
    status, _, err = cli(
        "predict", "--model", str(tiny_model), "--input", str(notes_file), "--out", str(out),
        "--resume", "--max-new-tokens", "8",
    )  # fmt: skip
    assert status == 0, err
    assert [row["id"] for row in read_lines(out)] == ["n0", "n1", "n2"]


def test_cli_predict_errors(cli, tiny_model, notes_file, tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "_sleep", lambda seconds: None)
    out = str(tmp_path / "pred.jsonl")
    status, _, err = cli(
        "predict", "--model", str(tmp_path / "nope"), "--input", str(notes_file), "--out", out
    )
    assert status != 0 and "no such model folder" in err and "Traceback" not in err
    status, _, err = cli(
        "predict", "--model", str(tiny_model), "--input", str(tmp_path / "x.jsonl"), "--out", out
    )
    assert status != 0 and "cannot read the notes" in err
    status, _, err = cli(
        "predict", "--model", "m", "--backend", "openai", "--input", str(notes_file), "--out", out,
        "--base-url", f"http://127.0.0.1:{free_port()}/v1",
    )  # fmt: skip
    assert status != 0 and "is the server running" in err and "Traceback" not in err


def test_cli_predict_on_a_corpus_split(cli, tiny_model, tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "data").mkdir(parents=True)
    rows = [{"id": f"r{i}", "text": NOTES[i % 3], "split": s} for i, s in enumerate("tvtt")]
    (corpus / "data" / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "pred.jsonl"
    status, _, err = cli(
        "predict", "--model", str(tiny_model), "--input", str(corpus), "--split", "t",
        "--out", str(out), "--max-new-tokens", "8",
    )  # fmt: skip
    assert status == 0, err
    assert [row["id"] for row in read_lines(out)] == ["r0", "r2", "r3"]


def test_cli_code_prints_codes(cli, tiny_model, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text(NOTES[0])
    status, out, err = cli(
        "code", "--model", str(tiny_model), str(note), "--json", "--max-new-tokens", "16"
    )
    assert status == 0, err
    payload = json.loads(out)
    assert payload["truncated"] is False
    valid = CodeValidator().codes
    assert all(row["code"] in valid and "description" in row for row in payload["codes"])
    status, out, err = cli("code", "--model", str(tiny_model), str(note), "--max-new-tokens", "8")
    assert status == 0, err


def test_validator_applies_the_excludes1_edit():
    # E10 (type 1) and E11 (type 2 diabetes) exclude each other: the first-listed stays
    kept, scores, dropped, _ = CodeValidator()(
        ["E11.9", "E10.9", "I10", "99214"], [0.9, 0.8, 0.7, 0.6]
    )
    assert kept == ["E11.9", "I10", "99214"]
    assert scores == [0.9, 0.7, 0.6]
    assert dropped == ["E10.9 (Excludes1 with E11.9)"]
    # a policy-correct combination is left alone
    assert CodeValidator()(["N18.31", "I12.9", "E11.22"])[0] == ["N18.31", "I12.9", "E11.22"]


def test_validator_adds_the_manifestation_after_its_etiology():
    # manifestations.yaml: G30 (Alzheimer's) -> F02.80 unless an F02 code is listed (I.A.13)
    codes, scores, dropped, added = CodeValidator()(["G30.9", "E11.9", "99214"], [0.5, 0.6, 0.7])
    assert codes == ["G30.9", "F02.80", "E11.9", "99214"]
    assert scores == [0.5, 0.5, 0.6, 0.7]  # the etiology's score
    assert dropped == [] and added == [
        "F02.80 (manifestation of G30.9: Dementia in Alzheimer's disease)"
    ]
    # a documented code of the family (with behavioural disturbance) is kept instead
    assert CodeValidator()(["G30.1", "F02.811"]).codes == ["G30.1", "F02.811"]
    # two etiologies of the same manifestation add it once; Lewy bodies (G31.83) too
    assert CodeValidator()(["G31.83", "G30.1"]).codes == ["G31.83", "F02.80", "G30.1"]
    # no scores in, none out; the completion can be switched off
    assert CodeValidator()(["G30.0"]) == (
        ["G30.0", "F02.80"],
        None,
        [],
        ["F02.80 (manifestation of G30.0: Dementia in Alzheimer's disease)"],
    )
    assert CodeValidator(policy=False)(["G30.9"]).codes == ["G30.9"]
    # CPT/HCPCS codes are never taken for an etiology
    assert CodeValidator()(["99214", "G0438"]).added == []


def test_manifestation_completion_uses_the_given_tables(tmp_path):
    from medcode.datafiles import package_data
    from medcode.errors import DataFileError
    from medcode.policy.tables import load_tables

    folder = tmp_path / "policy"
    folder.mkdir()
    for path in package_data("policy").iterdir():
        (folder / path.name).write_text(path.read_text())
    (folder / "manifestations.yaml").write_text(
        "- etiology: E85.4\n  manifestation: I43\n  family: I43\n"
        "  label: Cardiomyopathy in amyloidosis\n  source: test\n"
        "- etiology: E11.4\n  manifestation: G63\n  family: G63\n"
        "  label: Polyneuropathy in diseases classified elsewhere\n  source: test\n"
    )
    validate = CodeValidator(tables=load_tables(folder))
    # only these tables: G30.9 gets nothing now
    assert validate(["E85.4", "G30.9"]).codes == ["E85.4", "I43", "G30.9"]
    # G63 Excludes1 diabetic polyneuropathy (E11.4-): never added beside E11.40
    assert validate(["E11.40"]) == (["E11.40"], None, [], [])
    (folder / "manifestations.yaml").write_text(
        "- etiology: G30\n  manifestation: F02\n  family: F02\n  label: x\n  source: y\n"
    )
    with pytest.raises(DataFileError, match=r"manifestations\.yaml:1"):
        load_tables(folder)  # F02 is a category, not a billable code: named with its file
