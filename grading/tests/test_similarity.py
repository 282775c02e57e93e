"""The similarity report: a disguised copy ranks above every pair of independently written correct solutions,
untouched stubs pair with no one, bad input becomes notes, and the HTML says it accuses no one and shows nothing but
the students' own answers.

The independent solutions are the two alternatives of the mutation tests, the zipped_resubmission sample student
(with Q4 and Q5 completed here) and one more written here; each has its own written answers. The copy takes the first
alternative, renames its variables, reorders its independent statements, adds comments and rewraps its prose.
"""
import csv
import logging
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from conftest import REPO, submit
from test_mutations import ALTERNATIVES
from grading.authoring.regions import STUDENT_BEGIN, STUDENT_END, cell_id, secret_lines
from grading.authoring.samples import Answers, load_example
from grading.assignment import PYFILE
from grading.__main__ import main
from grading.commands.similarity import similarity
from grading.settings import EXIT_MISCONFIGURED

STAGED = ALTERNATIVES["staged-and-layernorm"].regions
EINSUM = ALTERNATIVES["einsum-and-modules"].regions
ZIPPED = load_example(REPO / "grading" / "examples" / "zipped_resubmission").regions

ZIPPED_REST = {
    "q4_make_no_norm": "return nn.Dropout(p=0.0)",
    "q5_make_cifar_stem": """
conv = nn.Conv2d(in_channels=3, out_channels=out_channels, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1),
                 bias=False)
return nn.Sequential(conv, make_norm(norm_type, out_channels, num_groups), nn.ReLU())
""",
}

DEVIATIONS = {
    "forward_train": """
mean = np.mean(x, axis=0)
deviation = x - mean
variance = np.mean(deviation ** 2, axis=0)
scale = gamma / np.sqrt(variance + eps)
out = deviation * scale + beta
running_mean = momentum * running_mean + (1 - momentum) * mean
running_var = momentum * running_var + (1 - momentum) * variance
cache = (deviation, variance, gamma, eps)
""",
    "forward_test": """
normalized = (x - running_mean) / np.sqrt(running_var + eps)
out = gamma * normalized + beta
cache = None
""",
    "backward": """
deviation, variance, gamma, eps = cache
n = dout.shape[0]
std = np.sqrt(variance + eps)
x_hat = deviation / std
dbeta = np.sum(dout, axis=0)
dgamma = np.sum(dout * x_hat, axis=0)
dx_hat = dout * gamma
dvariance = np.sum(dx_hat * deviation, axis=0) * -0.5 * std ** -3
dmean = -np.sum(dx_hat, axis=0) / std - 2 * dvariance * np.mean(deviation, axis=0)
dx = dx_hat / std + dvariance * 2 * deviation / n + dmean / n
""",
    "q3_make_norm": """
if norm_type == "LN":
    return nn.GroupNorm(num_groups=1, num_channels=num_channels)
if norm_type == "IN":
    return nn.GroupNorm(num_groups=num_channels, num_channels=num_channels)
return nn.GroupNorm(num_groups=num_groups, num_channels=num_channels)
""",
    "q3_make_shortcut": """
layers = [nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)]
layers.append(make_norm(norm_type, out_channels, num_groups))
return nn.Sequential(*layers)
""",
    "q4_make_no_norm": """
class NoNorm(nn.Module):
    def forward(self, inputs):
        return inputs
return NoNorm()
""",
    "q5_make_cifar_stem": """
stem = nn.Sequential()
stem.add_module("conv", nn.Conv2d(3, out_channels, kernel_size=3, padding=1, bias=False))
stem.add_module("norm", make_norm(norm_type, out_channels, num_groups))
stem.add_module("relu", nn.ReLU())
return stem
""",
}

WRITTEN = {
    "staged": {
        "q4_analysis": """
In my grid BN was best after 20 epochs (about 91%), GN and LN a bit lower, IN the worst at 84%.
The run without any normalization needed a smaller learning rate; at 0.1 its loss spiked twice in the first epoch.
I think BN helps because it keeps every layer's inputs at zero mean and unit variance, so gradients stay well scaled.
""",
        "q5_literature": """
The ResNet paper trains CIFAR models with a 3x3 first convolution and no pooling. With the ImageNet
stem the 32x32 picture is already 8x8 after the stem, so most spatial detail disappears; in my runs the CIFAR stem was
about five points better on CIFAR-10.
"""},
    "einsum": {
        "q4_analysis": """
Accuracy after the full schedule: BatchNorm 90.8, GroupNorm 89.9, LayerNorm 88.7, InstanceNorm 85.2, none 86.0.
Without normalization training started much slower and the curve was noisy. Instance norm throws away the per-image
contrast of every channel, which seems to hurt classification.
""",
        "q5_literature": """
He et al. use a small stem for CIFAR (one 3x3 conv, 16 filters) and report 6.4% error for ResNet-110.
Keeping the resolution at 32x32 in the first stage costs compute but keeps fine texture; my two stems differed by
roughly four points of test accuracy.
"""},
    "zipped": {
        "q4_analysis": """
BN converged fastest. GN was close behind and is independent of the batch size, which matters for detection models
with tiny batches. LN on convolutional features mixes all channels into one statistic and was slightly worse here.
Without normalization I had to lower the learning rate to keep it stable.
""",
        "q5_literature": """
Published ResNet-18 numbers on CIFAR-10 are around 93-95% with a CIFAR stem. The ImageNet stem downsamples by four
immediately (stride-2 conv plus max pool), which is designed for 224x224 inputs and wastes the small images.
"""},
    "deviations": {
        "q4_analysis": """
Ranking from my runs: BN > GN > LN > none > IN. The network without normalization was the most sensitive to the
learning rate. BN adds some noise through the batch statistics, which acts like a regularizer, while GN and LN behave
the same in training and evaluation.
""",
        "q5_literature": """
For CIFAR the standard choice is a 3x3 stride-1 stem without max pooling, as in the original ResNet CIFAR
experiments and common PyTorch CIFAR repositories. I measured a clear gain over the 7x7 stride-2 stem (several
points), at the cost of roughly 16 times more computation in the early layers.
"""},
}

DISGUISED_COPY_OF_STAGED = {
    "forward_train": """
# batch statistics
avg = np.sum(x, axis=0) / x.shape[0]
running_mean = momentum * running_mean + (1.0 - momentum) * avg  # update early
diff = x - avg
variance = np.sum(diff ** 2, axis=0) / x.shape[0]
running_var = momentum * running_var + (1.0 - momentum) * variance
sd = np.sqrt(variance + eps)  # standard deviation
xn = diff / sd
cache = {"centered": diff, "std": sd, "x_norm": xn, "gamma": gamma}
out = xn * gamma + beta
""",
    "forward_test": """
cache = {}  # nothing needed
out = (x - running_mean) / np.sqrt(running_var + eps) * gamma + beta
""",
    "backward": """
m = dout.shape[0]
dgamma = np.sum(dout * cache["x_norm"], axis=0)  # scale gradient
dbeta = np.sum(dout, axis=0)
g = dout * cache["gamma"]
# through the standard deviation
ds = -np.sum(g * cache["centered"], axis=0) / cache["std"] ** 2
dv = 0.5 * ds / cache["std"]
dc = g / cache["std"] + 2.0 * cache["centered"] * dv / m
dx = dc - np.sum(dc, axis=0) / m
""",
    "q3_make_norm": """
if norm_type == "IN":
    return nn.InstanceNorm2d(num_channels, affine=True)  # one statistic per channel


class MyNorm(nn.Module):
    # LayerNorm is GroupNorm with a single group
    def __init__(self, g):
        super().__init__()
        self.g = g
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.weight = nn.Parameter(torch.ones(num_channels))

    def forward(self, inp):
        if self.g == 1:
            inp = nn.functional.layer_norm(inp, inp.shape[1:])
        else:
            grp = inp.reshape(inp.shape[0], self.g, -1)
            v = grp.var(dim=-1, unbiased=False, keepdim=True)
            m = grp.mean(dim=-1, keepdim=True)
            inp = ((grp - m) / torch.sqrt(v + 1e-5)).reshape(inp.shape)
        return inp * self.weight[:, None, None] + self.bias[:, None, None]


return MyNorm(1 if norm_type == "LN" else num_groups)
""",
    "q3_make_shortcut": """
from collections import OrderedDict  # named layers print nicely
return nn.Sequential(OrderedDict(projection=nn.Conv2d(in_channels, out_channels, (1, 1), (stride, stride),
                                                      bias=False),
                                 bn=make_norm(norm_type, out_channels, num_groups)))
""",
    "q4_make_no_norm": """
class Nothing(nn.Module):
    def forward(self, t):  # identity
        return t
return Nothing()
""",
    "q5_make_cifar_stem": """
from collections import OrderedDict
# 3x3, stride 1, no pooling
return nn.Sequential(OrderedDict(c1=nn.Conv2d(3, out_channels, 3, padding="same", bias=False),
                                 n1=make_norm(norm_type, out_channels, num_groups), act=nn.ReLU()))
""",
    "q4_analysis": """
In my grid BN was the best after 20 epochs (about 91%), GN and LN a bit lower, and IN the worst at 84%. The run
without any normalization needed a smaller learning rate; at 0.1 its loss spiked twice in the first epoch. I think BN
helps because it keeps every layer's inputs at zero mean and unit variance, so gradients stay well scaled. That is
also what the original paper argues.
""",
    "q5_literature": """
The ResNet paper trains its CIFAR models with a 3x3 first convolution and no pooling. With the ImageNet stem the
32x32 picture is already 8x8 after the stem, so most spatial detail disappears; in my runs the CIFAR stem was about
five points better on CIFAR-10.
""",
}

INDEPENDENT = {
    "staged": Answers(regions={**STAGED, **WRITTEN["staged"]}),
    "einsum": Answers(regions={**EINSUM, **WRITTEN["einsum"]}),
    "zipped": Answers(regions={**ZIPPED, **ZIPPED_REST, **WRITTEN["zipped"]}),
    "deviations": Answers(regions={**DEVIATIONS, **WRITTEN["deviations"]}),
}
COPY = ("copycat", "staged")


def without_markers(text):
    return "\n".join(line for line in text.split("\n") if STUDENT_BEGIN not in line and STUDENT_END not in line)


def edit_cell(grade_id, change):
    """A notebook edit for Answers: change(cell) on the answer cell grade_id."""
    def edit(nb):
        change(next(cell for cell in nb.cells if cell_id(cell) == grade_id))
    return edit


def delete_markers(cell):
    cell.source = without_markers(cell.source)


def delete_nbgrader_metadata(cell):
    del cell.metadata["nbgrader"]


def as_zip(folder):
    """Replace a submission folder by <folder>.zip of its files."""
    shutil.make_archive(str(folder), "zip", folder)
    shutil.rmtree(folder)


def read_csv(out):
    with open(out / "similarity.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def html_text(out):
    """The report's text as a browser shows it (tags dropped, entities decoded)."""
    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts, self.in_style = [], False

        def handle_starttag(self, tag, attrs):
            self.in_style = tag == "style"

        def handle_endtag(self, tag):
            self.in_style = False

        def handle_data(self, data):
            if not self.in_style:
                self.parts.append(data)

    parser = Text()
    parser.feed((out / "similarity.html").read_text(encoding="utf-8"))
    return "".join(parser.parts)


@pytest.fixture(scope="module")
def batch(bundle, tmp_path_factory):
    """The independent solutions, the disguised copy (submitted as a zip) and two untouched stubs, reported by the
    real command; returns (submissions, out, completed process)."""
    root = tmp_path_factory.mktemp("similarity")
    submissions = submit(bundle, root / "submissions", {
        **INDEPENDENT, "copycat": Answers(regions={**STAGED, **WRITTEN["staged"], **DISGUISED_COPY_OF_STAGED}),
        "stub-1": Answers(), "stub-2": Answers()})
    as_zip(submissions / "copycat")
    out = root / "out"
    process = subprocess.run([sys.executable, "-m", "grading", "similarity", str(submissions), "--out", str(out)],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    return submissions, out, process


def test_a_disguised_copy_ranks_above_every_pair_of_independent_solutions(batch):
    _, out, _ = batch
    rows = read_csv(out)
    assert list(rows[0]) == ["student_a", "student_b", "score", "region"]
    top, others = rows[0], rows[1:]
    assert (top["student_a"], top["student_b"]) == COPY
    assert all(float(top["score"]) > float(row["score"]) for row in others)
    assert {"forward_train", "backward", "q3_make_norm", "q4_analysis"} <= set(top["region"].split())
    assert [float(row["score"]) for row in rows] == sorted((float(row["score"]) for row in rows), reverse=True)


def test_untouched_stubs_pair_with_no_one(batch):
    _, out, _ = batch
    assert not [row for row in read_csv(out) if {"stub-1", "stub-2"} & {row["student_a"], row["student_b"]}]
    assert "stub-1: nothing of their own to compare" in html_text(out)


def test_the_report_accuses_no_one_and_shows_only_the_students_own_answers(batch):
    submissions, out, process = batch
    text = html_text(out)
    assert "accuses no one" in text[:2000] and "accuses no one" in process.stdout
    answered = "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in submissions.rglob("*")
                         if path.is_file())
    hidden_or_reference = [line for line in secret_lines(REPO) if len(line) > 12 and line not in answered]
    assert hidden_or_reference and not [line for line in hidden_or_reference if line in text]


def test_scores_are_the_same_in_every_run(batch, tmp_path):
    """copydetect hashes with Python's hash(), which changes from process to process."""
    submissions, out, _ = batch
    similarity(submissions, tmp_path, 50)
    assert read_csv(tmp_path) == read_csv(out)


def test_an_nbgrader_tree_is_compared_like_folders(bundle, tmp_path):
    for student in COPY:
        answers = INDEPENDENT["staged"] if student == "staged" else Answers(regions=DISGUISED_COPY_OF_STAGED)
        submit(bundle, tmp_path / "submitted" / student, {"norm": answers})
    similarity(tmp_path / "submitted", tmp_path / "out", 50)
    assert [(row["student_a"], row["student_b"]) for row in read_csv(tmp_path / "out")] == [COPY]


def test_bad_input_becomes_notes(bundle, tmp_path, caplog):
    submissions = submit(bundle, tmp_path / "submissions", {
        "deviations": INDEPENDENT["deviations"],
        "no-markers": Answers(regions=DEVIATIONS, file_edits={PYFILE: without_markers}, notebook_edits=[
            edit_cell("q3_make_norm", delete_markers), edit_cell("q5_make_cifar_stem", delete_nbgrader_metadata)]),
        "garbled-notebook": Answers(regions=DEVIATIONS, files={"norm.ipynb": b"\x00\x01 not a notebook"}),
    })
    (submissions / "empty").mkdir()
    (submissions / "broken.zip").write_bytes(b"PK not really a zip")
    (submissions / "readme.txt").write_text("not a submission")
    similarity(submissions, tmp_path / "out", 50)
    text = html_text(tmp_path / "out")
    for note in ["readme.txt: skipped", "empty: no batchnormalization.py was submitted",
                 "broken: the submission could not be opened", "garbled-notebook: norm.ipynb could not be read",
                 "no-markers: batchnormalization.py has 0 complete student regions",
                 "no-markers: the cell q3_make_norm has no complete student region; the whole cell was compared",
                 "no-markers: norm.ipynb has no answer cell q5_make_cifar_stem"]:
        assert note in text
    pairs = {(row["student_a"], row["student_b"]): row["region"] for row in read_csv(tmp_path / "out")}
    compared_whole = set(pairs[("deviations", "no-markers")].split())
    assert {PYFILE, "q3_make_norm"} <= compared_whole and "q5_make_cifar_stem" not in compared_whole
    assert "garbled-notebook" in {name for pair in pairs for name in pair}
    assert any("notes" in record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)


def test_a_missing_submissions_folder_is_an_error_that_says_what_to_pass(tmp_path, capsys):
    assert main(["similarity", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == EXIT_MISCONFIGURED
    assert "<student_id>.zip" in capsys.readouterr().err
