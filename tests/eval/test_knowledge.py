import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from medcode.errors import MedcodeError  # noqa: E402
from medcode.eval import knowledge  # noqa: E402
from medcode.model.loading import load  # noqa: E402

QUESTIONS = [
    {
        "realidx": 1,
        "question": "Which organ makes insulin?",
        "options": {"A": "pancreas", "B": "liver", "C": "spleen", "D": "kidney"},
        "answer_idx": "A",
        "subject": "anatomy",
    },
    {
        "realidx": 2,
        "question": "Normal resting heart rate?",
        "options": {"A": "10", "B": "70 per minute", "C": "300", "D": "1"},
        "answer_idx": "B",
        "subject": "clinical_knowledge",
    },
]


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return load(tiny_model, device="cpu")


def _reference_log_likelihood(loaded, context, continuation):
    """Full forward pass over the whole vocabulary, the plain way."""
    tok = loaded.tokenizer
    head = tok(context).input_ids
    tail = tok(continuation, add_special_tokens=False).input_ids
    ids = torch.tensor([head + tail])
    with torch.inference_mode():
        logits = loaded.model(ids).logits.log_softmax(-1)[0]
    return sum(logits[len(head) - 1 + k, t].item() for k, t in enumerate(tail))


def test_continuation_scores_match_a_plain_forward_pass(loaded):
    pairs = [("Question: a?\nAnswer:", " yes"), ("Q: longer context here\nA:", " no way")]
    got = knowledge._continuation_log_likelihoods(loaded, pairs, batch_size=2)
    for (context, continuation), value in zip(pairs, got, strict=True):
        assert value == pytest.approx(
            _reference_log_likelihood(loaded, context, continuation), abs=1e-4
        )
    # batching (with padding) does not change a score
    one_by_one = knowledge._continuation_log_likelihoods(loaded, pairs, batch_size=1)
    assert got == pytest.approx(one_by_one, abs=1e-4)


def test_multiple_choice_picks_the_highest_scoring_option(loaded, tmp_path, monkeypatch):
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
    questions = knowledge.read_questions(path)
    assert [q.answer for q in questions] == [0, 1]

    # a stand-in scorer that prefers the right answers: "pancreas" and "70 per minute"
    def fake(loaded, pairs, batch_size, progress=None):
        return [10.0 if c.strip() in ("pancreas", "70 per minute") else -1.0 for _, c in pairs]

    monkeypatch.setattr(knowledge, "_continuation_log_likelihoods", fake)
    accuracy, norm, by_subject = knowledge.multiple_choice(loaded, questions)
    assert accuracy == 1.0
    assert by_subject == {"anatomy": 1.0, "clinical_knowledge": 1.0}
    # per-character normalisation: the right answers still score highest per character
    assert norm == 1.0


def test_perplexity_equals_exp_of_the_model_loss(loaded):
    text = "Patient with type 2 diabetes and CKD stage 3a, on insulin."
    ppl, tokens = knowledge.perplexity(loaded, [text], window=512)
    ids = torch.tensor([loaded.tokenizer(text).input_ids])
    with torch.inference_mode():
        loss = loaded.model(ids, labels=ids).loss.item()
    assert tokens == ids.shape[1] - 1
    assert ppl == pytest.approx(math.exp(loss), rel=1e-4)
    # windows: every token after the first of each window is scored
    _, windowed = knowledge.perplexity(loaded, [text], window=16)
    assert windowed == ids.shape[1] - 1


def test_read_questions_names_the_bad_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(QUESTIONS[0]) + "\n" + '{"question": "x"}\n')
    with pytest.raises(MedcodeError, match=r"test.jsonl:2: expected question"):
        knowledge.read_questions(path)
    with pytest.raises(MedcodeError, match="no MMLU-medical file"):
        knowledge.read_questions(tmp_path / "missing.jsonl")


def test_seeded_sample_is_the_same_for_every_model(tmp_path):
    path = tmp_path / "test.jsonl"
    rows = [dict(QUESTIONS[0], realidx=i) for i in range(30)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    first = [q.id for q in knowledge.read_questions(path, limit=5, seed=3)]
    assert first == [q.id for q in knowledge.read_questions(path, limit=5, seed=3)]
    assert len(first) == 5


def test_cli_writes_knowledge_json(cli, tiny_model, tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
    status, out, err = cli(
        "eval",
        "knowledge",
        "--model",
        str(tiny_model),
        "--mmlu",
        str(path),
        "--codiesp",
        "",
        "--out",
        str(tmp_path / "k"),
        "--json",
    )
    assert status == 0, err
    result = json.loads(out)
    assert result["mmlu_medical"]["n"] == 2
    assert json.loads((tmp_path / "k" / "knowledge.json").read_text()) == result


def test_cli_missing_model_is_one_clear_error(cli, tmp_path):
    mmlu = Path(__file__).parents[1] / "assets" / "mmlu_tiny.jsonl"
    status, _out, err = cli(
        "eval", "knowledge", "--model", str(tmp_path / "nope"), "--mmlu", str(mmlu)
    )
    assert status != 0
    assert "no such model folder" in err
    assert "Traceback" not in err
