"""Scoring code and the stored eval sets: from raw model output to field-level metrics."""
