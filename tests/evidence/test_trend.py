"""The per-seed slope over a sweep's x (volumelab.evidence.trend): against numpy's polyfit seed by seed, and
judged on hand-made sweeps whose trend is known by construction (monotone holds, flat is inconclusive,
reversed fails, a flagged run counts at its worst case)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from volumelab.evidence import (
    FAILS, HOLDS, INCONCLUSIVE, Endpoint, Rule, Study, judge, least_squares_slope, panel_data, seed_slopes,
)

WIDTHS = (16, 64, 256, 1024)
SEEDS = 6


def trend_frame(exponent: float, *, noise: float = 0.05, seeds: int = SEEDS, flip_odd: bool = False,
                seed: int = 0) -> pd.DataFrame:
    """``value = scale_s * width ** exponent * exp(noise * N(0, 1))``, each seed its own scale; with
    ``flip_odd`` the odd seeds have the opposite exponent (no trend on average)."""
    generator = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        scale = 1.0 + 0.3 * s
        own = -exponent if flip_odd and s % 2 else exponent
        for width in WIDTHS:
            rows.append({"method": "m", "method_type": "m", "x": width, "seed": s, "status": "ok",
                         "value": scale * width ** own * math.exp(noise * generator.standard_normal())})
    return pd.DataFrame(rows)


def test_least_squares_slope_is_numpy_polyfit_and_nan_without_two_distinct_x():
    generator = np.random.default_rng(1)
    xs, ys = generator.uniform(0, 5, 9), generator.standard_normal(9)
    assert least_squares_slope(list(xs), list(ys)) == pytest.approx(np.polyfit(xs, ys, 1)[0], rel=1e-12)
    assert math.isnan(least_squares_slope([2.0, 2.0], [1.0, 3.0]))
    with pytest.raises(ValueError, match="as many xs as ys"):
        least_squares_slope([1.0, 2.0], [1.0])


@pytest.mark.parametrize("log_y", [True, False])
def test_seed_slopes_equal_a_plain_polyfit_loop_per_seed(log_y):
    frame = trend_frame(-0.5, noise=0.2)
    slopes = seed_slopes(panel_data(frame), "m", "value", log_y=log_y)
    assert sorted(slopes) == list(range(SEEDS))
    for s in range(SEEDS):
        rows = frame[frame["seed"] == s].sort_values("x")
        ys = np.log2(rows["value"]) if log_y else rows["value"]
        assert slopes[s] == pytest.approx(np.polyfit(np.log2(rows["x"]), ys, 1)[0], rel=1e-10)
    # log-log: the power law's exponent, whatever the base of the logarithms.
    if log_y:
        assert np.mean(list(slopes.values())) == pytest.approx(-0.5, abs=0.15)


def test_seed_slopes_against_x_itself_equal_a_plain_polyfit_on_x_and_take_zero_and_negative_x():
    generator = np.random.default_rng(3)
    rows = [{"method": "m", "method_type": "m", "x": depth, "seed": s, "status": "ok",
             "value": 0.3 * s - 0.2 * depth + generator.standard_normal()}
            for s in range(SEEDS) for depth in (-1, 0, 2, 3, 5)]
    frame = pd.DataFrame(rows)
    slopes = seed_slopes(panel_data(frame), "m", "value", log_y=False, log_x=False)
    assert sorted(slopes) == list(range(SEEDS))
    for s in range(SEEDS):
        own = frame[frame["seed"] == s].sort_values("x")
        assert slopes[s] == pytest.approx(np.polyfit(own["x"], own["value"], 1)[0], rel=1e-10)
    # On log2 x the non-positive depths are no abscissae: only 2, 3, 5 are fitted.
    on_log = seed_slopes(panel_data(frame), "m", "value", log_y=False)
    own = frame[(frame["seed"] == 0) & (frame["x"] > 0)].sort_values("x")
    assert on_log[0] == pytest.approx(np.polyfit(np.log2(own["x"]), own["value"], 1)[0], rel=1e-10)


def test_seed_slopes_read_a_quantity_function_and_leave_out_a_seed_missing_any_x():
    frame = trend_frame(1.0, noise=0.0)
    frame.loc[(frame["seed"] == 2) & (frame["x"] == 64), "value"] = np.nan  # an undefined value at one width
    frame.loc[(frame["seed"] == 3) & (frame["x"] == 16), "value"] = -1.0  # not positive: no log
    halved = seed_slopes(panel_data(frame), "m", lambda panel, x: {s: v / 2 for s, v in
                                                                   panel.values("m", x, "value").items()},
                         log_y=True)
    assert sorted(halved) == [0, 1, 4, 5] and all(v == pytest.approx(1.0) for v in halved.values())
    assert 3 in seed_slopes(panel_data(frame), "m", "value", log_y=False)
    assert seed_slopes(panel_data(frame), None, "value", log_y=True) == {}
    assert seed_slopes(panel_data(frame[frame["x"] == 16]), "m", "value", log_y=True) == {}


def _study(direction: str) -> Study:
    return Study(name="trend-test", paper="arXiv 0000.00000", claim="the value moves with width",
                 endpoints={"trend": Endpoint(Rule("log-log slope of the value against width", direction),
                                              lambda panel: seed_slopes(panel, "m", "value", log_y=True),
                                              worst_effect=0.0)})


def test_a_monotone_trend_holds_a_flat_one_is_inconclusive_a_reversed_one_fails():
    falling = _study("decrease")
    assert judge(falling, trend_frame(-0.5)).outcome == HOLDS
    flat = judge(falling, trend_frame(0.05, flip_odd=True))
    assert flat.outcome == INCONCLUSIVE and "includes both" in flat.panels[0].decision.reason
    assert judge(falling, trend_frame(0.5)).outcome == FAILS
    # The same frames under the opposite claim.
    assert judge(_study("increase"), trend_frame(0.5)).outcome == HOLDS
    assert judge(_study("increase"), trend_frame(-0.5)).outcome == FAILS


def test_a_seed_with_a_flagged_run_has_no_slope_and_counts_at_no_trend_in_the_worst_case():
    frame = trend_frame(-0.02, noise=0.01, seeds=7)
    flagged = (frame["seed"] == 0) & (frame["x"] == 256)
    frame.loc[flagged, "status"] = "diverged"
    decision = judge(_study("decrease"), frame).panels[0].decision
    # Fitted on its other three widths the seed would still have a slope: it is not; it is counted.
    assert decision.flagged == 1 and decision.effect.n == 6 and 0 not in decision.effect.values
    assert decision.worst.effect.n == 7 and decision.worst.effect.values[0] == 0.0
    assert decision.outcome == decision.worst.outcome == HOLDS


def test_power_law_crossing_solves_an_exact_power_law_and_a_noisy_one_like_polyfit():
    from volumelab.evidence import power_law_crossing

    widths = [16.0, 64.0, 256.0, 1024.0]
    # y = 3 x^-1/2 reaches 0.1 at x = (3 / 0.1)^2 = 900 (interpolated) and 0.05 at 3600 (extrapolated).
    exact = [3.0 * w ** -0.5 for w in widths]
    assert power_law_crossing(widths, exact, 0.1) == pytest.approx(900.0, rel=1e-12)
    assert power_law_crossing(widths, exact, 0.05) == pytest.approx(3600.0, rel=1e-12)
    generator = np.random.default_rng(5)
    noisy = [v * math.exp(0.2 * generator.standard_normal()) for v in exact]
    slope, intercept = np.polyfit(np.log(widths), np.log(noisy), 1)
    assert power_law_crossing(widths, noisy, 0.1) == pytest.approx(math.exp((math.log(0.1) - intercept) / slope),
                                                                   rel=1e-10)
    # No crossing: a flat fit, a non-positive value; bad input is an error.
    assert power_law_crossing(widths, [0.2] * 4, 0.1) is None
    # A rising law crosses a level too, unless only a falling one may.
    rising = [0.01 * w ** 0.5 for w in widths]
    assert power_law_crossing(widths, rising, 0.1) == pytest.approx(100.0, rel=1e-12)
    assert power_law_crossing(widths, rising, 0.1, falling=True) is None
    assert power_law_crossing(widths, exact, 0.1, falling=True) == pytest.approx(900.0, rel=1e-12)
    assert power_law_crossing(widths, [0.2, 0.1, 0.0, 0.05], 0.1) is None
    with pytest.raises(ValueError, match="positive level"):
        power_law_crossing(widths, exact, 0.0)
