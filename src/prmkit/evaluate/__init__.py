"""Evaluation: best-of-N curves and the within-problem AUC (``bon.py``), verifiers against the world's
oracle (``verifier.py``), ProcessBench (``processbench.py``), annotation quality (``annotation.py``) and
the demo's report (``report.py``)."""
