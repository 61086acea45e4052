"""``volumelab run`` / ``reproduce``: outputs, reruns, one-line errors with exit code 2."""

from __future__ import annotations

import pandas as pd

from volumelab.cli import main

from sweep_testing import TINY, write_config


def test_run_writes_outputs_and_reruns_as_noop(tmp_path, tiny_config, capsys):
    out = tmp_path / "out"
    assert main(["run", str(tiny_config), "--scale", "quick", "--out", str(out)]) == 0
    for name in ("results.sqlite", "results.csv", "report.md", "report.html", "plots/tiny.png", "plots/tiny.pdf"):
        assert (out / name).is_file(), name
    frame = pd.read_csv(out / "results.csv")
    assert {"figure", "method", "model.activation", "model.width", "seed", "gen_loss"} <= set(frame.columns)
    assert set(frame["method"]) == {"gnc", "gd", "prior"}
    # Only columns with a value: G&C's and GD's own, none of the NTK or prior-law diagnostics', none of
    # G&C's subset-simulation or GD's classification metrics (this sweep has neither), no x, no config.
    from volumelab.experiments.methods import get_method

    own = {c.name for t in ("gnc", "gd") for c in get_method(t).columns} | {c.name for c in
                                                                            get_method("gnc").extra_rows[0].columns}
    others = {c.name for t in ("ntk", "prior_law", "collapse") for c in get_method(t).columns} - own
    assert {"accepted", "samples", "acceptance_rate", "prior_gen_loss", "steps"} <= set(frame.columns)
    assert {"method.eps", "method.lr", "method.init_scale", "method.momentum"} <= set(frame.columns)
    assert others and not others & set(frame.columns)
    assert not {"rhat", "log_volume_mean_log", "test_error", "margin_l2", "x", "config", "eps", "lr"} & set(frame.columns)
    assert frame.notna().any().all()
    assert main(["run", str(tiny_config), "--scale", "quick", "--out", str(out)]) == 0
    assert "nothing to run" in capsys.readouterr().out


def test_bad_config_is_one_line_error(tmp_path, capsys):
    path = write_config(tmp_path, TINY.replace("model: {depth: 2}", "model: {depth: 2, colour: red}"), "bad.yaml")
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.yaml" in err and "model.colour" in err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert main(["run", str(path), "--scale", "huge", "--out", str(tmp_path / "o")]) == 2


def test_reproduce_rejects_unknown_figure(capsys):
    assert main(["reproduce", "figure12"]) == 2
    assert "figure12" in capsys.readouterr().err
    assert main(["run", "x.yaml", "--executor", "dask"]) == 2
