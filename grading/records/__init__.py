"""What is kept of a judgement: results.py (the typed StudentResult and grade.json), late.py (lateness and
penalties), reports.py (results.json, feedback.html, grades.csv, the final table) and gradebook.py (nbgrader's
course and gradebook, through the RECORD chain)."""
