"""The grader survives students: submissions that loop, kill their kernel, print megabytes, patch the library or
re-export its functions are reported (status, reason, credit earned) and the batch goes on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from book_build import ROOT
from packnet.course.coursework import exercise_role, main, student_id

BOOK = ROOT / "book"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the kernels inherit it: faster on a shared 2-core machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
LIMITS = ["--exercises-only", "--check-timeout", "20"]


def _submission(folder: Path, name: str, edits: dict) -> Path:
    """Chapter 3 solved, with the cells of ``edits`` ({(exercise, role): source}) replaced."""
    nb = json.loads((BOOK / "03_pruning.ipynb").read_text(encoding="utf-8"))
    for (exercise_id, role), source in edits.items():
        cell = next(c for c in nb["cells"] if exercise_role(c) == (exercise_id, role))
        cell["source"] = [f"# Exercise {exercise_id}: edited\n", source]
    path = folder / name / "03_pruning.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def _grade(capsys, *args) -> tuple[int, list[dict]]:
    code = main(["grade", "--json", *LIMITS, *map(str, args)])
    lines = capsys.readouterr().out.strip().splitlines()
    return code, [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    return {
        "good": _submission(folder, "good", {}),
        "loops": _submission(folder, "loops", {("3.3", "solution"): "while True:\n    pass\n"}),
        "crashes": _submission(folder, "crashes", {("3.2", "solution"): "import os\nos._exit(1)\n"}),
        "chatty": _submission(folder, "chatty", {("3.3", "solution"): "print('x' * 3_000_000)\n"}),
        "crashes_in_check": _submission(folder, "crashes_in_check", {
            ("3.2", "solution"): "import os\ndef layer_prune_mask(w, c, r):\n    os._exit(3)\n"}),
        "loops_in_check": _submission(folder, "loops_in_check", {
            ("3.3", "solution"): "def global_prune_masks(w, c, r):\n    while True:\n        pass\n"}),
        "patches_library": _submission(folder, "patches_library", {("3.2", "solution"): PATCHES_LIBRARY}),
        "patches_checker": _submission(folder, "patches_checker", {("3.2", "solution"): PATCHES_CHECKER}),
        "reexports": _submission(folder, "reexports", {
            ("3.2", "solution"): "from packnet import prune_mask as layer_prune_mask\n"}),
        "calls_library": _submission(folder, "calls_library", {("3.2", "solution"): CALLS_LIBRARY}),
    }


# A wrong answer (None) with the library's reference replaced so that it agrees, in the kernel.
PATCHES_LIBRARY = """import packnet, packnet.pruning
def layer_prune_mask(weight, candidates, prune_ratio):
    return None
packnet.prune_mask = packnet.pruning.prune_mask = layer_prune_mask
"""
# A wrong answer with every check of the registry replaced, and the checker's helpers disarmed, in the kernel
# (through importlib and a computed name: no import of packnet.course that the grader could see in the cell).
PATCHES_CHECKER = """import importlib
checking = importlib.import_module("packnet" + ".course.exercises.checking")
checking.expect_equal = checking.fail = lambda *args, **kwargs: None
for key, ex in list(checking.EXERCISES.items()):
    checking.EXERCISES[key] = type(ex)(**{**vars(ex), "checker": lambda fn: "all good"})
def layer_prune_mask(weight, candidates, prune_ratio):
    return None
"""
# A def whose body only calls the function it must implement, through a helper.
CALLS_LIBRARY = """import packnet.pruning as _p
def _helper(*args):
    return _p.prune_mask(*args)
def layer_prune_mask(weight, candidates, prune_ratio):
    return _helper(weight, candidates, prune_ratio)
"""


@pytest.fixture(scope="module")
def graded(batch):
    from packnet.course.coursework import grade_submissions

    options = {"exercises_only": True, "cell_timeout": 8, "check_timeout": 20}
    reports = grade_submissions(list(batch.values()), jobs=2, **options)
    return {name: report.to_dict() for name, report in zip(batch, reports)}


def _by_id(report: dict) -> dict:
    return {r["id"]: r for r in report["results"]}


def test_a_good_submission_in_a_bad_batch_scores_100_percent(graded):
    assert graded["good"]["status"] == "ok" and graded["good"]["score"] == 1.0


def test_a_looping_cell_is_a_timeout_and_the_exercises_solved_before_still_count(graded):
    report = graded["loops"]
    assert report["status"] == "timeout" and "per-cell limit" in report["reason"]
    results = _by_id(report)
    assert results["3.1"]["passed"] and results["3.2"]["passed"] and results["3.3"]["status"] == "missing"


def test_a_cell_that_kills_its_kernel_is_reported_and_grading_goes_on_in_a_fresh_kernel(graded):
    report = graded["crashes"]
    assert report["status"] == "crashed" and "killed its kernel" in report["reason"]
    results = _by_id(report)
    assert results["3.1"]["passed"] and results["3.2"]["status"] == "missing"
    assert results["3.3"]["status"] == "failed"  # its solution calls the missing layer_prune_mask


def test_megabytes_of_output_are_dropped_and_reported(graded):
    report = graded["chatty"]
    assert report["status"] == "output limit" and "bytes of output" in report["reason"]
    assert len(json.dumps(report)) < 100_000


def test_a_function_that_kills_the_kernel_during_its_check_is_crashed_and_the_others_are_checked(graded):
    results = _by_id(graded["crashes_in_check"])
    assert results["3.2"]["status"] == "crashed" and results["3.1"]["passed"] and results["3.3"]["passed"] is False
    assert graded["crashes_in_check"]["status"] == "crashed"


def test_a_function_that_loops_during_its_check_is_a_timeout_and_the_others_are_checked(graded):
    results = _by_id(graded["loops_in_check"])
    assert results["3.3"]["status"] == "timeout"
    assert results["3.1"]["passed"] and results["3.2"]["passed"]


def test_the_submission_time_limit_stops_its_cells_and_the_checks_still_run(tmp_path, capsys):
    slow = _submission(tmp_path, "slow", {("3.3", "solution"): "import time\ntime.sleep(60)\n"})
    code, [report] = _grade(capsys, "--timeout", "20", slow)
    assert code == 0 and report["status"] == "timeout" and "time limit (20 s)" in report["reason"]
    assert _by_id(report)["3.1"]["passed"]


def test_fail_under_gives_a_non_zero_exit_below_the_threshold_and_zero_by_default(tmp_path, capsys):
    half = _submission(tmp_path, "half", {("3.3", "solution"): "global_prune_masks = None\n"})
    assert _grade(capsys, half)[0] == 0
    assert _grade(capsys, "--fail-under", "50", half)[0] == 0
    code, [report] = _grade(capsys, "--fail-under", "90", half)
    assert code == 1 and report["passed"] == 2


def test_a_file_that_cannot_be_graded_is_reported_and_the_batch_goes_on(tmp_path, capsys):
    broken = tmp_path / "03_pruning.ipynb"
    broken.write_text("{ not json", encoding="utf-8")
    good = _submission(tmp_path, "good", {})
    code, reports = _grade(capsys, broken, good)
    assert code == 2
    assert reports[0]["status"] == "error" and reports[1]["score"] == 1.0


def test_a_wrong_answer_with_the_library_patched_in_its_kernel_fails(graded):
    results = _by_id(graded["patches_library"])
    assert results["3.2"]["status"] == "failed" and "should be a tensor" in results["3.2"]["message"]
    assert results["3.1"]["passed"]


def test_a_wrong_answer_with_the_checkers_patched_in_its_kernel_fails(graded):
    results = _by_id(graded["patches_checker"])
    assert results["3.2"]["status"] == "failed" and "should be a tensor" in results["3.2"]["message"]
    assert results["3.1"]["passed"] and results["3.3"]["status"] == "failed"  # it calls this 3.2


def test_re_exporting_the_library_function_is_reported_as_uses_library_with_no_credit(graded):
    result = _by_id(graded["reexports"])["3.2"]
    assert result["status"] == "uses-library" and not result["passed"]
    assert "packnet.pruning.prune_mask" in result["message"] and "re-exported" in result["message"]
    assert graded["reexports"]["passed"] == 2


def test_a_function_that_only_calls_the_library_function_is_reported_as_uses_library(graded):
    result = _by_id(graded["calls_library"])["3.2"]
    assert result["status"] == "uses-library" and "calls `packnet.pruning.prune_mask`" in result["message"]
    assert _by_id(graded["calls_library"])["3.3"]["passed"]


def test_the_csv_gradebook_has_one_row_per_submission_with_points_per_exercise(tmp_path, capsys):
    good = _submission(tmp_path, "good", {})
    half = _submission(tmp_path, "half", {("3.3", "solution"): "global_prune_masks = None\n"})
    gradebook = tmp_path / "grades.csv"
    code, reports = _grade(capsys, "--csv", gradebook, "--id-pattern", r"/(?P<id>good|half)/", good, half)
    assert code == 0 and [r["student"] for r in reports] == ["good", "half"]
    assert [(r["points"], r["max_points"]) for r in reports] == [(6, 6), (3, 6)]
    rows = gradebook.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "student,notebook,status,3.1,3.2,3.3,points,max_points,percent"
    assert rows[1].startswith("good,") and rows[1].endswith(",ok,1,2,3,6,6,100.0")
    assert rows[2].startswith("half,") and rows[2].endswith(",ok,1,2,0,3,6,50.0")


def test_student_ids_come_from_the_pattern_or_the_file_and_folder_names():
    assert student_id("subs/alice/03_pruning.ipynb") == "alice"
    assert student_id("subs/bob_hw3.ipynb") == "bob_hw3"
    assert student_id("subs/bob_hw3.ipynb", r"(\w+?)_hw") == "bob"
    assert student_id("s/u123-03.ipynb", r"u(?P<id>\d+)") == "123"
    with pytest.raises(ValueError, match="does not match the submission"):
        student_id("subs/carol.ipynb", r"u\d+")
    with pytest.raises(ValueError, match="not a regular expression"):
        student_id("subs/carol.ipynb", r"(")


def test_a_bad_id_pattern_stops_before_grading_with_exit_2(tmp_path, capsys):
    assert main(["grade", "--id-pattern", "u(\\d+)", str(tmp_path / "alice.ipynb")]) == 2
    assert "does not match" in capsys.readouterr().err
