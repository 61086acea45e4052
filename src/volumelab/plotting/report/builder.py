"""Write a sweep's outputs (``results.csv``, plots, report) and combined reports."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ...evidence import COMBINATION_RULE, RESULTS_DIR_ATTR, StudyVerdict, flagged_rows, rule_changed, stale_results
from ...evidence import judge as judge_claim
from ...experiments.methods import CHANCE, SAMPLER, TRAINER, method_types, row_kind
from ...experiments.results import coordinate_label
from ..figures import method_types_of, plot_forest, plot_sweep, summarize
from .tables import MIN_SEED_FRACTION, SummaryPoint, ratio_and_stderr, read_roles

if TYPE_CHECKING:
    import pandas as pd

    from ...experiments.driver import SweepPlan

__all__ = [
    "FIT_TRAIN_LOSS", "ReportSection", "trainer_fit", "write_report", "write_sweep_outputs",
]

#: A trainer's point whose median final training loss is above this has not fit its data:
#: its generalization loss is not that of a trained network (the paper's gradient descent
#: reaches about 1e-4 or less), and the report says so.
FIT_TRAIN_LOSS = 1e-3


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
    verdict: "StudyVerdict | None"
    runs: int
    missing: dict  # method -> runs without a loss
    seconds: float
    fit: "pd.DataFrame | None" = None  # panel, method, method_type, x, median final train loss of trainers
    method_types: dict = field(default_factory=dict)  # method -> method_type (default: the method's name)
    extra_images: list = field(default_factory=list)  # a study's own plots, relative to the report
    flagged: dict = field(default_factory=dict)  # method -> runs flagged (status not ok), counted in missing
    power: str = ""  # the smallest effect the sweep's seeds can resolve, in words
    rule_note: str = ""  # the rule's digest and date, and whether stored runs were computed under another rule
    has_losses: bool = True  # False for a sweep of diagnostics only (no loss curves or table)


def trainer_fit(frame: "pd.DataFrame", panel: str | None, panel_order: list | None = None) -> "pd.DataFrame":
    """Median final training loss of every method with the role ``trainer``, per (panel, x).

    Returns:
        Columns ``panel, method, method_type, x, train_median``, in ``panel_order`` then ``x`` order.
    """
    import pandas as pd

    columns = ["panel", "method", "method_type", "x", "train_median"]
    if frame.empty or "method_type" not in frame:
        return pd.DataFrame(columns=columns)
    data = frame[[row_kind(t).role == TRAINER for t in frame["method_type"]]].copy()
    if data.empty:
        return pd.DataFrame(columns=columns)
    data["panel"] = data[panel] if panel and panel in data else ""
    table = (data.groupby(["panel", "method", "method_type", "x"], sort=False)["train_loss"].median()
             .rename("train_median").reset_index())
    order = {value: i for i, value in enumerate(panel_order or [])}
    table["_order"] = [order.get(value, len(order)) for value in table["panel"]]
    return table.sort_values(["_order", "method", "x"], kind="stable").drop(columns="_order").reset_index(drop=True)


def _method_label(method: str, method_type: str) -> str:
    """A method's name in a report: its type's label where it is named like its type, else its name."""
    return row_kind(method_type).label if method == method_type else method


def _fit_sentence(section: "ReportSection") -> str | None:
    """Where a trainer did not fit the training data, in words (``None`` without trainer rows)."""
    table = section.fit
    if table is None or table.empty:
        return None
    who = "/".join(dict.fromkeys(row_kind(t).label for t in table["method_type"]))
    unfit = table[~(table["train_median"] <= FIT_TRAIN_LOSS)]  # NaN (all diverged) counts as unfit
    if unfit.empty:
        return (f"{who} fit the training data at every point (median final training loss at most "
                f"{table['train_median'].max():.2g}).")
    places = []
    for (panel, method, method_type), group in unfit.groupby(["panel", "method", "method_type"], sort=False):
        where = ", ".join(f"{x:g} ({_fmt(v)})" for x, v in zip(group["x"], group["train_median"]))
        label = " ".join(str(part) for part in (panel, method if method != method_type else "") if part != "")
        places.append(f"{label + ' ' if label else ''}{section.x_name} {where}")
    return (f"{who} did not fit the training data (median final training loss above {FIT_TRAIN_LOSS:g}) at: "
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


def combined_panels(frame: "pd.DataFrame", columns: list[str], values: list[list]) -> tuple:
    """``(frame, name, order)``: ``frame`` with one column ``name`` joining ``columns`` as ``"a=1, b=True"``,
    and its values in the order of the grid's cartesian product."""
    import itertools

    name = ", ".join(columns)

    def label(items) -> str:
        return ", ".join(f"{column}={value}" for column, value in zip(columns, items))

    frame = frame.copy()
    if len(frame):
        frame[name] = [label(items) for items in frame[columns].itertuples(index=False, name=None)]
    else:
        frame[name] = []
    return frame, name, [label(items) for items in itertools.product(*values)]


def _summary_point(row) -> SummaryPoint:
    return SummaryPoint(float(row["median"]), float(row["median_stderr"]), int(row["with_loss"]), int(row["runs"]))


def _table(section: ReportSection) -> tuple[list[str], list[list[str]]]:
    summary = section.summary
    types = dict(section.method_types)
    if "method_type" in summary:
        types.update({str(m): str(t) for m, t in zip(summary["method"], summary["method_type"])})
    type_of = lambda m: types.get(m, m)  # noqa: E731
    roles = read_roles(summary) if len(summary) else None
    order = {SAMPLER: 0, TRAINER: 1, CHANCE: 2}
    # A diagnostic (e.g. the NTK or the prior's law) has no loss by design: no run has one and none is
    # missing. It has no column here; its numbers are in its study's verdict, plot and results.csv.
    with_loss = summary.groupby("method")["with_loss"].sum() if len(summary) else {}
    lossless = {m for m in dict.fromkeys(summary["method"])
                if with_loss[m] == 0 and not section.missing.get(str(m), 0)}
    methods = sorted((m for m in dict.fromkeys(summary["method"]) if m not in lossless),
                     key=lambda m: (order.get(row_kind(type_of(m)).role, 3), row_kind(type_of(m)).extra,
                                    m != type_of(m)))
    if not methods:
        return [], []
    header = ([section.panel] if section.panel else []) + [section.x_name]
    for m in methods:
        kind = row_kind(type_of(m))
        label = _method_label(m, type_of(m)) if not kind.extra else m
        header.append(f"{label} median ± SE" + ("" if kind.extra else " [IQR] (seeds with a loss)"))
    relative = roles is not None and roles.sampler in methods and roles.chance in methods
    if relative:
        header.append(f"{roles.labels[SAMPLER]} / {roles.labels[CHANCE]} ± SE")
    counted = [m for m in methods if row_kind(type_of(m)).count_column is not None]
    for m in counted:
        header.append(row_kind(type_of(m)).count_column.header.format(label=_method_label(m, type_of(m))))
    train = section.fit if section.fit is not None else None
    fit_methods = list(dict.fromkeys(train["method"])) if train is not None and not train.empty else []
    for m in fit_methods:
        header.append(f"{_method_label(m, type_of(m))} train loss (median)")
    rows = []
    for (panel, x), group in summary.groupby(["panel", "x"], sort=False):
        row = ([str(panel)] if section.panel else []) + [f"{x:g}" if isinstance(x, float) else str(x)]
        for m in methods:
            part = group[group["method"] == m]
            row.append(_loss_cell(part.iloc[0], spread=not row_kind(type_of(m)).extra) if not part.empty else "")
        if relative:
            sampler, chance = group[group["method"] == roles.sampler], group[group["method"] == roles.chance]
            if sampler.empty or chance.empty:
                row.append("")
            else:
                value, stderr = ratio_and_stderr(_summary_point(sampler.iloc[0]), _summary_point(chance.iloc[0]))
                row.append(f"{_fmt(value)} ± {_fmt_error(stderr)}")
        for m in counted:
            part = group[group["method"] == m]
            row.append(f"{_fmt(part.iloc[0]['median_count'])} / {int(part.iloc[0]['missing'])}"
                       if not part.empty else "")
        for m in fit_methods:
            part = train[(train["panel"] == panel) & (train["x"] == x) & (train["method"] == m)]
            row.append(_fmt(part.iloc[0]["train_median"]) if not part.empty else "")
        rows.append(row)
    return header, rows


_VERDICT_INTRODUCTION = (
    "Each sweep's verdict comes first: per panel, the claim's per-seed effect with its 95% interval, the seeds it is "
    "over and the decision (a forest plot among the figures draws those effects); the rule, the reported endpoints and "
    "how they are computed follow, folded.")
_INTRODUCTION = (
    "Curves are medians over the seeds with a loss, with the interquartile range shaded; a point where some seeds "
    "have no loss ({no_loss}) is labelled n/N (seeds with a loss / seeds), with an open "
    "marker where fewer than half have one, and the y axis is logarithmic where the medians span more than two "
    "orders of magnitude. Tables give each median with its standard error (SE) and the seeds it is over. "
    + _VERDICT_INTRODUCTION
)


def _flagged_sentence(section: ReportSection) -> str:
    """``Flagged runs ...``, or ``""`` when none was flagged."""
    counts = ", ".join(f"{k}: {v}" for k, v in section.flagged.items() if v)
    if not counts:
        return ""
    return (f"Flagged runs (status not ok: nothing accepted, not reached, not mixed, diverged, solve failed, ...), "
            f"left out of every metric, median, plot and verdict, their numbers kept in results.csv: {counts}.")


def _no_loss(sections: list[ReportSection]) -> str:
    """Why runs have no loss, e.g. ``"A accepted nothing / B diverged"``, from the methods' registrations."""
    kinds = {}
    for section in sections:
        types = dict(section.method_types)
        for method in dict.fromkeys(section.missing):
            kind = row_kind(types.get(method, method))
            if not kind.extra:
                kinds.setdefault(kind.type, f"{kind.label} {kind.no_loss}")
    if not kinds:  # no runs named: every registered method's reason
        for method_type in method_types():
            kind = row_kind(method_type)
            kinds[kind.type] = f"{kind.label} {kind.no_loss}"
    return " / ".join(kinds.values())


def _introduction(sections: list[ReportSection]) -> str:
    """What the report shows; the curves and tables of losses only where some sweep has them."""
    if sections and not any(s.has_losses for s in sections):
        return _VERDICT_INTRODUCTION
    return _INTRODUCTION.format(no_loss=_no_loss(sections))


def _panel_lines(verdict: StudyVerdict, secondary: bool = False) -> list[tuple[str, str, str]]:
    """``(panel, outcome, line)`` per panel of a verdict: effect, interval, n, claimed effect, decision
    (with ``secondary``: the reported, non-deciding endpoints instead)."""
    lines = []
    for p in verdict.panels:
        if p.decision is None:
            continue
        if secondary:  # an endpoint that does not apply to a panel (no seed, none flagged) is not listed
            lines += [(p.panel, d.outcome, d.line) for d in p.secondary.values()
                      if d.effect.n or d.effect.missing or d.flagged]
            continue
        where = "" if p.about else f" [{verdict.study.outside}: not part of the claim]"
        lines.append((p.panel, p.decision.outcome, p.decision.line + where))
    return lines


def _rule_details(verdict: StudyVerdict) -> list[str]:
    """The rule and how it is computed, for the folded part of a report."""
    from ...evidence.statistics import ALPHA, MIN_SEEDS

    return [
        f"Rule (digest `{verdict.digest}`): {verdict.study.rule_text}",
        f"Each panel's effect is the mean of its per-seed effects with a Student-t interval (n - 1 degrees of "
        f"freedom, {1 - ALPHA:.0%}); a directional claim holds when the interval lies beyond the claimed boundary "
        f"and fails when it lies entirely on the other side; an equivalence claim holds when the interval lies "
        f"inside the margin (two one-sided tests) and fails when it lies entirely outside; otherwise inconclusive. "
        f"Panels are corrected together by Holm's procedure; fewer than {MIN_SEEDS} seeds is inconclusive. Flagged "
        f"runs (status other than ok, completed or converged) are left out of every endpoint, and each decision is checked with them at their "
        f"least favourable value. {COMBINATION_RULE}",
    ]


def _markdown(sections: list[ReportSection], title: str) -> str:
    lines = [f"# {title}", "",
             f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by volumelab. {_introduction(sections)}",
             ""]
    for s in sections:
        lines += [f"## {s.title or s.name} (`{s.name}`, scale `{s.scale}`)", ""]
        if s.description:
            lines += [s.description.strip(), ""]
        if s.note:
            lines += [f"*Scale `{s.scale}` deviates from the paper:* {s.note.strip()}", ""]
        if s.verdict is not None:
            lines += [f"**{s.verdict.heading}:** {s.verdict.sentence}", ""]
            for panel, _, line in _panel_lines(s.verdict):
                lines.append(f"- {panel + ': ' if panel else ''}{line}")
            lines.append("")
            if s.power:
                lines += [s.power, ""]
            if s.rule_note:
                lines += [s.rule_note, ""]
        lines += [f"![{s.name}]({s.image})", ""]
        for image in s.extra_images:
            lines += [f"![{s.name}: measurements of the claim]({image})", ""]
        if s.verdict is not None:
            lines += ["<details><summary>Rule, reported endpoints, standard errors</summary>", ""]
            reported = _panel_lines(s.verdict, secondary=True)
            if reported:
                lines += ["Reported, not deciding:", ""]
                lines += [f"- {panel + ': ' if panel else ''}{line}" for panel, _, line in reported] + [""]
            lines += [text + "\n" for text in _rule_details(s.verdict)]
            lines += ["</details>", ""]
        missing = ", ".join(f"{k}: {v}" for k, v in s.missing.items() if v)
        lines += [f"{s.runs} runs stored; runs without a loss ({_no_loss([s])}): "
                  f"{missing or 'none'}. Compute time: {s.seconds:.0f} s.", ""]
        if _flagged_sentence(s):
            lines += [f"**{_flagged_sentence(s)}**", ""]
        fit = _fit_sentence(s)
        if fit:
            lines += [fit, ""]
        header, rows = _table(s)
        if header:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
    return "\n".join(lines)


def _image_tag(out_dir: Path | None, image: str, alt: str) -> str:
    """An ``<img>`` with the PNG embedded (base64), so ``report.html`` alone is the report."""
    import base64

    path = (out_dir / image) if out_dir is not None else None
    if path is not None and path.is_file():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"<img src='data:image/png;base64,{data}' alt='{html.escape(alt)}'>"
    return f"<img src='{html.escape(image)}' alt='{html.escape(alt)}'>"


def _html(sections: list[ReportSection], title: str, out_dir: Path | None = None) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}.holds{color:#1a7f37}.fails{color:#cf222e}.inconclusive{color:#9a6700}"
             "</style></head><body>", f"<h1>{e(title)}</h1>",
             f"<p>{e(_introduction(sections))}</p>"]
    for s in sections:
        parts.append(f"<h2>{e(s.title or s.name)} (<code>{e(s.name)}</code>, scale <code>{e(s.scale)}</code>)</h2>")
        if s.description:
            parts.append(f"<p>{e(s.description.strip())}</p>")
        if s.note:
            parts.append(f"<p><em>Scale {e(s.scale)} deviates from the paper:</em> {e(s.note.strip())}</p>")
        if s.verdict is not None:
            cls = s.verdict.outcome.split()[0]
            statement = s.verdict.sentence.replace("**", "")
            parts.append(f"<p><b>{e(s.verdict.heading)}:</b> <span class='{e(cls)}'>{e(statement)}</span></p><ul>")
            for panel, outcome, line in _panel_lines(s.verdict):
                parts.append(f"<li>{e(panel + ': ' if panel else '')}<span class='{e(outcome)}'>{e(line)}</span></li>")
            parts.append("</ul>")
            if s.power:
                parts.append(f"<p>{e(s.power)}</p>")
            if s.rule_note:
                parts.append(f"<p>{e(s.rule_note.replace('**', '').replace('`', ''))}</p>")
        parts.append(_image_tag(out_dir, s.image, s.name))
        for image in s.extra_images:
            parts.append(_image_tag(out_dir, image, f"{s.name}: measurements of the claim"))
        if s.verdict is not None:
            parts.append("<details><summary>Rule, reported endpoints, standard errors</summary>")
            reported = _panel_lines(s.verdict, secondary=True)
            if reported:
                parts.append("<p>Reported, not deciding:</p><ul>")
                parts += [f"<li>{e(panel + ': ' if panel else '')}{e(line)}</li>" for panel, _, line in reported]
                parts.append("</ul>")
            parts += [f"<p>{e(text)}</p>" for text in _rule_details(s.verdict)]
            parts.append("</details>")
        missing = ", ".join(f"{k}: {v}" for k, v in s.missing.items() if v)
        parts.append(f"<p>{s.runs} runs stored; runs without a loss: {e(missing or 'none')}. "
                     f"Compute time: {s.seconds:.0f} s.</p>")
        if _flagged_sentence(s):
            parts.append(f"<p><b>{e(_flagged_sentence(s))}</b></p>")
        fit = _fit_sentence(s)
        if fit:
            parts.append(f"<p>{e(fit)}</p>")
        header, rows = _table(s)
        if header:
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
    page.write_text(_html(sections, title, out_dir), encoding="utf-8")
    return [md, page]


def write_sweep_outputs(plan: "SweepPlan", out_dir: Path) -> ReportSection:
    """Write ``results.csv``, ``plots/<name>.png|pdf`` and ``report.md|html`` for one sweep.

    Only the rows of ``plan`` are used (an output folder may also hold other scales' rows).
    """
    from ...experiments.results import rows_to_frame, short_names, tidy_frame
    from ...experiments.store import ResultsStore

    config = plan.config
    from ...experiments.driver import migrate_store

    with ResultsStore(out_dir) as store:
        migrate_store(store, plan)  # a store written before the current key format: its rows, renamed in place
        frame = rows_to_frame(store.fetch(keys=plan.keys))
    frame.attrs[RESULTS_DIR_ATTR] = str(out_dir)  # studies that read what runs stored besides the frame
    names = short_names(config.grid)
    x_name = names.get(config.x_field, "x") if config.x_field else "x"
    panel = names.get(config.panel) if isinstance(config.panel, str) else None
    # The results table (documented column by column in docs/experiments.md); plots, tables and verdicts read
    # the analysis frame.
    tidy_frame(frame).to_csv(out_dir / "results.csv", index=False)
    # Flagged runs (status not ok) keep their numbers in results.csv but enter no median, plot or verdict:
    # every metric of theirs is left out the same way.
    stored = frame
    flags = flagged_rows(frame) if len(frame) else frame["status"]
    flagged = {m: int(flags[frame["method"] == m].sum()) for m in dict.fromkeys(frame["method"])}
    if len(frame) and flags.any():
        frame = frame.copy()
        metrics = [c for c in frame.columns if c not in ("x", "seed", "point", "run_id", "results_version",
                                                         "seconds") and frame[c].dtype.kind == "f"]
        frame.loc[flags, metrics] = float("nan")
    x_log = config.x_log if config.x_log is not None else x_name == "width"
    note = config.scale_note(plan.scale)
    title = config.title or config.name
    stem = out_dir / "plots" / config.name
    panel_order = ([coordinate_label(v) for v in config.grid[config.panel]]
                   if isinstance(config.panel, str) and config.panel in config.grid else None)
    if isinstance(config.panel, list):
        # Several panel fields: one panel per combination, named "rank=2, normalize=True", in the grid's order.
        columns = [names[p] for p in config.panel]
        values = [[coordinate_label(v) for v in config.grid[p]] for p in config.panel]
        frame, panel, panel_order = combined_panels(frame, columns, values)
        stored = combined_panels(stored, columns, values)[0]
    # A sweep of diagnostics only (e.g. the NTK at initialization) has no loss to plot: its study's plot stands alone.
    has_losses = not frame.empty and bool(frame["gen_loss"].notna().any())
    if has_losses:
        plot_sweep(frame, title=f"{title} [{plan.scale}]", x_name=x_name, panel=panel, out_stem=stem,
                   x_log=x_log, note=note, panel_order=panel_order)
    summary = summarize(frame, panel, panel_order)
    extra_images = []
    power = rule_note = ""
    study = config.study()
    if study is not None:
        verdict = judge_claim(study, stored, panel, panel_order)
        heading = study.heading(stored) if study.heading is not None else None
        if heading:  # e.g. the depth claim on an unnormalized prior is the paper's ablation
            verdict = replace(verdict, heading=heading)
        paths = study.plot(verdict, frame, out_dir / "plots" / f"{config.name}-claim", f"{title} [{plan.scale}]") \
            if study.plot is not None else []
        paths = plot_forest(verdict, out_dir / "plots" / f"{config.name}-verdict",
                            f"{title} [{plan.scale}]: effects and 95% intervals") + list(paths)
        extra_images = [f"plots/{path.name}" for path in paths if path.suffix == ".png"]
        digests = [c.get("rule_digest") for c in stored["config"] if isinstance(c, dict)] if "config" in stored else []
        stale = stale_results(verdict, digests)
        changed = rule_changed(study)
        rule_note = (f"Rule digest `{verdict.digest}`" + (f", last changed {changed}" if changed else
                                                         ", not in the rule history") + ".")
        if stale:
            rule_note += (f" **Re-judged under a rule changed after these results:** {stale} of {len(digests)} runs "
                          f"were computed under another rule digest.")
        if math.isfinite(verdict.detectable):
            power = (f"At this scale the panels' intervals have half-widths up to {verdict.detectable:.2g}: an "
                     f"effect smaller than that is not resolved (an inconclusive panel reads as \"underpowered "
                     f"for effects below {verdict.detectable:.2g}\").")
    else:
        verdict = None
    # A run without a loss is missing unless its method reports no loss by design (a diagnostic, status "ok").
    lossless = frame["gen_loss"].isna() & (frame["status"] != "ok") if len(frame) else frame["gen_loss"]
    missing = {m: int(lossless[frame["method"] == m].sum()) for m in dict.fromkeys(frame["method"])}
    types = method_types_of(frame) if len(frame) else {}
    # Extra rows (e.g. a chance level) come from their method's runs and share its compute time.
    own = [not row_kind(t).extra for t in frame["method_type"]] if len(frame) else []
    section = ReportSection(
        name=config.name, title=title, description=config.description, scale=plan.scale, note=note,
        image=f"plots/{config.name}.png" if has_losses or not extra_images else extra_images[0],
        x_name=x_name, panel=panel, summary=summary, verdict=verdict,
        runs=len(frame), missing=missing, flagged=flagged, fit=trainer_fit(frame, panel, panel_order), method_types=types,
        seconds=float(frame.loc[own, "seconds"].fillna(0).sum()) if len(frame) else 0.0,
        extra_images=extra_images if has_losses else extra_images[1:], power=power, rule_note=rule_note,
        has_losses=has_losses,
    )
    write_report([section], out_dir, title=f"volumelab: {title}")
    return section
