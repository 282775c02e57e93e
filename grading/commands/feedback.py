"""`python -m grading feedback OUT`: rewrite each student's feedback.html and results.json from the course's
gradebook, once TAs have graded by hand, so that they show the TA's scores, overrides and comments and the final
points that `python -m grading export` and nbgrader's generate_feedback show. The checks' verdicts are autograde's,
from the student's grade.json; a student with a grader ERROR keeps the feedback that says it will be graded again.
report.html is rewritten too, its list of who needs a person taken from the gradebook.
"""
import json
import logging
from pathlib import Path

from grading.records.cohort import REPORT_FILE, write_report
from grading.records.final import read_final
from grading.records.reports import feedback_html, results_json
from grading.records.results import GRADE_FILE, load_result, read_rejected, write_atomic
from grading.settings import ConfigurationError

logger = logging.getLogger(__name__)


def feedback(out_dir: Path) -> list[str]:
    """Rewrite OUT/<student>/feedback.html and results.json for every graded student of out_dir's gradebook;
    return the ids rewritten. ConfigurationError where out_dir holds no gradebook."""
    out_dir = Path(out_dir)
    course = out_dir / "course"
    if not (course / "gradebook.db").is_file():
        raise ConfigurationError(f"{out_dir} holds no course/gradebook.db: pass the --out folder of "
                                 "`python -m grading autograde` (or of collect)")
    written, results, finals = [], [], read_final(course, out_dir)
    for student, final in finals.items():
        result = load_result(out_dir / student / GRADE_FILE)
        if result is None or not final.submitted:  # in the roster, never graded here: nothing to give back
            continue
        results.append(result)
        write_atomic(out_dir / student / "results.json",
                     json.dumps(results_json(result, final), indent=1, ensure_ascii=False))
        write_atomic(out_dir / student / "feedback.html", feedback_html(result, final))
        written.append(student)
    write_report(out_dir, results, read_rejected(out_dir),
                 {student: final.needs_person for student, final in finals.items() if final.needs_person})
    logger.info(f"rewrote feedback.html and results.json of {len(written)} students from {course / 'gradebook.db'}, "
                f"and {out_dir / REPORT_FILE}'s list of who still needs a person")
    return written
