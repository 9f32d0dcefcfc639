import json
from pathlib import Path

ASSETS = Path(__file__).parents[1] / "assets" / "synth"


def test_synth_writes_shards_and_a_card(cli, tmp_path):
    out = tmp_path / "OUT"
    status, _, err = cli("synth", "--n", "120", "--seed", "7", "--out", str(out))
    assert status == 0, err
    assert sorted(p.name for p in (out / "card").glob("*.png")) == [
        "categories.png",
        "code_frequency.png",
        "em_levels.png",
        "note_length.png",
        "note_types.png",
    ]
    card = (out / "README.md").read_text()
    assert "configs:" in card and "120 notes" in card
    assert json.loads((out / "synth_config.json").read_text())["seed"] == 7


def test_jsonl_format_and_one_shard(cli, tmp_path):
    out = tmp_path / "J"
    status, _, err = cli(
        "synth",
        "--n",
        "60",
        "--seed",
        "1",
        "--out",
        str(out),
        "--format",
        "jsonl",
        "--shard",
        "1/2",
    )
    assert status == 0, err
    files = sorted(p.name for p in (out / "data").glob("*.jsonl"))
    assert files and all("-00001-of-00002" in name for name in files)
    assert not (out / "README.md").exists()  # shard 0 is still missing


def test_bad_templates_fail_before_anything_is_written(cli, tmp_path):
    out = tmp_path / "BAD"
    status, _, err = cli(
        "synth", "--n", "10", "--out", str(out), "--templates", str(ASSETS / "templates_phi")
    )
    assert status == 2 and "note.j2:5" in err and "phone number" in err
    assert not (out / "data").exists()


def test_impossible_profile_is_a_clear_error(cli, tmp_path):
    status, _, err = cli(
        "synth",
        "--n",
        "10",
        "--out",
        str(tmp_path / "P"),
        "--profile",
        str(ASSETS / "bad_profile.yaml"),
    )
    assert status == 2 and "sum to 0.9" in err


def test_audit_reports_overlap(cli, tmp_path):
    out = tmp_path / "A"
    assert cli("synth", "--n", "40", "--seed", "2", "--out", str(out))[0] == 0
    reference = tmp_path / "ref"
    reference.mkdir()
    from medcode.synth.card import read_rows

    first = next(iter(read_rows(out, ["text"])))["text"]
    (reference / "copied.txt").write_text("Some preamble. " + first)
    status, text, _ = cli("synth", "audit", str(out), "--reference", str(reference), "--json")
    report = json.loads(text)
    assert status == 0 and report["notes"] == 40 and report["notes_with_overlap"] >= 1


def test_audit_reports_realism_with_and_without_a_reference(cli, tmp_path):
    out = tmp_path / "R"
    assert cli("synth", "--n", "40", "--seed", "3", "--out", str(out))[0] == 0
    card = (out / "README.md").read_text()
    assert "## Realism" in card and "code-title leakage" in card
    assert "realism" in json.loads((out / "card" / "stats.json").read_text())

    status, text, err = cli("synth", "audit", str(out))
    assert status == 0, err
    for metric in (
        "repeated lines",
        "3-word sentence openings",
        "code-title leakage",
        "reasoning language",
        "words per note",
        "phrasings per code",
    ):
        assert metric in text
    assert "skipped" in text and "--reference" in text

    status, text, err = cli("synth", "audit", str(out), "--json", "--limit", "30")
    report = json.loads(text)
    assert status == 0 and report["notes"] == 30 and report["realism"]["notes"] == 30
    assert "classifier" not in report and "skipped" in report

    reference = ASSETS / "reference"
    status, text, err = cli("synth", "audit", str(out), "--reference", str(reference))
    assert status == 0, err
    assert "ROC AUC" in text and "most synthetic" in text and "verbatim 8-gram" in text

    status, text, _ = cli("synth", "audit", str(out), "--reference", str(reference), "--json")
    report = json.loads(text)
    model = report["classifier"]
    assert model["notes_per_class"] == 4 and model["folds"] == 4 and 0 <= model["auc"] <= 1
    assert len(model["synthetic_features"]) == 15 and len(model["reference_features"]) == 15
    assert report["reference_realism"]["notes"] == 4 and report["notes_with_overlap"] == 0


def test_audit_errors_are_one_sentence(cli, tmp_path):
    status, _, err = cli("synth", "audit", str(tmp_path))
    assert status == 1 and "not a corpus folder" in err and "Traceback" not in err
    (tmp_path / "data").mkdir()
    status, _, err = cli("synth", "audit", str(tmp_path), "--reference", str(tmp_path / "no"))
    assert status == 1 and "not a folder" in err
    status, _, err = cli("synth", "audit", str(tmp_path))
    assert status == 1 and "has no notes" in err
