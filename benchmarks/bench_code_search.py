"""Code search latency: the TF-IDF index against a naive scan, measured in the same run.

    .venv/bin/python benchmarks/bench_code_search.py

The issue's target: under 50 ms a query once the index is loaded.
"""

from __future__ import annotations

import statistics
import time

from medcode.terminology import icd10cm
from medcode.terminology.search import CodeSearch, _words

QUERIES = [
    "type 2 diabetes chronic kidney disease",
    "chest pain",
    "copd exacerbation",
    "hip fracture",
    "high blood pressure",
    "heart failure with reduced ejection fraction",
    "urinary tract infection",
    "walker",
    "major depressive disorder recurrent",
    "pressure ulcer sacral stage 3",
    "annual wellness visit",
    "influenza vaccine",
]


def naive_scan(texts: list[tuple[str, str]], query: str, limit: int = 10) -> list[str]:
    """Baseline: count query words found in each description, over every code."""
    words = _words(query)
    scored = [(sum(w in text for w in words), code) for code, text in texts]
    scored.sort(key=lambda item: -item[0])
    return [code for score, code in scored[:limit] if score]


def timed(function, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    started = time.perf_counter()
    index = CodeSearch.build()
    build_s = time.perf_counter() - started
    texts = [(code, icd10cm.description(code).lower()) for code in icd10cm.all_codes()]
    index.search("warm up")
    indexed = [timed(lambda q=q: index.search(q)) for q in QUERIES]
    naive = [timed(lambda q=q: naive_scan(texts, q), repeats=3) for q in QUERIES]
    indexed_ms = statistics.median(indexed) * 1000
    naive_ms = statistics.median(naive) * 1000
    print(f"index build: {build_s:.2f} s for {len(texts):,} ICD-10-CM codes + CPT/HCPCS")
    print(f"median query, TF-IDF index: {indexed_ms:.2f} ms (max {max(indexed) * 1000:.2f} ms)")
    print(f"median query, naive scan:   {naive_ms:.2f} ms")
    print(f"speed-up vs naive scan: {naive_ms / indexed_ms:.1f}x")
    print(f"target < 50 ms per query: {'met' if max(indexed) < 0.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
