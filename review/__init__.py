"""Physician review: the SQLite store of predictions and verdicts."""
