"""A sweep config names its claim by a registered study and may pre-register the decision's numbers."""

from __future__ import annotations

import pytest

from volumelab.evidence import get_study
from volumelab.experiments import ConfigError, plan_sweep, sweep_from_dict


def _config(**extra):
    return {"name": "s", "x": "model.depth", "methods": {"gnc": {"eps": 0.1, "samples": 100}},
            "grid": {"model.depth": [2, 3]}, "seeds": 2, **extra}


def test_the_verdict_block_sets_the_rule_and_its_digest():
    config = sweep_from_dict(_config(claim="depth", verdict={"fall": {"minimal_effect": 0.1, "min_seeds": 8}}))
    rule = config.study().endpoints["fall"].rule
    assert (rule.minimal_effect, rule.min_seeds, rule.direction) == (0.1, 8, "increase")
    assert config.study().digest() != get_study("depth").digest()
    plan = plan_sweep(config)
    assert {task.rule_digest for task in plan.tasks} == {config.study().digest()}
    assert sweep_from_dict(_config(claim="depth")).study().digest() == get_study("depth").digest()
    assert sweep_from_dict(_config()).study() is None


@pytest.mark.parametrize("extra, message", [
    ({"claim": "depth", "verdict": {"slope": {"minimal_effect": 0.1}}}, "no endpoint 'slope'"),
    ({"claim": "depth", "verdict": {"fall": {"alpha": 0.1}}}, "alpha cannot be set"),
    ({"claim": "depth", "verdict": {"fall": {"minimal_effect": -1}}}, "minimal_effect"),
    ({"claim": "depth", "verdict": {"fall": {"min_seeds": 2}}}, "min_seeds must be at least 5"),
    ({"claim": "depht"}, "not a registered study"),
    ({"verdict": {"fall": {"minimal_effect": 0.1}}}, "needs a claim"),
])
def test_a_bad_claim_or_verdict_is_a_clear_error(extra, message):
    with pytest.raises(ConfigError, match=message):
        sweep_from_dict(_config(**extra))
