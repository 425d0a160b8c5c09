"""The attack catalogue: one entry per attack (parameters, defaults, threat model), and the measured speed table."""
