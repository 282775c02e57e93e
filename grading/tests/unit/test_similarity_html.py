"""commands/similarity.py's report shows students' answers as text: whatever they wrote, script included, is escaped,
with the shared passages marked or without any."""
from types import SimpleNamespace

import numpy as np

from grading.commands.similarity import highlighted

ANSWER = SimpleNamespace(text='BN is <b>stable</b> <img src=x onerror="document.title=1"> & so is GN')


def test_shared_passages_are_marked_and_everything_is_escaped() -> None:
    shown = highlighted(ANSWER, np.array([[0, 20], [19, 58]]))  # starts, then ends
    assert shown == ("<mark>BN is &lt;b&gt;stable&lt;/b&gt;</mark> <mark>&lt;img src=x onerror=&quot;document.title=1"
                     "&quot;&gt;</mark> &amp; so is GN")


def test_an_answer_without_shared_passages_is_escaped_too() -> None:
    for nothing in (np.array([]), np.array([[], []], dtype=int)):
        assert highlighted(ANSWER, nothing) == ('BN is &lt;b&gt;stable&lt;/b&gt; &lt;img src=x onerror=&quot;'
                                                'document.title=1&quot;&gt; &amp; so is GN')
