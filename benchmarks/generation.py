"""Generation speed: tokens per second with the static KV cache, the growing one, and none.

Measured: `minigpt.generate.generate` writing 256 new tokens greedily after a 16-token prompt,
for the `tiny` preset (d_model 256, 4 layers) and the 384-wide `small` preset (6 layers), at
batch 1 and 8, with
- `static`   the default cache, preallocated for prompt + new tokens and written in place,
- `growing`  the cache that concatenates each step's keys (torch.cat),
- `none`     no cache: every step recomputes the whole text.
Both presets get max_len = 16 + 256 so the cache is used for every step (tiny's own 64-token
context would switch to windowed recomputation after 48). Goals: cache >= 5x no cache; static
no slower than growing. Times are the median of `--repeats` runs (alternating the kinds).

    python benchmarks/generation.py            # the issue's settings
    python benchmarks/generation.py --quick    # 64 new tokens, smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_machine  # noqa: E402

from minigpt.config import ModelConfig  # noqa: E402
from minigpt.generate import generate  # noqa: E402
from minigpt.models import DecoderLM  # noqa: E402

KINDS = ("static", "growing", "none")


def tokens_per_s(model: DecoderLM, batch: int, new: int, kind: str, repeats: int) -> float:
    prompt = torch.randint(0, model.config.vocab_size, (batch, 16),
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generate(model, prompt, new, greedy=True, cache=kind)
        times.append(time.perf_counter() - t0)
        assert out.shape == (batch, 16 + new)
    return batch * new / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 new tokens, one repeat")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (median)")
    args = parser.parse_args()
    new = 64 if args.quick else 256
    repeats = 1 if args.quick else args.repeats
    print_machine()
    print(f"\ngreedy generation of {new} new tokens after a 16-token prompt (tokens/s)\n")
    header = f"{'model':<8}{'batch':>6}" + "".join(f"{k:>10}" for k in KINDS)
    print(header + f"{'static/none':>13}{'static/growing':>16}")
    for preset in ("tiny", "small"):
        torch.manual_seed(0)
        cfg = ModelConfig.from_preset(preset, max_len=16 + new, dropout=0.0)
        model = DecoderLM(cfg).eval()
        for batch in (1, 8):
            speed = {k: tokens_per_s(model, batch, new, k, repeats if k != "none" else 1)
                     for k in KINDS}  # fmt: skip
            row = f"{preset:<8}{batch:>6}" + "".join(f"{speed[k]:>10.0f}" for k in KINDS)
            print(row + f"{speed['static'] / speed['none']:>12.1f}x"
                  f"{speed['static'] / speed['growing']:>15.2f}x", flush=True)  # fmt: skip
    print("\ngoals: static/none >= 5x, static/growing >= 1.0x")


if __name__ == "__main__":
    main()
