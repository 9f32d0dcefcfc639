"""Baseline coder: training time on N synthetic notes (target: 100,000 in under 5 minutes)
and prediction speed (target: at least 500 notes/s), with the TF-IDF transform alone
measured in the same run as the reference.

    .venv/bin/python benchmarks/bench_baseline.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from medcode.baselines.tfidf import TfidfCoder
from medcode.synth.card import read_rows
from medcode.synth.generate import SynthConfig, run


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        run(SynthConfig(n=n, seed=42), corpus, workers=2)
        rows = list(read_rows(corpus, ["text", "codes", "split"]))
    train = [r for r in rows if r["split"] == "train"]
    validation = [r for r in rows if r["split"] == "validation"]
    test = [r for r in rows if r["split"] == "test"][:5000]
    started = time.perf_counter()
    coder = TfidfCoder().fit(
        [r["text"] for r in train],
        [[c["code"] for c in r["codes"]] for r in train],
        [r["text"] for r in validation],
        [[c["code"] for c in r["codes"]] for r in validation],
    )
    train_s = time.perf_counter() - started
    texts = [r["text"] for r in test]
    started = time.perf_counter()
    coder.vectorizer.transform(texts)
    transform_s = time.perf_counter() - started
    started = time.perf_counter()
    coder.predict(texts)
    predict_s = time.perf_counter() - started
    print(
        f"corpus: {n:,} notes ({len(train):,} train, {len(validation):,} validation); "
        f"{len(coder.codes):,} codes learned"
    )
    print(
        f"training: {train_s:.0f} s (target < 300 s for 100,000 notes: "
        f"{'met' if train_s * 100_000 / n < 300 else 'NOT met'})"
    )
    print(
        f"prediction: {len(texts) / predict_s:,.0f} notes/s (target >= 500); the TF-IDF "
        f"transform alone: {len(texts) / transform_s:,.0f} notes/s "
        f"(prediction costs {predict_s / transform_s:.2f}x the transform)"
    )


if __name__ == "__main__":
    main()
