"""The results version: bumped whenever a code change alters the numbers a run gives for the same settings and seed.

A change at the level of float64 rounding only (a different summation order, a few ulps)
is recorded below without a bump: a bump reruns every stored run, including the hours of
paper-scale figure runs whose numbers did not change at all.

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

Rounding-level changes within version 3:
    GD and NGD through autograd (supervised data: MLPs, linear classifiers) run the
    training loss's forward pass on the training points only, not on ``[X_train; X_test]``.
    Measured: final losses differ by at most 6.6e-16 relative (benchmarks/results/compare/
    gd_training_view.json and session14_supervised_and_ngd_vs_32a7a37.json; 18 fixed-seed
    configurations at most 1e-15); factorization runs are bit-identical.
    NGD solves the runs of a batch together (issue 31, item 5): batched Jacobians, Cholesky
    instead of LU, the dual in its symmetric form. Measured against the per-run path
    (benchmarks/results/ngd/ngd_batched.json): final parameters within 2e-15 relative for the
    dense and dual solves, 1.3e-9 for CG (its stopping test at relative residual 1e-10 may
    fall one iteration apart). A system that is singular relative to its scale now fails
    also when its damping is positive but at most 1e-12 of its trace (before: only at
    damping 0); no stored configuration comes near (the smallest damping used is 1e-6).
    NGD's Jacobians in closed form (2026-12-06, issue 31): an MLP's from its layers' outer
    products, a linear factorization's as a Kronecker sum, a linear predictor's through ``w``.
    Measured against the code before (benchmarks/ngd_before_after.py,
    benchmarks/results/ngd/ngd_before_after_4d6a20d.json and ngd_before_after_8dbbe9c.json):
    final parameters within 3e-14 relative (MLP dual 4.5e-15, linear classifier dense 3.4e-14,
    factorizations 3e-16 to 3e-15); every other method bit-identical
    (benchmarks/results/compare/session-4d6a20d-46b6fec.json). NGD under ``mup`` no longer
    applies muP's per-layer learning rates (a per-layer rescaling leaves the natural gradient
    invariant): that changes NGD + mup runs, of which no stored configuration has any.

Changes within version 3 confined to one diagnostic's reported columns (no bump, since a bump
reruns every stored run of every method):
    2026-12-05, ``prior_law``: ``mardia_z`` is standardized by Mardia's exact null variance
    instead of its large-n limit (values change by 0.3% at 10^4 draws, 32% at 40), and
    ``mardia_z_stderr``, ``mardia_excess_stderr`` are delta-method SEs instead of batch means
    (which were about 3.2x too small for ``mardia_z``). Every other column of every method is
    bit-identical. A ``prior_law`` row stored before that date carries the old three columns:
    delete the sweep's ``results.sqlite`` (or use a new ``--out``) to recompute them. Subset
    simulation's rows gained ``log_volume_mean_log`` and its SE; older rows leave them empty.
"""

RESULTS_VERSION = 3
