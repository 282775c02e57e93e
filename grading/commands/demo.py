"""`python -m grading demo`: release the assignment, then autograde the sample students of grading/examples/.

Each example folder describes a student by their answers (example.json, and one file per answered region); the
demo builds their submissions from the fresh release, the way a student would fill it in, then grades them.
"""
import json
import logging
import shutil
import sys
import zipfile
from pathlib import Path

from grading.assignment import BONUS_FILES
from grading.authoring.samples import build_submission, load_example
from grading.commands.autograde import autograde
from grading.commands.release import release
from grading.records.results import StudentResult
from grading.settings import EXAMPLES, REPO, Settings

logger = logging.getLogger(__name__)


def export_untrained_models(folder: Path) -> None:
    """Bonus files as a student would export them, from untrained networks (training needs a GPU and CIFAR)."""
    from normlab.notebook import load_models
    from normlab.train import export_model

    models = load_models()
    for dataset, filename in BONUS_FILES.items():
        export_model(models.resnet18(stem="cifar", num_classes=100 if dataset == "cifar100" else 10, base_width=8),
                     folder / filename)


def build_examples(bundle: Path, submissions: Path) -> dict[str, str]:
    """Write one submission per example into submissions; return their descriptions."""
    descriptions = {}
    shutil.rmtree(submissions, ignore_errors=True)
    submissions.mkdir(parents=True)
    for example in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        options = json.loads((example / "example.json").read_text(encoding="utf-8"))
        folder = build_submission(load_example(example), bundle, REPO, submissions / example.name)
        descriptions[example.name] = options["description"]
        if options.get("bonus_models"):
            export_untrained_models(folder)
        for old, new in options.get("rename", {}).items():
            (folder / old).rename(folder / new)
        if options.get("submit_as") == "zip":
            with zipfile.ZipFile(submissions / f"{example.name}.zip", "w") as archive:
                for path in sorted(folder.rglob("*")):
                    archive.write(path, path.relative_to(folder))
            shutil.rmtree(folder)
    return descriptions


def demo(out_dir: Path, settings: Settings) -> list[StudentResult]:
    """Release into out_dir/release, build the sample students' submissions from it and grade them into
    out_dir/graded; return their results, and log where to look next."""
    out_dir = Path(out_dir)
    bundle = release(out_dir / "release", settings)
    descriptions = build_examples(bundle, out_dir / "submissions")
    logger.info("\nSample students (grading/examples/):")
    for name, text in descriptions.items():
        logger.info(f"  {name}: {text}")
    logger.info("\nTheir notebooks run the smoke configuration on SYNTHETIC data, as every notebook does under the grader.\n")
    graded = out_dir / "graded"
    results = autograde(out_dir / "submissions", graded, Settings(jobs=settings.jobs,
                                                                  require_sandbox=settings.require_sandbox),
                        course_template=out_dir / "release" / "course")
    # The environment's own jupyter and python, by path: a TA who never activated .venv has them on no PATH.
    scripts = Path(sys.executable).parent
    logger.info(f"\nThe cohort: {graded / 'report.html'}. Per-student feedback: {graded}/<student>/feedback.html; Gradescope "
        f"files: {graded}/<student>/results.json"
        f"\nManual grading of the written answers: cd {graded / 'course'} && {scripts / 'jupyter'} lab, then open "
        "http://localhost:8888/formgrader"
        f"\nThen the final grades and feedback: {sys.executable} -m grading export {graded} (and feedback {graded})")
    return results
