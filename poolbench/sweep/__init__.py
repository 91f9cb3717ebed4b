"""The sweep side: everything after the jobs of a multirun have written their metrics.json.

    grid.py       the default grid of `poolbench sweep`; the operator order of every table
    rundir.py     the one reader of a run directory (status, overrides, metrics)
    callback.py   the Hydra callback, rerun matching (skip, resume, rerun), the pinned sweep folder
    aggregate.py  grouping runs into configurations, statistics against the baseline, Pareto
    stats.py      Student's t intervals and Welch's test without SciPy
    summary.py    the rich table (fitted to the console's width) and summary.csv/.md/.json
    tidy.py       runs.csv: one line per run directory, every override and metric a column (pandas)
    plots.py      the three plots as PNG, PDF and SVG (matplotlib, only when installed)
    compare.py    aggregate + publish, for a sweep's end, `poolbench compare` and the Python API
"""
