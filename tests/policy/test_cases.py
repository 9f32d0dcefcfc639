"""The worked guideline cases of tests/assets/policy_cases.yaml: facts -> exact codes."""

from pathlib import Path

import pytest
import yaml

from medcode.policy import code
from medcode.policy.rules import RULES
from medcode.records import Encounter

CASES_FILE = Path(__file__).parents[1] / "assets" / "policy_cases.yaml"
CASES = yaml.safe_load(CASES_FILE.read_text())


def run_case(case: dict):
    data = {"id": case["id"], **case["encounter"]}
    return code(Encounter.from_dict(data))


def test_there_are_enough_cases_each_citing_a_section():
    assert len(CASES) >= 60
    assert len({case["id"] for case in CASES}) == len(CASES)
    assert all(case["section"].strip() for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_case(case):
    result = run_case(case)
    assert result.code_list == case["codes"], "\n".join(
        f"{s.fact}: {s.rule}: {s.message}" for s in result.steps
    )
    assert sorted({w.kind for w in result.warnings}) == sorted(set(case.get("warnings") or []))


def test_every_rule_fires_in_some_case():
    fired = set()
    for case in CASES:
        fired |= run_case(case).rules_fired
        fired |= {c.rule for c in run_case(case).codes}
    assert set(RULES) - fired == set()
