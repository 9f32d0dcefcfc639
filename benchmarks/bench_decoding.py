"""Constrained decoding vs plain ``generate``: notes/s on the same notes and prompts, greedy,
same ``max_new_tokens`` (target: constrained at least 3x faster), and the invalid codes each
emits (target: 0 for constrained).

Batches alternate between the two methods so that a busy machine slows both alike.

    .venv/bin/python benchmarks/bench_decoding.py [--model embedded] [--corpus demo/corpus]
        [--n 16] [--batch-size 8] [--max-new-tokens 256] [--split test]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from medcode.model.backends import CodeValidator
from medcode.model.constrained import constrained_generate, plain_generate, trie_for
from medcode.model.loading import load
from medcode.model.prompt import build_prompt
from medcode.synth.card import read_rows


def prefill(model, tokenizer, prompts) -> None:
    """The prompt pass alone (the model body over the left-padded batch, no head)."""
    import torch

    from medcode.model.head import hidden_states

    encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    encoded = encoded.to(next(model.parameters()).device)
    with torch.inference_mode():
        hidden_states(model, encoded["input_ids"], encoded["attention_mask"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--corpus", type=Path, default=Path("demo/corpus"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)  # as medcode predict
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if not args.corpus.exists():
        parser.error(
            f"no corpus at {args.corpus}: run `medcode demo` (it writes demo/corpus) "
            "or pass --corpus"
        )

    rows = [
        r
        for r in read_rows(args.corpus, ["id", "text", "codes", "split"])
        if r["split"] == args.split
    ][: args.n]
    # Batched by length, as HFBackend does (less padding); both methods get the same batches.
    prompts = sorted((build_prompt(r["text"]) for r in rows), key=len)
    loaded = load(args.model, device=args.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    started = time.perf_counter()
    validator = CodeValidator()
    trie = trie_for(tokenizer, validator.codes)
    trie_s = time.perf_counter() - started
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    print(
        f"{loaded.source.label} on {loaded.device}: {len(prompts)} notes from {args.corpus} "
        f"(prompts {min(lengths)}-{max(lengths)} tokens, mean {sum(lengths) / len(lengths):.0f}); "
        f"batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, greedy"
    )
    print(f"code trie: {len(trie):,} codes, {len(trie.children):,} nodes, built in {trie_s:.2f} s")

    constrained_generate(model, tokenizer, prompts[:1], trie=trie, max_new_tokens=2)  # warm-up
    plain_generate(model, tokenizer, prompts[:1], max_new_tokens=2)
    seconds = {"constrained": 0.0, "plain": 0.0, "prefill": 0.0}
    answers: dict[str, list] = {"constrained": [], "plain": []}
    for index, start in enumerate(range(0, len(prompts), args.batch_size)):
        batch = prompts[start : start + args.batch_size]
        methods = ("constrained", "plain", "prefill")
        for name in methods if index % 2 == 0 else methods[::-1]:
            began = time.perf_counter()
            if name == "prefill":
                prefill(model, tokenizer, batch)
                seconds[name] += time.perf_counter() - began
                continue
            if name == "constrained":
                found = constrained_generate(
                    model, tokenizer, batch, trie=trie, max_new_tokens=args.max_new_tokens
                )
            else:
                found = plain_generate(model, tokenizer, batch, max_new_tokens=args.max_new_tokens)
            seconds[name] += time.perf_counter() - began
            answers[name].extend(found)

    rate = {name: len(prompts) / seconds[name] for name in ("constrained", "plain")}
    for name in ("plain", "constrained"):
        found = answers[name]
        invalid = sum(len(validator(a.codes)[2]) for a in found)
        valid = sum(len(validator(a.codes)[0]) for a in found)
        tokens = sum(a.tokens for a in found)
        stopped = sum(a.finished for a in found)
        print(
            f"{name:>11}: {rate[name]:.3f} notes/s ({seconds[name]:.1f} s; "
            f"{tokens / seconds[name]:.1f} generated tokens/s, {tokens / len(found):.0f} per "
            f"note, {stopped}/{len(found)} stopped at EOS); {valid} valid codes, "
            f"{invalid} invalid codes emitted"
        )
    ratio = rate["constrained"] / rate["plain"]
    print(
        f"constrained / plain: {ratio:.2f}x notes/s (target >= 3x: "
        f"{'met' if ratio >= 3 else 'NOT met'})"
    )
    decode = {name: seconds[name] - seconds["prefill"] for name in ("constrained", "plain")}
    if min(decode.values()) > 0:
        after = (
            f"plain {decode['plain']:.1f} s, constrained {decode['constrained']:.1f} s "
            f"({decode['plain'] / decode['constrained']:.2f}x)"
        )
    else:
        after = "not measurable (the prefill run took longer than a whole run: a busy machine)"
    print(f"prompt prefill alone (shared by both): {seconds['prefill']:.1f} s; after it: {after}")
    sample = answers["plain"][0].text.replace("\n", "\\n")[:80]
    print(f"first note, plain text: {sample!r}; constrained: {answers['constrained'][0].codes[:6]}")


if __name__ == "__main__":
    main()
