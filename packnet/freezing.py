"""Keeping frozen weights bit-identical under any optimizer.

Zeroing the gradients of frozen weights — what most PackNet code does — is **not enough**: SGD's weight decay
adds ``wd * w`` to the gradient inside ``step()``, momentum keeps moving a weight after its gradient is zeroed
if the buffer was ever non-zero, and AdamW's decoupled decay shrinks every weight it is given whatever its
gradient. Gradient hooks are not enough either: ``copy.deepcopy`` and pickling drop them.

:class:`WeightGuard` therefore does two things around each ``optimizer.step()``:

1. :meth:`WeightGuard.mask_gradients` — before the step, zero the gradient of every entry that must not
   learn, so the optimizer sees the true gradient of the trainable sub-network (this matters for optimizers
   that look at a whole tensor: gradient-norm clipping, Adafactor, LAMB);
2. :meth:`WeightGuard.restore_frozen` — after the step, write back the exact values every non-trainable
   entry had when the guard was made. Whatever the optimizer did to them is undone, bit for bit.

For the optimizers people use — ``torch.optim.SGD``, ``Adam`` and ``AdamW``, with momentum, Nesterov,
coupled or decoupled weight decay, AMSGrad, foreach or fused kernels — :meth:`WeightGuard.step` does the same
job with less memory traffic: it masks the gradient *after* weight decay and lets the optimizer run with
``weight_decay=0``. An entry whose gradient is exactly ``+0.0`` and whose optimizer state is exactly zero is
then not moved at all (``p + (-lr) * 0 == p`` bit for bit, ``-0.0``, ±inf and NaN included), so nothing needs
restoring. Every other optimizer, and these with options the argument does not cover, take
the general path: mask, step, restore.

Parameters are sorted once, when the guard is made, into *fully trainable* (nothing to do), *partly
trainable* (the two masked operations above) and *fully frozen* (left out of :meth:`WeightGuard.parameters`,
so the optimizer never sees them; restored too, in case a hand-written loop hands them over anyway).
Nothing here calls ``.item()`` or indexes with a boolean mask, so a CUDA training step makes no host-device
synchronisation.
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .masks import INT_OF_SIZE, bit_pattern

TrainableSpec = Union[bool, Tensor]
"""Per parameter: ``True`` (all entries learn), ``False`` (none do) or a bool mask of the entries that do."""


@dataclass
class _Partial:
    """A partly trainable parameter, kept as bit patterns: restoring is two bitwise ops on an integer view.

    ``keep`` has every bit set where the entry is trainable and none elsewhere; ``frozen_bits`` holds the
    snapshot's bits where the entry is frozen and zeros elsewhere. Then ``(p & keep) | frozen_bits`` is exactly
    the optimizer's value where trainable and exactly the snapshot elsewhere — NaN, ±inf and -0.0 included —
    and, unlike ``torch.where`` with a scattered mask on a CPU, it has no data-dependent branch.
    """

    param: nn.Parameter
    keep: Tensor  # integer dtype of the parameter's element size: all ones where trainable, 0 elsewhere
    frozen_bits: Tensor  # the snapshot's bits where frozen, 0 where trainable
    decay: Optional[tuple[float, Tensor]] = None  # (c, factor): c where trainable, 1 where frozen

    @classmethod
    def build(cls, param: nn.Parameter, trainable: Tensor) -> "_Partial":
        keep = bit_pattern(trainable, param)  # True -> -1 (all bits set), False -> 0
        frozen_bits = param.detach().clone().view(keep.dtype).bitwise_and_(keep.bitwise_not())
        return cls(param, keep, frozen_bits)

    def restore(self) -> None:
        self.param.detach().view(self.keep.dtype).bitwise_and_(self.keep).bitwise_or_(self.frozen_bits)

    def changed(self) -> bool:
        """Whether any frozen entry's bits differ from the snapshot (one pass; synchronises on CUDA)."""
        frozen = self.param.detach().view(self.keep.dtype).bitwise_and(self.keep.bitwise_not())
        return not torch.equal(frozen, self.frozen_bits)

    def mask_gradient(self) -> None:
        grad = self.param.grad
        if grad is not None:  # +0.0 exactly where frozen, even if the gradient there was inf or NaN
            grad.view(self.keep.dtype).bitwise_and_(self.keep)

    def mask_state(self, value: Tensor) -> None:
        """Zero the frozen entries of one optimizer-state tensor shaped like the parameter (bit-wise)."""
        if value.shape == self.param.shape and value.element_size() == self.param.element_size():
            value.view(self.keep.dtype).bitwise_and_(self.keep)

    def fill_frozen(self, value: Tensor, fill: float) -> None:
        """Set the frozen entries of one optimizer-state tensor shaped like the parameter to ``fill``."""
        if value.shape == self.param.shape and value.element_size() == self.param.element_size():
            bits = torch.full_like(value, fill).view(self.keep.dtype).bitwise_and_(self.keep.bitwise_not())
            value.view(self.keep.dtype).bitwise_and_(self.keep).bitwise_or_(bits)

    def decay_factor(self, c: float) -> Tensor:
        """``c`` where trainable and exactly ``1`` where frozen, for decoupled weight decay ``p *= factor``.

        Kept in float32 at least, as ``p.mul_(c)`` computes with ``c`` rounded to float32 (float64 for a
        float64 parameter): the product is then the same bits as the optimizer's own. Rebuilt when ``c``
        changes (a learning-rate schedule), so once per epoch, not per step.
        """
        if self.decay is None or self.decay[0] != c:
            dtype = torch.promote_types(self.param.dtype, torch.float32)
            factor = torch.full(self.param.shape, c, dtype=dtype, device=self.param.device)
            factor.masked_fill_(self.keep == 0, 1.0)
            self.decay = (c, factor)
        return self.decay[1]


@dataclass
class WeightGuard:
    """Protects the non-trainable entries of a set of parameters during one training phase.

    Build one with :meth:`WeightGuard.from_specs` (or let :meth:`packnet.PackNet.training` build it), give
    :meth:`parameters` to a fresh optimizer, and after every ``backward()`` call :meth:`step` — or, the
    general form that works with any optimizer, :meth:`mask_gradients` before and :meth:`restore_frozen`
    after ``optimizer.step()``.

    Examples:
        >>> layer = nn.Linear(3, 2)
        >>> frozen_row = torch.tensor([[False] * 3, [True] * 3])   # only row 1 may learn
        >>> guard = WeightGuard.from_specs([(layer.weight, frozen_row), (layer.bias, False)])
        >>> opt = torch.optim.AdamW(guard.parameters(), lr=0.1, weight_decay=0.5)
        >>> before = layer.weight[0].clone()
        >>> layer(torch.randn(4, 3)).sum().backward()
        >>> guard.mask_gradients(); opt.step(); guard.restore_frozen()
        >>> torch.equal(layer.weight[0], before)
        True
        >>> layer(torch.randn(4, 3)).sum().backward()
        >>> guard.step(opt)                            # the same, fused for SGD / Adam / AdamW
        >>> torch.equal(layer.weight[0], before)
        True
    """

    trainable_params: list[nn.Parameter] = field(default_factory=list)
    partial: list[_Partial] = field(default_factory=list)
    frozen: list[tuple[nn.Parameter, Tensor]] = field(default_factory=list)
    _tracked: "weakref.WeakKeyDictionary[torch.optim.Optimizer, _Tracked]" = field(
        default_factory=weakref.WeakKeyDictionary, repr=False)
    _fusing: bool = field(default=False, repr=False)
    _lookup: Optional[tuple] = field(default=None, repr=False)

    @classmethod
    def from_specs(cls, specs: Sequence[tuple[nn.Parameter, TrainableSpec]]) -> "WeightGuard":
        """Sort parameters by what may learn and take the snapshots.

        Args:
            specs: ``(parameter, trainable)`` pairs; ``trainable`` is ``True``, ``False`` or a bool mask
                shaped like the parameter. A mask that is all true or all false is treated as such.

        Returns:
            A guard whose snapshots are the parameters' values now.
        """
        guard = cls()
        for param, spec in specs:
            if isinstance(spec, Tensor):
                if spec.shape != param.shape:
                    raise ValueError(f"trainable mask shape {tuple(spec.shape)} != parameter shape {tuple(param.shape)}")
                spec = spec.to(device=param.device, dtype=torch.bool)
                n_trainable = int(torch.count_nonzero(spec))
                if n_trainable == spec.numel():
                    spec = True
                elif n_trainable == 0:
                    spec = False
            if spec is True:
                guard.trainable_params.append(param)
            elif spec is False:
                guard.frozen.append((param, param.detach().clone()))
            elif param.element_size() not in INT_OF_SIZE:
                raise TypeError(f"cannot protect a parameter of dtype {param.dtype} entry by entry")
            else:
                guard.partial.append(_Partial.build(param, spec))
        return guard

    def parameters(self) -> list[nn.Parameter]:
        """The parameters with at least one trainable entry: what to give the optimizer."""
        return self.trainable_params + [p.param for p in self.partial]

    def frozen_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters of which no entry may change in this phase."""
        return (p for p, _ in self.frozen)

    @torch.no_grad()
    def mask_gradients(self) -> None:
        """Zero the gradients of every entry that must not learn (call after ``backward()``, before ``step()``)."""
        for part in self.partial:
            part.mask_gradient()
        for param, _ in self.frozen:
            if param.grad is not None:
                param.grad = None

    @torch.no_grad()
    def restore_frozen(self) -> None:
        """Write back the snapshot values of every entry that must not change (call after ``step()``).

        Bit-exact whatever the optimizer did: momentum, weight decay (coupled or decoupled), Adam moments.
        """
        for part in self.partial:
            part.restore()
        for param, snapshot in self.frozen:
            param.copy_(snapshot)

    def fallback_reason(self, optimizer: torch.optim.Optimizer) -> Optional[str]:
        """Why :meth:`step` takes the general path (mask, step, restore) for ``optimizer``; ``None`` if it fuses.

        The fused step needs an optimizer of which a zero gradient and a zero state provably leave a weight's
        bits alone: exactly ``torch.optim.SGD``, ``Adam`` or ``AdamW`` (a subclass may override ``step``),
        finite float hyperparameters, ``eps > 0`` (else ``0 / 0``), and none of ``maximize``,
        ``differentiable``, ``capturable``, sparse gradients or complex parameters.

        Examples:
            >>> p = nn.Parameter(torch.zeros(3))
            >>> guard = WeightGuard.from_specs([(p, torch.tensor([True, False, True]))])
            >>> guard.fallback_reason(torch.optim.AdamW([p])) is None
            True
            >>> guard.fallback_reason(torch.optim.RMSprop([p]))
            'RMSprop is not SGD, Adam or AdamW (their subclasses may change step() too)'
        """
        kind = type(optimizer)
        if kind not in _FUSED:
            return f"{kind.__name__} is not SGD, Adam or AdamW (their subclasses may change step() too)"
        for group in optimizer.param_groups:
            for flag in ("maximize", "differentiable", "capturable"):
                if group.get(flag, False):
                    return f"{flag}=True"
            hyper = [group["lr"], group["weight_decay"]]
            hyper += [*group["betas"], group["eps"]] if "betas" in group else [group["momentum"],
                                                                                group["dampening"]]
            if any(isinstance(h, Tensor) for h in hyper):
                return "a tensor hyperparameter (lr, betas, eps, momentum or weight decay)"
            if not all(math.isfinite(h) for h in hyper):
                return "a non-finite hyperparameter"
            if "eps" in group and not group["eps"] > 0:
                return "eps <= 0 (a zero gradient and a zero state would give 0 / 0)"
            dtypes = set()
            for p in group["params"]:
                if p.is_complex():
                    return "a complex parameter"
                if p.grad is not None and p.grad.is_sparse:
                    return "a sparse gradient"
                dtypes.add(p.dtype)
            if "eps" in group and any(_underflows(group["eps"], d) for d in dtypes):
                return f"eps={group['eps']:g} rounds to 0 in a parameter's dtype (0 / 0 again)"
        return None

    def step(self, optimizer: torch.optim.Optimizer, *, fused: bool = True) -> None:
        """One guarded ``optimizer.step()``: afterwards every frozen entry has its snapshot's exact bits.

        Call it after ``backward()`` instead of ``mask_gradients(); optimizer.step(); restore_frozen()``.
        When :meth:`fallback_reason` is ``None`` (SGD, Adam, AdamW) and ``fused`` is true, it is one pass
        fewer over every partly trainable weight and leaves every frozen entry's bits as they were:

        1. weight decay is applied here, as the optimizer would — coupled (``grad += wd * p``, in place) or
           decoupled (``p *= 1 - lr * wd``, with factor 1 on frozen entries) —, then the gradients are masked
           (frozen entries exactly ``+0.0``);
        2. the optimizer steps with ``weight_decay=0`` (put back afterwards, whatever happens).

        Its momentum and first moments are zero on frozen entries — the state starts empty, and is zeroed
        there when the guard first sees an optimizer that has stepped before, or one that stepped or loaded a
        state dict without this method since —, so the update there is exactly ``+0.0`` (Adam: ``0 / denom``;
        its second moments on frozen entries are kept at 1, see :meth:`_refill_second_moments`) and
        ``p + (-lr) * 0`` is ``p``, bit for bit (a *signalling* NaN, which no torch operation produces, would
        come back quiet: the general path restores even that). On trainable entries the result is the
        optimizer's own (bit-identical with the general path for the single-tensor and foreach kernels; the
        tests check it). After the step, the ``.grad`` of a parameter in a group with coupled weight decay
        holds the decayed, masked gradient the update used.

        Args:
            optimizer: built from :meth:`parameters` (extra parameters it holds learn freely; fully frozen
                ones it holds are left alone).
            fused: ``False`` forces the general path.
        """
        if not fused or self.fallback_reason(optimizer) is not None:
            self.mask_gradients()
            optimizer.step()
            self.restore_frozen()
            return
        self._adopt(optimizer)
        index, frozen = self._index()
        decay_off: list[tuple[dict, Any]] = []
        try:
            with torch.no_grad():
                for group in optimizer.param_groups:
                    wd = group["weight_decay"]
                    decoupled = kind_is_decoupled(optimizer, group)
                    c = 1 - group["lr"] * wd
                    for p in group["params"]:
                        if id(p) in frozen:
                            p.grad = None  # the optimizer skips a parameter without a gradient
                            continue
                        if p.grad is None:
                            continue
                        part = index.get(id(p))
                        if wd != 0:
                            if decoupled:
                                p.mul_(c if part is None else part.decay_factor(c))
                            else:
                                p.grad.add_(p, alpha=wd)
                        if part is not None:
                            part.mask_gradient()
                    if wd != 0:
                        decay_off.append((group, wd))
                        group["weight_decay"] = 0.0
            self._fusing = True
            optimizer.step()
        finally:
            self._fusing = False
            for group, wd in decay_off:
                group["weight_decay"] = wd
        record = self._tracked[optimizer]
        record.steps += 1
        if record.steps >= record.refill_at and isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            self._refill_second_moments(optimizer)
            record.refill_at = record.steps + REFILL_EVERY

    def _refill_second_moments(self, optimizer: torch.optim.Optimizer) -> None:
        """Set Adam's second moments (``exp_avg_sq``, ``max_exp_avg_sq``) on frozen entries to exactly 1.

        Their value there is never used — the first moment there is exactly 0, so the update is
        ``0 / (sqrt(v) + eps) = 0`` for any ``v >= 0`` — but zeros would cost time: torch's CPU ``sqrt`` is
        several times slower on 0 than on a normal number (measured 8x on this project's machine), and the
        frozen entries would be the only zeros. A gradient of 0 makes ``v`` decay by ``beta2`` per step, so
        this runs again every :data:`REFILL_EVERY` steps, long before ``v`` could reach a subnormal value.
        """
        with torch.no_grad():
            for part in self.partial:
                state = optimizer.state.get(part.param, {})
                for key in ("exp_avg_sq", "max_exp_avg_sq"):
                    value = state.get(key)
                    if isinstance(value, Tensor):
                        part.fill_frozen(value, 1.0)

    def _index(self) -> tuple[dict[int, _Partial], set[int]]:
        """The partly trainable parameters by ``id`` and the ids of the fully frozen ones (built once)."""
        key = (len(self.partial), len(self.frozen))
        if self._lookup is None or self._lookup[0] != key:
            self._lookup = (key, {id(part.param): part for part in self.partial}, {id(p) for p, _ in self.frozen})
        return self._lookup[1], self._lookup[2]

    def _adopt(self, optimizer: torch.optim.Optimizer) -> None:
        """Make ``optimizer``'s state zero on frozen entries if it may not be (first sight, or stepped or
        loaded without :meth:`step` since), and watch it for such steps from now on."""
        record = self._tracked.get(optimizer)
        if record is None:
            record = self._tracked[optimizer] = _Tracked()
            me = weakref.ref(self)

            def stepped_outside(opt: torch.optim.Optimizer, *_: Any) -> None:
                guard = me()
                if guard is not None and not guard._fusing and opt in guard._tracked:
                    guard._tracked[opt].clean = False

            record.handles.append(optimizer.register_step_pre_hook(stepped_outside))
            if hasattr(optimizer, "register_load_state_dict_post_hook"):
                record.handles.append(optimizer.register_load_state_dict_post_hook(stepped_outside))
        if not record.clean:
            with torch.no_grad():
                for part in self.partial:
                    for value in optimizer.state.get(part.param, {}).values():
                        if isinstance(value, Tensor):
                            part.mask_state(value)
            record.clean = True
            record.refill_at = record.steps + 1  # the second moments were zeroed too

    def close(self) -> None:
        """Remove the hooks :meth:`step` put on optimizers (:meth:`packnet.PackNet.training` calls this on
        exit)."""
        for record in list(self._tracked.values()):
            for handle in record.handles:
                handle.remove()
        self._tracked.clear()

    @torch.no_grad()
    def changed_frozen(self) -> list[nn.Parameter]:
        """The parameters of which a frozen entry no longer has its snapshot's exact bits.

        Empty after :meth:`restore_frozen`. A non-empty answer at the end of a phase means a step was taken
        without :meth:`restore_frozen` after it — :meth:`packnet.PackNet.training` checks this on exit,
        restores the values and raises, so a forgotten call cannot pass silently. It compares bits, so NaN
        and -0.0 count as unchanged only if they were there before. One pass over the parameters; on CUDA it
        synchronises, so call it once per phase, not per step.
        """
        changed = [part.param for part in self.partial if part.changed()]
        changed += [param for param, snapshot in self.frozen if not _same_bits(param, snapshot)]
        return changed


_FUSED = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
"""The optimizer types :meth:`WeightGuard.step` fuses (exact types, not subclasses)."""


@dataclass
class _Tracked:
    """What a guard knows about one optimizer: whether its state is zero on frozen entries, and its hooks."""

    clean: bool = False
    handles: list = field(default_factory=list)
    steps: int = 0  # fused steps taken
    refill_at: int = 1  # when Adam's second moments on frozen entries are next set to 1


REFILL_EVERY = 10_000
"""Fused Adam steps between two refills of the second moments on frozen entries (1 decays to a subnormal
number only after ~87,000 steps at ``beta2 = 0.999``)."""


def kind_is_decoupled(optimizer: torch.optim.Optimizer, group: dict) -> bool:
    """Whether ``group``'s weight decay is decoupled (AdamW's ``p *= 1 - lr * wd``) or coupled (``g += wd * p``)."""
    return isinstance(optimizer, torch.optim.AdamW) or bool(group.get("decoupled_weight_decay", False))


@functools.lru_cache(maxsize=64)
def _underflows(value: float, dtype: torch.dtype) -> bool:
    """Whether a positive ``value`` rounds to 0 in ``dtype`` (float16 has no 1e-8)."""
    return dtype.is_floating_point and float(torch.tensor(value, dtype=dtype)) == 0.0


def _same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors of one dtype and shape hold exactly the same bits (NaN == NaN, -0.0 != 0.0)."""
    ints = INT_OF_SIZE.get(a.element_size())
    if ints is None:
        return torch.equal(a, b)
    return torch.equal(a.detach().view(ints), b.detach().view(ints))

