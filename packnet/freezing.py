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

Parameters are sorted once, when the guard is made, into *fully trainable* (nothing to do), *partly
trainable* (the two masked operations above) and *fully frozen* (left out of :meth:`WeightGuard.parameters`,
so the optimizer never sees them; restored too, in case a hand-written loop hands them over anyway).
Nothing here calls ``.item()`` or indexes with a boolean mask, so a CUDA training step makes no host-device
synchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence, Union

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


@dataclass
class WeightGuard:
    """Protects the non-trainable entries of a set of parameters during one training phase.

    Build one with :meth:`WeightGuard.from_specs` (or let :meth:`packnet.PackNet.training` build it), give
    :meth:`parameters` to a fresh optimizer, and call :meth:`mask_gradients` before and
    :meth:`restore_frozen` after every ``optimizer.step()``.

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
    """

    trainable_params: list[nn.Parameter] = field(default_factory=list)
    partial: list[_Partial] = field(default_factory=list)
    frozen: list[tuple[nn.Parameter, Tensor]] = field(default_factory=list)

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


def _same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors of one dtype and shape hold exactly the same bits (NaN == NaN, -0.0 != 0.0)."""
    ints = INT_OF_SIZE.get(a.element_size())
    if ints is None:
        return torch.equal(a, b)
    return torch.equal(a.detach().view(ints), b.detach().view(ints))

