"""Training throughput: medcode's trainer against TRL's ``SFTTrainer``, same model, same data,
same machine, measured in the same run (target: medcode at least 2x TRL's tokens/s).

    .venv/bin/python benchmarks/bench_train.py [--model embedded] [--corpus demo/corpus]
        [--examples 16] [--steps 6] [--batch 2] [--k 20]

Data: ``--examples`` candidates-mode examples from the corpus's train split. The candidate
lists stand in for the retriever's (the gold codes mixed with random corpus codes, seeded,
``k`` in all), so the prompts have the shape and length training sees without fitting a
retriever.

Runs, each with LoRA r=16 on every projection, ``--batch`` notes a step, one warm-up step
then ``--steps`` timed steps (tokens/s = non-padding tokens of the timed steps / their
seconds):

- ``medcode (recipe)``: the CPU recipe's settings (adapters on the top 8 layers, notes of
  similar length batched together, LM head only at answer tokens, the knowledge-retention KL
  term with its extra adapter-free forward pass);
- ``medcode (recipe, no KL)``: the same with ``kl_weight=0``, to show what the KL term costs;
- ``medcode (recipe, KL every step)``: with ``kl_every=1``, when the recipe spaces the KL
  out (``kl_every`` N: the KL on every Nth step at N times the weight; keep ``--steps`` a
  multiple of N so the timed steps hold their share of KL steps);
- ``medcode (all layers)``: the same adapters as TRL (every layer, KL on), to separate the
  effects;
- ``trl SFTTrainer``: TRL's defaults (prompt/completion dataset, so completion-only loss;
  gradient checkpointing and bf16 on, as SFTConfig sets them), with the batch size, learning
  rate and LoRA config above and ``max_length`` large enough that nothing is truncated.
"""

from __future__ import annotations

import argparse
import gc
import random
import tempfile
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "cpu" / "gemma3_270m_lora.yaml"


def examples(corpus: Path, count: int, k: int, seed: int = 0):
    """``[(note, codes, candidates)]`` from the train split, with stand-in candidate lists."""
    from medcode.model.prompt import Candidate
    from medcode.synth.card import read_rows

    rows = [r for r in read_rows(corpus, ["text", "codes", "split"]) if r["split"] == "train"]
    rows = rows[:2000]
    pool = sorted({(c["code"], c["description"]) for r in rows for c in r["codes"]})
    rng = random.Random(seed)
    chosen = rng.sample(rows, count)
    out = []
    for row in chosen:
        gold = [(c["code"], c["description"]) for c in row["codes"]]
        listed = list(dict.fromkeys(gold + rng.sample(pool, k)))[:k]
        rng.shuffle(listed)
        out.append(
            (row["text"], [c["code"] for c in row["codes"]], [Candidate(c, d) for c, d in listed])
        )
    return out


def step_timer():
    """A TrainerCallback recording (seconds, non-padding tokens) for every step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[tuple[float, int]] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()
            self.tokens = state.num_input_tokens_seen

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(
                (time.perf_counter() - self.started, state.num_input_tokens_seen - self.tokens)
            )

    return StepTimer()


def rate(steps: list[tuple[float, int]]) -> tuple[float, float]:
    """(tokens/s over the timed steps, best single step's tokens/s); the first is warm-up."""
    timed = steps[1:] or steps
    seconds = sum(s for s, _ in timed)
    return sum(t for _, t in timed) / seconds, max(t / s for s, t in timed)


def run_medcode(model_spec, data, steps, batch, top_layers, out, overrides=()):
    from medcode.model import train as medcode_train
    from medcode.model.train_config import TrainConfig

    config = TrainConfig.load(
        RECIPE,
        [
            f"model={model_spec}",
            "corpus=unused",
            f"out={out}",
            f"top_layers={top_layers}",
            f"per_device_batch={batch}",
            f"max_steps={steps + 1}",
            "save_every=100000",
            "time_budget_minutes=0",
            *overrides,
        ],
    )
    tokenizer = medcode_train.load_tokenizer(medcode_train.resolve(model_spec))
    encoded = [
        medcode_train.encode_example(
            tokenizer,
            note,
            codes,
            mode="candidates",
            candidates=cands,
            max_seq_len=config.max_seq_len,
        )[0]
        for note, codes, cands in data
    ]
    args = medcode_train.training_arguments(config, out, bf16=False, use_cpu=True, evaluate=False)
    args.save_strategy = "no"
    model, tokenizer, _ = medcode_train.load_for_training(config, bf16=False)
    timer = step_timer()
    trainer = medcode_train.build_trainer(
        config, args, model, tokenizer, encoded, [], medcode_train.RunClock(), [timer]
    )
    trainer.train()
    return timer.steps, trainer.padding_fraction()


def run_trl(model_spec, data, steps, batch, out):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from medcode.model import train as medcode_train
    from medcode.model.prompt import build_prompt, build_target
    from medcode.model.train_config import TrainConfig

    config = TrainConfig.load(RECIPE, ["top_layers=0"])
    source = medcode_train.resolve(model_spec)
    tokenizer = medcode_train.load_tokenizer(source)
    dataset = Dataset.from_list(
        [
            {"prompt": build_prompt(note, "candidates", cands), "completion": build_target(codes)}
            for note, codes, cands in data
        ]
    )
    model = AutoModelForCausalLM.from_pretrained(
        medcode_train._base_folder(source), dtype=torch.float32
    )
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        max_steps=steps + 1,
        learning_rate=config.learning_rate,
        max_length=4096,  # nothing truncated: the same tokens as medcode's examples
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        include_num_input_tokens_seen="non_padding",  # measurement only
        seed=0,
    )
    timer = step_timer()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=medcode_train.lora_config(config, model.config),
        callbacks=[timer],
    )
    settings = (
        f"completion_only_loss={trainer.completion_only_loss}, "
        f"gradient_checkpointing={args.gradient_checkpointing}, bf16={args.bf16}"
    )
    trainer.train()
    return timer.steps, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--corpus", type=Path, default=Path("demo/corpus"))
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--top-layers", type=int, default=8, help="the recipe's top_layers")
    options = parser.parse_args()
    if not options.corpus.exists():
        parser.error(
            f"no corpus at {options.corpus}: run `medcode demo` (it writes demo/corpus) "
            "or pass --corpus"
        )

    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    data = examples(options.corpus, options.examples, options.k)
    results = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        from medcode.model.train_config import TrainConfig

        every = TrainConfig.load(RECIPE).kl_every
        runs = [
            (f"medcode (top {options.top_layers} layers)", options.top_layers, ()),
            (f"medcode (top {options.top_layers}, no KL)", options.top_layers, ["kl_weight=0"]),
            ("medcode (all layers)", 0, ()),
        ]
        if every > 1:
            name = f"medcode (top {options.top_layers}, KL every step)"
            runs.insert(2, (name, options.top_layers, ["kl_every=1"]))
        for name, top_layers, overrides in runs:
            steps, padding = run_medcode(
                options.model,
                data,
                options.steps,
                options.batch,
                top_layers,
                Path(tmp) / "m",
                overrides,
            )
            results[name] = (steps, f"padding {padding:.1%}")
            print(f"{name}: {rate(steps)[0]:.1f} tokens/s", flush=True)
            gc.collect()
        steps, settings = run_trl(
            options.model, data, options.steps, options.batch, Path(tmp) / "t"
        )
        results["trl SFTTrainer (defaults)"] = (steps, settings)
    print()
    print(
        f"model {options.model}, {options.examples} candidates-mode examples (k={options.k}), "
        f"batch {options.batch}, 1 warm-up + {options.steps} timed steps each, "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    trl_rate = rate(results["trl SFTTrainer (defaults)"][0])
    for name, (steps, note) in results.items():
        mean, best = rate(steps)
        seconds = ", ".join(f"{s:.1f}" for s, _ in steps)
        print(
            f"  {name:32s} {mean:7.1f} tokens/s (best step {best:.1f})  "
            f"[{note}; steps: {seconds} s]"
        )
    for name in [n for n in results if n.startswith("medcode")]:
        mean, best = rate(results[name][0])
        print(
            f"  ratio {name} / trl: {mean / trl_rate[0]:.2f}x "
            f"(best steps {best / trl_rate[1]:.2f}x)"
        )
    with_kl = rate(results[f"medcode (top {options.top_layers} layers)"][0])[0]
    without = rate(results[f"medcode (top {options.top_layers}, no KL)"][0])[0]
    print(f"  ratio KL on / KL off (recipe): {with_kl / without:.2f}x")


if __name__ == "__main__":
    main()
