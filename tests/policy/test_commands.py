import json
from pathlib import Path

ASSETS = Path(__file__).parents[1] / "assets"
EXAMPLE = ASSETS / "encounter_example.json"


def test_code_json(cli):
    status, out, _ = cli("policy", "code", str(EXAMPLE), "--json")
    data = json.loads(out)
    assert status == 0
    assert [c["code"] for c in data["codes"]][:3] == ["E11.22", "N18.31", "I12.9"]
    assert {"code", "system", "rule", "source"} <= set(data["codes"][0])
    assert data["codes"][-2]["system"] == "CPT"


def test_code_table(cli):
    status, out, _ = cli("policy", "code", str(EXAMPLE))
    assert status == 0 and "E11.22" in out and "combination.diabetes" in out


def test_explain_shows_facts_and_rules(cli):
    status, out, _ = cli("policy", "explain", str(EXAMPLE))
    assert status == 0
    assert "problems[3] J18.9 (uncertain)" in out and "status.uncertain_outpatient" in out
    assert "IV.H" in out and "ruled_out: not coded" in out


def test_json_lines_input(cli, tmp_path):
    record = json.loads(EXAMPLE.read_text())
    lines = tmp_path / "many.jsonl"
    lines.write_text("\n".join(json.dumps(record | {"id": f"e{i}"}) for i in range(3)))
    status, out, _ = cli("policy", "code", str(lines), "--json")
    assert status == 0 and [r["id"] for r in json.loads(out)] == ["e0", "e1", "e2"]


def test_malformed_encounter_names_path(cli, tmp_path):
    bad = json.loads(EXAMPLE.read_text())
    bad["problems"][3]["status"] = "probable"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    status, out, err = cli("policy", "code", str(path))
    assert status == 2 and out == ""
    assert "encounter.problems[3].status" in err and "'probable'" in err
    assert "Traceback" not in err


def test_invalid_code_names_path(cli, tmp_path):
    bad = json.loads(EXAMPLE.read_text())
    bad["problems"][0]["code"] = "E11.99"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    status, _, err = cli("policy", "code", str(path))
    assert status == 2 and "encounter.problems[0].code" in err and "E11.99" in err


def test_invalid_json_names_line(cli, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "a"}\n{not json}\n')
    status, _, err = cli("policy", "code", str(path))
    assert status == 1 and "broken.jsonl:2: invalid JSON" in err


def test_strict_fails_on_warnings(cli, tmp_path):
    record = json.loads(EXAMPLE.read_text())
    record["problems"] = [{"code": "N40.0", "status": "chronic"}]  # prostate code, female
    path = tmp_path / "edit.json"
    path.write_text(json.dumps(record))
    status, out, err = cli("policy", "code", str(path), "--json")
    assert status == 0 and json.loads(out)["warnings"][0]["kind"] == "sex"
    assert "[sex]" in err
    status, _, err = cli("policy", "code", str(path), "--strict")
    assert status == 3 and "--strict" in err
