"""Search: the multi-objective problem, its algorithms, runs, verification and reports.

Owns the typed settings and budgets (`config.py`) and the option checks (`options.py`), the
problem and its cached evaluator (`problem.py`), NSGA-II and HAT's evolutionary search
(`algorithms.py`), a resumable run (`run.py`), the objectives wired to the oracle and the cost
models (`objectives.py`), the measured re-check of a front (`verify.py`), picking an
architecture from a run (`pick.py`) and the report (`report.py`).

May import: the core modules, `arch`, `space`, `data`, `models`, `oracle`, `costs`, `latency` and
`devices` (not `training`, `deploy` or the CLI).
"""
