"""grading/settings.py: every setting is declared once, with help; the options reach the command line and the
course's nbgrader configuration, and the fixed limits do not pretend to be options."""
import argparse
from dataclasses import fields
from pathlib import Path

import pytest

from grading import settings
from grading.settings import Settings, add_arguments, from_arguments, options


def test_every_setting_has_help_and_only_options_reach_the_command_line() -> None:
    assert all(f.metadata["help"] for f in fields(Settings))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = set(vars(parser.parse_args([])))
    assert flags == {f.name for f in options()}
    assert "message_chars" not in flags and "output_kb" in flags


def test_options_round_trip_through_the_command_line_and_json() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    chosen = from_arguments(parser.parse_args(["--output-kb", "64", "--questions", "q1,q3", "--force"]))
    assert chosen.output_kb == 64 and chosen.kernel_output_bytes == 64 << 10 and chosen.force
    assert Settings.from_json(chosen.to_json()) == chosen
    assert "message_chars" not in chosen.to_json()


def test_fixed_settings_cannot_be_set_per_run() -> None:
    with pytest.raises(TypeError):
        Settings(message_chars=10)


@pytest.mark.parametrize("questions", ["", "q1,q9", "everything"])
def test_a_question_list_names_known_questions(questions: str) -> None:
    with pytest.raises(ValueError, match="--questions takes a comma-separated subset of q1,q2,q3,q4,q5,bonus"):
        Settings(questions=questions).question_list


def test_the_output_cap_of_a_notebook_cell_is_the_output_kb_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """--output-kb caps each notebook cell's output as it caps a sandboxed process's (it once reached only the
    latter): the judge's executor takes its limit from the run's settings."""
    from grading.handoff import Intake, SubmissionContext
    from grading.pipeline import judged_execute

    seen = {}
    monkeypatch.setattr(judged_execute, "judge", lambda executor, *args: seen.setdefault("limit", executor.output_limit))
    context = SubmissionContext(settings=Settings(output_kb=7), intake=Intake())
    judged_execute.JudgedExecute().preprocess(None, {"normlab": context, "nbgrader": {"student": "alice"}})
    assert seen["limit"] == 7 << 10
    assert settings.Settings().kernel_output_bytes == 256 << 10


def test_the_machine_and_the_environment_decide_defaults_when_a_run_starts(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    """Not when grading.settings was imported: a run started later, or in another environment, sees its own."""
    monkeypatch.setattr(settings.os, "cpu_count", lambda: 48)
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path))
    assert Settings().jobs == 48 and Settings().cifar_root == tmp_path
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert from_arguments(parser.parse_args([])) == Settings()
    monkeypatch.delenv("NORMLAB_DATA")
    monkeypatch.setattr(settings.os, "cpu_count", lambda: None)
    assert Settings().jobs == 1 and Settings().cifar_root == settings.REPO / "data"
    assert Settings(jobs=3, cifar_root=tmp_path).jobs == 3
