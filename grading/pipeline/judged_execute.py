"""JudgedExecute: the execute step of nbgrader's autograde for this assignment, and of `python -m grading autograde`.

It runs the student's notebook in a sandboxed kernel and judges every autograded cell outside it (judge.py). Under
`python -m grading autograde` the submission's SubmissionContext comes in resources["normlab"], its files already
taken; under nbgrader's own autograde this step is the front door: it takes the files from the folder nbgrader
hands it, as autograde's intake does. Either way the StudentResult goes on in resources["normlab"].result, for
SaveJudgement and for our result files.
"""
import os
import tempfile
import time
from pathlib import Path

from traitlets import Bool, Dict, Integer

from grading.handoff import Submission, SubmissionContext
from grading.isolation.kernel import SandboxedExecute
from grading.isolation.sandbox import SandboxMissing, check_sandbox
from grading.pipeline.intake import unpack
from grading.pipeline.judge import judge
from grading.settings import SCRATCH_PREFIX, Settings


class JudgedExecute(SandboxedExecute):
    """nbgrader's execute step, followed by the out-of-process judgement of every autograded cell."""

    settings = Dict(help="grading.settings.Settings as JSON, for nbgrader's own autograde (default: its defaults)"
                    ).tag(config=True)
    slot = Integer(0, help="worker slot: sandboxed code of different slots runs as different users").tag(config=True)
    require_sandbox = Bool(False, help="refuse to grade without bubblewrap").tag(config=True)

    def preprocess(self, nb, resources):
        context = resources.get("normlab")
        if context is not None:
            return self._judge(nb, resources, context)
        settings = Settings.from_json(self.settings) if self.settings else Settings()
        context = resources["normlab"] = SubmissionContext(settings=settings, slot=self.slot,
                                                           deadline=time.monotonic() + settings.timeout)
        student = resources["nbgrader"]["student"]
        with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-in-", dir="/tmp") as incoming:
            context.intake = unpack(Submission(student, Path(resources["metadata"]["path"]), "folder"), incoming)
            nb, resources = self._judge(nb, resources, context)
        context.result.notes[:0] = context.intake.notes
        return nb, resources

    def _judge(self, nb, resources, context):
        try:
            use_bwrap = check_sandbox(self.require_sandbox or context.settings.require_sandbox, self.log.warning)
        except SandboxMissing as error:
            raise RuntimeError(str(error)) from None
        self.output_limit = context.settings.kernel_output_bytes
        context.result = judge(self, nb, context, resources["nbgrader"]["student"], use_bwrap)
        return nb, resources
