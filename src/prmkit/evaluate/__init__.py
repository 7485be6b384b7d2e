"""Evaluation: annotation quality against the world's oracle (more to come: best-of-N, ProcessBench)."""
