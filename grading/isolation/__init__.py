"""Where student code runs and how the grader talks to it: sandbox.py (bubblewrap and resource limits), zygote.py
(a slot's sandbox that forks kernels), kernel.py (the notebook's kernel, run and probed), student_module.py (the .py
behind a child process) and protocol.py (what the grader accepts back)."""
