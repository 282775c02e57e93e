"""python -m grading release | autograde | collect | export | feedback | demo | gradescope | similarity | bench"""
import argparse
import logging
import sys
from pathlib import Path

from grading import logs, settings
from grading.nbgrader_support import prepare_nbgrader
from grading.settings import EXIT_GRADER_ERRORS, EXIT_MISCONFIGURED, ConfigurationError

# Not __name__, which is "__main__" under python -m: this logger must be under the "grading" one that logs configures.
logger = logging.getLogger(f"{logs.ROOT}.__main__")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line and {subcommand: its parser}: each subcommand takes -q and -v (grading/logs.py), as the
    main parser does before the subcommand. Call prepare_nbgrader() first."""
    from grading.commands.gradescope import BUILD_SETTINGS

    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    logs.add_arguments(parser, default=logs.DEFAULT)
    commands = parser.add_subparsers(dest="command", required=True)

    release = commands.add_parser("release", help="build the student bundle from the sources, and check it")
    release.add_argument("--out", type=Path, default=Path("release"), help="where to write norm/ and norm.zip "
                                                                            "(default: %(default)s)")
    settings.add_arguments(release, only={"jobs", "require_sandbox"})

    autograde = commands.add_parser("autograde", help="grade a folder of submissions")
    autograde.add_argument("submissions", type=Path, help="folder with <student_id>/ folders, <student_id>.zip "
                                                          "files, or an nbgrader submitted/ tree")
    autograde.add_argument("--out", type=Path, required=True, help="folder for grades.csv, per-student results "
                                                                   "and the nbgrader course with its gradebook")
    autograde.add_argument("--roster", type=Path, help="CSV of students (id, first_name, last_name, email, and "
                           "optionally lms_user_id for Canvas) for the gradebook, loaded with nbgrader's student import")
    autograde.add_argument("--shard", default="1/1", help="grade shard I of N (I/N): a fixed 1/N of the students, "
                                                          "to merge with `collect` (default: %(default)s, all)")
    settings.add_arguments(autograde)

    collect = commands.add_parser("collect", help="merge the outputs of sharded autograde runs into one")
    collect.add_argument("shards", type=Path, nargs="+", help="the --out folders of the shards")
    collect.add_argument("--out", type=Path, required=True, help="folder for the merged grades.csv, per-student "
                                                                 "results and the nbgrader course")
    collect.add_argument("--partial", action="store_true", help="merge even shards that are not finished (students "
                         "not graded yet, or with grader errors), and say who is missing; exits 3 then")

    export = commands.add_parser("export", help="the final grades from the gradebook, after manual grading, as CSV "
                                              "or as Canvas's or Moodle's grade import")
    export.add_argument("out", type=Path, help="the --out folder of autograde (or collect), with course/gradebook.db")
    from grading.commands.export import DEFAULT_FILES, FORMATS
    export.add_argument("--format", choices=FORMATS, default="csv", help="csv: every question, the penalty, the total "
                        "and why a grade is not final; canvas: Canvas's gradebook import; moodle: Moodle's CSV grade "
                        "import, matched on email (default: %(default)s)")
    export.add_argument("--out", dest="target", type=Path, metavar="FILE", help="the file to write (default: OUT/" + ", OUT/".join(
        f"{name} for {fmt}" for fmt, name in DEFAULT_FILES.items()) + ")")
    export.add_argument("--column", default="norm", help="the LMS's name of the assignment's grade column; for "
                        "Canvas, as its own export names it, `Name (id)`, so the import updates that assignment "
                        "(default: %(default)s)")

    feedback = commands.add_parser("feedback", help="rewrite each student's feedback.html and results.json from the "
                                                    "gradebook, with the TA's scores and comments")
    feedback.add_argument("out", type=Path, help="the --out folder of autograde (or collect)")

    demo = commands.add_parser("demo", help="release, then autograde the sample submissions in grading/examples/")
    demo.add_argument("--out", type=Path, default=Path("grading-out/demo"), help="(default: %(default)s)")
    settings.add_arguments(demo, only={"jobs", "require_sandbox"})

    gradescope = commands.add_parser("gradescope", help="write autograder.zip, a Gradescope autograder that grades "
                                                        "each upload as autograde does")
    gradescope.add_argument("--out", type=Path, required=True, help="folder for autograder.zip")
    settings.add_arguments(gradescope, only=set(BUILD_SETTINGS))
    gradescope.add_argument("--try", dest="try_upload", type=Path, metavar="SUBMISSION", help="then run the zip "
                            "on SUBMISSION (a folder of the files a student uploads, or one zip) as Gradescope does, "
                            "in OUT/try standing in for /autograder, and print what the student would see")

    similarity = commands.add_parser("similarity", help="rank pairs of students by the answers they share, as "
                                                        "evidence for a person to read (it accuses no one)")
    similarity.add_argument("submissions", type=Path, help="folder with <student_id>/ folders, <student_id>.zip "
                                                           "files, or an nbgrader submitted/ tree, as for autograde")
    similarity.add_argument("--out", type=Path, required=True, help="folder for similarity.csv and similarity.html")
    similarity.add_argument("--top", type=int, default=50, help="pairs shown side by side in similarity.html; the "
                                                                "CSV lists every pair (default: %(default)s)")

    bench = commands.add_parser("bench", help="time this pipeline against nbgrader's sequential autograde on the "
                                              "sample students (a benchmark: see BENCHMARKS.md)")
    bench.add_argument("--submissions", type=int, default=8, help="K, submissions to grade (default: %(default)s)")
    settings.add_arguments(bench, only={"jobs"})
    bench.add_argument("--out", type=Path, default=Path("bench-out"), help="scratch folder (default: %(default)s)")
    bench.add_argument("--profile", action="store_true", help="instead: where one submission's time goes, stage by "
                                                              "stage, graded one at a time (--jobs is ignored)")

    for command in commands.choices.values():
        logs.add_arguments(command)
    return parser, commands.choices


def main(argv: list[str] | None = None) -> int:
    """Run the command argv names (default: this process's arguments); return its exit status."""
    prepare_nbgrader()  # before anything imports nbformat (see its docstring)
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    from grading.commands.release import ReleaseCheckFailed
    from grading.pipeline.shards import ShardError
    try:
        return run(args)
    except (ConfigurationError, ShardError) as error:
        return refuse(error, EXIT_MISCONFIGURED)
    except ReleaseCheckFailed as error:
        return refuse(error, 1)


def refuse(error: Exception, status: int) -> int:
    """Log why the command could not do what it was asked (its traceback at -v); return status."""
    logger.error("%s", error)
    logger.debug("where it was raised:", exc_info=error)
    return status


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; its exit status. What it refuses to do, it raises (main says so)."""
    if args.command == "similarity":
        from grading.commands.similarity import similarity
        similarity(args.submissions, args.out, args.top)
        return 0
    if args.command == "gradescope":
        from grading.commands.gradescope import build_autograder, try_autograder
        archive = build_autograder(args.out, settings.from_arguments(args))
        return 0 if args.try_upload is None else try_autograder(archive, args.try_upload, args.out / "try")
    if args.command == "feedback":
        from grading.commands.feedback import feedback
        feedback(args.out)
        return 0
    if args.command == "export":
        from grading.commands.export import export
        export(args.out, args.format, args.target, args.column)
        return 0
    if args.command == "bench":
        from grading.commands.bench import bench, profile
        if args.profile:
            profile(args.submissions, args.out)
        else:
            bench(args.submissions, args.jobs, args.out)
        return 0
    chosen = settings.from_arguments(args)
    if args.command == "autograde":
        from grading.commands.autograde import autograde
        from grading.pipeline.shards import parse_shard
        graded = autograde(args.submissions, args.out, chosen, roster=args.roster, shard=parse_shard(args.shard))
    elif args.command == "collect":
        from grading.commands.collect import collect
        graded, missing = collect(args.shards, args.out, partial=args.partial)
        if missing:  # a partial merge: not every student has a verdict, and rerunning their shards fixes it
            return EXIT_GRADER_ERRORS
    elif args.command == "release":
        from grading.commands.release import release
        release(args.out, chosen)
        graded = []
    else:
        from grading.commands.demo import demo
        graded = demo(args.out, chosen)
    return EXIT_GRADER_ERRORS if any(result.error for result in graded) else 0


if __name__ == "__main__":
    sys.exit(main())
