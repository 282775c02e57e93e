"""What instructors author and the grader builds from it: regions.py (the marked regions of the source files),
course.py (the nbgrader course and its configuration) and samples.py (submissions written as answers per region)."""
