"""Optuna tuning: the search space and the study's workers."""
