"""Sweep config validation: errors name the file and the field; resolution order."""

from __future__ import annotations

import pytest

from volumelab.experiments import ConfigError, load_sweep, plan_sweep, resolve_points
from volumelab.experiments.paper import FIGURES, figure_config_path, resolve_figure_names

from sweep_testing import TINY, write_config


def _error(tmp_path, text) -> str:
    path = write_config(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    message = str(info.value)
    assert "bad.yaml" in message
    return message


def test_tiny_config_resolves(tiny_config):
    config = load_sweep(tiny_config)
    points = resolve_points(config)
    assert len(points) == 4
    assert [p.coords["model.width"] for p in points] == [4, 8, 4, 8]
    assert points[0].methods["gnc"].samples == 3000
    assert resolve_points(config, "quick")[0].methods["gnc"].samples == 2000
    assert config.seed_list == [0, 1, 2]


def test_unknown_field_in_section_is_named(tmp_path):
    message = _error(tmp_path, TINY.replace("model: {depth: 2}", "model: {depth: 2, widht: 3}"))
    assert "model.widht" in message and "unknown field" in message


def test_unknown_top_level_field_is_named(tmp_path):
    assert "'sedes'" in _error(tmp_path, TINY + "sedes: 3\n")


def test_unknown_grid_field_is_named(tmp_path):
    message = _error(tmp_path, TINY.replace("model.width: [4, 8]", "model.widht: [4, 8]"))
    assert "model.widht" in message and "grid" in message


def test_wrong_type_is_named(tmp_path):
    message = _error(tmp_path, TINY.replace("steps: 20", "steps: many"))
    assert "methods.gd.steps" in message or "steps" in message
    message = _error(tmp_path, TINY.replace("model.width: [4, 8]", "model.width: [4, wide]"))
    assert "width" in message and "wide" in message


def test_empty_grid_is_an_error(tmp_path):
    message = _error(tmp_path, TINY.replace("model.width: [4, 8]", "model.width: []"))
    assert "grid" in message and "model.width" in message and "empty" in message


def test_unknown_method_type_and_bad_scale(tmp_path):
    assert "sgd" in _error(tmp_path, TINY.replace("  gd: {lr", "  sgd: {lr"))
    assert "scales.quick.set" in _error(tmp_path, TINY.replace("methods.gnc.samples: 2000", "methods.gnc.sample: 2"))
    config = load_sweep(write_config(tmp_path, TINY))
    with pytest.raises(ConfigError, match="no scale 'huge'"):
        plan_sweep(config, "huge")


def test_override_keyed_by_missing_value_is_an_error(tmp_path):
    text = TINY + "overrides:\n  model.width:\n    16: {methods.gd.lr: 0.5}\n"
    assert "16" in _error(tmp_path, text)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "nope.yaml")
    path = write_config(tmp_path, "name: [unclosed\n", "broken.yaml")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_sweep(path)


def test_resolution_order_overrides_rules_then_scale(tmp_path):
    text = TINY + (
        "overrides:\n  model.width:\n    8: {methods.gd.lr: 0.5, methods.gd.steps: 7}\n"
        "rules:\n  - when: {model.activation: tanh, model.width: 8}\n    set: {methods.gd.lr: 0.25}\n"
    )
    text = text.replace("set: {methods.gnc.samples: 2000}", "set: {methods.gnc.samples: 2000, methods.gd.steps: 9}")
    config = load_sweep(write_config(tmp_path, text))
    by_coords = {(p.coords["model.activation"], p.coords["model.width"]): p for p in resolve_points(config)}
    assert by_coords[("linear", 4)].methods["gd"].lr == 1e-2
    assert by_coords[("linear", 8)].methods["gd"].lr == 0.5
    assert by_coords[("tanh", 8)].methods["gd"].lr == 0.25
    assert by_coords[("tanh", 8)].methods["gd"].steps == 7
    quick = {(p.coords["model.activation"], p.coords["model.width"]): p for p in resolve_points(config, "quick")}
    assert quick[("tanh", 8)].methods["gd"].steps == 9  # the scale is applied last


@pytest.mark.parametrize("figure", FIGURES)
def test_packaged_figures_validate(figure):
    config = load_sweep(figure_config_path(figure))
    assert config.figure == int(figure.removeprefix("figure"))
    for scale in ("paper", "quick"):
        points = resolve_points(config, scale)
        assert len(points) in (18, 27)
        assert config.seed_list == list(range(8))
    assert config.scale_note("quick")


def test_figure2_init_scales_follow_the_paper():
    points = resolve_points(load_sweep(figure_config_path("figure2")), "paper")
    init = {(p.coords["model.activation"], p.coords["model.depth"]): p.methods["gd"].init_scale for p in points}
    steps = {(p.coords["model.activation"], p.coords["model.depth"]): p.methods["gd"].steps for p in points}
    assert init[("linear", 4)] == 1e-3 and init[("linear", 8)] == 0.1 and init[("linear", 10)] == 0.2
    assert init[("leaky_relu", 10)] == 0.1 and init[("tanh", 9)] == 0.2
    assert steps[("linear", 5)] == 20000 and steps[("leaky_relu", 5)] == 50000
    assert all(p.methods["gd"].model == {"normalize": False} and p.model.normalize for p in points)
    assert {p.methods["gnc"].eps for p in points} == {0.0035}
    assert {p.methods["gnc"].samples for p in points} == {10**9}


def test_figure_names():
    # "all": every figure, then the packaged studies.
    from volumelab.experiments.paper import STUDIES

    assert resolve_figure_names("all") == list(FIGURES) + list(STUDIES)
    assert resolve_figure_names("figure2") == ["figure2"]
    # Only documented names: an alias such as "1" or "fig1" must not silently start a long run.
    for name in ("figure12", "1", "fig1", "Figure1", " figure1", "ALL"):
        with pytest.raises(ConfigError, match="figure1 ... figure11"):
            resolve_figure_names(name)
