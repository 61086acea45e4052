"""Evidence: the statistics of every verdict and the one mechanism that declares and judges a study.

* :mod:`~volumelab.evidence.statistics`: per-seed effects, Student-t intervals, the three-way
  decision (directional or equivalence by two one-sided tests), Holm's correction, minimum seeds.
* :mod:`~volumelab.evidence.study`: :class:`Study` (a claim's pre-registration),
  :func:`judge`, the one rule that combines panels (:data:`COMBINATION_RULE`), the registry.
* :mod:`~volumelab.evidence.roles`: what each kind of row is read as (sampler, trainer, chance), which
  the sweep methods register; the evidence layer imports nothing of the sweep code.
* :mod:`~volumelab.evidence.trend`: a trend over the sweep's x as a per-seed effect (each seed's own
  least-squares slope against ``log2 x``).
* :mod:`~volumelab.evidence.optimum`: where a swept quantity is smallest, the vertex of a parabola fitted
  around the grid's minimum (a learning-rate optimum between grid points), with its standard error.
"""

from .statistics import (
    ALPHA, FAILS, HOLDS, INCONCLUSIVE, MIN_SEEDS, Decision, Effect, Rule, decide, decide_panels, effect_interval, holm,
   
)
from .study import (
    COMBINATION_RULE, RESULTS_DIR_ATTR, SOUND_STATUSES, Endpoint, PanelData, PanelResult, Study, StudyVerdict, at_chance, combine, flagged_rows,
    get_study, judge, panel_data, register_study, registered_studies, row_settings, rule_changed, rule_history,
    split_panels, stale_results,
)
from .optimum import ParabolaOptimum, parabola_optimum
from .trend import least_squares_slope, power_law_crossing, seed_slopes

__all__ = [
    "ALPHA", "COMBINATION_RULE", "Decision", "Effect", "Endpoint", "FAILS", "HOLDS", "INCONCLUSIVE", "MIN_SEEDS",
    "PanelData", "PanelResult", "ParabolaOptimum", "RESULTS_DIR_ATTR", "Rule", "SOUND_STATUSES", "Study", "StudyVerdict", "at_chance", "combine", "decide", "decide_panels",
    "effect_interval", "flagged_rows", "get_study", "holm", "judge", "least_squares_slope", "panel_data", "parabola_optimum", "row_settings",
    "register_study", "registered_studies", "rule_changed", "rule_history", "power_law_crossing", "seed_slopes", "split_panels",
    "stale_results",
]
