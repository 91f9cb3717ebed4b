"""The sweep side: everything after the jobs of a multirun have written their metrics.json.

    grid.py       the default grid of `poolbench sweep`; the operator order of every table
    rundir.py     the one reader of a run directory (status, overrides, metrics)
    callback.py   the Hydra callback, rerun matching (skip, resume, rerun), the pinned sweep folder
    aggregate.py  grouping runs into configurations, statistics against the baseline, Pareto
    stats.py      Student's t intervals and Welch's test without SciPy
    summary.py    the rich table and summary.csv/.md/.json
    plots.py      the three PNG plots (matplotlib, only when installed)
    compare.py    aggregate + publish, for a sweep's end and `poolbench compare`
"""
