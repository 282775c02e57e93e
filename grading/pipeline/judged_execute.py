"""JudgedExecute: the execute step of nbgrader's autograde for this assignment, and of `python -m grading autograde`.

It runs the student's notebook in a sandboxed kernel and judges every autograded cell outside it (judge.py). Under
`python -m grading autograde` the submission's SubmissionContext comes in resources["normlab"], its files already
taken; under nbgrader's own autograde this step is the front door: before its first student it grades the canary
(canary.py), it takes the files from the folder nbgrader hands it, as autograde's intake does, and where
CheckedAutograde staged the released notebook in place of the student's, why (front_door.NOTEBOOK_PROBLEMS). Either
way the StudentResult goes on in resources["normlab"].result, for SaveJudgement and for our result files. What the
machine fails at (GraderError, a failed canary) raises, so that nbgrader records no grade for that student.
"""
import time
from dataclasses import replace
from pathlib import Path

from traitlets import Bool, Dict, Integer

from grading.handoff import Submission, SubmissionContext
from grading.isolation.kernel import SandboxedExecute
from grading.isolation import scratch, users
from grading.isolation.sandbox import PYTHON, Isolation, SandboxMissing, check_sandbox
from grading.pipeline.front_door import NOTEBOOK_PROBLEMS
from grading.pipeline.intake import unpack
from grading.pipeline.judge import judge
from grading.settings import GRADING, REPO, SECRETS, ConfigurationError, Settings


class JudgedExecute(SandboxedExecute):
    """nbgrader's execute step, followed by the out-of-process judgement of every autograded cell."""

    settings = Dict(help="grading.settings.Settings as JSON, for nbgrader's own autograde (default: its defaults)"
                    ).tag(config=True)
    slot = Integer(0, help="worker slot: sandboxed code of different slots runs as different users").tag(config=True)
    require_sandbox = Bool(False, help="refuse to grade without bubblewrap").tag(config=True)
    canary_failure = None  # in this process: "" once the canary passed, why it failed, or None before it ran

    def preprocess(self, nb, resources):
        context = resources.get("normlab")
        if context is not None:
            return self._judge(nb, resources, context)
        settings = Settings.from_json(self.settings) if self.settings else Settings()
        self._check_canary(settings, resources["nbgrader"]["db_url"])
        student = resources["nbgrader"]["student"]
        context = resources["normlab"] = SubmissionContext(settings=settings, slot=self.slot,
                                                           deadline=time.monotonic() + settings.timeout,
                                                           notebook_problem=NOTEBOOK_PROBLEMS.get(student, ""))
        incoming = scratch.make("in-")
        try:
            context.intake = unpack(Submission(student, Path(resources["metadata"]["path"]), "folder"), incoming)
            nb, resources = self._judge(nb, resources, context)
        finally:
            scratch.remove(incoming)
        context.result.notes[:0] = context.intake.notes
        return nb, resources

    def _check_canary(self, settings, db_url):
        if JudgedExecute.canary_failure is None:
            # Imported here: the canary grades through the chains, which import this module.
            from grading.pipeline.canary import CanaryFailed, grade_canary_here
            try:
                grade_canary_here(settings, self.config, Path(db_url.removeprefix("sqlite:///")), self.slot)
                JudgedExecute.canary_failure = ""
            except CanaryFailed as failure:
                JudgedExecute.canary_failure = str(failure)
        if JudgedExecute.canary_failure:
            raise RuntimeError(JudgedExecute.canary_failure)

    def _judge(self, nb, resources, context):
        settings = replace(context.settings, require_sandbox=self.require_sandbox or context.settings.require_sandbox)
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
