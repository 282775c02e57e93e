"""Which students a run grades: `autograde --shard I/N` grades a fixed 1/N of them, to be merged by `collect`.

A student belongs to shard 1 + (sha256 of the id mod N), so the split never depends on who else submitted, and a
student added later never moves anyone. Entries that are not submissions are split the same way, by name.

Every autograde run records in OUT/run.json what collect needs to judge its shard: the submissions it read, its
shard, the grader's fingerprint and the options that decide scores. Shards that disagree on any of these cannot
make one course's grades.
"""
import hashlib
import json
import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from grading.records.late import LatePolicy, parse_due
from grading.handoff import GradingRun
from grading.records.results import write_atomic

RUN_FILE = "run.json"  # per autograde output: how its latest run was started, for collect
Shard = tuple[int, int]  # (I, N): the I-th of N, from 1
RunRecord = dict[str, Any]  # what run.json holds (record_run)


class ShardError(ValueError):
    """A shard specification or a set of shards that cannot be used as asked."""


def parse_shard(text: str) -> Shard:
    """(index, count) from "I/N" with 1 <= I <= N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ShardError(f"--shard takes I/N, for example 2/8, not {text!r}") from None
    if not 1 <= index <= count:
        raise ShardError(f"--shard {text}: I must be between 1 and N")
    return index, count


def in_shard(name: str, shard: Shard) -> bool:
    """Whether the student (or entry) name belongs to shard."""
    index, count = shard
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % count == index - 1


def record_run(out_dir: str | os.PathLike[str], submissions_dir: str | os.PathLike[str], shard: Shard,
               run: GradingRun) -> None:
    """Write OUT/run.json for the autograde run `run` (a GradingRun) of shard (I, N) of submissions_dir. It is
    written when the run starts, so that a run killed midway still tells collect what it set out to do."""
    settings = run.settings
    write_atomic(Path(out_dir) / RUN_FILE, json.dumps({
        "submissions": str(Path(submissions_dir).resolve()), "shard": list(shard), "fingerprint": run.fingerprint,
        "isolation": run.isolation.value, "due": settings.due, "late_policy": settings.late_policy,
        "questions": ",".join(settings.question_list), "submission_times": times_digest(settings.submission_times)},
        indent=1))


def times_digest(path: str) -> str:
    """What a --submission-times file held, in a few characters ("" without one)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else ""


def read_run(out_dir: str | os.PathLike[str]) -> RunRecord | None:
    """The run record of an autograde output, or None where it has none (or a broken one)."""
    try:
        record = json.loads((Path(out_dir) / RUN_FILE).read_text(encoding="utf-8"))
        record["shard"] = tuple(int(part) for part in record["shard"])
        agreed_options(record)
        return record
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def agreed_options(record: RunRecord) -> dict[str, tuple[Any, Hashable]]:
    """What every shard of one merge must share: {option: (as recorded, as compared)}. Options written
    differently that mean the same (a due date in another time zone, per-day:5 and per-day:5.0) agree."""
    return {
        "submissions": (record["submissions"],) * 2,
        "shard count": (record["shard"][1],) * 2,
        "grader fingerprint": (record["fingerprint"],) * 2,
        "sandbox": (record["isolation"],) * 2,
        "due": (record["due"] or "none", parse_due(record["due"]) if record["due"] else None),
        "late policy": (record["late_policy"], LatePolicy.parse(record["late_policy"])),
        "questions": (record["questions"], frozenset(record["questions"].split(","))),
        "submission times": (record.get("submission_times") or "none",) * 2,
    }


def check_agreement(records: dict[str, RunRecord]) -> None:
    """Raise ShardError naming each option on which the shards' run records ({folder: record}) differ."""
    options = {folder: agreed_options(record) for folder, record in records.items()}
    differences = []
    for name in agreed_options(next(iter(records.values()))):
        if len({found[name][1] for found in options.values()}) > 1:
            differences.append(f"{name}: " + ", ".join(f"{folder} has {found[name][0]}"
                                                       for folder, found in options.items()))
    if differences:
        raise ShardError("the shards were graded with different options, so they are not one course's grades:\n  "
                         + "\n  ".join(differences) + "\nregrade the odd shards with the options of the others "
                         "(autograde ... --shard I/N with the same options and --force), then collect again")
