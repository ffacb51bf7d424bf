"""Analysis: run summaries -> tidy runs.csv -> the paper's tables, statistics and figures.

Nothing here trains or reads MLflow: the run directories under ``results/runs`` are
the only input (``python -m analysis`` regenerates everything from them).
"""
