"""The generation config: the course's inference panel as one validated dataclass.

The course shows a playground with four sliders, max new tokens 200, sample top K 25, sample
top P 1 and temperature 0.8; those are the defaults here. The rest are the other decisions a
user makes when turning a model's distributions into text: greedy instead of sampling, a seed
so a sample can be repeated, when to stop (an end-of-text id, stop strings, `max_new_tokens`,
which is a cap, not a count), a repetition penalty, and beam search's width and length
penalty. The library (`generate`, `sample_text`, `beam_search`), the CLI (`minigpt sample`
maps its flags onto these fields and shows these defaults in `--help`) and lesson 09 all take
this one object.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch


@dataclass
class GenerationConfig:
    """How to generate; the defaults are the course panel's.

    `greedy=True` (or temperature 0) takes the argmax and ignores top-k / top-p; `top_k=None`
    and `top_p=1.0` turn those filters off. `seed` makes sampling repeat exactly (a seeded
    `torch.Generator` is made per call); `eos_id` ends a row when written; `stop` strings end
    a text sample (`sample_text`). `num_beams > 1` asks for beam search with
    `length_penalty` (score / length^alpha).
    """

    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 25
    top_p: float | None = 1.0
    greedy: bool = False
    seed: int | None = None
    eos_id: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    repetition_penalty: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        self.stop = tuple(self.stop)
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be >= 0")
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} must be >= 0 (0 = greedy)")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k={self.top_k} must be >= 1 (or None to disable)")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1] (1 = off)")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty={self.repetition_penalty} must be > 0 (1 = off)")
        if self.num_beams < 1:
            raise ValueError(f"num_beams={self.num_beams} must be >= 1 (1 = no beam search)")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")

    @property
    def is_greedy(self) -> bool:
        """Whether tokens are picked by argmax (greedy=True or temperature 0)."""
        return self.greedy or self.temperature == 0

    @property
    def sampling_temperature(self) -> float:
        """The temperature `sample_next` gets: 0 means argmax."""
        return 0.0 if self.is_greedy else self.temperature

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator | None:
        """A generator seeded with `seed` on `device`, or None (PyTorch's global stream)."""
        if self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(self.seed)

    def with_(self, **changes: Any) -> GenerationConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
