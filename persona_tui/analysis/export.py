"""Tidy exports: one row per trial per annotation (the trials table), one row per arm
(condition, training run) × probe × scored answer option (the options table), or one row per
trial × trait and option cell × trait (the projections table), as CSV or JSON Lines.

Columns are documented in docs/export-format.md. The CSV is RFC 4180 style (comma,
double-quote quoting, header row, UTF-8 without BOM) so pandas (`read_csv`) and R
(`read.csv`) load it without options; text is quoted when needed and kept exactly,
including newlines and quotes; booleans are `true`/`false` in both. JSON Lines keep types
(null for missing values).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from persona_tui._util.deps import require
from persona_tui.analysis.projection_rows import ProjectionRow
from persona_tui.analysis.records import OptionRow, Record

ExportFormat = Literal["csv", "jsonl"]
Value = str | bool | int | float | None
Row = TypeVar("Row")


@dataclass(frozen=True)
class Column(Generic[Row]):
    name: str
    get: Callable[[Row], Value]


def _attr(name: str) -> Column[Record]:
    return Column(name, lambda record: getattr(record, name))


FIXED_LEADING: tuple[str, ...] = (
    "session_id",
    "session_file",
    "scenario_id",
    "scenario_sha256",
    "model_name",
    "model_sha256",
    "backend",
    "backend_version",
    "condition",
    "condition_label",
    "replicate",
    "probe",
    "probe_text",
    "sample",
    "seed",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "max_tokens",
    "prompt_tokens",
    "completion_tokens",
    "seconds",
    "finish_reason",
    "response",
    "annotator",
    "annotation_time",
    "label",
    "blind",
    "blind_seed",
)


def _scale(scale_id: str) -> Column[Record]:
    return Column(f"scale_{scale_id}", lambda record: record.scales.get(scale_id))


def _judge_score(rubric: str) -> Column[Record]:
    def get(record: Record) -> Value:
        found = record.judge.get(rubric)
        return None if found is None else found.score

    return Column(f"judge_{rubric}", get)


def _judge_mass(rubric: str) -> Column[Record]:
    def get(record: Record) -> Value:
        found = record.judge.get(rubric)
        return None if found is None else found.p_numbers

    return Column(f"judge_{rubric}_p_numbers", get)


def columns_for(
    records: Sequence[Record],
    scale_ids: Sequence[str] | None = None,
    rubrics: Sequence[str] | None = None,
) -> list[Column[Record]]:
    """The export's columns: fixed ones, a `scale_<id>` per scale, two per judge rubric.

    Scales and rubrics default to those present in `records`, in first-appearance order.
    """
    if scale_ids is None:
        scale_ids = list(dict.fromkeys(s for r in records for s in r.scales))
    if rubrics is None:
        rubrics = list(dict.fromkeys(k for r in records for k in r.judge))
    columns = [_attr(name) for name in FIXED_LEADING]
    columns += [_scale(scale_id) for scale_id in scale_ids]
    columns.append(_attr("note"))
    for rubric in rubrics:
        columns += [_judge_score(rubric), _judge_mass(rubric)]
    columns += [_attr("rule_label"), _attr("rule_match")]
    return columns


def _option_attr(name: str, attribute: str | None = None) -> Column[OptionRow]:
    key = attribute or name
    return Column(name, lambda row: getattr(row, key))


# The options table: one row per condition × probe × option (docs/export-format.md).
OPTION_COLUMNS: tuple[Column[OptionRow], ...] = (
    _option_attr("session", "session_id"),
    _option_attr("scenario", "scenario_id"),
    _option_attr("model_name"),
    _option_attr("model_sha256"),
    _option_attr("condition"),
    _option_attr("replicate"),
    _option_attr("probe"),
    _option_attr("option"),
    _option_attr("label"),
    _option_attr("text"),
    _option_attr("logprob"),
    _option_attr("mean_logprob"),
    _option_attr("n_tokens"),
    _option_attr("prompt_tokens"),
    _option_attr("prompt"),
)


def _projection_attr(name: str, attribute: str | None = None) -> Column[ProjectionRow]:
    key = attribute or name
    return Column(name, lambda row: getattr(row, key))


# The projections table: one row per trial × trait and option cell × trait.
PROJECTION_COLUMNS: tuple[Column[ProjectionRow], ...] = (
    _projection_attr("session", "session_id"),
    _projection_attr("scenario", "scenario_id"),
    _projection_attr("model_name"),
    _projection_attr("model_sha256"),
    _projection_attr("condition"),
    _projection_attr("replicate"),
    _projection_attr("probe"),
    _projection_attr("sample"),
    _projection_attr("kind"),
    _projection_attr("trait"),
    _projection_attr("layer"),
    _projection_attr("projection"),
    _projection_attr("steer_trait"),
    _projection_attr("steer_scale"),
)


def row_values(record: Row, columns: Sequence[Column[Row]]) -> list[Value]:
    return [column.get(record) for column in columns]


def iter_csv(records: Sequence[Row], columns: Sequence[Column[Row]]) -> Iterator[str]:
    """CSV text in chunks: the header, then rows ("\\n" line ends; fields quoted as needed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    for start in range(0, max(len(records), 1), 1000):
        for record in records[start : start + 1000]:
            # None -> empty field; booleans as in JSON (`true`), not Python's `True`.
            writer.writerow(
                [
                    "" if v is None else "true" if v is True else "false" if v is False else v
                    for v in row_values(record, columns)
                ]
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def iter_jsonl(records: Sequence[Row], columns: Sequence[Column[Row]]) -> Iterator[str]:
    """JSON Lines: one object per row with every column (null for a missing value)."""
    names = [c.name for c in columns]
    encode = json.JSONEncoder(ensure_ascii=False).encode
    for start in range(0, len(records), 1000):
        lines = [
            encode(dict(zip(names, row_values(record, columns), strict=True))) + "\n"
            for record in records[start : start + 1000]
        ]
        yield "".join(lines)


def export_text(
    records: Sequence[Record],
    fmt: ExportFormat,
    columns: Sequence[Column[Record]] | None = None,
) -> Iterator[str]:
    """The export of `records` in `fmt`, as text chunks to write in order."""
    chosen = list(columns) if columns is not None else columns_for(records)
    if fmt == "csv":
        return iter_csv(records, chosen)
    return iter_jsonl(records, chosen)


def export_options_text(rows: Sequence[OptionRow], fmt: ExportFormat) -> Iterator[str]:
    """The options table (one row per condition × probe × option) in `fmt`, as text chunks."""
    if fmt == "csv":
        return iter_csv(rows, OPTION_COLUMNS)
    return iter_jsonl(rows, OPTION_COLUMNS)


def export_projections_text(rows: Sequence[ProjectionRow], fmt: ExportFormat) -> Iterator[str]:
    """The projections table (one row per trial or option cell × trait) in `fmt`."""
    if fmt == "csv":
        return iter_csv(rows, PROJECTION_COLUMNS)
    return iter_jsonl(rows, PROJECTION_COLUMNS)


def to_pandas(records: Sequence[Record]) -> Any:
    """The records as a `pandas.DataFrame` with the export's tidy columns."""
    pd = require("pandas", "to_pandas()")
    columns = columns_for(records)
    return pd.DataFrame.from_records(
        [row_values(record, columns) for record in records], columns=[c.name for c in columns]
    )
