"""Makes `pytest tests/` find batchnormalization.py and normlab/, and turns a NotImplementedError into one short line."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and call.excinfo.errisinstance(NotImplementedError):
        report.longrepr = (  # the same words for every test, so that a list of failures can say them once
            "not implemented yet. Fill in the region between the YOUR CODE BEGINS / ENDS markers in "
            "batchnormalization.py. 尚未实现：请在 batchnormalization.py 中标记的区域内填写代码。"
        )
