"""The exercises of chapters 2 (free weights) and 4 (re-training and freezing): the references and the notebooks'
solutions pass, typical wrong answers fail with their specific diagnosis, the stubs are "not implemented", checks
leave the global RNG alone, and the grader scores the notebooks 1.0 (source) and 0.0 (student edition)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import packnet
from packnet.course.coursework import exercise_role, grade_notebook, student_notebook, stub_source
from packnet.course.exercises import EXERCISES, ExerciseFailed, check, exercises_of_chapter, run_check
from packnet.course.exercises.ch02_free_weights import _reference_guarded_step, _reference_mask_gradients_
from packnet.course.exercises.ch04_retrain_freeze import _reference_learn_task
from packnet.masks import claim_kept

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {2: ROOT / "book" / "02_free_weights.ipynb", 4: ROOT / "book" / "04_retrain_freeze.ipynb"}
IDS = ["2.1", "2.2", "2.3", "4.1", "4.2"]


def solution_cells(chapter: int) -> list[tuple[str, str]]:
    nb = json.loads(NOTEBOOKS[chapter].read_text(encoding="utf-8"))
    return [(exercise_role(c)[0], "".join(c["source"])) for c in nb["cells"] if exercise_role(c)[1] == "solution"]


def notebook_namespace(chapter: int, stub: bool = False) -> dict[str, Any]:
    """The solution cells of a chapter's notebook, exec'd in order in one namespace (as the grader runs them)."""
    namespace: dict[str, Any] = {}
    for exercise_id, source in solution_cells(chapter):
        exec(compile(stub_source(source, exercise_id) if stub else source, f"<exercise {exercise_id}>", "exec"),
             namespace)
    return namespace


def failure(exercise_id: str, fn: Callable[..., Any]) -> str:
    with pytest.raises(ExerciseFailed) as info:
        check(exercise_id, fn)
    return str(info.value)


# ------------------------------------------------------------------------------------------------ registry
def test_the_chapters_register_their_exercises_in_order():
    assert [e.id for e in exercises_of_chapter(2)] == ["2.1", "2.2", "2.3"]
    assert [e.id for e in exercises_of_chapter(4)] == ["4.1", "4.2"]
    assert [EXERCISES[i].name for i in IDS] == ["trainable_mask", "mask_gradients_", "guarded_step",
                                                "claim_weights", "learn_task"]


def test_each_notebook_has_one_solution_per_exercise_starting_with_its_comment():
    for chapter, ids in ((2, IDS[:3]), (4, IDS[3:])):
        cells = solution_cells(chapter)
        assert [i for i, _ in cells] == ids
        assert all(src.startswith(f"# Exercise {i}: ") for i, src in cells)
        assert json.loads(NOTEBOOKS[chapter].read_text(encoding="utf-8"))["metadata"]["packnet"] == {"chapter": chapter}


# ------------------------------------------------------------------------------------------------ references
def test_the_library_references_pass():
    check("2.1", lambda owner, k, retraining: packnet.trainable_mask(owner, k, retraining=retraining))
    check("2.1", packnet.trainable_mask)  # keyword-only retraining: the check passes it by name
    check("2.2", _reference_mask_gradients_)
    check("2.3", _reference_guarded_step)
    check("4.1", claim_kept)
    check("4.2", _reference_learn_task)


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_notebook_solution_passes(exercise_id):
    chapter = int(exercise_id.split(".")[0])
    assert run_check(exercise_id, notebook_namespace(chapter)).passed


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_stub_is_not_implemented(exercise_id):
    chapter = int(exercise_id.split(".")[0])
    namespace = notebook_namespace(chapter, stub=True)
    with pytest.raises(NotImplementedError, match=f"Exercise {exercise_id}"):
        check(exercise_id, namespace[EXERCISES[exercise_id].name])
    assert run_check(exercise_id, namespace).status == "not implemented"


@pytest.mark.parametrize("exercise_id", IDS)
def test_a_check_leaves_the_global_rng_unchanged(exercise_id):
    chapter = int(exercise_id.split(".")[0])
    namespace = notebook_namespace(chapter)
    state = torch.random.get_rng_state()
    assert run_check(exercise_id, namespace).passed
    assert torch.equal(torch.random.get_rng_state(), state)


# ------------------------------------------------------------------------------------------------ 2.1
def test_trainable_mask_that_retrains_the_free_weights_is_told_they_were_just_pruned():
    message = failure("2.1", lambda owner, k, retraining: (owner == 0) | (owner == k) if retraining else owner == 0)
    assert "while re-training it lets" in message and "just pruned, which must stay exactly 0" in message


def test_trainable_mask_that_lets_earlier_tasks_learn_is_told_they_are_frozen():
    message = failure("2.1", lambda owner, k, retraining: (owner <= k) & (owner > 0) if retraining else owner == 0)
    assert "owned by other tasks" in message and "they are frozen" in message


def test_trainable_mask_that_returns_a_number_mask_is_asked_for_bool():
    message = failure("2.1", lambda owner, k, retraining: (owner == (k if retraining else 0)).to(torch.uint8))
    assert "should be a bool tensor" in message


# ------------------------------------------------------------------------------------------------ 2.2
def test_multiplying_by_the_mask_is_told_it_leaves_nan_and_negative_zero():
    def multiply(params, trainable):
        for p, m in zip(params, trainable):
            if p.grad is not None:
                p.grad.mul_(m)

    message = failure("2.2", multiply)
    assert "-0.0 instead of +0.0" in message and "nan * 0 = nan" in message and "-x * 0 = -0.0" in message


def test_multiplying_leaves_nan_in_frozen_entries():
    def multiply_after_fixing_signs(params, trainable):  # no -0.0 any more, but nan * 0 is still nan
        for p, m in zip(params, trainable):
            if p.grad is not None:
                p.grad.mul_(m).add_(0.0)

    message = failure("2.2", multiply_after_fixing_signs)
    assert "are NaN" in message and "nan * 0 = nan" in message


def test_replacing_the_gradient_tensor_is_caught_by_its_data_ptr():
    def replace(params, trainable):
        for p, m in zip(params, trainable):
            if p.grad is not None:
                p.grad = p.grad.masked_fill(~m, 0.0)

    assert "data_ptr() changed" in failure("2.2", replace)


def test_masking_the_trainable_entries_is_told_the_mask_means_may_change():
    def inverted(params, trainable):
        for p, m in zip(params, trainable):
            if p.grad is not None:
                p.grad.masked_fill_(m, 0.0)

    assert "zeroed the gradients of the trainable entries" in failure("2.2", inverted)


# ------------------------------------------------------------------------------------------------ 2.3
def test_masking_alone_is_told_momentum_moved_the_frozen_weights():
    mask_gradients_ = notebook_namespace(2)["mask_gradients_"]

    def mask_only(optimizer, params, trainable):
        mask_gradients_(params, trainable)
        optimizer.step()

    message = failure("2.3", mask_only)
    assert "moved under SGD(lr=0.1, momentum=0.9) after 2 steps" in message and "max |Δw| = " in message
    assert "A zero gradient is not enough" in message


def test_masking_alone_without_momentum_is_caught_by_weight_decay():
    from packnet.course.exercises import ch02_free_weights as ch02

    mask_gradients_ = notebook_namespace(2)["mask_gradients_"]

    def mask_only(optimizer, params, trainable):
        mask_gradients_(params, trainable)
        optimizer.step()

    # The same checker on the weight-decay optimizers alone (the warm-momentum one fails first otherwise).
    saved = ch02._OPTIMIZERS
    try:
        ch02._OPTIMIZERS = [o for o in saved if "decay" in o[0]]
        message = failure("2.3", mask_only)
    finally:
        ch02._OPTIMIZERS = saved
    assert "moved under SGD(lr=0.1, momentum=0.9, weight_decay=0.01)" in message and "max |Δw| = " in message


def test_stepping_twice_is_told_the_trainable_entries_differ_from_the_reference():
    def twice(optimizer, params, trainable):
        with torch.no_grad():
            before = [p.detach().clone() for p in params]
            optimizer.step()
            optimizer.step()
            for p, m, old in zip(params, trainable, before):
                p.copy_(torch.where(m, p, old))

    assert "differ from the reference step under" in failure("2.3", twice)


def test_restoring_the_trainable_entries_is_told_the_mask_means_may_change():
    def inverted(optimizer, params, trainable):
        with torch.no_grad():
            before = [p.detach().clone() for p in params]
            optimizer.step()
            for p, m, old in zip(params, trainable, before):
                p.copy_(torch.where(~m, p, old))

    message = failure("2.3", inverted)
    assert "frozen entries of parameter" in message and "the trainable entries did not move at all" in message


# ------------------------------------------------------------------------------------------------ 4.1
def test_claiming_in_place_is_told_to_return_a_new_map():
    assert "changed the owner map it was given" in failure("4.1", lambda o, c, p, k: o.masked_fill_(c & ~p, k))


def test_claiming_the_pruned_weights_is_told_they_stay_free():
    assert "pruned weights stay free" in failure("4.1", lambda o, c, p, k: o.masked_fill(c, k))


def test_claiming_everything_not_pruned_is_told_it_overwrites_other_owners():
    assert "weights that were not candidates" in failure("4.1", lambda o, c, p, k: o.masked_fill(~p, k))


def test_a_zero_based_owner_value_is_told_owner_values_are_one_based():
    message = failure("4.1", lambda o, c, p, k: o.masked_fill(c & ~p, k - 1))
    # position 1 -> value 0 looks like "left free"; either diagnosis names the kept weights
    assert "weights the task kept" in message


# ------------------------------------------------------------------------------------------------ 4.2
def _lifecycle(*, retrain: bool = True, freeze: bool = True, prune_last: bool = False, retrain_epochs=None):
    def learn_task(pn, task_id, loader, epochs, retrain_epochs_, optimizer):
        r = retrain_epochs_ if retrain_epochs is None else retrain_epochs(epochs, retrain_epochs_)
        pn.train_task(task_id, loader, epochs, optimizer=optimizer, progress=False)
        if prune_last:
            pn.retrain(task_id, loader, r, optimizer=optimizer, progress=False)
            pruned = pn.prune(task_id)
        else:
            pruned = pn.prune(task_id)
            if retrain:
                pn.retrain(task_id, loader, r, optimizer=optimizer, progress=False)
        if freeze:
            pn.freeze(task_id)
        return pruned
    return learn_task


def test_skipping_retrain_is_named():
    assert "without* retrain" in failure("4.2", _lifecycle(retrain=False))


def test_skipping_freeze_is_named():
    message = failure("4.2", _lifecycle(freeze=False))
    assert "is not frozen" in message and "pn.stage is 'pruned'" in message and "pn.freeze(task_id)" in message


def test_pruning_after_retraining_reports_the_library_refusal():
    message = failure("4.2", _lifecycle(prune_last=True))
    assert "the library refused a call: cannot retrain: task 0 is not pruned yet" in message


def test_retraining_for_the_training_epochs_is_named():
    assert "re-training for `epochs` epochs" in failure("4.2", _lifecycle(retrain_epochs=lambda e, r: e))


def test_not_returning_the_pruned_counts_fails():
    learn = _lifecycle()
    assert "it returned None" in failure("4.2", lambda *args: (learn(*args), None)[1])


# ------------------------------------------------------------------------------------------------ grading
@pytest.mark.parametrize("chapter", [2, 4])
def test_the_grader_scores_the_source_notebook_one(chapter):
    report = grade_notebook(NOTEBOOKS[chapter], exercises_only=True)
    assert report.score == 1.0, report.format()
    assert not report.errors


@pytest.mark.parametrize("chapter", [2, 4])
def test_the_grader_scores_the_student_edition_zero(chapter, tmp_path):
    path = tmp_path / NOTEBOOKS[chapter].name
    nb = student_notebook(json.loads(NOTEBOOKS[chapter].read_text(encoding="utf-8")))
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    report = grade_notebook(path, exercises_only=True)
    assert report.score == 0.0
    assert [r["status"] for r in report.results] == ["not implemented"] * len(exercises_of_chapter(chapter))
