"""Synthetic corpus generation: throughput per worker, scaling to 2 workers, peak memory,
label coverage and determinism, all measured in one run.

    .venv/bin/python benchmarks/bench_synth.py [N]      # default N = 100,000

Targets (issue 4): >= 2,000 notes/s per worker end to end including Parquet writing; peak
memory under 1 GB; 2 workers >= 1.7x one worker; in 100,000 notes >= 1,500 distinct
billable ICD-10-CM codes, >= 40 distinct CPT/HCPCS codes, >= 5% of notes with an Advanced
Illness code and >= 5% with a Frailty code; same seed -> byte-identical shards.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from medcode.synth.generate import SynthConfig, run, _world
config = SynthConfig(n=int(sys.argv[2]), seed=int(sys.argv[3]))
_world(config)                       # load catalog, tabular and templates before timing
started = time.perf_counter()
run(config, Path(sys.argv[1]), workers=int(sys.argv[4]))
elapsed = time.perf_counter() - started
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
print(json.dumps({"seconds": elapsed, "peak_mb": peak}))
"""


def generate(out: Path, n: int, seed: int, workers: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), str(n), str(seed), str(workers)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit(f"generation failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def digest(folder: Path) -> str:
    hasher = hashlib.sha256()
    for path in sorted((folder / "data").glob("*")):
        hasher.update(path.name.encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    from medcode.synth.card import collect

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = generate(tmp / "one", n, 1, 1)
        two = generate(tmp / "two", n, 1, 2)
        per_worker = n / one["seconds"]
        print(f"notes: {n:,}")
        print(
            f"1 worker:  {per_worker:,.0f} notes/s ({one['seconds']:.1f} s), "
            f"peak memory {one['peak_mb']:.0f} MB"
        )
        print(
            f"2 workers: {n / two['seconds']:,.0f} notes/s ({two['seconds']:.1f} s), "
            f"peak memory per process {two['peak_mb']:.0f} MB"
        )
        print(f"scaling 2 workers vs 1: {one['seconds'] / two['seconds']:.2f}x (target >= 1.7x)")
        print(f"per-worker target >= 2,000 notes/s: {'met' if per_worker >= 2000 else 'NOT met'}")
        same = digest(tmp / "one") == digest(tmp / "two")
        print(f"identical shards for 1 and 2 workers (same seed): {same}")
        stats = collect(tmp / "one")
        share = {k: v / stats.notes for k, v in stats.notes_with_category.items()}
        print(
            f"distinct billable ICD-10-CM codes: {stats.distinct('ICD-10-CM'):,} (target >= 1,500)"
        )
        cpt = stats.distinct("CPT") + stats.distinct("HCPCS")
        print(f"distinct CPT/HCPCS codes: {cpt} (target >= 40)")
        print(
            f"notes with an Advanced Illness code: {share.get('advanced_illness', 0):.1%} "
            f"(target >= 5%)"
        )
        print(f"notes with a Frailty code: {share.get('frailty', 0):.1%} (target >= 5%)")
        peak = max(one["peak_mb"], two["peak_mb"])
        print(f"peak memory target < 1 GB: {'met' if peak < 1024 else 'NOT met'}")


if __name__ == "__main__":
    main()
