"""The reproduction report: CSV, plots, measured verdicts, ``report.md`` and ``report.html``."""

from .builder import ReportSection, write_report, write_sweep_outputs

__all__ = ["ReportSection", "write_report", "write_sweep_outputs"]
