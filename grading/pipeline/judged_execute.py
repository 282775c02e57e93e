"""JudgedExecute: the execute step of nbgrader's autograde for this assignment, and of `python -m grading autograde`.

It runs the student's notebook in a sandboxed kernel and judges every autograded cell outside it (judge.py). The
submission comes in resources["normlab"], a SubmissionContext whose files intake already took: from grade.py under
`python -m grading autograde`, from the front door (front_door.CheckedAutograde, which also grades the canary first)
under nbgrader's own autograde. Either way the StudentResult goes on in resources["normlab"].result, for
SaveJudgement and for our result files. What the machine fails at (GraderError) raises, so that nbgrader records no
grade for that student.
"""
from dataclasses import replace
from pathlib import Path
from typing import Any

import nbformat
from traitlets import Bool, Dict, Integer

from grading.handoff import SubmissionContext
from grading.isolation.kernel import SandboxedExecute
from grading.isolation import users
from grading.isolation.sandbox import PYTHON, Isolation, SandboxMissing, check_sandbox
from grading.pipeline.judge import judge
from grading.settings import GRADING, REPO, SECRETS, ConfigurationError


class JudgedExecute(SandboxedExecute):
    """nbgrader's execute step, followed by the out-of-process judgement of every autograded cell."""

    settings = Dict(help="grading.settings.Settings as JSON, for nbgrader's own autograde (default: its defaults)"
                    ).tag(config=True)
    slot = Integer(0, help="worker slot: sandboxed code of different slots runs as different users").tag(config=True)
    require_sandbox = Bool(False, help="refuse to grade without bubblewrap").tag(config=True)

    def preprocess(self, nb: nbformat.NotebookNode,
                   resources: dict[str, Any]) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
        context = resources.get("normlab")
        if not isinstance(context, SubmissionContext) or context.intake is None:
            raise RuntimeError("the submission reached JudgedExecute without going through the grader's intake: the "
                               "course's nbgrader_config.py must be the one grading/authoring/course.py writes")
        settings = replace(context.settings,
                           require_sandbox=self.require_sandbox or context.settings.require_sandbox)
        try:
            isolation = check_sandbox(settings, self.log.warning)
            if isolation is Isolation.SEPARATE_USER:
                gradebook = Path(resources["nbgrader"]["db_url"].removeprefix("sqlite:///"))
                users.check_users([self.slot], PYTHON, hidden=[*SECRETS, gradebook.parent],
                                  protected=[REPO, GRADING, gradebook.parent])
        except (SandboxMissing, ConfigurationError) as error:
            raise RuntimeError(str(error)) from None
        self.output_limit = context.settings.kernel_output_bytes
        context.result = judge(self, nb, context, resources["nbgrader"]["student"], isolation)
        return nb, resources
