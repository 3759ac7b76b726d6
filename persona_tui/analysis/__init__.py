"""Analysis of annotated sessions: tidy exports, statistics, reports and plots.

The notebook API: `load_sessions(paths)` returns one record per trial per annotation, and
`to_pandas(records)` makes a DataFrame of the export's columns (pandas required). Statistics
need the `analysis` extra (scipy, numpy, krippendorff; matplotlib and plotext for plots).
"""

from __future__ import annotations

from persona_tui.analysis.export import to_pandas
from persona_tui.analysis.records import Dataset, Record, load_dataset, load_sessions

__all__ = ["Dataset", "Record", "load_dataset", "load_sessions", "to_pandas"]
