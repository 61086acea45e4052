"""The reproduction report: CSV, plots, measured verdicts, ``report.md`` and ``report.html``."""

from .builder import ReportSection, write_report, write_sweep_outputs
from .verdicts import DEPTH_RULE, EVIDENCE_RULE, WIDTH_RULE, Verdict, judge

__all__ = [
    "DEPTH_RULE", "EVIDENCE_RULE", "ReportSection", "Verdict", "WIDTH_RULE", "judge", "write_report",
    "write_sweep_outputs",
]
