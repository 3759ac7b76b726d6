"""`persona-tui doctor`: run the checks (models/diagnostics.py) and print the report."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from persona_tui.errors import PersonaError
from persona_tui.models.diagnostics import DoctorReport, run_doctor


def report_json(report: DoctorReport) -> str:
    return json.dumps(
        {"ok": report.ok, "checks": [asdict(check) for check in report.checks]}, indent=2
    )


def report_text(report: DoctorReport) -> str:
    mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    lines = [f"[{mark[c.status]}] {c.name}: {c.summary}" for c in report.checks]
    verdict = "all good" if report.ok else "something is wrong (see FAIL above)"
    return "\n".join([*lines, f"persona-tui doctor: {verdict}"])


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.model is not None and not args.model.is_file():
        raise PersonaError(f"{args.model}: no such model file")
    report = run_doctor(args.model, repack=args.repack, threads=args.threads)
    print(report_json(report) if args.json else report_text(report))
    return 0 if report.ok else 1
