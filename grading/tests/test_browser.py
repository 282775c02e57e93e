"""In a real browser: headless Chromium (Debian's chromium and chromium-driver, which .ci/run installs) driven by
selenium, against one `jupyter lab` whose folder holds a course graded by `python -m grading autograde` (with a
roster) and two student copies of the release, one filled in with the reference answers and one untouched. One
graded student, carl, carries script in a written answer, in a markdown cell and in a cell's output (HTML,
JavaScript, and an image whose width metadata nbconvert writes unquoted into its <img>), and bob copied the written
answer: the formgrader, nbgrader's feedback, ours and the similarity report all show it without running it. carl
also tries to cover the TA's controls: with the page's own Bootstrap classes in his written answer, in a code cell's
tags and in his notebook's language (both of which nbconvert writes into class attributes), and with the
image's style: the TA still clicks the score box.

A failing test leaves a screenshot, its name in the failure message, in $BROWSER_SCREENSHOTS (default: pytest's
temporary folder).
"""
import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import REFERENCE, REPO, autograde, grades, submit
from grading.authoring.samples import Answers, build_submission
from grading.authoring.course import db_url
from grading.commands.similarity import similarity
from grading.assignment import ASSIGNMENT, COURSE_ID

selenium = pytest.importorskip("selenium", reason="selenium comes from grading/requirements.txt")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ROSTER = [("ada", "Ada", "Lovelace", "ada@example.org"), ("bob", "Bob", "Babbage", "bob@example.org"),
          ("carl", "Carl", "Gauss", "carl@example.org")]


def script(where):
    """JavaScript, without spaces or double quotes, that marks the page it runs in and writes pwned-<where>.txt into
    the Jupyter server's root through the TA's session, as the attack of issue 23 did."""
    return (f"document.documentElement.dataset.pwned='{where}';fetch('/api/contents/pwned-{where}.txt',{{method:"
            "'PUT',headers:{'Content-Type':'application/json','X-XSRFToken':(document.cookie.match(/_xsrf=([^;]*)/)"
            "||[])[1]||''},body:JSON.stringify({type:'file',format:'text',content:'x'})})")


def attack(where):
    """HTML whose script(where) runs as soon as the page has it."""
    return f'<img src="data:," onerror="{script(where)}">'


ANALYSIS = ("Batch normalization kept my training stable, as <b>normalization</b> should, while the variant "
            "without it diverged after a few epochs at the same learning rate. " + attack("answer"))
# Bootstrap's own classes (the formgrader loads Bootstrap): an opaque layer over the whole window, and a fixed fake
# banner over the formgrader's navigation; the id, style and name would shadow or restyle the page's own.
COVER = ('<div class="modal-backdrop" id="statusmessage" style="position:fixed;inset:0;z-index:9999"></div>'
         '<a class="navbar-fixed-top btn btn-danger btn-block" name="q4_analysis" href="https://example.org/login">'
         'Your Jupyter session has expired: sign in again</a>')
# A PNG's signature alone, which the browser fails to decode; the width, unquoted in nbconvert's <img>, would add
# an error handler and a style that lays the image over the whole window.
IMAGE = ({"image/png": "iVBORw0KGgo="}, {"image/png": {"width": f"1 onerror={script('image-metadata')} style="
                                                                  "position:fixed;inset:0;width:100vw;height:100vh;"
                                                                  "z-index:2000"}})
OUTPUT_CELL = ("from IPython.display import HTML, Javascript, display\n"
               f"display(HTML({attack('html-output')!r}))\n"
               "display(Javascript(\"document.documentElement.dataset.pwned = 'javascript-output'\"))\n"
               f"display({IMAGE[0]!r}, raw=True, metadata={IMAGE[1]!r})")


def carls_cells(nb):
    nb.cells.insert(3, nbformat.v4.new_code_cell("get_ipython().showtraceback = lambda *a, **k: None"))
    element = "<script>document.documentElement.dataset.pwned = 'script'</script>"
    nb.cells.insert(4, nbformat.v4.new_markdown_cell("A note of mine. " + attack("markdown") + element))
    nb.cells.insert(5, nbformat.v4.new_code_cell(OUTPUT_CELL, metadata={"tags": ["note modal-backdrop"]}))
    nb.metadata.language_info.pygments_lexer = "ipython3 modal-backdrop fade"  # an invisible layer


STUDENTS = {"ada": REFERENCE, "bob": Answers(regions={"q4_analysis": ANALYSIS}),
            "carl": Answers(base="reference", regions={"q4_analysis": ANALYSIS + COVER}, notebook_edits=[carls_cells])}
pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                                reason="needs Debian's chromium and chromium-driver: .ci/run installs them")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(root, cwd):
    """A `jupyter lab` serving root, started in cwd, without a token (the formgrader's pages fetch their data without
    one; it listens on loopback only) and without JupyterLab's news prompt: its base URL, once it listens."""
    port = free_port()
    settings = root / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                               "--ip=127.0.0.1", "--IdentityProvider.token=", "--allow-root",
                               f"--ServerApp.root_dir={root}"], cwd=cwd, stdout=subprocess.DEVNULL,
                              stderr=open(root / "lab.log", "w"), start_new_session=True,
                              env=dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(root / "lab-settings")))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def site(bundle, release_dir, tmp_path_factory):
    """(root folder, course folder, base URL) of a running jupyter lab."""
    root = tmp_path_factory.mktemp("site")
    roster = root / "roster.csv"
    with open(roster, "w", newline="") as f:
        csv.writer(f).writerows([("id", "first_name", "last_name", "email"), *ROSTER])
    submissions = submit(bundle, root / "submissions", STUDENTS)
    graded = autograde(submissions, root / "graded", release_dir, "--jobs", "2", "--roster", str(roster))
    assert graded.returncode == 0, graded.stderr[-3000:]
    course = root / "graded" / "course"
    feedback = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT, "--student", "carl"],
                              cwd=course, capture_output=True, text=True, timeout=300)
    assert feedback.returncode == 0, feedback.stderr[-3000:]
    similarity(submissions, root / "similar", top=10)
    shutil.copytree(bundle, root / "students" / "untouched")
    build_submission(REFERENCE, bundle, REPO, root / "students" / "reference")
    for name in ("tests", "normlab", "data"):
        shutil.copytree(bundle / name, root / "students" / "reference" / name)
    with jupyter_lab(root, course) as base:
        yield root, course, base


@pytest.fixture
def browser(request, tmp_path):
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        folder = Path(os.environ.get("BROWSER_SCREENSHOTS", tmp_path))
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / f"{request.node.name}.png"
        driver.save_screenshot(str(shot))
        report.sections.append(("screenshot", str(shot)))
        print(f"screenshot of the failure: {shot}")
    driver.quit()


def wait_for(driver, script, timeout=90, what="the page"):
    """Poll a JavaScript expression until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {script}")


def rows(driver, table="table"):
    return driver.execute_script(
        f"return [...document.querySelectorAll('{table} tbody tr')].map(r => [...r.cells].map(c => c.innerText.trim()))")


def test_the_formgrader_shows_the_submissions_with_names_and_the_graders_scores(site, browser):
    root, course, base = site
    browser.get(f"{base}/formgrader/manage_assignments")
    wait_for(browser, "document.querySelectorAll('table tbody tr td').length > 3", what="the assignments")
    assignment = next(r for r in rows(browser) if r[0] == ASSIGNMENT)
    assert "3" in assignment, assignment  # the # Submissions column
    browser.get(f"{base}/formgrader/manage_students")
    wait_for(browser, "document.querySelectorAll('table tbody tr').length >= 3", what="the students")
    shown = {r[1]: (r[0], r[3]) for r in rows(browser) if len(r) > 3}
    expected = grades(root / "graded")
    for student, first, last, _ in ROSTER:
        name, score = shown[student]
        assert name == f"{last}, {first}", shown
        assert float(score.split("/")[0]) == pytest.approx(float(expected[student]["total"]) - float(
            expected[student]["bonus"] or 0)), (student, score)


def test_a_flagged_submission_shows_why(site, browser):
    _, course, base = site
    browser.get(f"{base}/formgrader/gradebook/{ASSIGNMENT}/norm")
    wait_for(browser, "document.querySelectorAll('table tbody tr').length >= 3", what="the submissions")
    flagged = browser.execute_script(
        "return [...document.querySelectorAll('table tbody tr')].filter(r => r.querySelector('.glyphicon-flag'))"
        ".map(r => r.innerText)")
    assert len(flagged) == 1, flagged
    browser.find_element(By.XPATH, "//table//tr[.//*[contains(@class, 'glyphicon-flag')]]//a").click()
    # the grader's comment shows in the comment box until the TA writes one of their own
    comment = wait_for(browser, "document.getElementById('q3_make_norm-comment') && "
                                "document.getElementById('q3_make_norm-comment').placeholder", what="the comment")
    assert "Flagged for review" in comment and "get_ipython" in comment


def test_a_manual_score_entered_in_the_formgrader_reaches_nbgrader_export(site, browser):
    root, course, base = site
    browser.get(f"{base}/formgrader/gradebook/{ASSIGNMENT}/norm")
    wait_for(browser, "document.querySelectorAll('table tbody tr a').length >= 3", what="the submissions")
    browser.execute_script("document.querySelector('button#show-all-names, .show-all-names') && "
                           "document.querySelector('button#show-all-names, .show-all-names').click()")
    link = browser.find_element(By.XPATH, "//table//tr[contains(., 'Lovelace') or contains(., 'ada')]//a")
    link.click()
    wait_for(browser, "document.getElementById('q4_analysis') !== null", what="the manual grading view")
    # The formgrader triggers finished_saving once the server has answered the save (its glyph shows already
    # while the request is under way).
    browser.execute_script("window.scoreSaved = false; $(document).on('finished_saving', () => "
                           "{ window.scoreSaved = true; });")
    field = browser.find_element(By.ID, "q4_analysis")
    field.clear()
    field.send_keys("7", Keys.TAB)
    wait_for(browser, "window.scoreSaved", timeout=120, what="the score to be saved")
    export = root / "export.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(export)], cwd=course,
                       capture_output=True, check=True)
        with open(export, newline="") as f:
            score = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}["ada"]
        if score == 87:
            break
        time.sleep(1)
    assert score == 87, "ada's 80 autograded points and the 7 entered by hand"


def test_the_student_notebook_opens_unmodified_and_runs_to_its_last_cell(site, browser):
    root, _, base = site
    browser.get(f"{base}/lab/tree/students/reference/norm.ipynb?reset")
    wait_for(browser, "[...document.querySelectorAll('.jp-Notebook-ExecutionIndicator, .jp-Toolbar-kernelStatus')]"
                      ".some(e => (e.getAttribute('title') || e.textContent).includes('Idle'))", timeout=120,
             what="the kernel")
    time.sleep(2)
    assert not browser.execute_script("return [...document.querySelectorAll('.lm-TabBar-tab.jp-mod-dirty')]"
                                      ".map(t => t.textContent)"), "the notebook shows as modified just by opening it"
    browser.find_element(By.XPATH, "//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='Run']").click()
    browser.find_element(By.XPATH, "//div[contains(@class, 'lm-Menu-itemLabel') and text()='Run All Cells']").click()
    wait_for(browser, "document.querySelectorAll('.jp-InputPrompt').length > 0 && [...document.querySelectorAll("
                      "'.jp-InputPrompt')].every(p => !p.textContent.includes('*'))", timeout=300, what="Run All")
    browser.find_element(By.CSS_SELECTOR, ".jp-Notebook").send_keys(Keys.CONTROL, "s")
    time.sleep(2)
    nb = nbformat.read(root / "students" / "reference" / "norm.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o.get("ename") for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors and all(c.execution_count for c in code), (errors, [c.execution_count for c in code])


def test_validate_says_batchnormalization_py_is_not_done(site, browser):
    _, _, base = site
    browser.get(f"{base}/lab/tree/students/untouched/norm.ipynb?reset")
    wait_for(browser, "document.querySelector('.validate-button') !== null", timeout=120, what="the Validate button")
    next(b for b in browser.find_elements(By.CSS_SELECTOR, ".validate-button") if b.is_displayed()).click()
    message = wait_for(browser, "[...document.querySelectorAll('.jp-Dialog-body')].map(d => d.innerText).join(' ')",
                       timeout=300, what="the validation result")
    assert re.search(r"batchnormalization\.py fails \d+ public tests of Q1", message), message[:2000]


def pwned(driver):
    """What script of a student's set the page's marker to ("" when none ran), a second after the page loaded."""
    time.sleep(1)
    return driver.execute_script("return document.documentElement.dataset.pwned || ''")


def open_carls_submission(browser, base):
    """The formgrader's manual grading view of carl's notebook, the only flagged submission."""
    browser.get(f"{base}/formgrader/gradebook/{ASSIGNMENT}/norm")
    wait_for(browser, "document.querySelectorAll('table tbody tr a').length >= 3", what="the submissions")
    browser.find_element(By.XPATH, "//table//tr[.//*[contains(@class, 'glyphicon-flag')]]//a").click()
    wait_for(browser, "document.getElementById('q4_analysis') !== null", what="the manual grading view")


def test_nothing_a_student_wrote_runs_in_the_formgrader_or_in_any_report(site, browser):
    root, course, base = site
    open_carls_submission(browser, base)
    assert pwned(browser) == ""
    assert browser.execute_script("return [...document.querySelectorAll('.nbgrader_cell b')]"
                                  ".some(b => b.textContent === 'normalization')"), "the answer's own <b> is shown"
    assert "A note of mine." in browser.page_source and "&lt;script&gt;" in browser.page_source
    reports = {"nbgrader's feedback": course / "feedback" / "carl" / ASSIGNMENT / "norm.html",
               "our feedback": root / "graded" / "carl" / "feedback.html",
               "the similarity report": root / "similar" / "similarity.html"}
    for name, report in reports.items():
        browser.get(report.as_uri())
        wait_for(browser, "document.readyState === 'complete'", what=name)
        assert pwned(browser) == "", name
    assert browser.execute_script("return [...document.querySelectorAll('pre')].some(p => p.textContent.includes("
                                  "'<img src=\"data:,\" onerror='))"), "the copied answer is shown as text"
    browser.get(reports["nbgrader's feedback"].as_uri())
    assert browser.execute_script("return [...document.querySelectorAll('b')].some(b => b.textContent === "
                                  "'normalization')"), "the answer's own <b> is shown in nbgrader's feedback"
    assert not list(root.glob("pwned-*.txt"))
    # The control: the same HTML put into the formgrader's page does run there, and writes its file.
    browser.get(f"{base}/formgrader/gradebook/{ASSIGNMENT}/norm")
    wait_for(browser, "document.querySelectorAll('table tbody tr a').length >= 3", what="the submissions")
    browser.execute_script("document.body.insertAdjacentHTML('beforeend', arguments[0])", attack("control"))
    assert pwned(browser) == "control"
    deadline = time.monotonic() + 10
    while not (root / "pwned-control.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (root / "pwned-control.txt").exists(), "the control's script could not write through the TA's session"
    (root / "pwned-control.txt").unlink()


def test_what_a_student_wrote_cannot_cover_the_tas_controls(site, browser):
    _, _, base = site
    open_carls_submission(browser, base)
    # What the browser would hand a click at the centre of each of the TA's controls, where that is not the control.
    covered = browser.execute_script("""
        const controls = {score: document.getElementById('q4_analysis'),
                          comment: document.getElementById('q4_analysis-comment'),
                          next: document.querySelector('li.next a')};
        controls.score.scrollIntoView({block: 'center'});
        return Object.entries(controls).map(([name, control]) => {
            const box = control.getBoundingClientRect();
            const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
            return [name, hit && (hit === control || control.contains(hit)) ? '' : (hit ? hit.outerHTML : 'nothing')];
        }).filter(([name, hit]) => hit).map(([name, hit]) => name + ' under ' + hit.slice(0, 300));""")
    assert not covered, covered
    assert not browser.execute_script(
        "return [...document.querySelectorAll('.modal-backdrop, .navbar-fixed-top, .affix, [style*=fixed]')]"
        ".filter(e => e.closest('.cell')).map(e => e.outerHTML.slice(0, 300))")
    assert browser.execute_script("return document.getElementById('statusmessage').parentElement === document.body "
                                  "&& document.getElementsByName('q4_analysis').length === 0")
    browser.execute_script("window.scoreSaved = false; $(document).on('finished_saving', () => "
                           "{ window.scoreSaved = true; });")
    field = browser.find_element(By.ID, "q4_analysis")
    field.click()  # selenium refuses a click that another element would receive
    assert browser.execute_script("return document.activeElement === arguments[0]", field)
    field.send_keys("0", Keys.TAB)  # 0: the totals other tests compare stay as autograde left them
    wait_for(browser, "window.scoreSaved", timeout=120, what="the score to be saved")


def test_the_cohort_report_plots_each_question_and_names_who_needs_a_person(site, browser, tmp_path):
    """report.html of the site's autograde run, as a TA opens it: the histograms load, the lists name bob and carl
    (written answers to grade; carl flagged for review), and carl's script, which reaches the page only as his
    failing checks' messages and status, runs nowhere. The screenshot stays in $BROWSER_SCREENSHOTS (default: the
    test's temporary folder) to be looked at."""
    root, _, _ = site
    browser.get((root / "graded" / "report.html").as_uri())
    wait_for(browser, "document.readyState === 'complete'", what="the cohort report")
    assert pwned(browser) == ""
    plot = browser.execute_script("const plot = document.getElementById('histograms');"
                                  "return plot.complete ? [plot.naturalWidth, plot.naturalHeight] : null")
    assert plot and plot[0] >= 800 and plot[1] >= 500, plot  # six questions and the total, three to a row
    needs = browser.find_element(By.ID, "needs-a-person").text
    manual = needs[needs.index("To grade by hand"):needs.index("REVIEW")]
    assert all(student in manual for student in ("ada", "bob", "carl")), needs
    assert "REVIEW: 1" in needs and "carl: REVIEW" in needs
    checks = browser.find_element(By.ID, "checks").find_element(By.XPATH, "following-sibling::table").text
    assert "bob" in checks and "not implemented yet" in checks, "bob left every check's stub"
    folder = Path(os.environ.get("BROWSER_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1400, 2400)
    assert browser.save_screenshot(str(folder / "cohort-report.png"))
    assert (folder / "cohort-report.png").stat().st_size > 50_000
