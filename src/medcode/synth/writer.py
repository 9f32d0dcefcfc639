"""Shard files: rows to Parquet (or JSON Lines), written atomically, one file per split."""

from __future__ import annotations

import json
import os
from array import array
from itertools import accumulate
from pathlib import Path

SPLITS = ("train", "validation", "test", "test_ood")


def _schema():
    import pyarrow as pa

    span = pa.struct([("start", pa.int32()), ("end", pa.int32())])
    code = pa.struct(
        [
            ("code", pa.string()),
            ("system", pa.string()),
            ("description", pa.string()),
            ("categories", pa.list_(pa.string())),
            ("rule", pa.string()),
            ("evidence", pa.list_(span)),
        ]
    )
    return pa.schema(
        [
            ("id", pa.string()),
            ("patient_id", pa.string()),
            ("split", pa.string()),
            ("note_type", pa.string()),
            ("template_family", pa.string()),
            ("text", pa.string()),
            ("codes", pa.list_(code)),
            ("encounter", pa.string()),
            ("seed", pa.int64()),
            ("generator_version", pa.string()),
        ]
    )


# Plain arrays are built from their buffers, not with ``pa.array``: its input check imports
# pandas (about half a second per process) and the Parquet bytes are the same.
_INT32_MAX = 2**31 - 1


def _ints(values: list[int], arrow_type):
    """An int32 or int64 Arrow array of Python ints."""
    import pyarrow as pa

    data = array("i" if arrow_type == pa.int32() else "q", values)
    if data.itemsize * 8 != arrow_type.bit_width:
        return pa.array(values, arrow_type)
    return pa.Array.from_buffers(arrow_type, len(data), [None, pa.py_buffer(data)])


def _strings(values: list):
    """A UTF-8 string Arrow array of Python strings (``pa.array`` where one is None)."""
    import pyarrow as pa

    if any(value is None for value in values):
        return pa.array(values, pa.string())
    data = [value.encode() for value in values]
    ends = list(accumulate(map(len, data)))
    if ends and ends[-1] > _INT32_MAX:
        return pa.array(values, pa.string())
    offsets = _ints([0, *ends], pa.int32())
    body = pa.py_buffer(b"".join(data))
    return pa.Array.from_buffers(pa.string(), len(data), [None, offsets.buffers()[1], body])


def _column(values: list, arrow_type):
    import pyarrow as pa

    if arrow_type == pa.string():
        return _strings(values)
    if arrow_type in (pa.int32(), pa.int64()):
        return _ints(values, arrow_type)
    return pa.array(values, arrow_type)


def _table(rows: list[dict]):
    """Rows to an Arrow table, column by column (about 8x faster than ``from_pylist`` on the
    nested ``codes`` column)."""
    import pyarrow as pa

    schema = _schema()
    code_offsets, category_offsets, evidence_offsets = [0], [0], [0]
    fields: dict[str, list] = {k: [] for k in ("code", "system", "description", "rule")}
    categories: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for row in rows:
        for item in row["codes"]:
            for key in fields:
                fields[key].append(item[key])
            categories.extend(item["categories"])
            category_offsets.append(len(categories))
            for span in item["evidence"]:
                starts.append(span["start"])
                ends.append(span["end"])
            evidence_offsets.append(len(starts))
        code_offsets.append(len(fields["code"]))
    code_type = schema.field("codes").type.value_type
    span_type = code_type.field("evidence").type.value_type
    evidence = pa.ListArray.from_arrays(
        _ints(evidence_offsets, pa.int32()),
        pa.StructArray.from_arrays(
            [_ints(starts, pa.int32()), _ints(ends, pa.int32())], fields=list(span_type)
        ),
    )
    codes = pa.StructArray.from_arrays(
        [
            _strings(fields["code"]),
            _strings(fields["system"]),
            _strings(fields["description"]),
            pa.ListArray.from_arrays(_ints(category_offsets, pa.int32()), _strings(categories)),
            _strings(fields["rule"]),
            evidence,
        ],
        fields=list(code_type),
    )
    columns = {}
    for field in schema:
        if field.name == "codes":
            columns["codes"] = pa.ListArray.from_arrays(_ints(code_offsets, pa.int32()), codes)
        else:
            columns[field.name] = _column([row[field.name] for row in rows], field.type)
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def shard_name(split: str, shard: int, shards: int, fmt: str) -> str:
    suffix = "parquet" if fmt == "parquet" else "jsonl"
    return f"{split}-{shard:05d}-of-{shards:05d}.{suffix}"


def marker_path(out: Path, shard: int, shards: int) -> Path:
    return out / "data" / f".shard-{shard:05d}-of-{shards:05d}.done"


def write_shard(
    out: Path, shard: int, shards: int, rows_by_split: dict[str, list[dict]], fmt: str
) -> dict[str, int]:
    """Write one shard's files (temporary names, then renamed), then its completion marker.

    A shard counts as complete only when its marker exists: a killed run or a full disk
    leaves no marker, and the next run rewrites the shard."""
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    finals = []
    for split in SPLITS:
        final = folder / shard_name(split, shard, shards, fmt)
        temporary = folder / f".{final.name}.tmp"
        rows = rows_by_split.get(split, [])
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(_table(rows), temporary, compression="zstd")
        else:
            with temporary.open("w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        finals.append((temporary, final))
    for temporary, final in finals:
        os.replace(temporary, final)
    counts = {split: len(rows_by_split.get(split, [])) for split in SPLITS}
    marker = marker_path(out, shard, shards)
    temporary = marker.with_name(marker.name + ".tmp")
    temporary.write_text(json.dumps(counts, sort_keys=True))
    os.replace(temporary, marker)
    return counts


def clean_incomplete(out: Path, shards: int, fmt: str) -> None:
    """Remove temporary files and the files of shards without a completion marker."""
    folder = out / "data"
    if not folder.exists():
        return
    for path in folder.glob(".*.tmp"):
        path.unlink()
    for shard in range(shards):
        if not marker_path(out, shard, shards).exists():
            for split in SPLITS:
                (folder / shard_name(split, shard, shards, fmt)).unlink(missing_ok=True)
