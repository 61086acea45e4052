"""Write a sweep's outputs (``results.csv``, plots, report) and combined reports."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..figures import plot_sweep, summarize
from .verdicts import MIN_SEED_FRACTION, SummaryPoint, Verdict, judge, ratio_and_stderr

if TYPE_CHECKING:
    import pandas as pd

    from ...experiments.driver import SweepPlan

__all__ = [
    "GD_FIT_TRAIN_LOSS", "ReportSection", "gd_fit", "prior_normalized", "write_report", "write_sweep_outputs",
]

#: A GD point whose median final training loss is above this has not fit its data: its
#: generalization loss is not that of a trained network (the paper's GD reaches about 1e-4
#: or less), and the report says so.
GD_FIT_TRAIN_LOSS = 1e-3


@dataclass
class ReportSection:
    """One sweep in a report."""

    name: str
    title: str
    description: str
    scale: str
    note: str
    image: str  # path of the PNG relative to the report
    x_name: str
    panel: str | None
    summary: "pd.DataFrame"
    verdict: Verdict | None
    runs: int
    missing: dict  # method -> runs without a loss
    seconds: float
    gd_train: "pd.DataFrame | None" = None  # panel, method, x, median final train loss of GD-type methods


def gd_fit(frame: "pd.DataFrame", panel: str | None, panel_order: list | None = None) -> "pd.DataFrame":
    """Median final training loss of every GD-type method per (panel, x).

    Returns:
        Columns ``panel, method, x, train_median``, in ``panel_order`` then ``x`` order.
    """
    import pandas as pd

    columns = ["panel", "method", "x", "train_median"]
    if frame.empty or "method_type" not in frame:
        return pd.DataFrame(columns=columns)
    data = frame[frame["method_type"] == "gd"].copy()
    if data.empty:
        return pd.DataFrame(columns=columns)
    data["panel"] = data[panel] if panel and panel in data else ""
    table = (data.groupby(["panel", "method", "x"], sort=False)["train_loss"].median()
             .rename("train_median").reset_index())
    order = {value: i for i, value in enumerate(panel_order or [])}
    table["_order"] = [order.get(value, len(order)) for value in table["panel"]]
    return table.sort_values(["_order", "method", "x"], kind="stable").drop(columns="_order").reset_index(drop=True)


def _gd_fit_sentence(section: "ReportSection") -> str | None:
    """Where GD did not fit the training data, in words (``None`` without GD rows)."""
    table = section.gd_train
    if table is None or table.empty:
        return None
    unfit = table[~(table["train_median"] <= GD_FIT_TRAIN_LOSS)]  # NaN (all diverged) counts as unfit
    if unfit.empty:
        return (f"GD fit the training data at every point (median final training loss at most "
                f"{table['train_median'].max():.2g}).")
    places = []
    for (panel, method), group in unfit.groupby(["panel", "method"], sort=False):
        where = ", ".join(f"{x:g} ({_fmt(v)})" for x, v in zip(group["x"], group["train_median"]))
        label = " ".join(str(part) for part in (panel, method if method != "gd" else "") if part != "")
        places.append(f"{label + ' ' if label else ''}{section.x_name} {where}")
    return (f"GD did not fit the training data (median final training loss above {GD_FIT_TRAIN_LOSS:g}) at: "
            + "; ".join(places) + ". Its generalization loss there is that of an unfinished run, not of a "
            "trained network.")


def _fmt(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _fmt_error(value: float) -> str:
    """A standard error to two significant digits."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2g}"


def _loss_cell(row, spread: bool) -> str:
    """``median ± SE [q25, q75] (n/N)`` of one summary row; ``< half`` marks a point the verdicts cannot use."""
    text = f"{_fmt(row['median'])} ± {_fmt_error(row['median_stderr'])}"
    if spread:
        text += f" [{_fmt(row['q25'])}, {_fmt(row['q75'])}]"
    with_loss, runs = int(row["with_loss"]), int(row["runs"])
    if with_loss < runs or spread:
        text += f" ({with_loss}/{runs}{', < half' if with_loss < MIN_SEED_FRACTION * runs else ''})"
    return text


def _summary_point(row) -> SummaryPoint:
    return SummaryPoint(float(row["median"]), float(row["median_stderr"]), int(row["with_loss"]), int(row["runs"]))


def _table(section: ReportSection) -> tuple[list[str], list[list[str]]]:
    summary = section.summary
    methods = [m for m in ("gnc", "gd", "prior") if m in set(summary["method"])]
    methods += [m for m in dict.fromkeys(summary["method"]) if m not in methods]
    header = ([section.panel] if section.panel else []) + [section.x_name]
    for m in methods:
        header.append({"gnc": "G&C median ± SE [IQR] (seeds with a loss)",
                       "gd": "GD median ± SE [IQR] (seeds with a loss)", "prior": "prior median ± SE"}.get(
            m, f"{m} median ± SE" + ("" if m.endswith("prior") else " [IQR] (seeds with a loss)")))
    relative = "gnc" in methods and "prior" in methods
    if relative:
        header.append("G&C / prior ± SE")
    if "gnc" in methods:
        header.append("G&C accepted (median) / seeds without acceptance")
    train = section.gd_train if section.gd_train is not None else None
    gd_methods = list(dict.fromkeys(train["method"])) if train is not None and not train.empty else []
    for m in gd_methods:
        header.append(f"{'GD' if m == 'gd' else m} train loss (median)")
    rows = []
    for (panel, x), group in summary.groupby(["panel", "x"], sort=False):
        row = ([str(panel)] if section.panel else []) + [f"{x:g}" if isinstance(x, float) else str(x)]
        for m in methods:
            part = group[group["method"] == m]
            row.append(_loss_cell(part.iloc[0], spread=not m.endswith("prior")) if not part.empty else "")
        if relative:
            gnc, prior = group[group["method"] == "gnc"], group[group["method"] == "prior"]
            if gnc.empty or prior.empty:
                row.append("")
            else:
                value, stderr = ratio_and_stderr(_summary_point(gnc.iloc[0]), _summary_point(prior.iloc[0]))
                row.append(f"{_fmt(value)} ± {_fmt_error(stderr)}")
        if "gnc" in methods:
            part = group[group["method"] == "gnc"]
            row.append(f"{_fmt(part.iloc[0]['median_accepted'])} / {int(part.iloc[0]['missing'])}"
                       if not part.empty else "")
        for m in gd_methods:
            part = train[(train["panel"] == panel) & (train["x"] == x) & (train["method"] == m)]
            row.append(_fmt(part.iloc[0]["train_median"]) if not part.empty else "")
        rows.append(row)
    return header, rows


_INTRODUCTION = (
    "Curves are medians over the seeds with a loss, with the interquartile range shaded; a point where some seeds "
    "have no loss (G&C accepted nothing, GD diverged) is labelled n/N (seeds with a loss / seeds), with an open "
    "marker where fewer than half have one, and the y axis is logarithmic where the medians span more than two "
    "orders of magnitude. Tables give each median with its standard error (SE) and the seeds it is over. Verdicts "
    "are computed from these numbers by the rules stated under each figure."
)


def _markdown(sections: list[ReportSection], title: str) -> str:
    lines = [f"# {title}", "",
             f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by volumelab. {_INTRODUCTION}", ""]
    for s in sections:
        lines += [f"## {s.title or s.name} (`{s.name}`, scale `{s.scale}`)", ""]
        if s.description:
            lines += [s.description.strip(), ""]
        if s.note:
            lines += [f"*Scale `{s.scale}` deviates from the paper:* {s.note.strip()}", ""]
        lines += [f"![{s.name}]({s.image})", ""]
        if s.verdict is not None:
            lines += [f"**{s.verdict.heading}:** {s.verdict.sentence}", "", f"Rule: {s.verdict.rule}", ""]
            for p in s.verdict.panels:
                label = f"{p.panel}: " if p.panel else ""
                lines.append(f"- {label}{p.outcome} — {p.detail}")
            lines.append("")
        missing = ", ".join(f"{k}: {v}" for k, v in s.missing.items() if v)
        lines += [f"{s.runs} runs stored; runs without a loss (G&C accepted nothing / GD diverged): "
                  f"{missing or 'none'}. Compute time: {s.seconds:.0f} s.", ""]
        fit = _gd_fit_sentence(s)
        if fit:
            lines += [fit, ""]
        header, rows = _table(s)
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def _html(sections: list[ReportSection], title: str) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}.holds{color:#1a7f37}.fails{color:#cf222e}.inconclusive{color:#9a6700}"
             "</style></head><body>", f"<h1>{e(title)}</h1>",
             f"<p>{e(_INTRODUCTION)}</p>"]
    for s in sections:
        parts.append(f"<h2>{e(s.title or s.name)} (<code>{e(s.name)}</code>, scale <code>{e(s.scale)}</code>)</h2>")
        if s.description:
            parts.append(f"<p>{e(s.description.strip())}</p>")
        if s.note:
            parts.append(f"<p><em>Scale {e(s.scale)} deviates from the paper:</em> {e(s.note.strip())}</p>")
        parts.append(f"<img src='{e(s.image)}' alt='{e(s.name)}'>")
        if s.verdict is not None:
            cls = s.verdict.outcome.split()[0]
            statement = s.verdict.sentence.replace("**", "")
            parts.append(f"<p><b>{e(s.verdict.heading)}:</b> <span class='{e(cls)}'>{e(statement)}</span></p>")
            parts.append(f"<p>Rule: {e(s.verdict.rule)}</p><ul>")
            for p in s.verdict.panels:
                parts.append(f"<li>{e(p.panel + ': ' if p.panel else '')}<span class='{e(p.outcome)}'>"
                             f"{e(p.outcome)}</span> — {e(p.detail)}</li>")
            parts.append("</ul>")
        missing = ", ".join(f"{k}: {v}" for k, v in s.missing.items() if v)
        parts.append(f"<p>{s.runs} runs stored; runs without a loss: {e(missing or 'none')}. "
                     f"Compute time: {s.seconds:.0f} s.</p>")
        fit = _gd_fit_sentence(s)
        if fit:
            parts.append(f"<p>{e(fit)}</p>")
        header, rows = _table(s)
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(sections: list[ReportSection], out_dir: Path, title: str = "volumelab reproduction report") -> list[Path]:
    """Write ``report.md`` and ``report.html`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(_markdown(sections, title), encoding="utf-8")
    page.write_text(_html(sections, title), encoding="utf-8")
    return [md, page]


def prior_normalized(frame: "pd.DataFrame") -> bool | None:
    """Whether G&C sampled the normalized prior, from the G&C runs' stored settings.

    Returns:
        ``True`` or ``False`` when every G&C-type run of ``frame`` agrees, ``None`` when
        there are none, they differ, or the frame has no stored settings.
    """
    if frame.empty or "config" not in frame or "method_type" not in frame:
        return None
    values = set()
    for config, method_type in zip(frame["config"], frame["method_type"]):
        if method_type != "gnc" or not isinstance(config, dict):
            continue
        model = {**(config.get("model") or {}), **((config.get("method") or {}).get("model") or {})}
        values.add(bool(model.get("normalize", False)))
    return values.pop() if len(values) == 1 else None


def write_sweep_outputs(plan: "SweepPlan", out_dir: Path) -> ReportSection:
    """Write ``results.csv``, ``plots/<name>.png|pdf`` and ``report.md|html`` for one sweep.

    Only the rows of ``plan`` are used (an output folder may also hold other scales' rows).
    """
    from ...experiments.results import CSV_COLUMNS, rows_to_frame, short_names
    from ...experiments.store import ResultsStore

    config = plan.config
    with ResultsStore(out_dir) as store:
        frame = rows_to_frame(store.fetch(keys=plan.keys))
    names = short_names(config.grid)
    x_name = names.get(config.x_field, "x") if config.x_field else "x"
    panel = names.get(config.panel) if config.panel else None
    csv_columns = [c for c in frame.columns if c != "config"]
    frame[csv_columns].to_csv(out_dir / "results.csv", index=False)
    assert set(CSV_COLUMNS) <= set(csv_columns)
    x_log = config.x_log if config.x_log is not None else x_name == "width"
    note = config.scale_note(plan.scale)
    title = config.title or config.name
    stem = out_dir / "plots" / config.name
    panel_order = config.grid.get(config.panel) if config.panel else None
    if not frame.empty:
        plot_sweep(frame, title=f"{title} [{plan.scale}]", x_name=x_name, panel=panel, out_stem=stem,
                   x_log=x_log, note=note, panel_order=panel_order)
    summary = summarize(frame, panel, panel_order)
    verdict = judge(summary, config.claim, normalized=prior_normalized(frame))
    missing = {m: int(frame[frame["method"] == m]["gen_loss"].isna().sum()) for m in dict.fromkeys(frame["method"])}
    section = ReportSection(
        name=config.name, title=title, description=config.description, scale=plan.scale, note=note,
        image=f"plots/{config.name}.png", x_name=x_name, panel=panel, summary=summary, verdict=verdict,
        runs=len(frame), missing=missing, gd_train=gd_fit(frame, panel, panel_order), seconds=float(frame.loc[frame["method_type"] != "prior", "seconds"].fillna(0).sum()) if len(frame) else 0.0,
    )
    write_report([section], out_dir, title=f"volumelab: {title}")
    return section
