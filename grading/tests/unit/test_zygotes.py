"""isolation/zygote.Zygotes, a grading run's zygotes, without starting one: only the process that made it starts
them, a copy of what holds it shares them, and without bubblewrap there are none. Real zygotes: test_zygote.py."""
import copy
from typing import NoReturn

import pytest

from grading.handoff import SubmissionContext
from grading.isolation import zygote
from grading.isolation.sandbox import Limits
from grading.isolation.zygote import Zygotes
from grading.settings import Settings

LIMITS = Limits.from_settings(Settings())


class Started(Exception):
    """Raised where a test's Zygote would have been started."""


def refuse_to_start(slot: int, limits: Limits) -> NoReturn:
    raise Started(slot)


def test_a_forked_child_never_starts_a_zygote_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zygote, "bwrap_works", lambda: True)
    monkeypatch.setattr(zygote, "Zygote", refuse_to_start)
    zygotes = Zygotes()
    zygotes.owner = -1  # as a forked child sees its parent's
    assert zygotes.for_slot(0, LIMITS) is None
    zygotes.close()  # nothing of its parent's is closed either


def test_the_owner_starts_a_slots_zygote_when_it_first_needs_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zygote, "bwrap_works", lambda: True)
    monkeypatch.setattr(zygote, "Zygote", refuse_to_start)
    with pytest.raises(Started):
        Zygotes().for_slot(3, LIMITS)


def test_without_bubblewrap_there_are_no_zygotes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zygote, "bwrap_works", lambda: False)
    monkeypatch.setattr(zygote, "Zygote", refuse_to_start)
    assert Zygotes().for_slot(0, LIMITS) is None


def test_a_copy_of_a_submissions_context_shares_the_runs_zygotes() -> None:
    zygotes = Zygotes()
    context = SubmissionContext(zygotes=zygotes)
    copied = copy.deepcopy({"normlab": context})["normlab"]
    assert copied is not context and copied.zygotes is zygotes
