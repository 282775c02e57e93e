"""Where a submission's time goes: wall and CPU seconds per stage of grading, added up in the process the stage
runs in (`python -m grading bench --profile` prints them; BENCHMARKS.md keeps them).

A stage entered inside another is recorded under it ("judge/hidden suites/q3"), so that a parent's time is never
counted twice; a parent may name what its own time outside its children is (`rest`). CPU time is the process's own
(all its threads): a stage that waits on another process (the kernel, a sandboxed child) shows that process's work
as wall time only. A grading child starts with an empty record (`reset`) and leaves it in its folder (`save`) beside
result.json; the main process adds it to its own (`absorb`) as data, the way it reads result.json. Nothing here
decides or changes a score: the record is read only by the benchmark.
"""
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

STAGES = "stages.json"  # what a grading child leaves in its folder, beside result.json
SEPARATOR = "/"


@dataclass
class Stage:
    """One stage's total over the process's life: how many times it ran, its wall and CPU seconds, and (for a
    stage with stages inside it) the name of its own time outside them."""
    count: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    rest: str = ""


_record: dict[str, Stage] = {}
_open: list[str] = []  # the names of the stages entered and not yet left, outermost first


@contextmanager
def stage(name: str, rest: str = "") -> Iterator[None]:
    """Time what runs inside as the stage name, under the stages it is entered in; rest names this stage's time
    outside its own inner stages, where it has some. Usable as a decorator too."""
    path = SEPARATOR.join([*_open, name])
    _open.append(name)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        _open.pop()
        add(path, time.perf_counter() - wall, time.process_time() - cpu, rest=rest)


def add(path: str, wall: float, cpu: float, count: int = 1, rest: str = "") -> None:
    """Add count runs that took wall and cpu seconds in all to the stage at path."""
    entry = _record.setdefault(path, Stage())
    entry.count += count
    entry.wall += wall
    entry.cpu += cpu
    entry.rest = rest or entry.rest


def reset() -> None:
    """Forget every stage: a forked child starts here, so that its record holds its own work only."""
    _record.clear()
    _open.clear()


def record() -> dict[str, Stage]:
    """This process's stages so far, by path."""
    return {path: Stage(**asdict(entry)) for path, entry in _record.items()}


def save(path: Path) -> None:
    """Write this process's record to path (a grading child's folder); a record that cannot be written is lost,
    never the grading's failure."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(json.dumps({name: asdict(entry) for name, entry in _record.items()}), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)


def absorb(path: Path, under: str) -> None:
    """Add the record a child saved at path, if it left one that can be read, under the stage named under."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        entries = {name: Stage(**fields) for name, fields in saved.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return
    for name, entry in entries.items():
        add(f"{under}{SEPARATOR}{name}", entry.wall, entry.cpu, entry.count, entry.rest)
