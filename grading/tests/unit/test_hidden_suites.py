"""pipeline/hidden_suites.py: a slip is charged once per question, from the checks that reveal it, and never more
than they hold. The real suites behind a real sandboxed child: test_hidden_suites_sandboxed.py."""
from grading.pipeline.hidden_suites import charge_slips
from grading.records.results import SLIP, Test as Check


def slipped(name: str, cell: str, max_score: float, *keys: str) -> Check:
    return Check(name, 0.0, max_score, False, "right but for a slip", hidden=True, cell=cell, failure=SLIP,
                slips=list(keys))


def test_a_slip_is_charged_once_per_question_from_the_checks_that_reveal_it() -> None:
    tests = [slipped("ln", "q3_layer_norm", 2, "unbiased"), slipped("in", "q3_instance_norm", 2, "unbiased"),
             slipped("gn", "q3_group_norm", 2, "unbiased", "outside"),
             Check("axes", 1, 1, True, cell="q3_layer_norm"),
             slipped("forward", "q1_forward", 4, "unbiased")]
    charge_slips(tests)
    assert [t.score for t in tests] == [0.0, 2.0, 0.0, 1.0, 2.0]  # 10% of Q3's 20 per slip, of Q1's 20 on its own
    assert "2 point(s) off q3, once; it also shows in in, gn" in tests[0].message
    assert tests[1].message.endswith("[the slip (unbiased) is charged once, in ln]")
    assert "a slip (outside): 2 point(s) off q3, once]" in tests[2].message


def test_a_slip_costs_no_more_than_the_checks_that_reveal_it() -> None:
    tests = [slipped("small", "q1_forward", 1, "unbiased", "outside")]
    charge_slips(tests)
    assert tests[0].score == 0.0
    assert "a slip (outside): the checks that reveal it have no points left to take" in tests[0].message
