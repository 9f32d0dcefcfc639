"""Scoring speed: 1,000,000 predicted notes (target: under 10 s), against a baseline measured
in the same run (just reading the same JSONL files with json.loads).

    .venv/bin/python benchmarks/bench_eval.py [N]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from medcode.eval.commands import score

CODES = [
    "E11.22",
    "N18.31",
    "I12.9",
    "I10",
    "E78.5",
    "J44.9",
    "J18.9",
    "R05.9",
    "Z79.4",
    "99213",
    "99214",
    "93000",
    "F32.A",
    "M17.11",
    "I50.22",
    "Z00.00",
    "G0439",
    "K21.9",
]


def write(folder: Path, n: int) -> tuple[Path, Path]:
    rng = random.Random(0)
    gold, pred = folder / "gold.jsonl", folder / "pred.jsonl"
    with gold.open("w") as g, pred.open("w") as p:
        for i in range(n):
            codes = rng.sample(CODES, rng.randint(2, 7))
            guess = [c for c in codes if rng.random() < 0.7] + rng.sample(CODES, rng.randint(0, 2))
            g.write(json.dumps({"id": f"n{i}", "codes": codes}) + "\n")
            p.write(json.dumps({"id": f"n{i}", "codes": guess}) + "\n")
    return gold, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000, help="notes to score")
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory() as tmp:
        gold, pred = write(Path(tmp), n)
        started = time.perf_counter()
        for path in (gold, pred):
            with path.open() as handle:
                for line in handle:
                    json.loads(line)
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        result = score(gold, pred, bootstrap=1000)
        score_s = time.perf_counter() - started
    print(
        f"notes: {n:,}; micro F1 {result['micro']['f1']:.4f} "
        f"(95% CI {result['ci']['micro']['f1'][0]:.4f}-{result['ci']['micro']['f1'][1]:.4f})"
    )
    print(f"baseline, json.loads of both files: {read_s:.2f} s")
    print(
        f"medcode eval (read, align, score, 1000 bootstrap resamples): {score_s:.2f} s "
        f"({score_s / read_s:.1f}x the baseline)"
    )
    projected = score_s * 1_000_000 / n
    print(
        f"target 1,000,000 notes < 10 s: projected {projected:.1f} s: "
        f"{'PASS' if projected < 10 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
