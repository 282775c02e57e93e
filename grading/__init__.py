"""The grader. A submission flows through the folders in this order:

- commands/   what people run: `python -m grading autograde | collect | export | feedback | release | demo |
              gradescope | similarity | bench` (autograde.py is the main job);
- pipeline/   one submission, step by step: intake.py takes its files, canary.py grades the reference first,
              grade.py runs nbgrader's chains on it in a child process (restore_cells.py, then
              judged_execute.py), judge.py judges it with the hidden suites, the bonus and the verdicts written
              into the notebook; front_door.py puts nbgrader's own commands through the same intake;
- isolation/  where student code runs: the sandbox, the zygote that forks kernels, the kernel, the .py child, and
              the protocol that reads what they hand back;
- sandboxed/  the code that runs inside the sandbox;
- records/    what is kept: the typed result, lateness, results.json, feedback.html, grades.csv, the gradebook,
              the cohort's report.html, the final grades read back from the gradebook, and students' HTML made
              inert wherever a TA reads it.

Below them: assignment.py (the questions table), settings.py (every setting), authoring/ (the source's solution
regions, the nbgrader course, sample submissions) and nbgrader_support.py. Importing any of it changes nothing
outside it.
"""
