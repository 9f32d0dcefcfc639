"""Gold and prediction files: JSONL ``{"id": ..., "codes": [...]}`` (gold may also be a synth
output folder). Codes are normalised; every problem in a file is reported with its line."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from medcode.errors import MedcodeError
from medcode.records import System

INVALID = "invalid"


@lru_cache(maxsize=1_000_000)
def normalize_code(raw: str) -> tuple[str, str]:
    """``(code, system)`` for a code written any way (case, dots, spaces); system is
    ``"invalid"`` for a code in no code set (it is still scored, as a false positive)."""
    from medcode.terminology import cpt, icd10cm

    text = str(raw).strip().upper().replace(" ", "")
    if not text:
        return text, INVALID
    if "." not in text and cpt.looks_like(text):
        # An undotted code in the procedure table is that procedure: HCPCS G0439 (annual
        # wellness visit) also spells ICD-10-CM G04.39 without its dot.
        code = cpt.normalize(text)
        table = cpt.procedure_table()
        if code in table:
            return code, table[code].system.value
    if icd10cm.looks_like(text) and icd10cm.is_valid(text):
        return icd10cm.normalize(text), System.ICD10CM.value
    if "." not in text and cpt.looks_like(text):
        code = cpt.normalize(text)
        table = cpt.procedure_table()
        if code in table:
            return code, table[code].system.value
        return code, cpt.system_of(code).value  # a real-looking CPT/HCPCS code not in our table
    return text, INVALID


@dataclass(slots=True)
class NoteLabels:
    """One note's codes (normalised) and what the gold knows about it."""

    id: str
    codes: set[str]
    note_type: str | None = None
    split: str | None = None
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    line: int | None = None


@dataclass
class Problems:
    """Problems found while reading gold and predictions, each with file and line."""

    items: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    invalid_codes: dict[str, int] = field(default_factory=dict)

    def add(self, path: str | Path, line: int | None, message: str) -> None:
        self.items.append(f"{path}:{line}: {message}" if line else f"{path}: {message}")


_CHUNK = 20_000


def _parse_lines(handle):
    """``(line number, object, error)`` for each non-blank line. Lines are parsed a chunk at a
    time as one JSON array (one C call, far faster than one call per line); a chunk that
    fails is parsed line by line so each error keeps its line number."""
    chunk: list[tuple[int, str]] = []

    def flush():
        try:
            parsed = json.loads("[" + ",".join(text for _, text in chunk) + "]")
        except json.JSONDecodeError:
            parsed = None
        if parsed is not None and len(parsed) == len(chunk):
            for (number, _), data in zip(chunk, parsed, strict=True):
                yield number, data, None
            return
        for number, text in chunk:
            try:
                yield number, json.loads(text), None
            except json.JSONDecodeError as exc:
                yield number, None, exc

    for number, line in enumerate(handle, start=1):
        if line.strip():
            chunk.append((number, line))
            if len(chunk) == _CHUNK:
                yield from flush()
                chunk = []
    if chunk:
        yield from flush()


def _normalise_all(raw: list, canonical: dict[str, str], problems: Problems | None) -> set[str]:
    """Normalise a note's codes, remembering valid spellings; invalid predicted codes are
    counted in ``problems``."""
    codes = set()
    for value in raw:
        if value.__class__ is not str:  # synth rows carry {"code": ..., ...}
            value = str(value.get("code", "")) if isinstance(value, dict) else str(value)
        code, system = normalize_code(value)
        if system == INVALID:
            if problems is not None:
                problems.invalid_codes[code] = problems.invalid_codes.get(code, 0) + 1
        else:
            canonical[value] = code
        codes.add(code)
    return codes


def read_jsonl(path: Path, problems: Problems, *, role: str) -> dict[str, NoteLabels]:
    """Notes of a JSONL file; malformed lines, duplicates and empty files are reported."""
    notes: dict[str, NoteLabels] = {}
    canonical: dict[str, str] = {}  # raw spelling -> normalised code, valid codes only
    predictions = role == "prediction"
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise MedcodeError(f"{path}: cannot read the {role} file ({exc.strerror})") from None
    with handle:
        for number, data, error in _parse_lines(handle):
            if error is None:
                try:
                    note_id = str(data["id"])
                    raw = data.get("codes", [])
                    if not isinstance(raw, list):
                        raise ValueError("'codes' must be a list")
                except (KeyError, TypeError, AttributeError, ValueError) as exc:
                    error = exc
            if error is not None:
                problems.add(path, number, f"malformed {role} line skipped ({error})")
                continue
            if note_id in notes:
                problems.add(
                    path,
                    number,
                    f"duplicate id {note_id!r} (first on line "
                    f"{notes[note_id].line}); later line ignored",
                )
                continue
            try:  # fast path: every code already seen and valid
                codes = {canonical[value] for value in raw}
            except (KeyError, TypeError):
                codes = _normalise_all(raw, canonical, problems if predictions else None)
            notes[note_id] = NoteLabels(
                note_id, codes, data.get("note_type"), data.get("split"), line=number
            )
    if not notes:
        problems.add(path, None, f"the {role} file holds no notes")
    return notes


def read_gold(path: Path, problems: Problems) -> dict[str, NoteLabels]:
    """Gold from a JSONL file or a ``medcode synth`` output folder."""
    if path.is_dir():
        from medcode.synth.card import read_rows

        if not (path / "data").is_dir():
            raise MedcodeError(f"{path}: a gold folder must be a medcode synth output (data/)")
        notes = {}
        for row in read_rows(path, ["id", "split", "note_type", "codes"]):
            notes[row["id"]] = NoteLabels(
                row["id"],
                {c["code"] for c in row["codes"]},
                row["note_type"],
                row["split"],
                {c["code"]: tuple(c["categories"]) for c in row["codes"]},
            )
        if not notes:
            problems.add(path, None, "the gold folder holds no notes")
        return notes
    return read_jsonl(path, problems, role="gold")


def align(
    gold: dict[str, NoteLabels],
    predicted: dict[str, NoteLabels],
    problems: Problems,
    pred_path: Path,
) -> dict[str, NoteLabels]:
    """Report predictions for unknown note ids (ignored) and gold notes without a prediction
    (listed; they count as empty predictions when scored). Returns ``predicted``."""
    unknown = [note_id for note_id in predicted if note_id not in gold]
    for note_id in unknown[:50]:
        problems.add(
            pred_path,
            predicted[note_id].line,
            f"prediction for unknown note id {note_id!r} ignored",
        )
    if len(unknown) > 50:
        problems.add(pred_path, None, f"... and {len(unknown) - 50} more unknown note ids")
    problems.missing.extend(note_id for note_id in gold if note_id not in predicted)
    return predicted


# Fast path: a whole file column by column (Arrow's multi-threaded JSON reader), for files
# without a single problem. The reader above stays the reference: any doubt, and the caller
# runs it instead, so every problem is still reported with its line.


@dataclass(slots=True)
class NoteTable:
    """The notes of one file, column by column. Row ``i`` of a JSONL file is on line
    ``i + 1`` (the fast reader accepts no blank line); its codes are
    ``vocab[codes[offsets[i]:offsets[i + 1]]]`` in file order, duplicates kept, normalised
    as the line reader does."""

    ids: object  # pyarrow string array
    offsets: object  # numpy int64, len(ids) + 1
    codes: object  # numpy int32 indexes into vocab
    vocab: list[str]
    note_type: object  # pyarrow string array (nulls where absent)
    split: object
    invalid_codes: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def code_set(self, row: int) -> set[str]:
        """The set the line reader builds for a row: the same codes added in the same order,
        hence the same iteration order."""
        vocab, offsets = self.vocab, self.offsets
        return {vocab[c] for c in self.codes[offsets[row] : offsets[row + 1]].tolist()}

    def renumbered(self, vocab: list[str]) -> NoteTable:
        """The same table with codes numbered in ``vocab`` (a superset of this vocab)."""
        import numpy as np

        index = {code: number for number, code in enumerate(vocab)}
        remap = np.array([index[code] for code in self.vocab], dtype=np.int32)
        codes = remap[self.codes] if len(self.codes) else self.codes
        return replace(self, codes=codes, vocab=vocab)

    def slice(self, start: int, stop: int) -> NoteTable:
        """Rows ``start`` to ``stop`` (views, no copy)."""
        stop = min(stop, len(self))
        offsets = self.offsets[start : stop + 1]
        return replace(
            self,
            ids=self.ids.slice(start, stop - start),
            offsets=offsets - offsets[0],
            codes=self.codes[offsets[0] : offsets[-1]],
            note_type=self.note_type.slice(start, stop - start),
            split=self.split.slice(start, stop - start),
        )

    def rows(self, indices) -> NoteTable:
        """The rows at ``indices`` (a numpy integer array), in that order."""
        import numpy as np

        lengths = np.diff(self.offsets)[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        positions = np.repeat(self.offsets[indices] - offsets[:-1], lengths)
        positions += np.arange(offsets[-1])
        return replace(
            self,
            ids=self.ids.take(indices),
            offsets=offsets,
            codes=self.codes[positions],
            note_type=self.note_type.take(indices),
            split=self.split.take(indices),
        )

    def take(self, keep) -> NoteTable:
        """The rows where the boolean numpy mask ``keep`` is true."""
        import numpy as np
        import pyarrow as pa

        lengths = np.diff(self.offsets)
        mask = pa.array(keep)
        return NoteTable(
            self.ids.filter(mask),
            np.concatenate(([0], np.cumsum(lengths[keep]))).astype(np.int64),
            self.codes[np.repeat(keep, lengths)],
            self.vocab,
            self.note_type.filter(mask),
            self.split.filter(mask),
            self.invalid_codes,
        )


def _lines_if_one_object_each(data: bytes) -> int | None:
    """The number of lines when every line (``\\n`` or ``\\r\\n`` ended, none blank, no
    trailing line of whitespace) starts with ``{`` and ends with ``}``; else None.

    With that shape a successful parse holds one object per line: strings cannot span
    lines, and a ``}`` closing a nested object can never be followed by ``{``, so every line
    break is between two top-level objects; rows == lines leaves one object per line.
    """
    end = len(data)
    while end and data[end - 1] in b"\r\n":  # trailing line ends: no line follows them
        end -= 1
    if not data.startswith(b"{") or not data.endswith(b"}", 0, end):
        return None
    if data.find(b"\r", 0, end) >= 0:
        breaks = data.count(b"\r\n", 0, end)
        if data.count(b"\r", 0, end) != breaks or data.count(b"\n", 0, end) != breaks:
            return None  # a lone \r ends a line for the line reader, not for Arrow
        joins = data.count(b"}\r\n{", 0, end)
    else:
        breaks = data.count(b"\n", 0, end)
        joins = data.count(b"}\n{", 0, end)
    return breaks + 1 if joins == breaks else None


# Values Arrow's parser accepts and Python's json rejects (Inf, -Inf, -NaN): in doubt if
# one stands where a value starts.
_NON_FINITE = re.compile(rb"[:,\[][ \t]*(?:-?Inf(?!inity)|-NaN)")


def _read_json_table(path: Path):
    """The file as an Arrow table (id, codes, note_type, split; other keys ignored) when it
    parses exactly as the line reader would parse it, with no blank line; else None."""
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        data = path.read_bytes()
    except OSError:
        return None
    lines = _lines_if_one_object_each(data)
    if lines is None:
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if (b"Inf" in data or b"-NaN" in data) and _NON_FINITE.search(data):
        return None
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("codes", pa.list_(pa.string())),
            ("note_type", pa.string()),
            ("split", pa.string()),
        ]
    )
    try:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(block_size=4 << 20),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowException, ValueError):
        return None
    return table if table.num_rows == lines else None


def _note_table(ids, codes, note_type, split, *, normalise: bool, count_invalid=False, unique=None):
    """A :class:`NoteTable` from Arrow columns, or None when a value is missing or the ids
    are not unique (the line reader reports those). Ids equal to ``unique`` (ids known to
    be unique) need no check."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if ids.null_count or codes.null_count:
        return None
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    if not (unique is not None and ids.equals(unique)) and len(pc.unique(ids)) != len(ids):
        return None
    flat = pc.list_flatten(codes)
    if flat.null_count:
        return None
    lengths = pc.list_value_length(codes).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    distinct = pc.unique(flat)
    raw_index = pc.index_in(flat, value_set=distinct).to_numpy(zero_copy_only=False)
    vocab: list[str] = []
    position: dict[str, int] = {}
    to_vocab = np.empty(len(distinct), dtype=np.int32)
    invalid: dict[str, int] = {}
    occurrences = np.bincount(raw_index, minlength=len(distinct)) if count_invalid else None
    for number, value in enumerate(distinct.to_pylist()):
        code, system = normalize_code(value) if normalise else (value, None)
        if system == INVALID and occurrences is not None:
            invalid[code] = invalid.get(code, 0) + int(occurrences[number])
        to_vocab[number] = position.setdefault(code, len(vocab))
        if to_vocab[number] == len(vocab):
            vocab.append(code)

    def column(values):
        if values is None:
            return pa.nulls(len(ids), pa.string())
        return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values

    return NoteTable(
        ids,
        offsets,
        to_vocab[raw_index] if len(raw_index) else np.zeros(0, dtype=np.int32),
        vocab,
        column(note_type),
        column(split),
        invalid,
    )


def read_jsonl_table(path: Path, *, role: str, unique_ids=None) -> NoteTable | None:
    """The fast reader: a JSONL file as a :class:`NoteTable`, or None when the file has
    anything :func:`read_jsonl` would report (or anything the fast reader is unsure of).
    ``unique_ids``: ids known to be unique (the gold's), to skip the check when equal."""
    import pyarrow as pa

    table = _read_json_table(path)
    if table is None or table.num_rows == 0:
        return None
    try:
        return _note_table(
            table.column("id"),
            table.column("codes"),
            table.column("note_type"),
            table.column("split"),
            normalise=True,
            count_invalid=role == "prediction",
            unique=unique_ids,
        )
    except pa.ArrowException:  # e.g. over 2 GiB of ids in one column
        return None


def read_gold_table(path: Path) -> NoteTable | None:
    """The fast reader for gold: a JSONL file, or a synth output folder of Parquet shards
    (codes as written, like :func:`read_gold`); None when :func:`read_gold` must run."""
    if not path.is_dir():
        return read_jsonl_table(path, role="gold")
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = path / "data"
    if not folder.is_dir() or any(folder.glob("*.jsonl")):
        return None
    shards = sorted(folder.glob("*.parquet"))
    if not shards:
        return None
    try:
        table = pa.concat_tables(
            pq.read_table(shard, columns=["id", "split", "note_type", "codes"]) for shard in shards
        )
        codes = table.column("codes")
        if not (
            table.schema.field("id").type == pa.string()
            and table.schema.field("split").type == pa.string()
            and table.schema.field("note_type").type == pa.string()
            and pa.types.is_list(codes.type)
            and pa.types.is_struct(codes.type.value_type)
            and codes.type.value_type.field("code").type == pa.string()
        ):
            return None
        if codes.null_count or pc.list_flatten(codes).null_count:
            return None
        if table.num_rows == 0:
            return None
        return _note_table(
            table.column("id"),
            _code_lists(codes.combine_chunks()),
            table.column("note_type"),
            table.column("split"),
            normalise=False,
        )
    except (pa.ArrowException, KeyError, ValueError, OSError):
        return None


def _code_lists(codes):
    """``list<struct<code, ...>>`` to ``list<string>`` of the code field."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa.ListArray.from_arrays(codes.offsets, pc.struct_field(codes.values, "code"))


def align_tables(gold: NoteTable, predicted: NoteTable, problems: Problems, pred_path: Path):
    """:func:`align` for tables: the same problems and missing notes. Returns, for each gold
    row, the row of its prediction (-1 for none)."""
    import numpy as np
    import pyarrow.compute as pc

    if gold.ids.equals(predicted.ids):
        gold_row = np.arange(len(predicted), dtype=np.int64)
    else:
        found = pc.index_in(predicted.ids, value_set=gold.ids)
        gold_row = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    unknown = np.flatnonzero(gold_row < 0)
    for row in unknown[:50].tolist():
        note_id = predicted.ids[row].as_py()
        problems.add(pred_path, row + 1, f"prediction for unknown note id {note_id!r} ignored")
    if len(unknown) > 50:
        problems.add(pred_path, None, f"... and {len(unknown) - 50} more unknown note ids")
    known = np.flatnonzero(gold_row >= 0)
    pred_row = np.full(len(gold), -1, dtype=np.int64)
    pred_row[gold_row[known]] = known
    problems.missing.extend(gold.ids.filter(pred_row < 0).to_pylist())
    return pred_row
