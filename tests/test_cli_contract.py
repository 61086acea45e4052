"""The CLI contract: every bad input is one line `volumelab: error: ...` and exit code 2, never a traceback.

Table-driven over corrupt files for every command that reads one (problem files for
`problem show`, `gnc`, `gd`; sweep configs for `run`).
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import volumelab as vl
from volumelab.cli import main


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _good_arrays() -> dict[str, np.ndarray]:
    return vl.make_sensing(4, 4, 1, 8, seed=0).to_arrays()


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _corrupt_problem_files():
    good = _npz_bytes(**_good_arrays())
    arrays = _good_arrays()
    nan = dict(arrays, b_train=np.full_like(arrays["b_train"], np.nan))
    complex_dtype = dict(arrays, A_train=arrays["A_train"].astype(np.complex128))
    strings = dict(arrays, b_test=np.array(["a"] * len(arrays["b_test"])))
    wrong_shape = dict(arrays, A_train=arrays["A_train"].reshape(len(arrays["A_train"]), -1))
    missing = {k: v for k, v in arrays.items() if k != "A_test"}
    object_array = io.BytesIO()
    np.savez(object_array, **dict(arrays, b_train=np.array([{"a": 1}], dtype=object)))
    return {
        "truncated": good[: len(good) // 2],
        "truncated_tail": good[:-40],
        "empty": b"",
        "random_bytes": np.random.default_rng(0).bytes(2048),
        "text": b"A_train,b_train\n1,2\n",
        "npy_not_npz": _npy_bytes(),
        "zip_without_arrays": _zip_with_text(),
        "missing_array": _npz_bytes(**missing),
        "wrong_shape": _npz_bytes(**wrong_shape),
        "complex_dtype": _npz_bytes(**complex_dtype),
        "string_dtype": _npz_bytes(**strings),
        "object_dtype": object_array.getvalue(),
        "nan": _npz_bytes(**nan),
    }


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def _zip_with_text() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return buffer.getvalue()


CORRUPT = _corrupt_problem_files()
READERS = {
    "problem show": lambda path: ["problem", "show", path],
    "gnc": lambda path: ["gnc", "--problem", path, "--width", 4, "--eps", 0.1, "--samples", 100],
    "gd": lambda path: ["gd", "--problem", path, "--width", 4, "--lr", 0.1, "--steps", 1],
}


@pytest.mark.parametrize("command", sorted(READERS))
@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_problem_file_is_one_line_exit_2(capsys, tmp_path, monkeypatch, command, case):
    monkeypatch.delenv("VOLUMELAB_DEBUG", raising=False)
    path = tmp_path / "P.npz"
    path.write_bytes(CORRUPT[case])
    code, out, err = run(capsys, *READERS[command](path))
    lines = err.strip().splitlines()
    assert code == 2, (case, err)
    assert len(lines) == 1 and lines[0].startswith("volumelab: error: "), err
    assert "Traceback" not in err and "allow_pickle" not in err
    assert str(path) in err or "P.npz" in err


def test_not_a_problem_file_says_what_it_must_contain(capsys, tmp_path):
    path = tmp_path / "P.npz"
    path.write_bytes(CORRUPT["random_bytes"])
    code, _, err = run(capsys, "problem", "show", path)
    assert code == 2 and "not a volumelab problem file" in err and "A_train" in err and "pickle" not in err


def test_empty_file_is_an_error_not_an_abort_even_when_debugging(capsys, tmp_path, monkeypatch):
    path = tmp_path / "P.npz"
    path.write_bytes(b"")
    code, _, err = run(capsys, "problem", "show", path)
    assert code == 2 and "is empty" in err and "aborted" not in err
    monkeypatch.setenv("VOLUMELAB_DEBUG", "1")
    with pytest.raises(vl.ProblemError, match="is empty"):
        main(["problem", "show", str(path)])


def test_metadata_survives_save_and_load(tmp_path, capsys):
    problem = vl.make_completion(5, 4, 2, 9, seed=7, norm=2.5)
    loaded = vl.load_problem(problem.save(tmp_path / "P.npz"))
    assert {k: loaded.metadata[k] for k in ("seed", "rank", "norm")} == {"seed": 7, "rank": 2, "norm": 2.5}
    code, out, _ = run(capsys, "problem", "show", tmp_path / "P.npz", "--json")
    assert code == 0 and json.loads(out)["rank"] == 2


SWEEP = """\
name: mine
x: model.width
problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 8}
methods:
  gnc: {eps: 0.1, samples: 1000}
grid:
  model.width: [4]
seeds: 1
"""

CORRUPT_CONFIGS = {
    "empty": "",
    "truncated": SWEEP[: len(SWEEP) // 2],
    "random_bytes": np.random.default_rng(1).bytes(512).decode("latin-1"),
    "text": "just some words\n",
    "list_at_top": "- a\n- b\n",
    "wrong_type": SWEEP.replace("samples: 1000", "samples: many"),
    "fractional_count": SWEEP.replace("samples: 1000", "samples: 1.5e3.5"),
    "not_whole": SWEEP.replace("samples: 1000", "samples: 1500.5"),
    "nan": SWEEP.replace("eps: 0.1", "eps: .nan"),
    "unknown_field": SWEEP.replace("eps: 0.1", "epsilon: 0.1"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_CONFIGS))
def test_corrupt_config_is_one_line_exit_2(capsys, tmp_path, monkeypatch, case):
    monkeypatch.delenv("VOLUMELAB_DEBUG", raising=False)
    path = tmp_path / "sweep.yaml"
    path.write_text(CORRUPT_CONFIGS[case], encoding="latin-1")
    code, _, err = run(capsys, "run", path, "--out", tmp_path / "out")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("volumelab: error: "), (case, err)
    assert "Traceback" not in err and "Value error," not in err


def test_settings_errors_name_the_method_and_the_file(capsys, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.replace("eps: 0.1", "eps: -1"), encoding="utf-8")
    code, _, err = run(capsys, "run", path, "--out", tmp_path / "out")
    assert code == 2 and "methods.gnc.eps" in err and str(path) in err and "Value error," not in err
    path.write_text(SWEEP, encoding="utf-8")
    code, _, err = run(capsys, "run", path, "--scale", "quick", "--out", tmp_path / "out")
    assert code == 2 and f"{path}: no scale 'quick'" in err and "<config>" not in err


def test_counts_accept_scientific_notation(capsys, tmp_path):
    code, out, err = run(capsys, "gnc", "--rows", 4, "--cols", 4, "--measurements", 8, "--width", 4,
                         "--eps", 0.2, "--samples", "2e3", "--json")
    assert code == 0, err
    assert json.loads(out)["samples"] == 2000
    code, _, err = run(capsys, "gnc", "--width", 4, "--eps", 0.2, "--samples", "1.5")
    assert code == 2 and "not a whole number" in err
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.replace("samples: 1000", "samples: 2e3"), encoding="utf-8")
    code, _, err = run(capsys, "run", path, "--out", tmp_path / "out")
    assert code == 0, err
    frame = vl.load_results(tmp_path / "out")
    assert set(frame["samples"]) == {2000}
    csv_text = (tmp_path / "out" / "results.csv").read_text()
    assert ",2000," in csv_text and "2000.0" not in csv_text
    header = csv_text.splitlines()[0].split(",")
    seeds = [line.split(",")[header.index("seed")] for line in csv_text.splitlines()[1:]]
    assert seeds == ["0", "0"]  # integers, not 0.0


def test_every_command_takes_device(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--samples", "2e4", "--device", "cpu")
    assert code == 0, err
    assert "What this run shows" in out and "chance" in out
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP, encoding="utf-8")
    code, _, err = run(capsys, "run", path, "--device", "cpu", "--out", tmp_path / "out")
    assert code == 0, err
    code, _, err = run(capsys, "reproduce", "figure1", "--device", "nope")
    assert code == 2 and "--device" in err


def test_run_defaults_to_base_values_with_a_neutral_label(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP, encoding="utf-8")
    code, out, err = run(capsys, "run", path)
    assert code == 0, err
    assert (tmp_path / "runs" / "base" / "mine" / "results.csv").is_file()
    assert "paper" not in out and "mine (base scale): 2 runs (1e+03 prior draws)" in out
    frame = vl.load_results(tmp_path / "runs" / "base" / "mine")
    assert set(frame["scale"]) == {"base"}
    # Progress lines reach a non-terminal stderr.
    assert "mine (base): 2/2 runs, 100% of the work" in err


def test_reproduce_accepts_documented_names_only(capsys):
    for name in ("1", "fig1", "Figure1"):
        code, _, err = run(capsys, "reproduce", name, "--no-report")
        assert code == 2 and "figure1 ... figure11" in err


def test_output_folder_of_another_sweep_is_refused_unless_forced(capsys, tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(SWEEP, encoding="utf-8")
    second.write_text(SWEEP.replace("name: mine", "name: other"), encoding="utf-8")
    out = tmp_path / "out"
    assert run(capsys, "run", first, "--out", out)[0] == 0
    (out / "plots" / "stale.png").write_bytes(b"old")
    code, _, err = run(capsys, "run", second, "--out", out)
    assert code == 2 and "holds the results of sweep 'mine'" in err and "--force" in err
    assert set(vl.load_results(out)["figure"]) == {"mine"}
    code, _, err = run(capsys, "run", second, "--out", out, "--force")
    assert code == 0, err
    assert set(vl.load_results(out)["figure"]) == {"other"} and not (out / "plots" / "stale.png").exists()
    # The same sweep resumes in its own folder without --force.
    code, out_text, _ = run(capsys, "run", second, "--out", out)
    assert code == 0 and "nothing to run" in out_text


def test_help_documents_every_option(capsys):
    for command in (["gnc"], ["gd"], ["demo"], ["run"], ["reproduce"], ["problem", "make"], ["problem", "show"]):
        code, out, _ = run(capsys, *command, "--help")
        assert code == 0
    code, out, _ = run(capsys, "gnc", "--help")
    for sampler in ("bartlett", "gram", "layerwise", "direct"):
        assert sampler in out
    assert "fan_in" in out and "--batch-size" in out
    code, out, _ = run(capsys, "gd", "--help")
    assert "--history" in out and "loss history" in out


def test_options_without_help_text():
    """Every option of every command has a help text (click's ``help`` attribute)."""
    import click

    from volumelab.cli import cli

    def commands(group, prefix=()):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, prefix + (name,))
            else:
                yield prefix + (name,), command

    missing = [f"{' '.join(path)} {param.opts[0]}" for path, command in commands(cli)
               for param in command.params
               if isinstance(param, click.Option) and not param.help]
    assert missing == []
