"""The grader's proxy (packnet.course.remote) without a kernel: ``serve`` runs in this process on a namespace of
its own, so every call still goes through pickling out and plain data back, and the checker sees the student's
function only through the mirror."""

from __future__ import annotations

import json

import pytest
import torch

from book_build import ROOT
from packnet.course import remote
from packnet.course.coursework import exercise_role
from packnet.course.exercises import EXERCISES
from packnet.course.exercises.checking import _evaluate


def _namespace(chapter: int) -> dict:
    path = next((ROOT / "book").glob(f"0{chapter}_*.ipynb"))
    namespace: dict = {"__name__": "__main__"}
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if exercise_role(cell)[1] == "solution":
            exec(compile("".join(cell["source"]), f"<exercise cell of {path.name}>", "exec"), namespace)
    return namespace


def _proxy(name: str, namespace: dict, tmp_path, library=()) -> remote.RemoteFunction:
    def execute(request):
        (tmp_path / "request").write_bytes(request["bytes"])
        remote.serve(str(tmp_path / "request"), str(tmp_path / "response"), namespace)
        return torch.load(tmp_path / "response", weights_only=True)
    return remote.RemoteFunction(name, execute, list(library))


@pytest.mark.parametrize("exercise_id", [e for e in EXERCISES if int(e.split(".")[0]) <= 7])
def test_every_solution_passes_its_check_through_the_proxy(exercise_id, tmp_path):
    ex = EXERCISES[exercise_id]
    fn = _proxy(ex.name, _namespace(ex.chapter), tmp_path, ex.library)
    result = _evaluate(ex, fn)
    assert result.passed, result.message
    assert fn.library_calls == set()


def test_a_gradient_replaced_instead_of_masked_in_place_is_seen_as_replaced(tmp_path):
    source = "def mask_gradients_(params, masks):\n    for p, m in zip(params, masks):\n" \
             "        if p.grad is not None:\n            p.grad = p.grad.masked_fill(~m, 0.0)\n"
    namespace: dict = {}
    exec(source, namespace)
    result = _evaluate(EXERCISES["2.2"], _proxy("mask_gradients_", namespace, tmp_path))
    assert result.status == "failed" and "by a new tensor" in result.message


def test_in_place_changes_identity_and_moved_storage_are_mirrored(tmp_path):
    namespace: dict = {}
    exec("import torch\n"
         "def f(ts):\n    ts[0].add_(1)\n    ts[1].data = torch.zeros(2)\n    ts[2] = torch.ones(1)\n"
         "    return ts[0]\n", namespace)
    ts = [torch.zeros(2), torch.ones(2), torch.zeros(1)]
    first, second, third, pointer = ts[0], ts[1], ts[2], ts[1].data_ptr()
    got = _proxy("f", namespace, tmp_path)(ts)
    assert got is first and ts[0] is first and torch.equal(first, torch.ones(2))
    assert ts[1] is second and second.data_ptr() != pointer and torch.equal(second, torch.zeros(2))
    assert ts[2] is not third and torch.equal(ts[2], torch.ones(1))


def test_a_result_of_the_students_own_class_stays_in_the_kernel_behind_a_handle(tmp_path):
    namespace: dict = {}
    exec("class Box:\n    def __enter__(self):\n        return 7\n    def __exit__(self, *a):\n        return False\n"
         "def f():\n    return Box()\n", namespace)
    box = _proxy("f", namespace, tmp_path)()
    assert type(box).__name__ == "Box" and not hasattr(box, "__iter__")
    with box as value:
        assert value == 7


def test_the_students_exceptions_keep_their_type_name_and_builtin_base(tmp_path):
    namespace: dict = {}
    exec("class StageError(RuntimeError):\n    pass\n"
         "def f():\n    raise StageError('task 0 is not pruned yet')\n"
         "def g():\n    raise NotImplementedError('stub')\n", namespace)
    with pytest.raises(RuntimeError, match="not pruned yet") as error:
        _proxy("f", namespace, tmp_path)()
    assert type(error.value).__name__ == "StageError"
    with pytest.raises(NotImplementedError):
        _proxy("g", namespace, tmp_path)()


def test_calls_of_the_library_function_are_recorded(tmp_path):
    namespace: dict = {}
    exec("import packnet\ndef f(n, r):\n    return packnet.num_to_prune(n, r)\n", namespace)
    fn = _proxy("f", namespace, tmp_path, ["packnet.pruning.num_to_prune"])
    assert fn(10, 0.5) == 5 and fn.library_calls == {"packnet.pruning.num_to_prune"}
