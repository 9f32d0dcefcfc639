from collections import defaultdict
from pathlib import Path

import pytest

from medcode.errors import DataFileError
from medcode.synth.privacy import find_phi
from medcode.synth.render import NOTE_TYPES, mark, strip_marks
from medcode.synth.templates import load_templates, shipped_templates

ASSETS = Path(__file__).parents[1] / "assets" / "synth"


def test_every_note_type_has_families_and_a_held_out_one():
    families = defaultdict(set)
    ood = defaultdict(set)
    for template in shipped_templates():
        (ood if template.ood else families)[template.note_type].add(template.family)
    for note_type in NOTE_TYPES:
        assert len(families[note_type] | ood[note_type]) >= 3, note_type
        assert len(families[note_type]) >= 2 and ood[note_type], note_type


def test_unknown_variable_names_file_and_line():
    with pytest.raises(DataFileError) as caught:
        load_templates(ASSETS / "templates_badvar", user=True)
    assert caught.value.line == 5 and "insurance_number" in str(caught.value)


def test_user_template_with_phi_is_refused_with_its_line():
    with pytest.raises(DataFileError) as caught:
        load_templates(ASSETS / "templates_phi", user=True)
    assert caught.value.line == 5 and "phone number" in str(caught.value)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("Seen on 03/14/2024 for follow-up", "a date"),
        ("MRN: 12345678", "an MRN or account number"),
        ("Lives at 42 Maple Street", "a street address"),
        ("Patient John Smith was seen", "a person's name"),
        ("Email jane.doe@example.com", "an email address"),
    ],
)
def test_phi_patterns(line, kind):
    assert kind in {found[1] for found in find_phi(line)}


def test_template_variables_are_not_phi():
    assert find_phi("Seen {{ date }} by {{ provider }}, MRN {{ patient.mrn }}") == []


def test_marks_become_spans():
    text, spans = strip_marks(f"A {mark('problems[0]', 'HTN')} and {mark('visit', 'AWV')}.")
    assert text == "A HTN and AWV."
    assert text[slice(*spans["problems[0]"][0])] == "HTN"
    assert text[slice(*spans["visit"][0])] == "AWV"
