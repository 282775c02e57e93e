"""What is kept of a judgement: results.py (the typed StudentResult and grade.json), late.py (submission times,
lateness and penalties), reports.py (results.json, feedback.html, grades.csv, the final table), gradebook.py
(nbgrader's course and gradebook, through the RECORD chain), cohort.py (report.html, the cohort at a glance),
final.py (the final grades, read back from the gradebook after manual grading) and inert.py (students' HTML made
harmless wherever a TA reads it)."""
