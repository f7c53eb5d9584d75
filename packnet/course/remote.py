"""Grading without trusting the submission: the student's function runs in the student's kernel, the official
check and the reference run in the grader's process.

The grader hands an exercise's checker a *proxy* for the student's function. Each call of the proxy pickles its
arguments to a file, runs one cell in the student's kernel (:func:`serve`) that unpickles them, calls the
student's function, and writes back what came out: the result and the state of every argument after the call
(tensors, containers, the attributes of library objects such as a ``PackNet`` or an optimizer) as plain data
(``torch.save``). The grader reads it with ``torch.load(weights_only=True)``, so nothing the kernel writes can
run code in the grader, and mirrors it into its own objects (:func:`decode`): a tensor changed in place is
changed in place, one replaced is replaced, one whose storage moved (``w.data = ...``) moves, so the checker
sees exactly what the student's function did. The checker and the reference it compares with are the grader's
own: a submission that patches ``packnet.prune_mask`` or the checker's helpers in its kernel changes nothing
the grader computes.

While the student's function runs, a profile hook records every call of the library functions the exercise
asks the student to write (and of any function of :mod:`packnet.course`): a submission that calls or
re-exports the reference is reported as ``"uses-library"``. The hook runs in the student's kernel, so a
submission that sets out to hide such calls can; the grader also checks the solution cells' imports itself.

A result the grader cannot rebuild from data (a context manager, a generator, an object of the student's own
class) stays in the kernel; the checker gets a *handle* whose ``__enter__``, ``__exit__``, ``__iter__``
and ``__next__`` run there, mirroring the arguments of the call that made it after each use.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import enum
import functools
import io
import os
import pickle
import sys
import types
from typing import Any, Callable, Optional

import torch

__all__ = ["serve", "decode", "RemoteFunction", "RemoteError", "KernelLost", "library_code", "COURSE_DIR"]

COURSE_DIR = os.path.dirname(os.path.abspath(__file__))
"""Functions defined under this folder (the checkers, the references they use) are never a student's answer."""
_THIS_FILE = os.path.abspath(__file__)
_PACKAGE_DIR = os.path.dirname(COURSE_DIR)  # packnet/
_WALKED_PACKAGES = ("packnet", "torch")
_PRIMITIVES = (type(None), bool, int, float, str, bytes, torch.dtype, torch.device)
_KEEP = object()  # "this value could not be sent: leave the grader's as it is"


class KernelLost(BaseException):
    """The student's kernel died or ran past its limit while a check called the student's function.

    A ``BaseException``, so that a checker's ``except Exception`` cannot turn it into an ordinary failure: the
    grader catches it and reports the exercise as ``"crashed"`` or ``"timeout"``.
    """

    def __init__(self, outcome: str):
        super().__init__(outcome)
        self.outcome = outcome


class RemoteError(BaseException):
    """The kernel could not run a request (not the student's function raising: that raises its own type); a
    ``BaseException`` for the same reason as :class:`KernelLost`."""


# ------------------------------------------------------------------------------------ the kernel's side
def library_code(paths: "list[str]") -> "dict[Any, str]":
    """Code objects of the library callables named by dotted ``paths`` (``"packnet.pruning.prune_mask"``,
    ``"packnet.packnet.PackNet.evaluate"``), by code object; names that do not resolve to code in the
    ``packnet`` package are skipped."""
    import importlib
    import inspect

    codes: dict[Any, str] = {}
    for path in paths:
        parts = path.split(".")
        obj: Any = None
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for name in parts[i:]:
                    obj = getattr(obj, name)
            except AttributeError:
                obj = None
            break
        obj = inspect.unwrap(obj) if callable(obj) else None
        code = getattr(obj, "__code__", None) or getattr(getattr(obj, "__func__", None), "__code__", None)
        # only the library's own code: a name the submission re-bound to a function of its own is not it
        if code is not None and os.path.abspath(code.co_filename).startswith(_PACKAGE_DIR + os.sep):
            codes[code] = path
    return codes


def _walkable(obj: Any) -> bool:
    kind = type(obj)
    return (hasattr(obj, "__dict__") and not isinstance(obj, (type, types.FunctionType, types.MethodType,
                                                              types.ModuleType, types.BuiltinFunctionType,
                                                              functools.partial))
            and kind.__module__.split(".")[0] in _WALKED_PACKAGES)


class _Encoder:
    """Turns objects into plain data (tuples, lists, dicts, primitives, tensors) naming each object by its index
    in the request's pickle memo (``("o", i)``, an object the grader sent) or as new (``("n", i)``)."""

    def __init__(self, memo_ids: dict[int, int], pointers: dict[int, int]):
        self.memo_ids, self.pointers = memo_ids, pointers
        self.keys: dict[int, tuple[str, int]] = {}
        self.alive: list[Any] = []  # keeps encoded objects alive, so that no id is reused while encoding

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, _PRIMITIVES) and not isinstance(obj, enum.Enum):
            return ("p", obj)
        key = self.keys.get(id(obj))
        if key is not None:
            return ("ref", key)
        index = self.memo_ids.get(id(obj))
        key = ("o", index) if index is not None else ("n", len(self.keys))
        self.keys[id(obj)] = key
        self.alive.append(obj)
        return ("def", key, self._body(obj, index))

    def _body(self, obj: Any, index: Optional[int]) -> Any:
        if isinstance(obj, torch.Tensor):
            data = obj.detach()
            moved = index is not None and self.pointers.get(index) not in (None, obj.data_ptr())
            grad = self(obj.grad) if obj.is_leaf and obj.grad is not None else ("p", None)
            return ("tensor", data, bool(obj.requires_grad), grad, moved, isinstance(obj, torch.nn.Parameter))
        if isinstance(obj, enum.Enum):
            return ("enum", type(obj).__module__, type(obj).__qualname__, self(obj.value))
        if isinstance(obj, (list, tuple)):
            return ("list" if isinstance(obj, list) else "tuple", [self(v) for v in obj])
        if isinstance(obj, dict):
            kind = "odict" if isinstance(obj, collections.OrderedDict) else "dict"
            return (kind, [[self(k), self(v)] for k, v in list(obj.items())])
        if isinstance(obj, (set, frozenset)):
            return ("set", [self(v) for v in obj])
        if _walkable(obj):
            return ("object", type(obj).__module__, type(obj).__qualname__,
                    [[name, self(value)] for name, value in list(vars(obj).items())])
        return ("opaque", type(obj).__qualname__)


_HANDLES: dict[int, tuple[Any, Any]] = {}  # the kernel's results the grader holds handles to


def _error_info(error: BaseException) -> dict[str, Any]:
    from .exercises.checking import _where_in_student_code

    return {"types": [c.__name__ for c in type(error).__mro__], "message": str(error),
            "where": _where_in_student_code(error)}


def _profiled(codes: dict[Any, str], allowed: set, found: set, run: Callable[[], Any]) -> Any:
    def profile(frame, event, arg):  # noqa: ANN001 - sys.setprofile's signature
        if event == "call":
            code = frame.f_code
            if code in codes:
                found.add(codes[code])
            elif (code not in allowed and code.co_filename.startswith(COURSE_DIR + os.sep)
                  and code.co_filename != _THIS_FILE):
                found.add(f"packnet.course ({code.co_name})")

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        return run()
    finally:
        sys.setprofile(previous)


def _exception_from(spec: Optional[list]) -> tuple[Any, Any]:
    if spec is None:
        return None, None
    module, qualname, message = spec
    cls: Any = RuntimeError
    if module == "builtins" or module.startswith("packnet"):
        try:
            found: Any = sys.modules.get(module) or __import__(module, fromlist=["_"])
            for part in qualname.split("."):
                found = getattr(found, part)
            if isinstance(found, type) and issubclass(found, BaseException):
                cls = found
        except (ImportError, AttributeError):
            pass
    try:
        return cls, cls(message)
    except Exception:  # noqa: BLE001 - an exception class with a different signature
        return RuntimeError, RuntimeError(message)


def serve(request_path: str, response_path: str, namespace: dict[str, Any]) -> None:
    """Run one request of the grader in the student's kernel (the grader calls it in a cell of its own).

    ``{"op": "probe", "names": [...]}`` says which of the exercises' functions ``namespace`` defines;
    ``{"op": "call", "name", "payload", "library"}`` calls one of them; ``{"op": "method", "handle", "method",
    "exception"}`` uses a result kept in the kernel. The response is written with ``torch.save``.
    """
    with open(request_path, "rb") as f:
        unpickler = pickle.Unpickler(f)
        request = unpickler.load()
        memo = unpickler.memo.copy()
    response: dict[str, Any] = {"error": None, "library_calls": []}
    if request["op"] == "probe":
        found = {}
        for name in request["names"]:
            value = namespace.get(name, _KEEP)
            found[name] = None if value is _KEEP else {
                "callable": callable(value), "type": type(value).__name__,
                "module": str(getattr(value, "__module__", "") or ""),
                "qualname": str(getattr(value, "__qualname__", "") or "")}
        response["names"] = found
        _save(response, response_path)
        return
    sent: Any = None  # the exception handed to a context manager's __exit__
    if request["op"] == "call":
        args, kwargs, grads = request["payload"]
        for tensor, grad in grads:
            tensor.grad = grad
        memo_ids = {id(obj): index for index, obj in memo.items()}
        pointers = {i: t.data_ptr() for i, t in memo.items() if isinstance(t, torch.Tensor)}
        session = (memo_ids, pointers, (args, kwargs), {o.__code__ for o in memo.values()
                                                         if isinstance(o, types.FunctionType)})
        target = namespace[request["name"]]
        call = lambda: target(*args, **kwargs)  # noqa: E731
    else:
        target, session = _HANDLES[request["handle"]]
        method = request["method"]
        if method == "__exit__":
            cls, sent = _exception_from(request["exception"])
            call = lambda: target.__exit__(cls, sent, None)  # noqa: E731
        else:
            call = lambda: getattr(target, method)()  # noqa: E731
    memo_ids, pointers, roots, allowed = session
    found: set = set()
    result: Any = None
    try:
        result = _profiled(library_code(request.get("library", [])), allowed, found, call)
    except BaseException as error:  # noqa: BLE001 - whatever the student's code raised goes back to the checker
        response["error"] = _error_info(error)
        response["error"]["same"] = sent is not None and error is sent  # __exit__ let the block's exception out
    encode = _Encoder(memo_ids, pointers)
    response["library_calls"] = sorted(found)
    response["roots"] = encode(roots)
    if response["error"] is None:
        tree = encode(result)
        if tree[0] == "def" and tree[2][0] == "opaque":
            handle = len(_HANDLES) + 1
            _HANDLES[handle] = (result, session)
            tree = ("handle", handle, type(result).__name__,
                    [name for name in ("__enter__", "__exit__", "__iter__", "__next__")
                     if hasattr(result, name)])
        response["result"] = tree
    _save(response, response_path)


def _save(response: dict[str, Any], path: str) -> None:
    buffer = io.BytesIO()
    torch.save(response, buffer)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


# ------------------------------------------------------------------------------------ the grader's side
def _resolve(module: str, qualname: str) -> Any:
    """A class of an already imported library module (``packnet.*``, ``torch.*``), or ``None``."""
    if module.split(".")[0] not in _WALKED_PACKAGES or module not in sys.modules:
        return None
    found: Any = sys.modules[module]
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, type) else None


class _Decoder:
    """Mirrors a response's data into the grader's objects (``objects``: pickle memo index → object)."""

    def __init__(self, objects: dict[int, Any], handles: Callable[[list], Any]):
        self.objects, self.built, self.handles = objects, {}, handles

    def __call__(self, tree: Any) -> Any:
        tag = tree[0]
        if tag == "p":
            return tree[1]
        if tag == "ref":
            return self.built.get(tuple(tree[1]), _KEEP)
        if tag == "handle":
            return self.handles(tree)
        _, key, body = tree
        key = tuple(key)
        if key[0] == "o" and key[1] in self.objects:
            target = self.objects[key[1]]
            self.built[key] = target
            return self._update(target, body)
        return self._build(key, body)

    def _build(self, key: tuple, body: Any) -> Any:
        kind = body[0]
        if kind == "list":
            out: Any = []
            self.built[key] = out
            out.extend(v for v in map(self, body[1]) if v is not _KEEP)
            return out
        if kind == "tuple":
            out = tuple(self(v) for v in body[1])
        elif kind in ("dict", "odict"):
            out = collections.OrderedDict() if kind == "odict" else {}
            self.built[key] = out
            for k, v in body[1]:
                k, v = self(k), self(v)
                if k is not _KEEP and v is not _KEEP:
                    out[k] = v
            return out
        elif kind == "set":
            out = {v for v in map(self, body[1]) if v is not _KEEP}
        elif kind == "tensor":
            _, data, requires_grad, grad, _moved, parameter = body
            out = torch.nn.Parameter(data, requires_grad) if parameter else data
            if not parameter and requires_grad and data.is_floating_point():
                out.requires_grad_(True)
            self.built[key] = out
            self._set_grad(out, grad)
            return out
        elif kind == "enum":
            cls = _resolve(body[1], body[2])
            try:
                out = cls(self(body[3])) if cls is not None and issubclass(cls, enum.Enum) else _KEEP
            except ValueError:
                out = _KEEP
        elif kind == "object":
            cls = _resolve(body[1], body[2])
            if cls is None:
                return _KEEP
            out = cls.__new__(cls)  # a library class, filled with data: no code of the submission runs
            self.built[key] = out
            for name, value in body[3]:
                value = self(value)
                if value is not _KEEP:
                    out.__dict__[name] = value
            return out
        else:
            out = _KEEP
        self.built[key] = out
        return out

    def _set_grad(self, tensor: torch.Tensor, tree: Any) -> None:
        grad = self(tree)
        if grad is _KEEP or not tensor.is_leaf or grad is tensor.grad:
            return
        try:
            tensor.grad = grad
        except (RuntimeError, TypeError):  # a gradient of the wrong shape or dtype: keep it where it can be seen
            tensor.__dict__["_packnet_bad_grad"] = grad

    def _update(self, target: Any, body: Any) -> Any:
        kind = body[0]
        if kind == "tensor" and isinstance(target, torch.Tensor):
            _, data, requires_grad, grad, moved, _ = body
            with torch.no_grad():
                if moved or data.shape != target.shape or data.dtype != target.dtype:
                    target.data = data
                elif not _same_bits(target, data):
                    target.copy_(data)
            if target.is_leaf and target.requires_grad != requires_grad:
                target.requires_grad_(requires_grad)
            self._set_grad(target, grad)
        elif kind == "list" and isinstance(target, list):
            values = [self(v) for v in body[1]]
            target[:] = [old if new is _KEEP and i < len(target) else new
                         for i, (new, old) in enumerate(zip(values, list(target) + [_KEEP] * len(values)))
                         if not (new is _KEEP and i >= len(target))]
        elif kind in ("dict", "odict") and isinstance(target, dict):
            pairs = [(self(k), self(v)) for k, v in body[1]]
            old = dict(target)
            target.clear()
            for k, v in pairs:
                if k is _KEEP:
                    continue
                if v is _KEEP:
                    if k in old:
                        target[k] = old[k]
                    continue
                target[k] = v
        elif kind == "set" and isinstance(target, set):
            values = {v for v in map(self, body[1]) if v is not _KEEP}
            target.clear()
            target.update(values)
        elif kind == "tuple":
            for v in body[1]:  # a tuple cannot change, but the objects in it can
                self(v)
        elif kind == "object" and hasattr(target, "__dict__"):
            for name, value in body[3]:
                value = self(value)
                if value is not _KEEP:
                    target.__dict__[name] = value
        return target


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.device != b.device or a.is_sparse or b.is_sparse:
        return False
    a, b = a.detach().contiguous(), b.detach().contiguous()
    if a.numel() == 0:
        return True
    return bool(torch.equal(a.view(-1).view(torch.uint8), b.view(-1).view(torch.uint8)))


def decode(tree: Any, objects: dict[int, Any], handles: Callable[[list], Any] = lambda tree: _KEEP) -> Any:
    """Mirror one encoded value into the grader's ``objects`` (pickle memo index → the grader's object) and
    return it; ``handles`` turns a ``("handle", ...)`` entry into a proxy."""
    return _Decoder(objects, handles)(tree)


def _exception(info: dict[str, Any]) -> BaseException:
    """The student's exception, rebuilt in the grader: the builtin type itself when it is one (NotImplementedError,
    RuntimeError, ...), else a class of the same name under its nearest builtin base, so that checkers that catch
    ``RuntimeError`` or look at the type's name see what the student's code raised."""
    names = info["types"]
    message = info["message"] + info["where"]
    builtin = next((getattr(builtins, n) for n in names if isinstance(getattr(builtins, n, None), type)
                    and issubclass(getattr(builtins, n), BaseException)), Exception)
    if not issubclass(builtin, Exception):  # SystemExit, KeyboardInterrupt: the student's code ended the call
        builtin = RuntimeError
    cls = builtin if names[0] == builtin.__name__ else type(names[0], (builtin,), {"__module__": "submission"})
    try:
        return cls(message)
    except Exception:  # noqa: BLE001 - KeyError-like classes accept anything; UnicodeError-likes do not
        return RuntimeError(message)


class RemoteFunction:
    """The student's function ``name`` as the checker sees it: calling it calls the kernel's (see the module's
    docstring). ``execute(request, timeout)`` runs :func:`serve` on a request and returns the response.

    Attributes:
        library_calls: the library functions the exercise asks the student to write that the student's code
            called, over every call so far.
    """

    def __init__(self, name: str, execute: Callable[[dict[str, Any]], dict[str, Any]], library: list[str]):
        self.__name__ = self.__qualname__ = name
        self._execute, self._library = execute, list(library)
        self.library_calls: set[str] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        grads = _grads_of((args, kwargs))
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=4)
        try:
            pickler.dump({"op": "call", "name": self.__name__, "library": self._library,
                          "payload": (args, kwargs, grads)})
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise RemoteError(f"the grader could not send the arguments to the kernel: {error}") from None
        # pickle indexes every object it wrote in its memo; the kernel's unpickler gives the same index to the copy
        objects = {index: obj for index, obj in pickler.memo.copy().values()}
        return self._respond(self._execute({"bytes": buffer.getvalue()}), objects)

    def _respond(self, response: dict[str, Any], objects: dict[int, Any]) -> Any:
        self.library_calls.update(response.get("library_calls", []))
        decoder = _Decoder(objects, lambda tree: _Handle.make(self, tree, objects))
        decoder(response["roots"])
        if response["error"] is not None:
            raise _exception(response["error"])
        result = decoder(response["result"])
        return None if result is _KEEP else result


def _grads_of(root: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(tensor, .grad)`` of every leaf tensor with a gradient reachable from ``root`` (pickle drops ``.grad``)."""
    found, seen, stack = [], set(), [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _PRIMITIVES):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            if obj.is_leaf and obj.grad is not None:
                found.append((obj, obj.grad))
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif _walkable(obj) or dataclasses.is_dataclass(obj):
            stack.extend(vars(obj).values())
    return found


class _Handle:
    """A result that stays in the kernel (a context manager, a generator): its special methods run there."""

    @staticmethod
    def make(owner: RemoteFunction, tree: list, objects: dict[int, Any]) -> Any:
        _, handle, type_name, methods = tree

        def method(name: str) -> Callable[..., Any]:
            def run(self, *args: Any) -> Any:  # noqa: ANN001
                exception = None
                if name == "__exit__" and args and args[0] is not None:
                    exception = [args[0].__module__, args[0].__qualname__, str(args[1])]
                buffer = io.BytesIO()
                pickle.Pickler(buffer, protocol=4).dump({"op": "method", "handle": handle, "method": name,
                                                         "exception": exception, "library": owner._library})
                response = owner._execute({"bytes": buffer.getvalue()})
                if name == "__exit__" and response["error"] is not None and response["error"].get("same"):
                    owner._respond({**response, "error": None, "result": ("p", False)}, objects)
                    return False
                return owner._respond(response, objects)
            run.__name__ = name
            return run

        namespace = {name: method(name) for name in methods}
        namespace["__repr__"] = lambda self: f"<{type_name} in the student's kernel>"
        return type(type_name, (_Handle,), namespace)()
