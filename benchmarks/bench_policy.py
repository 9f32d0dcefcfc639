"""Policy engine throughput: encounters coded per second, against a baseline measured in the
same run (building the same encounters from dicts, i.e. the cost of just reading them).

    .venv/bin/python benchmarks/bench_policy.py [N]

The issue's target: 100,000 encounters in under 20 s on the 2-core machine.
"""

from __future__ import annotations

import random
import sys
import time

from medcode.policy import code
from medcode.records import Encounter

PROBLEMS = [
    ("E11.9", "chronic"),
    ("N18.31", "chronic"),
    ("I10", "chronic"),
    ("I50.22", "chronic"),
    ("J44.9", "chronic"),
    ("J18.9", "uncertain"),
    ("J01.00", "active"),
    ("N39.0", "active"),
    ("C50.911", "history"),
    ("C18.9", "family_history"),
    ("I20.9", "ruled_out"),
    ("R07.9", "negated"),
    ("E78.5", "chronic"),
    ("F32.A", "active"),
    ("G30.9", "chronic"),
    ("M17.11", "chronic"),
    ("R73.9", "active"),
    ("L97.419", "active"),
    ("Z87.891", "active"),
    ("K21.9", "chronic"),
    ("E66.9", "active"),
    ("F17.210", "history"),
    ("I48.91", "chronic"),
]
MEDICATIONS = ["insulin", "oral_hypoglycemic", "anticoagulant", "aspirin", "long_term_opioid"]
KINDS = [
    ("office", "outpatient"),
    ("telehealth", "outpatient"),
    ("emergency", "emergency"),
    ("hospital_admission", "inpatient"),
    ("preventive", "outpatient"),
]
MDMS = ["straightforward", "low", "moderate", "high"]


def make(rng: random.Random, index: int) -> dict:
    kind, setting = rng.choice(KINDS)
    problems = []
    for problem_code, status in rng.sample(PROBLEMS, rng.randint(1, 8)):
        problem = {"code": problem_code, "status": status}
        if status == "uncertain":
            problem["symptoms"] = ["R05.9", "R50.9"]
        if problem_code == "N39.0":
            problem["organism"] = "B96.20"
        problems.append(problem)
    return {
        "id": f"bench-{index}",
        "setting": setting,
        "patient": {"age": rng.randint(18, 95), "sex": rng.choice("FM")},
        "visit": {"kind": kind, "new_patient": rng.random() < 0.2, "mdm": rng.choice(MDMS)},
        "problems": problems,
        "medications": [{"class": c} for c in rng.sample(MEDICATIONS, rng.randint(0, 2))],
        "procedures": [{"code": "93000"}] if rng.random() < 0.3 else [],
    }


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = random.Random(0)
    raw = [make(rng, i) for i in range(count)]
    code(Encounter.from_dict(raw[0]))  # load the tabular and tables once
    started = time.perf_counter()
    encounters = [Encounter.from_dict(item) for item in raw]
    parse_s = time.perf_counter() - started
    started = time.perf_counter()
    total_codes = sum(len(code(encounter).codes) for encounter in encounters)
    code_s = time.perf_counter() - started
    print(f"encounters: {count:,} ({total_codes / count:.1f} codes each)")
    print(f"baseline, parse only: {count / parse_s:,.0f} encounters/s ({parse_s:.2f} s)")
    print(f"policy engine:        {count / code_s:,.0f} encounters/s ({code_s:.2f} s)")
    print(f"engine cost relative to parsing: {code_s / parse_s:.1f}x")
    print(
        f"target 100,000 in < 20 s: projected {code_s * 100_000 / count:.1f} s "
        f"({'met' if code_s * 100_000 / count < 20 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
