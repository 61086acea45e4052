"""Messages a new user meets (issue 30): each names what the user typed and what to change."""

from __future__ import annotations

import json

import pytest

import volumelab.experiments as experiments
from volumelab.cli import main

from tiny_sweep import TINY, write_config

TENSOR = ["gnc", "--model", "cp", "--task", "tensor-sensing", "--width", "4", "--eps", "0.1", "--samples", "1000"]


def test_a_default_the_user_did_not_type_is_named_as_a_default(capsys):
    assert main([*TENSOR, "--dims", "4,4", "--rank", "2"]) == 2
    error = capsys.readouterr().err
    assert "--measurements defaults to 16, which is not below the 16 entries of the 4x4 tensor" in error
    assert "pass --measurements below 16" in error


def test_a_tensor_task_speaks_of_tensors(capsys):
    assert main([*TENSOR, "--dims", "4,4", "--rank", "5", "--measurements", "8"]) == 2
    error = capsys.readouterr().err
    assert "smallest side of the 4x4 tensor (4)" in error and "rows" not in error


def test_the_ntk_memory_message_names_the_flag_and_the_flag_works(capsys):
    assert main(["ntk", "--train", "300", "--width", "8", "--memory-bytes", "1000"]) == 2
    error = capsys.readouterr().err
    assert "raise --memory-bytes" in error and error.count("\n") == 1
    assert main(["ntk", "--train", "20", "--width", "8", "--memory-bytes", "1e7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"


def test_run_help_describes_the_config_and_points_to_the_docs(capsys):
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    assert "CONFIG: name, problem" in text and "docs/experiments.md" in text and "Writing a sweep" in text


def test_an_interrupted_sweep_says_what_it_saved_and_how_to_resume(tmp_path, monkeypatch, capsys):
    real = experiments.run_sweep

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)  # every run stored, then the user presses Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "run_sweep", interrupted)
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, TINY)), "--out", str(out), "--no-report"]) == 130
    error = capsys.readouterr().err
    assert f"stopped: 36 of 36 runs saved in {out}; rerun the same command to resume" in error


def test_subset_simulation_with_too_small_a_budget_spends_nothing_and_says_what_it_needs(capsys):
    args = ["gnc", "--task", "sensing", "--rows", "5", "--cols", "5", "--measurements", "15", "--width", "5",
            "--depth", "2", "--eps", "0.02", "--method", "subset", "--samples", "100"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # 100 samples leave the pilot 100 // 9 = 11 evaluations, fewer than one population of 500: nothing is spent.
    assert result["status"] == "budget_too_small" and result["evaluations"] == 0
    assert result["budget_needed"] == 2 * 9 * 500
    assert main(args) == 0
    assert "raise samples to at least 9,000" in capsys.readouterr().out


def test_run_and_reproduce_treat_out_the_same_way(tmp_path, monkeypatch, capsys):
    """--out names the sweep's own folder for run and for reproduce NAME; a folder that reproduce wrote to
    <out>/<name> before that is resumed, not recomputed."""
    import volumelab.experiments as experiments_package

    config = write_config(tmp_path, TINY.replace("name: tiny", "name: figure1"), "figure1.yaml")
    monkeypatch.setattr(experiments_package, "figure_config_path", lambda name: config)
    assert main(["run", str(config), "--scale", "quick", "--out", str(tmp_path / "a"), "--no-report"]) == 0
    assert main(["reproduce", "figure1", "--scale", "quick", "--out", str(tmp_path / "b"), "--no-report"]) == 0
    assert (tmp_path / "a" / "results.sqlite").is_file() and (tmp_path / "b" / "results.sqlite").is_file()
    old = tmp_path / "c" / "figure1"
    old.mkdir(parents=True)
    for name in ("results.sqlite", "resolved.json"):
        (old / name).write_bytes((tmp_path / "b" / name).read_bytes())
    capsys.readouterr()
    assert main(["reproduce", "figure1", "--scale", "quick", "--out", str(tmp_path / "c"), "--no-report"]) == 0
    text = capsys.readouterr().out
    assert f"note: {old} holds figure1's quick runs" in text and "all 36 runs already stored" in text
    assert not (tmp_path / "c" / "results.sqlite").exists()  # the former layout's folder was used


def test_an_invalid_grid_is_reported_at_the_scale_asked_for(tmp_path, capsys):
    config = write_config(tmp_path, TINY)
    assert main(["run", str(config), "--scale", "quick", "--set", "grid.model.width=[0,4]", "--out",
                 str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert "model.width=0 (scale quick)" in error and "--set grid.model.width=[0,4]" in error


def test_progress_lines_say_the_drivers_time_left_and_no_number_without_one(capsys):
    from volumelab.cli import _ProgressLines

    lines = _ProgressLines("tiny (quick)", every_seconds=0.0)
    lines(3, 36, 0.25, 30.0, seconds_left=90.0)
    lines(4, 36, 0.3, 33.0)  # no estimate given: no number claimed
    lines(36, 36, 1.0, 120.0, seconds_left=0.0)
    first, second, last = capsys.readouterr().err.splitlines()
    assert first == "tiny (quick): 3/36 runs, 25% of the work, 30 s elapsed, about 90 s left"
    assert "left" not in second and "left" not in last
