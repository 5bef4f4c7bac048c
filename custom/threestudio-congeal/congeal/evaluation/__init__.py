"""Scoring: metrics, SPair-71k and NAVI readers and harnesses, synthetic ground truth."""
