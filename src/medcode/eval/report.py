"""``medcode report RUN_DIR... --out DIR``: compare coders in one Markdown report and one
self-contained HTML report (PNG plots embedded as data URIs, inline CSS), with the PNGs in
``DIR/plots/``. Every figure links back to the predictions file and the ``metrics.json`` it
comes from.

Input layout. One RUN_DIR is one system (coder)::

    RUN_DIR/
      run.json            optional: {"name": "baseline", "config": {...any JSON...}}
      metrics.json        an evaluation set scored by `medcode eval --out RUN_DIR` ...
      <set>/metrics.json  ... and/or one per subfolder (`medcode eval --out RUN_DIR/test`)
      train_log.jsonl     optional: one {"step", "loss", "tokens"?, "seconds"?, "eval_f1"?} a line
      knowledge.json      optional, from `medcode eval knowledge --out RUN_DIR`: {"model": str,
                            "mmlu_medical": {"accuracy": float, "n": int, ...},
                            "perplexity": {"codiesp": float, ...}}  (null: not measured)
      *.yaml, *.yml, config*.json   optional: shown verbatim under "Run configs"

The system's name is ``run.json``'s ``"name"``, else the folder's name. An evaluation set is
named after its subfolder (``test``, ``test_ood``, ``codiesp_dev``); a top-level
``metrics.json`` is named by its ``inputs.split`` when present, else by its only scored split
(``by_split``) when there is exactly one, else ``all``. Error examples are found by re-reading
the gold and predictions files that ``metrics.json`` names in ``inputs``.

Nothing is read and nothing heavy (matplotlib, jinja2, the terminology) is imported until a
function asks for it.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from medcode.errors import MedcodeError

GROUPINGS = (
    ("by_system", "code system"),
    ("by_category", "category"),
    ("by_split", "split"),
)
BANDS = (("head", 0.5), ("torso", 0.9), ("tail", 1.0))
BAND_DEFINITION = (
    "Codes are banded by their frequency in the gold of each evaluation set. Codes are sorted "
    "by gold count (most frequent first, ties by code) and their gold occurrences laid end to "
    "end: head = the most frequent codes, covering the first 50% of gold occurrences; torso = "
    "the next 40% (50% to 90%); tail = the remaining 10%. A code belongs to the band where its "
    "first occurrence falls, so the code that crosses a boundary stays in the higher band. "
    "Micro F1 pools the band's codes' true positives, false positives and false negatives; "
    "false positives on codes absent from the gold belong to no band and are counted apart."
)
TOP_ERRORS = 10
EXAMPLES_PER_CODE = 2
SNIPPET_CHARS = 200
CONFIG_CHARS = 20_000
Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass
class EvalSet:
    """One ``metrics.json`` of one system, with the files it names (resolved)."""

    name: str
    metrics: dict
    metrics_path: Path
    predictions: Path | None
    gold: Path | None


@dataclass
class Run:
    """One system: its evaluation sets and optional configuration, training log, knowledge."""

    name: str
    path: Path
    sets: dict[str, EvalSet] = field(default_factory=dict)
    config: object = None
    config_files: list[tuple[str, str]] = field(default_factory=list)
    train_log: list[dict] = field(default_factory=list)
    train_log_skipped: int = 0
    knowledge: dict | None = None


def _read_json(path: Path, what: str) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MedcodeError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise MedcodeError(f"{path}: the {what} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedcodeError(
            f"{path}: the {what} is not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None


def load_metrics(path: Path) -> dict:
    """A ``metrics.json`` written by ``medcode eval --out``; anything else is an error naming
    the file."""
    data = _read_json(path, "metrics file")
    micro = data.get("micro") if isinstance(data, dict) else None
    if not isinstance(micro, dict) or not all(
        isinstance(micro.get(k), int | float) for k in ("precision", "recall", "f1")
    ):
        raise MedcodeError(
            f"{path}: not a metrics.json written by medcode eval (no micro precision/recall/F1)"
        )
    for key in ("macro", "ci", "inputs", *(g for g, _ in GROUPINGS), "by_code"):
        if key in data and not isinstance(data[key], dict):
            raise MedcodeError(f"{path}: malformed metrics.json ('{key}' must be an object)")
    return data


def _resolve_input(raw: object, metrics_path: Path) -> Path | None:
    """A path named in ``inputs``: absolute as is; relative ones were relative to where
    ``medcode eval`` ran, so try the current folder, then the metrics file's folder."""
    if not isinstance(raw, str) or not raw:
        return None
    path = Path(raw)
    if path.is_absolute():
        return path
    for base in (Path.cwd(), metrics_path.parent):
        if (base / path).exists():
            return (base / path).absolute()
    return path.absolute()


def _set_name(metrics: dict) -> str:
    split = metrics.get("inputs", {}).get("split")
    if isinstance(split, list):
        split = ",".join(str(s) for s in split)
    if split:
        return str(split)
    splits = list(metrics.get("by_split") or {})
    return splits[0] if len(splits) == 1 else "all"


def _read_train_log(path: Path) -> tuple[list[dict], int]:
    rows, skipped = [], 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MedcodeError(f"{path}: cannot read the training log ({exc})") from None
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError
            row = {**row, "step": float(row["step"]), "loss": float(row["loss"])}
        except (ValueError, KeyError, TypeError):
            skipped += 1
            continue
        rows.append(row)
    return rows, skipped


PERPLEXITY_DETAILS = ("tokens", "documents", "window")  # knowledge.json: not corpora


def _number_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _check_knowledge(path: Path, data: object) -> dict:
    """The ``knowledge.json`` of ``medcode eval knowledge --out`` (numbers may be null where a
    measure was skipped)."""

    def bad(problem: str) -> MedcodeError:
        return MedcodeError(f"{path}: malformed knowledge file ({problem})")

    if not isinstance(data, dict):
        raise bad("expected a JSON object")
    mmlu = data.get("mmlu_medical") or {}
    if not isinstance(mmlu, dict) or not all(
        _number_or_none(mmlu.get(k)) for k in ("accuracy", "accuracy_norm", "n")
    ):
        raise bad('\'mmlu_medical\' must be {"accuracy": number, "n": integer}')
    perplexity = data.get("perplexity") or {}
    if not isinstance(perplexity, dict) or not all(_number_or_none(v) for v in perplexity.values()):
        raise bad("'perplexity' must map corpus names to numbers")
    return data


def load_run(path: Path) -> Run:
    """Read one run folder (see the module docstring for the layout)."""
    if not path.is_dir():
        raise MedcodeError(f"{path}: no such run folder")
    info = {}
    if (path / "run.json").is_file():
        info = _read_json(path / "run.json", "run file")
        if not isinstance(info, dict):
            raise MedcodeError(f"{path / 'run.json'}: the run file must hold a JSON object")
    name = str(info.get("name") or path.resolve().name)
    run = Run(name=name, path=path, config=info.get("config"))
    candidates = [path / "metrics.json"] if (path / "metrics.json").is_file() else []
    candidates += sorted(p for p in path.glob("*/metrics.json") if p.is_file())
    if not candidates:
        raise MedcodeError(
            f"{path}: no metrics.json (expected RUN_DIR/metrics.json or "
            "RUN_DIR/<set>/metrics.json, written by medcode eval --out)"
        )
    for metrics_path in candidates:
        metrics = load_metrics(metrics_path)
        set_name = _set_name(metrics) if metrics_path.parent == path else metrics_path.parent.name
        if set_name in run.sets:
            raise MedcodeError(
                f"{metrics_path}: evaluation set {set_name!r} also comes from "
                f"{run.sets[set_name].metrics_path}; keep one"
            )
        inputs = metrics.get("inputs", {})
        run.sets[set_name] = EvalSet(
            set_name,
            metrics,
            metrics_path,
            _resolve_input(inputs.get("predictions"), metrics_path),
            _resolve_input(inputs.get("gold"), metrics_path),
        )
    files = sorted({*path.glob("*.yaml"), *path.glob("*.yml"), *path.glob("config*.json")})
    for config_path in files:
        try:
            text = config_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MedcodeError(f"{config_path}: cannot read the config file ({exc})") from None
        if len(text) > CONFIG_CHARS:
            text = text[:CONFIG_CHARS] + f"\n... (cut at {CONFIG_CHARS:,} characters)"
        run.config_files.append((config_path.name, text))
    if (path / "train_log.jsonl").is_file():
        run.train_log, run.train_log_skipped = _read_train_log(path / "train_log.jsonl")
    if (path / "knowledge.json").is_file():
        knowledge_path = path / "knowledge.json"
        run.knowledge = _check_knowledge(
            knowledge_path, _read_json(knowledge_path, "knowledge file")
        )
    return run


def load_runs(paths: Iterable[Path]) -> list[Run]:
    """Read run folders; systems that share a name are told apart by their path."""
    runs = [load_run(Path(p)) for p in paths]
    if not runs:
        raise MedcodeError("give at least one run folder")
    names = [run.name for run in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f"{run.name} ({run.path})"
    return runs


# --------------------------------------------------------------------------------------------
# Figures derived from metrics


def frequency_bands(gold_counts: Mapping[str, int]) -> dict[str, str]:
    """``code -> "head" | "torso" | "tail"`` for the codes with a gold count above 0 (see
    :data:`BAND_DEFINITION`)."""
    total = sum(n for n in gold_counts.values() if n > 0)
    ordered = sorted(
        (c for c, n in gold_counts.items() if n > 0), key=lambda c: (-gold_counts[c], c)
    )
    bands, before = {}, 0
    for code in ordered:
        share = before / total
        bands[code] = next(name for name, upper in BANDS if share < upper)
        before += gold_counts[code]
    return bands


def band_scores(by_code: Mapping[str, Mapping[str, int]]) -> dict[str, dict]:
    """Micro scores per frequency band from per-code counts, plus ``"absent"``: the false
    positives on codes that never occur in the gold."""
    from medcode.eval.metrics import prf

    bands = frequency_bands({c: n["tp"] + n["fn"] for c, n in by_code.items()})
    result: dict[str, dict] = {}
    for band, _ in BANDS:
        codes = [c for c, b in bands.items() if b == band]
        tp, fp, fn = (sum(by_code[c][k] for c in codes) for k in ("tp", "fp", "fn"))
        result[band] = {**prf(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn, "codes": len(codes)}
        result[band]["gold"] = tp + fn
    absent = [c for c in by_code if c not in bands]
    result["absent"] = {"fp": sum(by_code[c]["fp"] for c in absent), "codes": len(absent)}
    return result


def top_errors(metrics: dict, kind: str, limit: int = TOP_ERRORS) -> list[tuple[str, int]]:
    """The most frequent false positives (``kind="fp"``) or negatives (``"fn"``)."""
    by_code = metrics.get("by_code")
    if by_code:
        counted = [(c, int(n.get(kind, 0))) for c, n in by_code.items() if n.get(kind, 0) > 0]
        return sorted(counted, key=lambda item: (-item[1], item[0]))[:limit]
    key = "top_false_positives" if kind == "fp" else "top_false_negatives"
    return [(str(c), int(n)) for c, n in metrics.get(key, [])][:limit]


def describe(code: str) -> str:
    """A short description of a code from the terminology, or why there is none. An undotted
    code in the CPT/HCPCS table is described as a procedure (G0439 is HCPCS, not G04.39)."""
    from medcode.errors import CodeError
    from medcode.eval.formats import INVALID, normalize_code
    from medcode.terminology import cpt, icd10cm

    table = cpt.procedure_table()
    if "." not in code and code in table:
        return table[code].description
    normalised, system = normalize_code(code)
    try:
        if system == INVALID:
            return "(not a valid code)"
        if system == "ICD-10-CM":
            return icd10cm.description(normalised)
        entry = table.get(normalised)
        return entry.description if entry is not None else f"({system}, not in medcode's table)"
    except CodeError:
        return ""


# --------------------------------------------------------------------------------------------
# Error examples: re-read gold and predictions


@dataclass
class Examples:
    """Example note ids per code for one (system, set); ``reason`` says why there are none."""

    fp: dict[str, list[str]] = field(default_factory=dict)
    fn: dict[str, list[str]] = field(default_factory=dict)
    reason: str | None = None


def _gold_notes(eval_set: EvalSet, cache: dict) -> dict:
    from medcode.eval.formats import Problems, read_gold

    splits = tuple(sorted(eval_set.metrics.get("by_split") or {}))
    n_notes = eval_set.metrics.get("n_notes")
    key = (eval_set.gold, splits, n_notes)
    if key not in cache:
        gold = read_gold(eval_set.gold, Problems())
        if splits:  # eval --split scored only some of the gold: keep the notes it scored
            choices = [
                {k: n for k, n in gold.items() if n.split in splits},
                {k: n for k, n in gold.items() if n.split in splits or n.split is None},
                gold,
            ]
            gold = next((c for c in choices if len(c) == n_notes), choices[0])
        cache[key] = gold
    return cache[key]


def find_examples(
    eval_set: EvalSet,
    fp_codes: Iterable[str],
    fn_codes: Iterable[str],
    cache: dict,
    per_code: int = EXAMPLES_PER_CODE,
) -> Examples:
    """Up to ``per_code`` note ids (gold order) where each code is a false positive / negative."""
    from medcode.eval import codiesp
    from medcode.eval.formats import Problems, align, read_jsonl

    missing = [
        f"the {what} file {path} no longer exists"
        if path is not None
        else f"metrics.json names no {what} file"
        for what, path in (("gold", eval_set.gold), ("predictions", eval_set.predictions))
        if path is None or not path.exists()
    ]
    if missing:
        return Examples(
            reason=f"No examples: {'; '.join(missing)}. Codes and counts come from metrics.json."
        )
    inputs = eval_set.metrics.get("inputs", {})
    try:
        gold = _gold_notes(eval_set, cache)
        problems = Problems()
        predicted = align(
            gold,
            read_jsonl(eval_set.predictions, problems, role="prediction"),
            problems,
            eval_set.predictions,
        )
    except MedcodeError as exc:
        return Examples(reason=f"No examples: {exc}. Codes and counts come from metrics.json.")
    if inputs.get("diagnoses_only"):
        gold, predicted = codiesp.diagnoses_only(gold), codiesp.diagnoses_only(predicted)
    if inputs.get("map_retired"):
        gold = codiesp.map_retired(gold, predicted)
    examples = Examples(fp={c: [] for c in fp_codes}, fn={c: [] for c in fn_codes})
    wanted_fp, wanted_fn = set(examples.fp), set(examples.fn)
    empty: set[str] = set()
    for note in gold.values():
        if not wanted_fp and not wanted_fn:
            break
        prediction = predicted.get(note.id)
        pred = prediction.codes if prediction is not None else empty
        for wanted, found, codes in (
            (wanted_fp, examples.fp, pred - note.codes),
            (wanted_fn, examples.fn, note.codes - pred),
        ):
            for code in codes & wanted:
                found[code].append(note.id)
                if len(found[code]) >= per_code:
                    wanted.discard(code)
    return examples


def _note_texts(gold: Path, ids: set[str]) -> dict[str, tuple[str, dict[str, list]]]:
    """``id -> (text, {code: [(start, end), ...]})`` for the wanted notes, from a synth folder
    (with evidence spans), a gold JSONL with a ``"text"`` field, or the ``notes.jsonl`` beside
    a gold JSONL (the ``medcode eval codiesp`` layout). Empty when there is no text."""
    found: dict[str, tuple[str, dict[str, list]]] = {}
    if not ids:
        return found
    try:
        if gold.is_dir():
            from medcode.synth.card import read_rows

            for row in read_rows(gold, ["id", "text", "codes"]):
                if row["id"] in ids and row.get("text"):
                    spans = {
                        c["code"]: [(e["start"], e["end"]) for e in c.get("evidence") or []]
                        for c in row.get("codes") or []
                    }
                    found[row["id"]] = (row["text"], spans)
            return found
        for source in (gold, gold.parent / "notes.jsonl"):
            if not source.is_file():
                continue
            with source.open(encoding="utf-8") as handle:
                for line in handle:
                    if '"text"' not in line:
                        continue
                    try:
                        row = json.loads(line)
                        note_id, text = str(row["id"]), row["text"]
                    except (ValueError, KeyError, TypeError):
                        continue
                    if note_id in ids and isinstance(text, str) and text:
                        found.setdefault(note_id, (text, {}))
            if found:
                return found
    except (OSError, ValueError, MedcodeError):
        return {}
    return found


_PLAIN = (  # description words too common to locate a code in a note
    "with without other unspecified specified patient visit established decision making "
    "disorder disease diseases type than from more less years minutes office encounter "
    "personal current condition conditions level moderate high straightforward "
    "initial subsequent episode care"
)
_PLAIN_WORDS = frozenset(_PLAIN.split())


def anchor(
    text: str, spans: Mapping[str, list], code: str, kind: str, description: str = ""
) -> tuple[int, int] | None:
    """Where in a note to cut the snippet for an error: a false negative's own evidence; for
    a false positive, the evidence of a gold code in the same 3-character category (the likely
    confusion); else the first place a distinctive word of the code's description occurs."""
    if kind == "fn" and spans.get(code):
        return tuple(spans[code][0])
    if kind == "fp":
        for gold_code, found in sorted(spans.items()):
            if found and gold_code != code and gold_code[:3] == code[:3] and "." in code:
                return tuple(found[0])
    words = sorted(
        {w for w in re.findall(r"[a-z]{4,}", description.lower()) if w not in _PLAIN_WORDS},
        key=lambda w: (-len(w), w),
    )
    lowered = text.lower()
    for word in words:
        match = re.search(rf"\b{word}", lowered)
        if match:
            return match.start(), match.end()
    return None


def snippet(text: str, span: tuple[int, int] | None = None, limit: int = SNIPPET_CHARS) -> str:
    """At most ``limit`` characters of ``text`` (whitespace collapsed), around ``span`` when
    given, with an ellipsis where text was cut."""
    start = 0
    if span is not None:
        start = max(0, min(span[0], len(text)) - limit // 3)
    window = " ".join(text[start : start + limit * 2].split())
    head = "…" if start > 0 else ""
    tail = "…" if len(window) > limit - len(head) or start + limit * 2 < len(text) else ""
    return head + window[: limit - len(head) - len(tail)].rstrip() + tail


# --------------------------------------------------------------------------------------------
# The report model: sections of blocks, rendered to Markdown and (via Jinja2) HTML


@dataclass
class Cell:
    text: str
    href: str | None = None
    links: list[tuple[str, str]] = field(default_factory=list)
    numeric: bool = False


@dataclass
class Block:
    kind: str  # heading, para, table, figure, code, sources
    text: str = ""
    level: int = 3
    headers: list[str] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    image: str = ""  # figure: file name under plots/
    data: str = ""  # figure: base64 PNG; code: the text shown verbatim
    items: list[tuple[str, list[tuple[str, str, str]]]] = field(default_factory=list)


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)


def _href(target: Path | None, out: Path) -> str | None:
    """A link from the report folder: relative when possible, else a file:// URI."""
    if target is None:
        return None
    target = target.absolute()
    try:
        return quote(os.path.relpath(target, out.absolute()).replace(os.sep, "/"))
    except ValueError:  # another drive
        return target.as_uri()


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _signed(value: float) -> str:
    """A difference to 4 places, with a true minus sign (and no "−0.0000")."""
    text = f"{value:.4f}"
    return "0.0000" if text == "-0.0000" else text.replace("-", "\u2212")


def _interval(bounds: object, fmt: Callable[[float], str] = _fmt) -> str:
    """`` [lo–hi]`` for a two-number interval from metrics.json, else nothing."""
    if (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
    ):
        return f" [{fmt(bounds[0])}–{fmt(bounds[1])}]"
    return ""


def _category_ci(metrics: dict, category: str) -> dict:
    """A category's bootstrap figures (``ci.by_category``), empty when not scored with one."""
    found = ((metrics.get("ci") or {}).get("by_category") or {}).get(category)
    return found if isinstance(found, dict) else {}


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "–"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class _Builder:
    def __init__(self, runs: list[Run], out: Path, progress: Progress) -> None:
        self.runs = runs
        self.out = out
        self.plots = out / "plots"
        self.progress = progress
        self.set_names = list(dict.fromkeys(s for run in runs for s in run.sets))
        self.sections: list[Section] = []
        self.figures: list[str] = []

    # -- helpers

    def pred_cell(self, text: str, eval_set: EvalSet, *, metrics_link: bool = False) -> Cell:
        cell = Cell(text, _href(eval_set.predictions, self.out), numeric=True)
        if metrics_link:
            cell.links.append(("json", _href(eval_set.metrics_path, self.out)))
        return cell

    def set_heading(self, title: str, eval_set: EvalSet, level: int = 4) -> Block:
        links = [("metrics.json", _href(eval_set.metrics_path, self.out))]
        if eval_set.predictions is not None:
            links.insert(0, ("predictions", _href(eval_set.predictions, self.out)))
        return Block("heading", title, level=level, links=links)

    def figure(self, name: str, caption: str, draw: Callable[[Path], None]) -> Block:
        self.plots.mkdir(parents=True, exist_ok=True)
        path = self.plots / name
        draw(path)
        self.figures.append(name)
        return Block(
            "figure",
            caption,
            image=f"plots/{name}",
            data=base64.b64encode(path.read_bytes()).decode("ascii"),
        )

    def section(self, title: str) -> Section:
        section = Section(title, _slug(title))
        self.sections.append(section)
        return section

    # -- sections

    def overview(self) -> None:
        section = self.section("Systems side by side")
        section.blocks.append(
            Block(
                "para",
                "Exact-code micro F1 (note x code pairs) per evaluation set, with the 95% "
                "bootstrap interval over notes when scored with one. Each number links to its "
                "predictions file; 'json' links to its metrics.json.",
            )
        )
        rows = []
        for run in self.runs:
            row = [Cell(run.name)]
            for name in self.set_names:
                eval_set = run.sets.get(name)
                if eval_set is None:
                    row.append(Cell("–"))
                    continue
                micro = eval_set.metrics["micro"]
                interval = (eval_set.metrics.get("ci") or {}).get("micro", {}).get("f1")
                text = _fmt(micro["f1"])
                if interval:
                    text += f" [{_fmt(interval[0])}–{_fmt(interval[1])}]"
                row.append(self.pred_cell(text, eval_set, metrics_link=True))
            rows.append(row)
        section.blocks.append(
            Block(
                "table", headers=["system", *(f"{s} micro F1" for s in self.set_names)], rows=rows
            )
        )
        details = []
        for run in self.runs:
            for name, eval_set in run.sets.items():
                m = eval_set.metrics
                micro, macro = m["micro"], m.get("macro") or {}
                details.append(
                    [
                        Cell(run.name),
                        Cell(name),
                        self.pred_cell(_fmt(micro["precision"]), eval_set),
                        self.pred_cell(_fmt(micro["recall"]), eval_set),
                        self.pred_cell(_fmt(micro["f1"]), eval_set),
                        self.pred_cell(_fmt(macro.get("f1")), eval_set),
                        Cell(_count(m.get("n_notes")), numeric=True),
                        Cell(_count(m.get("n_gold_codes")), numeric=True),
                        Cell(_count(m.get("n_predicted_codes")), numeric=True),
                    ]
                )
        section.blocks.append(
            Block(
                "table",
                headers=[
                    "system",
                    "set",
                    "micro P",
                    "micro R",
                    "micro F1",
                    "macro F1",
                    "notes",
                    "gold codes",
                    "predicted codes",
                ],
                rows=details,
            )
        )
        series = {
            run.name: [
                run.sets[s].metrics["micro"]["f1"] if s in run.sets else None
                for s in self.set_names
            ]
            for run in self.runs
        }
        section.blocks.append(
            self.figure(
                "micro_f1.png",
                "Micro F1 by evaluation set and system",
                lambda path: _grouped_bars(path, [("", self.set_names, series)], "micro F1"),
            )
        )

    def groupings(self) -> None:
        for key, label in GROUPINGS:
            present = [
                name
                for name in self.set_names
                if any(run.sets[name].metrics.get(key) for run in self.runs if name in run.sets)
            ]
            if not present:
                continue
            section = self.section(f"F1 by {label}")
            text = (
                f"Micro F1 per {label}, systems side by side; in parentheses the gold codes "
                "behind the figure (tp + fn)."
            )
            if key == "by_category":
                text += (
                    " In brackets the 95% bootstrap interval over notes when scored with one; "
                    "gap: the category's F1 minus the overall micro F1, with its 95% interval "
                    "from the same resamples (paired)."
                )
            section.blocks.append(Block("para", text))
            panels = []
            for name in present:
                runs = [run for run in self.runs if name in run.sets]
                groups = list(
                    dict.fromkeys(g for run in runs for g in run.sets[name].metrics.get(key) or {})
                )
                rows = []
                for group in groups:
                    row = [Cell(group)]
                    for run in runs:
                        scores = (run.sets[name].metrics.get(key) or {}).get(group)
                        if scores is None:
                            row.append(Cell("–"))
                            continue
                        gold = scores.get("tp", 0) + scores.get("fn", 0)
                        text = _fmt(scores["f1"])
                        if key == "by_category":
                            ci = _category_ci(run.sets[name].metrics, group)
                            text += _interval(ci.get("f1"))
                        text += f" ({gold:,})"
                        if key == "by_category" and isinstance(ci.get("gap_point"), int | float):
                            text += f", gap {_signed(ci['gap_point'])}"
                            text += _interval(ci.get("gap"), _signed)
                        row.append(self.pred_cell(text, run.sets[name]))
                    rows.append(row)
                section.blocks.append(Block("heading", f"{name}", level=3))
                section.blocks.append(
                    Block("table", headers=[label, *(run.name for run in runs)], rows=rows)
                )
                series = {
                    run.name: [
                        ((run.sets[name].metrics.get(key) or {}).get(g) or {}).get("f1")
                        for g in groups
                    ]
                    for run in runs
                }
                panels.append((name, groups, series))
            section.blocks.append(
                self.figure(
                    f"{key}.png",
                    f"Micro F1 by {label}, one panel per evaluation set",
                    lambda path, panels=panels: _grouped_bars(path, panels, "micro F1"),
                )
            )

    def bands(self) -> None:
        section = self.section("F1 by code frequency band")
        section.blocks.append(Block("para", BAND_DEFINITION))
        panels = []
        for name in self.set_names:
            runs = [run for run in self.runs if name in run.sets]
            with_codes = [run for run in runs if run.sets[name].metrics.get("by_code")]
            section.blocks.append(Block("heading", name, level=3))
            if not with_codes:
                section.blocks.append(
                    Block(
                        "para",
                        "No per-code counts in these metrics.json files (by_code): rerun "
                        "medcode eval --out to get them.",
                    )
                )
                continue
            rows, series = [], {}
            for run in with_codes:
                eval_set = run.sets[name]
                scores = band_scores(eval_set.metrics["by_code"])
                row = [Cell(run.name)]
                for band, _ in BANDS:
                    b = scores[band]
                    f1 = _fmt(b["f1"]) if b["codes"] else "–"
                    row.append(
                        self.pred_cell(
                            f"{f1} ({_plural(b['codes'], 'code')}, {b['gold']:,} gold)", eval_set
                        )
                    )
                absent = scores["absent"]
                row.append(
                    self.pred_cell(
                        f"{absent['fp']:,} ({_plural(absent['codes'], 'code')})", eval_set
                    )
                )
                rows.append(row)
                series[run.name] = [
                    scores[band]["f1"] if scores[band]["codes"] else None for band, _ in BANDS
                ]
            section.blocks.append(
                Block(
                    "table",
                    headers=[
                        "system",
                        *(f"{band} F1" for band, _ in BANDS),
                        "FP on codes absent from gold",
                    ],
                    rows=rows,
                )
            )
            panels.append((name, [band for band, _ in BANDS], series))
        if panels:
            section.blocks.append(
                self.figure(
                    "frequency_bands.png",
                    "Micro F1 by code frequency band, one panel per evaluation set",
                    lambda path: _grouped_bars(path, panels, "micro F1"),
                )
            )

    def errors(self) -> None:
        section = self.section("Most frequent errors")
        section.blocks.append(
            Block(
                "para",
                f"The {TOP_ERRORS} most frequent false positives (predicted, not in the gold) "
                f"and false negatives (in the gold, missed) per system and set, with up to "
                f"{EXAMPLES_PER_CODE} example notes found by re-reading the gold and "
                f"predictions files (snippets of at most {SNIPPET_CHARS} characters when the "
                "gold has note text; for a false negative, around the code's evidence).",
            )
        )
        gold_cache: dict = {}
        found: list[tuple[Run, EvalSet, dict[str, list], Examples]] = []
        for run in self.runs:
            for eval_set in run.sets.values():
                lists = {kind: top_errors(eval_set.metrics, kind) for kind in ("fp", "fn")}
                self.progress(f"finding error examples for {run.name} / {eval_set.name}")
                examples = find_examples(
                    eval_set, [c for c, _ in lists["fp"]], [c for c, _ in lists["fn"]], gold_cache
                )
                found.append((run, eval_set, lists, examples))
        wanted: dict[Path, set[str]] = {}
        for _, eval_set, _, examples in found:
            if examples.reason is None:
                ids = {i for group in (examples.fp, examples.fn) for v in group.values() for i in v}
                wanted.setdefault(eval_set.gold, set()).update(ids)
        texts = {gold: _note_texts(gold, ids) for gold, ids in wanted.items()}
        descriptions: dict[str, str] = {}
        for run, eval_set, lists, examples in found:
            section.blocks.append(self.set_heading(f"{run.name} / {eval_set.name}", eval_set))
            if examples.reason:
                section.blocks.append(Block("para", examples.reason))
            note_texts = texts.get(eval_set.gold, {})
            for kind, title in (("fp", "false positives"), ("fn", "false negatives")):
                if not lists[kind]:
                    section.blocks.append(Block("para", f"No {title}."))
                    continue
                rows = []
                for code, count in lists[kind]:
                    if code not in descriptions:
                        descriptions[code] = describe(code)
                    lines = []
                    for note_id in getattr(examples, kind).get(code, []):
                        if note_id in note_texts:
                            text, spans = note_texts[note_id]
                            span = anchor(text, spans, code, kind, descriptions[code])
                            lines.append(f"{note_id}: “{snippet(text, span)}”")
                        else:
                            lines.append(note_id)
                    rows.append(
                        [
                            Cell(code),
                            Cell(descriptions[code]),
                            self.pred_cell(f"{count:,}", eval_set),
                            Cell("\n".join(lines) or "–"),
                        ]
                    )
                section.blocks.append(Block("para", f"Top {title}:"))
                section.blocks.append(
                    Block("table", headers=["code", "description", title, "examples"], rows=rows)
                )

    def knowledge(self) -> None:
        runs = [run for run in self.runs if run.knowledge is not None]
        if not runs:
            return
        section = self.section("Knowledge retention")
        section.blocks.append(
            Block(
                "para",
                "Multiple-choice accuracy on MMLU-medical (option log-likelihood; "
                "per-character normalised when given; chance 0.25) and perplexity on real "
                "clinical text (lower is better), from each run's knowledge.json.",
            )
        )
        corpora = list(
            dict.fromkeys(
                c
                for run in runs
                for c in run.knowledge.get("perplexity") or {}
                if c not in PERPLEXITY_DETAILS
            )
        )
        rows = []
        for run in runs:
            k = run.knowledge
            mmlu = k.get("mmlu_medical") or {}
            perplexity = k.get("perplexity") or {}
            details = ", ".join(
                f"window {perplexity[d]:,}" if d == "window" else f"{perplexity[d]:,} {d}"
                for d in PERPLEXITY_DETAILS
                if perplexity.get(d)
            )
            rows.append(
                [
                    Cell(run.name),
                    Cell(str(k.get("model", "–"))),
                    Cell(_fmt(mmlu.get("accuracy")), numeric=True),
                    Cell(_fmt(mmlu.get("accuracy_norm")), numeric=True),
                    Cell(_count(mmlu.get("n")), numeric=True),
                    *(
                        Cell(
                            f"{perplexity[c]:.3f}" if perplexity.get(c) is not None else "–",
                            numeric=True,
                        )
                        for c in corpora
                    ),
                    Cell(details or "–"),
                ]
            )
        section.blocks.append(
            Block(
                "table",
                headers=[
                    "system",
                    "model",
                    "MMLU-medical accuracy",
                    "accuracy (normalised)",
                    "questions",
                    *(f"perplexity {c}" for c in corpora),
                    "perplexity measured on",
                ],
                rows=rows,
            )
        )

    def training(self) -> None:
        runs = [run for run in self.runs if run.train_log]
        if not runs:
            return
        section = self.section("Training")
        rows = []
        for run in runs:
            log = run.train_log
            last = log[-1]
            evals = [r["eval_f1"] for r in log if isinstance(r.get("eval_f1"), int | float)]
            tokens = [r["tokens"] for r in log if isinstance(r.get("tokens"), int | float)]
            seconds = [r["seconds"] for r in log if isinstance(r.get("seconds"), int | float)]
            rows.append(
                [
                    Cell(run.name),
                    Cell(f"{len(log):,}", numeric=True),
                    Cell(f"{last['step']:g}", numeric=True),
                    Cell(_fmt(log[0]["loss"]), numeric=True),
                    Cell(_fmt(last["loss"]), numeric=True),
                    Cell(_fmt(min(r["loss"] for r in log)), numeric=True),
                    Cell(f"{tokens[-1]:,.0f}" if tokens else "–", numeric=True),
                    Cell(f"{seconds[-1]:,.0f}" if seconds else "–", numeric=True),
                    Cell(_fmt(evals[-1]) if evals else "–", numeric=True),
                ]
            )
            if run.train_log_skipped:
                section.blocks.append(
                    Block(
                        "para",
                        f"{run.name}: {run.train_log_skipped} malformed line(s) of "
                        "train_log.jsonl skipped.",
                    )
                )
        section.blocks.append(
            Block(
                "table",
                headers=[
                    "system",
                    "rows",
                    "last step",
                    "first loss",
                    "last loss",
                    "min loss",
                    "tokens (last logged)",
                    "seconds (last logged)",
                    "last eval F1",
                ],
                rows=rows,
            )
        )
        logs = {run.name: run.train_log for run in runs}
        section.blocks.append(
            self.figure(
                "training.png",
                "Training loss (and evaluation F1 when logged) by step",
                lambda path: _training_plot(path, logs),
            )
        )

    def configs(self) -> None:
        runs = [run for run in self.runs if run.config is not None or run.config_files]
        if not runs:
            return
        section = self.section("Run configs")
        for run in runs:
            section.blocks.append(Block("heading", run.name, level=3))
            if run.config is not None:
                section.blocks.append(
                    Block("code", "run.json config", data=json.dumps(run.config, indent=2))
                )
            for name, text in run.config_files:
                section.blocks.append(Block("code", name, data=text))

    def sources(self) -> None:
        section = self.section("Sources")
        section.blocks.append(
            Block(
                "para",
                "Where every number comes from: the predictions file and the metrics.json of "
                "each system and evaluation set (and the gold they were scored against).",
            )
        )
        items = []
        for run in self.runs:
            for eval_set in run.sets.values():
                links = []
                for what, path in (
                    ("predictions", eval_set.predictions),
                    ("metrics", eval_set.metrics_path),
                    ("gold", eval_set.gold),
                ):
                    if path is None:
                        links.append((what, "", "not named in metrics.json"))
                    else:
                        note = "" if path.exists() else "missing"
                        links.append((f"{what}: {path}", _href(path, self.out), note))
                items.append((f"{run.name} / {eval_set.name}", links))
        section.blocks.append(Block("sources", items=items))

    def build(self) -> list[Section]:
        self.progress("tables and plots")
        self.overview()
        self.groupings()
        self.bands()
        self.errors()
        self.knowledge()
        self.training()
        self.configs()
        self.sources()
        return self.sections


# --------------------------------------------------------------------------------------------
# Plots (matplotlib's object API on the Agg canvas: no pyplot state, no display)


def _figure(width: float, height: float, panels: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height * panels), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _grouped_bars(
    path: Path, panels: list[tuple[str, list[str], dict[str, list[float | None]]]], ylabel: str
) -> None:
    """One grouped bar chart per panel: groups on the x axis, one bar per system (no bar, and
    a dash, where a system has no figure)."""
    width = max(6.0, 0.9 * max(len(g) * max(1, len(s)) for _, g, s in panels) * 0.45 + 3)
    figure = _figure(min(width, 16.0), 3.4, len(panels))
    for index, (title, groups, series) in enumerate(panels, start=1):
        axis = figure.add_subplot(len(panels), 1, index)
        count = max(1, len(series))
        bar = 0.8 / count
        for offset, (name, values) in enumerate(series.items()):
            xs = [i - 0.4 + bar * (offset + 0.5) for i in range(len(groups))]
            heights = [0.0 if v is None else v for v in values]
            bars = axis.bar(xs, heights, bar, label=name)
            labels = ["–" if v is None else f"{v:.2f}" for v in values]
            axis.bar_label(bars, labels=labels, fontsize=7, padding=1)
        axis.set_xticks(range(len(groups)), groups, fontsize=8)
        axis.set_ylim(0, 1.25)  # room for the legend above the bars
        axis.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        axis.set_ylabel(ylabel)
        if title:
            axis.set_title(title, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=8, loc="upper right", ncols=min(count, 4))
    figure.tight_layout()
    figure.savefig(path, format="png")


def _moving_average(values: list[float], window: int) -> list[float]:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    out, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        out.append(total / min(index + 1, window))
    return out


def _training_plot(path: Path, logs: dict[str, list[dict]]) -> None:
    """Loss by step (each step faint, a 20-step moving average solid); the answer loss and
    the knowledge-retention KL apart when logged; evaluation F1 when logged."""
    has_eval = any("eval_f1" in row for log in logs.values() for row in log)
    has_kl = any(isinstance(row.get("kl"), int | float) for log in logs.values() for row in log)
    panels = 1 + has_eval + has_kl
    figure = _figure(8, 3.4, panels)
    loss = figure.add_subplot(panels, 1, 1)
    for name, log in logs.items():
        steps = [r["step"] for r in log]
        values = [r["loss"] for r in log]
        (line,) = loss.plot(steps, _moving_average(values, 20), label=name)
        loss.plot(steps, values, color=line.get_color(), alpha=0.2, linewidth=0.8)
        answer = [(r["step"], r["answer_loss"]) for r in log if "answer_loss" in r]
        if answer:
            loss.plot(
                [s for s, _ in answer],
                _moving_average([v for _, v in answer], 20),
                color=line.get_color(),
                linestyle="--",
                label=f"{name}: answer loss",
            )
    loss.set_xlabel("step")
    loss.set_ylabel("training loss (20-step mean)")
    loss.grid(alpha=0.3)
    loss.legend(fontsize=8)
    panel = 2
    if has_kl:
        kl = figure.add_subplot(panels, 1, panel)
        panel += 1
        for name, log in logs.items():
            points = [(r["step"], r["kl"]) for r in log if isinstance(r.get("kl"), int | float)]
            if points:
                kl.plot(
                    [s for s, _ in points],
                    _moving_average([v for _, v in points], 20),
                    label=name,
                )
        kl.set_xlabel("step")
        kl.set_ylabel("KL to the base, nats/position")
        kl.grid(alpha=0.3)
        kl.legend(fontsize=8)
    if has_eval:
        scores = figure.add_subplot(panels, 1, panel)
        for name, log in logs.items():
            points = [
                (r["step"], r["eval_f1"]) for r in log if isinstance(r.get("eval_f1"), int | float)
            ]
            if points:
                scores.plot(*zip(*points, strict=True), marker="o", label=name)
        scores.set_xlabel("step")
        scores.set_ylabel("evaluation F1")
        scores.grid(alpha=0.3)
        scores.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")


# --------------------------------------------------------------------------------------------
# Rendering


_MD_SPECIAL = re.compile(r"([\\|*\[\]<>`])")


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", "<br>")


def _md_link(text: str, href: str | None) -> str:
    return f"[{_md(text)}]({href})" if href else _md(text)


def _md_cell(cell: Cell) -> str:
    text = _md_link(cell.text, cell.href)
    return " ".join([text, *(_md_link(label, href) for label, href in cell.links)])


def render_markdown(header: dict, sections: list[Section]) -> str:
    lines = [
        f"# {header['title']}",
        "",
        f"Generated {header['date']} by medcode {header['version']}.",
        "",
        f"Command: `{header['command']}`",
        "",
        "Systems: " + ", ".join(f"{_md(name)} (`{path}`)" for name, path in header["systems"]),
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if block.kind == "heading":
                links = " · ".join(_md_link(label, href) for label, href in block.links)
                lines += [
                    "#" * block.level + f" {_md(block.text)}" + (f" ({links})" if links else "")
                ]
            elif block.kind == "para":
                lines.append(_md(block.text))
            elif block.kind == "table":
                lines.append("| " + " | ".join(_md(h) for h in block.headers) + " |")
                numeric = [
                    bool(block.rows) and all(row[i].numeric for row in block.rows)
                    for i in range(len(block.headers))
                ]
                lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            elif block.kind == "figure":
                lines.append(f"![{_md(block.text)}]({quote(block.image)})")
            elif block.kind == "code":
                fence = "````" if "```" in block.data else "```"
                lines += [f"{_md(block.text)}:", "", fence, block.data.rstrip("\n"), fence]
            elif block.kind == "sources":
                for label, links in block.items:
                    lines.append(f"- {_md(label)}")
                    for text, href, note in links:
                        entry = _md_link(text, href) if href else _md(text)
                        lines.append(f"  - {entry}" + (f" ({_md(note)})" if note else ""))
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def render_html(header: dict, sections: list[Section]) -> str:
    import jinja2

    from medcode.datafiles import package_data

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(package_data("report")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("report.html.j2").render(header=header, sections=sections)


@dataclass
class Written:
    markdown: Path
    html: Path
    plots: list[Path]


def write_report(
    run_dirs: Iterable[Path],
    out: Path,
    *,
    command: str = "",
    progress: Progress | None = None,
) -> Written:
    """Read the run folders and write ``out/report.md``, ``out/report.html``, ``out/plots/``."""
    from medcode import __version__

    progress = progress or (lambda _message: None)
    progress("reading run folders")
    runs = load_runs(run_dirs)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedcodeError(f"{out}: cannot create the report folder ({exc.strerror})") from None
    builder = _Builder(runs, out, progress)
    sections = builder.build()
    header = {
        "title": "medcode evaluation report",
        "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "version": __version__,
        "command": command,
        "systems": [(run.name, str(run.path)) for run in runs],
    }
    markdown, html = out / "report.md", out / "report.html"
    markdown.write_text(render_markdown(header, sections), encoding="utf-8")
    html.write_text(render_html(header, sections), encoding="utf-8")
    return Written(markdown, html, [builder.plots / name for name in builder.figures])
