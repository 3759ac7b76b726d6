"""Analysis of annotated sessions: tidy exports, statistics, reports and plots.

The notebook API: `load_sessions(paths)` returns one record per trial per annotation, and
`to_pandas(records)` makes a DataFrame of the export's columns (pandas required). Statistics
need the `analysis` extra (scipy, numpy, krippendorff; matplotlib and plotext for plots).

Sessions become records (`records`, read through the cache `cache`), trials get labels
(`labels`), the numbers are computed (`stats`, `summary` for label rates and contrasts,
`options` for the likelihood probes), rendered (`report`, `plots`, `results` for the
Results screen) and exported (`export` for tidy tables; `inspect_export`,
`inspect_samples`, `inspect_edits`, `inspect_import` and `inspect_common` for Inspect AI
logs).
"""

from __future__ import annotations

from persona_tui.analysis.export import to_pandas
from persona_tui.analysis.records import Dataset, Record, load_dataset, load_sessions

__all__ = ["Dataset", "Record", "load_dataset", "load_sessions", "to_pandas"]
