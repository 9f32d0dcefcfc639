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
