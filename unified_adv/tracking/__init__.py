"""Logging a finished run to experiment trackers (MLflow: :mod:`unified_adv.tracking.mlflow`).

Read-only on the run: it is logged from its ``summary.json`` and its files after they are
written, so a tracker that fails never costs the run's own outputs.
"""
