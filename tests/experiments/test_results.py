"""The results table (``load_results``, ``results.csv``): one typed column per fact, each documented."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

import volumelab
from volumelab.experiments import load_sweep, run_sweep
from volumelab.experiments.results import load_frame, rows_to_frame, tidy_frame

from sweep_testing import write_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "experiments.md"

#: Three small sweeps that between them write most kinds of rows: G&C by rejection and by subset simulation
#: (and their prior rows), GD and NGD (one with its own model field), the prior-law and collapse
#: measurements on a factorization; G&C on a classification task, GD with the NTK observer and the NTK at
#: initialization on an MLP; GD and NGD on deep linear classifiers.
SWEEPS = {
    "factorization": """\
        name: table-factorization
        x: model.width
        panel: model.activation
        problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 8}
        model: {depth: 2, normalize: true}
        methods:
          gnc: {eps: 0.3, samples: 2000}
          subset: {type: gnc, method: subset, eps: 0.3, samples: 20000, population: 100, replicates: 2}
          gd: {lr: 1.0e-2, steps: 20, init_scale: 1.0e-3, model: {normalize: false}}
          ngd: {lr: 1.0e-2, steps: 5, damping: 1.0e-3, model: {normalize: false}}
          law: {type: prior_law, draws: 200}
          collapse: {draws: 20}
        grid:
          model.activation: [linear, tanh]
          model.width: [4, 8]
        seeds: 2
        """,
    "mlp": """\
        name: table-mlp
        x: model.width
        problem: {kind: supervised, data: digits, train: 8, test: 40}
        model: {kind: mlp, depth: 2, activation: relu}
        methods:
          gnc: {eps: 0.01, samples: 2000, accept: train_error}
          gd: {lr: 0.5, steps: 10, init_scale: 1.0, ntk_metrics: true}
          ntk: {draws: 2}
        grid:
          model.width: [4, 8]
        seeds: 2
        """,
    "classifier": """\
        name: table-classifier
        x: problem.train
        panel: model.architecture
        problem: {kind: supervised, data: sparse_teacher, features: 10, nonzero: 2, train: 10}
        model: {kind: linear_classifier, architecture: diagonal, depth: 2, width: 10, form: difference}
        methods:
          gd: {lr: 0.5, steps: 20, init_scale: 0.1}
          ngd: {lr: 0.2, steps: 5, damping: 1.0e-6, init_scale: 0.1}
        grid:
          model.architecture: [diagonal, fully_connected]
          problem.train: [10, 20]
        seeds: 2
        """,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The three sweeps, each in its folder under one parent."""
    root = tmp_path_factory.mktemp("runs")
    for name, text in SWEEPS.items():
        run_sweep(load_sweep(write_config(root, text, f"{name}.yaml")), out_dir=root / name, progress=False)
    return root


def documented() -> dict[str, str]:
    """``{column or pattern: type}`` from the table under docs/experiments.md's "The results table"."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("### The results table"):]
    section = section[:section.index("\n## ")]
    columns = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([^`]+)`", cells[0]):
                columns[name] = cells[1]
    return columns


def _pattern(name: str) -> re.Pattern:
    """A documented name as a regular expression: ``<field>`` is one or more dotted words."""
    parts = re.split(r"(<[a-z]+>)", name)
    return re.compile("".join(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*" if part.startswith("<") else re.escape(part)
                              for part in parts) + "$")


def documentation_of(column: str, table: dict[str, str]) -> str | None:
    """The documented type of ``column`` (by name, else by the first pattern that matches), or ``None``."""
    if column in table:
        return table[column]
    for name, kind in table.items():
        if "<" in name and _pattern(name).match(column):
            return kind
    return None


#: Documented types and the dtypes they allow.
TYPES = {"text": ("str", "object"), "integer": ("Int64",), "float": ("float64",),
         "as the field": ("str", "object", "Int64", "float64", "boolean")}


def test_the_documentation_table_parses_and_its_patterns_can_fail():
    table = documented()
    assert {"figure", "point", "seed", "gen_loss", "run_key", "results_version", "model.<field>"} <= set(table)
    assert set(table.values()) <= set(TYPES), set(table.values()) - set(TYPES)
    assert documentation_of("model.width", table) == "as the field"
    assert documentation_of("lambda1_stderr", table) == "float"
    for undocumented in ("x", "config", "width", "eps", "lr", "model", "modelwidth", "mystery_column"):
        assert documentation_of(undocumented, table) is None, undocumented


@pytest.mark.parametrize("folder", [*SWEEPS, "."])
def test_every_column_of_real_sweeps_is_documented_with_its_type(runs, folder):
    """Each sweep's table, and the table of all three read from their parent, has only documented columns,
    each of its documented type, none empty, no dict and no x."""
    frame = volumelab.load_results(runs / folder)
    table = documented()
    wrong = {}
    for column in frame.columns:
        kind = documentation_of(column, table)
        if kind is None or str(frame[column].dtype) not in TYPES[kind]:
            wrong[column] = (kind, str(frame[column].dtype))
    assert wrong == {}
    # Only the generic columns may be empty (a trainer has no standard error of its loss).
    assert [c for c in frame if frame[c].isna().all()] in ([], ["gen_loss_stderr"])
    assert "x" not in frame and "config" not in frame
    text = frame.astype(str)
    assert not text.apply(lambda column: column.str.startswith("{")).any().any()


def test_the_factorization_sweeps_table(runs):
    frame = volumelab.load_results(runs / "factorization")
    assert list(frame.columns[:8]) == ["figure", "scale", "stream", "method", "method_type", "point",
                                       "model.activation", "model.width"]
    assert str(frame["model.width"].dtype) == "Int64" and set(frame["model.width"]) == {4, 8}
    # Every method's metrics that it reported, empty on other methods' rows.
    assert {"accepted", "rhat", "evaluations", "steps", "entry_variance", "sigma2_over_sigma1"} <= set(frame)
    assert frame.loc[frame["method_type"] != "collapse", "sigma2_over_sigma1"].isna().all()
    assert frame.loc[frame["method"] == "gnc", "rhat"].isna().all()
    # The declared settings, under their paths; the trainers ran the model without normalization.
    assert {"method.eps", "method.lr", "method.init_scale", "method.momentum", "method.damping"} <= set(frame)
    assert set(frame.loc[frame["method"] == "ngd", "method.damping"]) == {1.0e-3}
    assert str(frame["model.normalize"].dtype) == "boolean" and frame["model.normalize"].all()
    trainers = frame["method"].isin(["gd", "ngd"])
    assert (frame.loc[trainers, "method.model.normalize"] == False).all()  # noqa: E712
    assert frame.loc[~trainers, "method.model.normalize"].isna().all()
    # A setting that differs between methods (G&C's estimator) is a column; constant ones are not.
    assert set(frame.loc[frame["method_type"] == "gnc", "method.method"]) == {"rejection", "subset"}
    assert not {"model.depth", "problem.rows", "method.device", "method.name", "method.type"} & set(frame)


def test_a_parent_folders_table_has_the_settings_that_differ_between_its_sweeps(runs):
    frame = volumelab.load_results(runs)
    assert set(frame["figure"]) == {"table-factorization", "table-mlp", "table-classifier"}
    assert frame["problem.kind"].notna().all() and set(frame["problem.kind"]) == {"sensing", "supervised"}
    assert frame["model.kind"].notna().all()
    # The grid fields of every sweep: each one's is filled on its rows, and on the others' where they have it.
    assert frame.loc[frame["figure"] == "table-classifier", "problem.train"].notna().all()
    assert frame.loc[frame["figure"] == "table-mlp", "problem.train"].eq(8).all()
    assert frame.loc[frame["figure"] == "table-factorization", "problem.train"].isna().all()
    assert {"test_error", "ntk_change", "lambda_min", "sparsity", "margin_l2"} <= set(frame)


def test_results_csv_is_the_table_of_its_sweep(runs, tmp_path):
    """``results.csv`` holds the same table as ``load_results`` (the CSV round trip, without pyarrow)."""
    from volumelab.experiments.driver import plan_sweep
    from volumelab.plotting.report import write_sweep_outputs

    folder = runs / "mlp"
    write_sweep_outputs(plan_sweep(load_sweep(runs / "mlp.yaml")), folder)
    expected = volumelab.load_results(folder)
    written = pd.read_csv(folder / "results.csv")
    assert list(written.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(written.astype(expected.dtypes.to_dict()), expected)


def test_settings_are_flat_typed_and_lists_are_labels(runs):
    """Rows built by hand from stored ones: a list setting, a grid field over a method's setting, streams."""
    from volumelab.experiments.store import ResultsStore

    with ResultsStore(runs / "factorization", create=False) as store:
        rows = store.fetch()
    rows = [row for row in rows if row["method"] in ("gd", "gnc")][:4]
    changed = copy.deepcopy(rows)
    for index, row in enumerate(changed):
        row["config"]["problem"]["dims"] = [4, 4] if index % 2 else [2, 2, 2]
        row["config"]["problem"]["weights"] = [0.5, 1.5]
        row["config"]["coords"]["methods.gd.lr"] = 0.1 * index
        row["config"].update(stream=1, run_seed=100 + index, problem_seed=200 + index)
    frame = tidy_frame(rows_to_frame(changed))
    assert list(frame["problem.dims"]) == ["2x2x2", "4x4", "2x2x2", "4x4"]
    assert "problem.weights" not in frame  # the same on every row
    assert frame["methods.gd.lr"].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert str(frame["run_seed"].dtype) == "Int64" and list(frame["problem_seed"]) == [200, 201, 202, 203]
    assert frame.notna().any().all()


def test_an_empty_store_gives_the_generic_columns(tmp_path):
    from volumelab.experiments.store import ResultsStore

    with ResultsStore(tmp_path):
        pass
    frame = volumelab.load_results(tmp_path)
    assert frame.empty and {"figure", "method", "seed", "gen_loss", "run_key"} <= set(frame)
    assert load_frame(tmp_path).empty


# ------------------------------------------------------------------ volumelab export
@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_export_writes_the_table_and_it_reads_back_equal(runs, tmp_path, capsys, file_format):
    """The round trip: CSV back to the documented types equals load_results; Parquet keeps them itself."""
    from volumelab.cli import main

    if file_format == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / "export" / f"table.{file_format}"
    code = main(["export", str(runs), "--format", file_format, "--out", str(out)])
    expected = volumelab.load_results(runs)
    assert code == 0 and capsys.readouterr().out == (f"wrote {out}: {len(expected)} rows, "
                                                    f"{len(expected.columns)} columns\n")
    assert {"boolean", "Int64", "float64", "str"} <= {str(dtype) for dtype in expected.dtypes}
    if file_format == "csv":
        read = pd.read_csv(out)
        assert list(read.columns) == list(expected.columns)
        read = read.astype(expected.dtypes.to_dict())
    else:
        read = pd.read_parquet(out)
    pd.testing.assert_frame_equal(read, expected)


def test_export_defaults_to_a_file_in_the_folder(runs, capsys):
    from volumelab.cli import main

    assert main(["export", str(runs / "mlp")]) == 0
    out = runs / "mlp" / "results-all.csv"
    assert capsys.readouterr().out.startswith(f"wrote {out}: 16 rows, ")
    assert len(pd.read_csv(out)) == 16


def test_export_errors_are_one_line_with_exit_code_2(runs, tmp_path, capsys, monkeypatch):
    from volumelab.cli import main

    def error(*args) -> str:
        code = main([str(a) for a in args])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0, err
        return err

    assert "no results.sqlite in" in error("export", tmp_path / "nothing")
    assert "--format" in error("export", runs, "--format", "xlsx")
    assert "results store" in error("export", runs / "mlp", "--out", runs / "mlp" / "results.sqlite")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    assert "pip install 'volumelab[parquet]'" in error("export", runs, "--format", "parquet")
