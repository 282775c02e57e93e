"""One submission, step by step: intake.py takes its files (shards.py says which students a run grades), canary.py
grades the reference first, parallel.py forks a child per submission, grade.py runs nbgrader's SANITIZE and JUDGE
chains (chains.py) on it: restore_cells.py puts deleted grade cells back, judged_execute.py runs the notebook and
judge.py judges it with the hidden suites (hidden_suites.py) and the bonus (bonus.py), writing the verdicts into the
notebook (verdicts.py). front_door.py puts nbgrader's own autograde and collect through the same intake."""
