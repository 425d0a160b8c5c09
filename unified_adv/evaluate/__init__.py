"""From per-unit outputs to numbers: per-sample results, the cross-check, findings."""
