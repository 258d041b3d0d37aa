"""The position-wise feed-forward network: the per-token half of a transformer block.

Attention mixes information *between* positions; the feed-forward network then transforms
each position on its own: FFN(x) = fc2(dropout(act(fc1(x)))) ("Attention Is All You Need",
Vaswani et al. 2017, eq. 2). fc1 widens d_model to d_ff (usually 4 * d_model), the
non-linearity lets the block compute more than a linear map, and fc2 projects back so the
result can be added to the residual stream. Most of a transformer's parameters live here.
Lesson 05 (`lessons/05_transformer_blocks.py`) puts it inside a block.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from minigpt import speedups
from minigpt.config import ACTIVATIONS
from minigpt.dropout import Dropout


class FeedForward(nn.Module):
    """fc1 (d_model -> d_ff), relu or gelu, dropout, fc2 (d_ff -> d_model), applied per token.

    "gelu" is the exact erf form, x * Phi(x) (Hendrycks & Gimpel 2016), the same as
    `nn.TransformerEncoderLayer(activation="gelu")`, so parity tests can compare the two.
    "gelu_tanh" is the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    that GPT-2 was trained with (its weights expect it: `DecoderLM.from_gpt2`).
    The dropout sits after the activation, where `nn.TransformerEncoderLayer` puts it.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is unknown; use one of {ACTIVATIONS}")
        if d_model <= 0 or d_ff <= 0:
            raise ValueError(f"d_model={d_model} and d_ff={d_ff} must both be positive integers")
        self.activation = activation
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., d_model) -> (..., d_model)."""
        ### BEGIN SOLUTION feedforward
        h = speedups.linear(x, self.fc1)  # self.fc1(x), faster (speedups.py): (..., d_ff)
        if self.activation == "relu":
            h = F.relu(h)
        elif self.activation == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")  # GPT-2's approximation
        else:
            h = F.gelu(h)  # exact erf gelu
        return speedups.linear(self.dropout(h), self.fc2)  # self.fc2(dropout(h))
        ### END SOLUTION
