"""The results version: bumped whenever a code change alters the numbers a run gives for the same settings and seed.

It is part of every results-store key (:func:`volumelab.experiments.config.run_key`)
and stored in every row, so a sweep resumed after such a change reruns the runs
computed by the older code instead of mixing them with new ones.

History:
    1: everything before the store recorded a version.
    2: the ``gram`` sampler treats round-off pivots of singular Grams as zero (ReLU
       draws change); GD runs whose gradient or loss turns non-finite end as
       ``diverged`` instead of continuing with zeroed entries.
    3: a GD run whose squared gradient norm overflows float64 (finite entries above about
       1e154) diverges at that step: before, ``group_rmsprop`` divided by an infinite
       average there, froze the run and reported it ``completed``; plain GD diverged a
       step or two later. Runs that do not diverge give the same numbers as in version 2.
"""

RESULTS_VERSION = 3
