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


# Coder look-ups: the Alphabetic Index phrases rank a code as the index reads it, defaults
# included (diabetes without a type is E11; "Pneumonia" > "Klebsiella" is J15.0).
@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("diabetes kidney", "E11.22"),
        ("klebsiella pneumonia", "J15.0"),
        ("hypertension", "I10"),
        ("copd exacerbation", "J44.1"),
        ("essential hypertension", "I10"),
        ("hypertensive crisis", "I16.9"),
        ("diabetic retinopathy", "E11.319"),
        ("diabetic foot ulcer", "E11.621"),
        ("diabetic ketoacidosis", "E11.10"),
        ("aspiration pneumonia", "J69.0"),
        ("metastasis to liver", "C78.7"),
        ("adverse effect of warfarin", "T45.515"),
    ],
)
def test_coder_lookups(index, query, first):
    assert index.search(query, limit=5)[0].code == first


def test_index_phrase_hits_show_the_tabular_description(index):
    hit = index.search("diabetes kidney", limit=1)[0]
    assert hit.system is System.ICD10CM
    assert hit.description == "Type 2 diabetes mellitus with diabetic chronic kidney disease"
    assert hit.billable


def test_billable_code_wins_a_tie(index):
    # "lung cancer" is an index phrase of C34.9 (the Table of Neoplasms' C34.9-) and of C34.90.
    codes = [h.code for h in index.search("lung cancer", limit=3)]
    assert codes[0] == "C34.90"
    assert "C34.9" in codes


def test_search_without_index_terms(index):
    old = CodeSearch.build(with_index_terms=False)
    assert old._n_rows < index._n_rows
    assert old.search("type 2 diabetes chronic kidney disease", limit=1)[0].code == "E11.22"
