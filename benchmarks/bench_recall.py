"""Recall in the model: why the fine-tuned coder lists what it lists on real text, and which
stop rule and code set fit it. One greedy pass per note that never ends early (``eos_min``
above 1, up to ``--max-codes``) records the end's probability at each point between codes;
the answer under the stop rule "end where the end is the likeliest token and at least
``eos_min`` likely" is a prefix of it (:meth:`medcode.model.constrained.Decoded.cut`; the
baseline, ``eos_min`` 0, is today's first end), validated and policy-completed as ``medcode
predict`` does and scored as ``medcode eval`` does. Two decodings, each measured in the same
run: any valid code (today) and the prompt's candidates only (``--candidates-only``). Prints,
per decoding, on synthetic validation and CodiEsp dev (diagnoses; evaluation only: it
chooses nothing):

- the diagnosis at the first end: gold and listed codes per note, the share of gold codes in
  the prompt's candidates, recall on the gold codes the candidates list and on those they do
  not, the share of listed codes taken from the candidates, the end's median probability,
  notes that never end and notes whose list runs through one category;
- the precision/recall trade-off per ``eos_min`` (micro P/R/F1, codes per note) with its
  ratio against the first end;
- the decoding chosen on synthetic validation alone (the best F1's code set, and in it the
  largest ``eos_min`` within ``--tolerance`` of the best) with its figures on each set.

    .venv/bin/python benchmarks/bench_recall.py ADAPTER CORPUS [--notes 60]
        [--codiesp ../shared/codiesp] [--variants any,candidates] [--plot recall.png]
        [--save answers.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from medcode.eval.commands import score
from medcode.model.backends import Answer, HFBackend, load_coder
from medcode.model.commands import read_notes
from medcode.synth.card import read_rows
from medcode.terminology import icd10cm

RULES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
RUNAWAY = 4  # codes of one 3-character category in one answer: a list running through a family
NEVER = 1.01
RANKS = {"1-5": (1, 5), "6-10": (6, 10), "11+": (11, 10**6)}  # the retriever's rank
VARIANTS = {
    "any": "any code (today)",
    "candidates": "candidates only",
}  # above any probability: the pass that never ends early


def _synthetic(corpus: Path, count: int, seed: int) -> tuple[list[dict], dict[str, list[str]]]:
    notes = read_notes(corpus, "validation")
    random.Random(seed).shuffle(notes)
    notes = sorted(notes[:count], key=lambda n: n["id"])
    wanted = {n["id"] for n in notes}
    gold = {
        str(r["id"]): [c["code"] for c in r["codes"]]
        for r in read_rows(corpus, ["id", "codes", "split"])
        if str(r["id"]) in wanted
    }
    return notes, gold


def _codiesp(folder: Path, count: int, seed: int) -> tuple[list[dict], dict[str, list[str]]]:
    from medcode.eval.codiesp import load

    notes, gold = load(folder, "dev")
    random.Random(seed).shuffle(notes)  # as the demo samples its CodiEsp set
    notes = sorted(notes[:count], key=lambda n: n["id"])
    return [{**n, "context": None} for n in notes], {n["id"]: gold[n["id"]] for n in notes}


def _training_answers(corpus: Path) -> float:
    lengths = [
        len(r["codes"]) for r in read_rows(corpus, ["codes", "split"]) if r["split"] == "train"
    ]
    return statistics.fmean(lengths)


def _answers(coder: HFBackend, notes: list[dict], batch: int, label: str) -> list[Answer]:
    print(f"{label}: {len(notes)} notes, decoding without an early end")
    started = time.perf_counter()
    order = sorted(range(len(notes)), key=lambda i: len(notes[i]["text"]))
    found: dict[int, Answer] = {}
    for start in range(0, len(order), batch):
        chosen = order[start : start + batch]
        decoded = coder.decode(
            [notes[i]["text"] for i in chosen],
            [notes[i]["id"] for i in chosen],
            [notes[i]["context"] if coder.context else None for i in chosen],
            eos_min=NEVER,
        )
        found.update(zip(chosen, decoded, strict=True))
        print(f"  {min(start + batch, len(order))}/{len(order)} notes", end="\r", flush=True)
    answers = [found[i] for i in range(len(notes))]
    elapsed = time.perf_counter() - started
    print(f"\n  {len(notes) / elapsed:.2f} notes/s (never ending: an upper bound on time)")
    return answers


def _raw(note: dict, answer: Answer, gold: dict[str, list[str]]) -> dict:
    decoded = answer.decoded
    return {
        "id": note["id"],
        "gold": gold[note["id"]],
        "codes": decoded.codes,
        "scores": decoded.scores,
        "ends": decoded.ends,
        "candidates": [c.code for c in answer.candidates or []],
    }


def _scored(
    gold: dict[str, list[str]], codes: dict[str, list[str]], diagnoses: bool, folder: Path
) -> dict[str, float]:
    gold_path, predicted_path = folder / "gold.jsonl", folder / "predictions.jsonl"
    gold_path.write_text("".join(json.dumps({"id": k, "codes": v}) + "\n" for k, v in gold.items()))
    predicted_path.write_text(
        "".join(json.dumps({"id": k, "codes": v}) + "\n" for k, v in codes.items())
    )
    micro = score(gold_path, predicted_path, bootstrap=0, diagnoses_only=diagnoses)["micro"]
    return {key: micro[key] for key in ("precision", "recall", "f1")}


def _icd(codes: list[str]) -> set[str]:
    return {icd10cm.normalize(c) for c in codes if icd10cm.looks_like(c)}


def _diagnosis(notes, gold, answers, first_end, ranked, diagnoses: bool) -> dict[str, float]:
    """Why the first end lists what it lists (ICD-10-CM only on CodiEsp); ``ranked``: each
    note's candidates in the retriever's order (best first), whatever the prompt's order."""

    def kept(codes):
        return _icd(codes) if diagnoses else set(codes)

    in_gold = total = in_both = out_gold = out_found = listed = from_candidates = 0
    ends = []
    runaway = never_ended = 0
    by_rank = {band: [0, 0] for band in RANKS}  # gold candidates found, gold candidates
    for note, answer, codes, best_first in zip(notes, answers, first_end, ranked, strict=True):
        runaway += max(Counter(code[:3] for code in codes).values(), default=0) >= RUNAWAY
        truth, said = kept(gold[note["id"]]), kept(codes)
        for rank, candidate in enumerate(best_first, start=1):
            if kept([candidate.code]) & truth:
                band = next(b for b, (low, high) in RANKS.items() if low <= rank <= high)
                by_rank[band][0] += bool(kept([candidate.code]) & said)
                by_rank[band][1] += 1
        offered = kept([c.code for c in answer.candidates or []])
        in_gold += len(truth & offered)
        in_both += len(truth & offered & said)
        out_gold += len(truth - offered)
        out_found += len(truth & said - offered)
        listed += len(said)
        from_candidates += len(said & offered)
        stop = answer.decoded.cut(0.0)
        if stop is not answer.decoded:  # it ended before --max-codes
            ends.append(stop.ends[-1][0])
        else:
            never_ended += 1
        total += len(truth)
    count = len(notes)
    return {
        "gold per note": total / count,
        "listed per note": listed / count,
        "gold in candidates": in_gold / max(total, 1),
        "recall, gold in candidates": in_both / max(in_gold, 1),
        "recall, gold not in candidates": out_found / max(out_gold, 1),
        "listed from candidates": from_candidates / max(listed, 1),
        "end probability at the end (median)": statistics.median(ends) if ends else float("nan"),
        "notes never ending (--max-codes)": never_ended / count,
        f"notes listing {RUNAWAY}+ codes of one category": runaway / count,
        **{
            f"recall, gold candidates ranked {band}": found / max(of, 1)
            for band, (found, of) in by_rank.items()
        },
    }


def _plot(curves: dict[str, list[tuple[float, dict]]], path: Path) -> None:
    """Precision against recall per stop rule: a colour per set, a line style per code set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5))
    colours: dict[str, str] = {}
    for label, points in curves.items():
        name, variant = label.split(", ", 1)
        colour = colours.setdefault(name, f"C{len(colours)}")
        style = "-" if variant == VARIANTS["any"] else "--"
        recall = [p["recall"] for _, p in points]
        precision = [p["precision"] for _, p in points]
        axis.plot(recall, precision, style, marker="o", color=colour, label=label)
        shown: set[tuple[float, float]] = set()
        for (rule, _), x, y in zip(points, recall, precision, strict=True):
            if (round(x, 3), round(y, 3)) in shown:
                continue  # a later eos_min that changed nothing
            shown.add((round(x, 3), round(y, 3)))
            axis.annotate(
                f"{rule:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
    axis.set_xlabel("recall (micro)")
    axis.set_ylabel("precision (micro)")
    axis.set_title("Stop rule (labels: eos_min) and code set")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", type=Path)
    parser.add_argument("corpus", type=Path, help="the synth corpus (its validation split)")
    parser.add_argument("--notes", type=int, default=60, help="notes per set")
    parser.add_argument("--codiesp", type=Path, default=Path("../shared/codiesp"))
    parser.add_argument("--max-codes", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path)
    parser.add_argument(
        "--variants",
        default="any,candidates",
        help="any: any valid code; candidates: the prompt's candidates only (comma-separated)",
    )
    parser.add_argument("--save", type=Path, help="the raw never-ending answers (JSON)")
    args = parser.parse_args()

    coder = load_coder(
        args.adapter, batch_size=args.batch_size, max_codes=args.max_codes, max_new_tokens=256
    )
    assert isinstance(coder, HFBackend)
    sets = {"synthetic validation": _synthetic(args.corpus, args.notes, args.seed)}
    if (args.codiesp / "dev").is_dir():
        sets["CodiEsp dev"] = _codiesp(args.codiesp, args.notes, args.seed)
    else:
        print(f"{args.codiesp}/dev not found: CodiEsp dev skipped")
    print(f"training answers: {_training_answers(args.corpus):.1f} codes per note (train split)")
    curves: dict[str, list[tuple[float, dict]]] = {}
    saved: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (notes, gold) in sets.items():
            diagnoses = name.startswith("CodiEsp")  # CodiEsp-D scores diagnoses only
            for variant in args.variants.split(","):
                coder.candidates_only = variant == "candidates"
                label = f"{name}, {VARIANTS[variant]}"
                answers = _answers(coder, notes, args.batch_size, label)
                saved[label] = [_raw(n, a, gold) for n, a in zip(notes, answers, strict=True)]
                curves[label] = _sweep(coder, notes, gold, answers, diagnoses, Path(scratch))
    _choose(curves, args.tolerance)
    if args.plot:
        _plot(curves, args.plot)
    if args.save:
        args.save.write_text(json.dumps(saved))
        print(f"raw answers: {args.save}")


def _sweep(coder, notes, gold, answers, diagnoses: bool, scratch: Path) -> list[tuple[float, dict]]:
    """Score each stop rule on one set's never-ending answers; print the diagnosis at the
    first end and the trade-off table."""
    points = []
    first_end = None
    for rule in RULES:
        codes = {
            note["id"]: coder.prediction(
                note["text"], answer._replace(decoded=answer.decoded.cut(rule))
            ).codes
            for note, answer in zip(notes, answers, strict=True)
        }
        if first_end is None:
            first_end = [codes[n["id"]] for n in notes]
        listed = statistics.fmean(len(_icd(c) if diagnoses else c) for c in codes.values())
        points.append((rule, {**_scored(gold, codes, diagnoses, scratch), "n": listed}))
    print("  at the first end (eos_min 0):")
    ranked = (
        coder.retriever.candidates([n["text"] for n in notes], coder.k)
        if coder.mode == "candidates"
        else [[] for _ in notes]
    )
    for key, value in _diagnosis(notes, gold, answers, first_end, ranked, diagnoses).items():
        print(f"    {key:<40} {value:.3f}")
    base = points[0][1]
    print(
        f"  {'eos_min':>8} {'codes/note':>10} {'precision':>9} {'recall':>7} {'F1':>6} "
        f"{'F1 ratio':>8}"
    )
    for rule, point in points:
        ratio = point["f1"] / base["f1"] if base["f1"] else float("nan")
        print(
            f"  {rule:>8g} {point['n']:>10.1f} {point['precision']:>9.3f} "
            f"{point['recall']:>7.3f} {point['f1']:>6.3f} {ratio:>7.2f}x"
        )
    return points


def _choose(curves: dict[str, list[tuple[float, dict]]], tolerance: float) -> None:
    """The decoding chosen on synthetic validation alone: the best F1's variant, and in it the
    largest ``eos_min`` within ``tolerance`` of the best; its figures on every set, against
    today's decoding (any code, first end) where measured."""
    validation = {k: v for k, v in curves.items() if k.startswith("synthetic validation")}
    best_label = max(validation, key=lambda k: max(p["f1"] for _, p in validation[k]))
    best = max(p["f1"] for _, p in validation[best_label])
    rule = max(r for r, p in validation[best_label] if p["f1"] >= best - tolerance)
    variant = best_label.split(", ", 1)[1]
    print(
        f"chosen on synthetic validation: {variant}, eos_min {rule:g} (largest within "
        f"{tolerance:g} F1 of the best, {best:.3f})"
    )
    for label, points in curves.items():
        if not label.endswith(variant):
            continue
        name = label.split(", ", 1)[0]
        point = dict(points)[rule]
        today = curves.get(f"{name}, {VARIANTS['any']}")
        against = f" (today: F1 {today[0][1]['f1']:.3f})" if today else ""
        print(
            f"  {name}: P {point['precision']:.3f} R {point['recall']:.3f} "
            f"F1 {point['f1']:.3f}{against}"
        )


if __name__ == "__main__":
    main()
