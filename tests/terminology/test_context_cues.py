"""The context cues file: validated on load, and read by the retriever's lexicon."""

import pytest

from medcode.errors import DataFileError
from medcode.terminology.context_cues import SECTIONS, load_context_cues, shipped_context_cues


def test_the_shipped_cues_load_and_cite_their_sources():
    cues = shipped_context_cues()
    assert set(cues.sections) == set(SECTIONS)
    assert "no" in cues["negation_before"] and "gram negative" in cues["pseudo"]


def _write(tmp_path, **changed):
    import yaml

    data = {
        name: {"source": "the NegEx and ConText trigger lists", "phrases": ["x"]}
        for name in SECTIONS
    }
    data.update(changed)
    path = tmp_path / "cues.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("changed", "problem"),
    [
        (
            {"pseudo": {"source": "the NegEx pseudo-negation phrase list", "phrases": [False]}},
            "quote no",
        ),
        (
            {"pseudo": {"source": "the NegEx pseudo-negation phrase list", "phrases": ["Gram"]}},
            "lower-case",
        ),
        (
            {"pseudo": {"source": "the NegEx pseudo-negation phrase list", "phrases": ["a", "a"]}},
            "twice",
        ),
        ({"pseudo": {"source": "NegEx", "phrases": ["a"]}}, "cite"),
        ({"pseudo": {"phrases": ["a"]}}, "source and phrases"),
        ({"pseudo": {"source": "the NegEx pseudo-negation phrase list", "phrases": []}}, "none"),
    ],
)
def test_a_wrong_entry_names_file_line_and_problem(tmp_path, changed, problem):
    path = _write(tmp_path, **changed)
    with pytest.raises(DataFileError, match=problem) as caught:
        load_context_cues(path)
    assert str(path) in str(caught.value)


def test_a_missing_section_is_named(tmp_path):
    path = _write(tmp_path)
    text = path.read_text()
    path.write_text(text[: text.index("terminators:")])
    with pytest.raises(DataFileError, match="expected negation_before"):
        load_context_cues(path)
