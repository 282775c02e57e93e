"""Code that runs inside the sandbox, where the grading package is not mounted: the grader sends each program as
source text. This module is only imported on the grader's side."""
from grading.settings import SANDBOXED


WITHOUT_DATA = {"confine", "zygote_server"}  # programs that hand over no data, so need no wire format


def program(name: str) -> str:
    """The source of sandboxed/<name>.py, behind wire.py (the format every reply is written in) unless it hands over
    no data."""
    text = (SANDBOXED / f"{name}.py").read_text()
    return text if name in WITHOUT_DATA else (SANDBOXED / "wire.py").read_text() + "\n" + text
