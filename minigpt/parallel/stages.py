"""Cutting a `DecoderLM` into pipeline stages by whole blocks (lesson 13).

Pipeline parallelism gives each device a contiguous slice of the model: stage 0 owns the
embeddings and the first blocks, the last stage the final blocks, the final norm, the LM head
and the loss, and the stages in between only blocks. A block is the unit of the cut because
its input and output are the residual stream, one (B, T, d_model) tensor — the only thing
that must cross between devices (forward: activations, backward: their gradients).

Stages should take equally long, since the pipeline runs at the pace of its slowest stage;
`partition` balances them by parameter count (a good proxy for a transformer's compute per
token), counting the embedding table on the first stage and the head on the last one.

A tied embedding / head matrix (Press & Wolf 2017) is needed by both ends of the pipeline:
stages 0 and S-1 each hold a copy, each computes a gradient from its own use, and the two
gradients are summed between the two stages before the optimizer step (`tied_parameters`
names the copy), so both copies receive the same update and stay equal.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from minigpt.models import DecoderLM


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def partition(model: DecoderLM, n_stages: int, counts: Sequence[int] | None = None) -> list[int]:
    """How many blocks each of `n_stages` stages gets: `counts` checked, or balanced.

    Balanced: the contiguous split that minimises the largest stage's parameter count, with
    the embeddings added to stage 0 and the final norm and head (tied or not: the last stage
    holds a copy) to the last stage; ties go to the split that fills earlier stages first.
    """
    n_blocks = len(model.blocks)
    if not isinstance(n_stages, int) or not 1 <= n_stages <= n_blocks:
        raise ValueError(f"n_stages={n_stages!r}: a stage gets whole blocks, so use 1 to "
                         f"{n_blocks} (the model's n_layers) stages")  # fmt: skip
    if counts is not None:
        counts = list(counts)
        if len(counts) != n_stages or sum(counts) != n_blocks or min(counts) < 1:
            raise ValueError(f"counts={counts} must be {n_stages} positive block counts "
                             f"summing to the model's {n_blocks} blocks")  # fmt: skip
        return counts
    sizes = [_numel(block) for block in model.blocks]
    head = model.lm_head.weight.numel() + _numel(model.norm)
    if model.lm_head.bias is not None:
        head += model.lm_head.bias.numel()
    first, last = _numel(model.embedding), head

    def load(stage: int, start: int, end: int) -> int:
        extra = (first if stage == 0 else 0) + (last if stage == n_stages - 1 else 0)
        return extra + sum(sizes[start:end])

    # best[s][b]: (largest load, counts) for the first b blocks cut into stages 0..s
    best: list[dict[int, tuple[int, list[int]]]] = [{} for _ in range(n_stages)]
    for b in range(1, n_blocks - n_stages + 2):
        best[0][b] = (load(0, 0, b), [b])
    for s in range(1, n_stages):
        for b in range(s + 1, n_blocks - n_stages + s + 2):
            options = [
                (max(best[s - 1][a][0], load(s, a, b)), best[s - 1][a][1] + [b - a])
                for a in range(s, b)
            ]
            best[s][b] = min(options, key=lambda o: (o[0], [-c for c in o[1]]))
    return best[n_stages - 1][n_blocks][1]


class PipelineStage(nn.Module):
    """One stage of a `DecoderLM`: its slice of blocks, plus the embeddings on the first stage
    and the final norm and LM head on the last. The modules are the model's own (shared, not
    copied), so training a stage trains those parameters of `model`.

    `forward(x)`: ids (B, T) on the first stage, else the residual stream (B, T, d_model);
    returns the residual stream, or logits (B, T, vocab) on the last stage. `loss(logits,
    targets)` is the model's.
    """

    def __init__(
        self, model: DecoderLM, stage: int, n_stages: int, counts: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        counts = partition(model, n_stages, counts)
        if not 0 <= stage < n_stages:
            raise ValueError(f"stage={stage} must be in 0..{n_stages - 1}")
        self.stage, self.n_stages, self.counts = stage, n_stages, counts
        start = sum(counts[:stage])
        self.block_range = (start, start + counts[stage])
        self.is_first, self.is_last = stage == 0, stage == n_stages - 1
        self.config = model.config
        self.embedding = model.embedding if self.is_first else None
        self.blocks = nn.ModuleList(model.blocks[start : start + counts[stage]])
        self.norm = model.norm if self.is_last else None
        self.lm_head = model.lm_head if self.is_last else None
        self._tied = model.lm_head.weight is model.embedding.token.weight
        self.loss = model.loss

    def forward(self, x: Tensor) -> Tensor:
        """Stage input -> stage output (see the class docstring for the shapes)."""
        if self.embedding is not None:
            x = self.embedding(x)  # (B, T) ids -> (B, T, d_model)
        for block in self.blocks:
            x = block(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.lm_head is not None:
            x = self.lm_head(x)  # (B, T, vocab)
        return x

    def tied_parameters(self) -> list[nn.Parameter]:
        """Parameters this stage shares with another stage: the tied embedding / head matrix on
        the first and last stage of a pipeline of two or more stages, else none."""
        if not self._tied or self.n_stages == 1 or not (self.is_first or self.is_last):
            return []
        return [self.embedding.token.weight if self.is_first else self.lm_head.weight]

    def trainable(self) -> list[nn.Parameter]:
        """This stage's trainable parameters (a tied matrix once), in registration order."""
        return [p for p in self.parameters() if p.requires_grad]
