"""Measuring a run's artefacts: ``evaluate`` (accuracy on labelled data, ``edgekit eval``) and
``metrics`` (top-1, AUC, MAE and friends). Latency is ``edgekit.bench``."""
