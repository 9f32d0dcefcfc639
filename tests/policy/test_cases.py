"""The worked guideline cases: facts -> exact codes.

tests/assets/policy_cases.yaml are the cases written with the engine; the cases of
tests/assets/policy_cases_coder.yaml were written independently by a certified coder who
had not read the engine, each mismatch reconciled against the guideline (a case whose
expectation was changed says why under ``reconciled``)."""

from pathlib import Path

import pytest
import yaml

from medcode.policy import code
from medcode.policy.rules import RULES
from medcode.records import Encounter

ASSETS = Path(__file__).parents[1] / "assets"
CASES = yaml.safe_load((ASSETS / "policy_cases.yaml").read_text())
CODER_CASES = yaml.safe_load((ASSETS / "policy_cases_coder.yaml").read_text())
# consultations and minor-procedure notes, by a second independent coder (issue 16)
VISIT_CASES = yaml.safe_load((ASSETS / "policy_cases_consult_procedure.yaml").read_text())
ALL_CASES = CASES + CODER_CASES + VISIT_CASES


def run_case(case: dict):
    data = {"id": case["id"], **case["encounter"]}
    return code(Encounter.from_dict(data))


def test_there_are_enough_cases_each_citing_a_section():
    assert len(CASES) >= 60
    assert len(CODER_CASES) >= 100
    assert len({case["id"] for case in ALL_CASES}) == len(ALL_CASES)
    assert all(case["section"].strip() and case["why"].strip() for case in ALL_CASES)


@pytest.mark.parametrize("case", ALL_CASES, ids=[case["id"] for case in ALL_CASES])
def test_case(case):
    result = run_case(case)
    assert result.code_list == [str(c) for c in case["codes"]], "\n".join(
        f"{s.fact}: {s.rule}: {s.message}" for s in result.steps
    )
    assert sorted({w.kind for w in result.warnings}) == sorted(set(case.get("warnings") or []))


def test_every_rule_fires_in_some_case():
    fired = set()
    for case in ALL_CASES:
        result = run_case(case)
        fired |= result.rules_fired | {c.rule for c in result.codes}
    assert set(RULES) - fired == set()
