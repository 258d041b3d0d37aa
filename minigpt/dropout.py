"""Dropout: during training, zero each activation with probability p and scale the rest by 1/(1-p).

Dropout (Srivastava et al. 2014) keeps a network from leaning on any single unit: each training
step sees a random thinned network, and at evaluation the full network is used. Scaling the
survivors by 1/(1-p) while training ("inverted" dropout) keeps every activation's expected value
unchanged, so evaluation needs no rescaling at all: there the module is the identity.

Why our own function instead of `torch.nn.functional.dropout`: on a CPU PyTorch draws its mask
one Mersenne-Twister number per element, which dominated small-model training here, so on a CPU
the mask comes from `minigpt.speedups.fast_keep_mask` (p resolved to 1/65536; see that file
for the measurement). Everywhere else, and in `speedups.reference_mode()`, PyTorch's own
dropout runs, which lets the parity tests replay `nn.TransformerEncoderLayer`'s random stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt import speedups


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout of `x`: x * keep / (1 - p) with keep ~ Bernoulli(1 - p) per element;
    the identity unless training with p > 0."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0  # keeps the graph (and a zero gradient) like F.dropout
    keep = speedups.dropout_mask(x, p)
    if keep is None:
        return F.dropout(x, p, training=True)
    scale = torch.tensor(1.0 / (1.0 - speedups.resolved_p(p)), dtype=x.dtype)  # the p drawn
    return x * (keep.to(x.dtype) * scale)


class Dropout(nn.Module):
    """`dropout` as a module, a drop-in for `nn.Dropout(p)`: active in train(), else identity."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
