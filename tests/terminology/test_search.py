import pytest

from medcode.records import System
from medcode.terminology.search import CodeSearch


@pytest.fixture(scope="module")
def index() -> CodeSearch:
    return CodeSearch.build()


def test_ranked_matches(index):
    hits = index.search("type 2 diabetes chronic kidney disease", limit=5)
    assert hits[0].code == "E11.22"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_inclusion_terms_are_searched(index):
    # "high blood pressure" is an inclusion term of I10, not its description.
    assert "I10" in [h.code for h in index.search("high blood pressure", limit=5)]


def test_partial_words_expand(index):
    assert index.search("diab nephrop", limit=3)[0].code.startswith(("E1", "E0"))


def test_cpt_and_hcpcs_are_searched(index):
    codes = [h.code for h in index.search("walker", limit=10, system=System.HCPCS)]
    assert "E0130" in codes or "E0143" in codes
    assert all(h.system is System.HCPCS for h in index.search("walker", system=System.HCPCS))


def test_code_query_ranks_that_code_first(index):
    assert index.search("E11.22")[0].code == "E11.22"


def test_billable_only(index):
    assert all(h.billable for h in index.search("diabetes", limit=20, billable_only=True))


def test_empty_query(index):
    with pytest.raises(ValueError, match="empty search"):
        index.search("   ")


def test_no_match_returns_empty(index):
    assert index.search("qqqzzzxx") == []
