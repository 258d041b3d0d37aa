"""The exercise registry: what a student writes, where, which lesson explains it, what grades it.

An exercise is a named group of solution regions (regions.py) in the library's own source,
cut out by `minigpt assignment make` and graded by `minigpt assignment grade`, which runs
the exercise's `tests` (pytest node ids of the library's own test suite, chosen so one
exercise grades in a few seconds) in a subprocess. `builds_on` names the exercises whose
code those tests also run: when one of them fails, this exercise cannot be judged and is
reported "blocked by" it instead of failed. The order below is course order, and an
exercise only builds on exercises listed before it (tests/test_assignment_regions.py checks
that, and that every region in `files` belongs to an exercise here and vice versa).

This list is the single source of truth: the CLI's `assignment list`, the stubs' messages
and the README's exercise table (`markdown_table`) are all generated from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Exercise:
    """One exercise: `statement` says what to implement; `tests` are pytest arguments."""

    name: str
    title: str
    statement: str
    lesson: int
    files: tuple[str, ...]
    points: int
    tests: tuple[str, ...]
    builds_on: tuple[str, ...] = ()

    @property
    def stub(self) -> str:
        """The statement that replaces each of this exercise's regions in a student's copy."""
        return f'raise NotImplementedError("exercise {self.name}: see lesson {self.lesson:02d}")'


_TOK = "tests/test_tokenizer.py::"
_ATT = "tests/test_attention.py::"
_OBJ = "tests/test_objectives.py::"
_GEN = "tests/test_generate.py::"
_DDP = "tests/test_ddp.py::"
_PIPE = "tests/test_pipeline_schedules.py::"
_QUANT = "tests/test_quantize.py::"

_EXERCISES = (
    Exercise(
        "bpe_train", "BPE trainer and its merge step",
        "Count every adjacent pair of tokens over the pre-tokenised words (weighted by how often "
        "each word occurs), merge the most frequent pair (ties: the greatest pair of byte "
        "strings) into a new token, and repeat until the vocabulary is full; `_merge_pair` "
        "rewrites one word, left to right, without overlaps.",
        1, ("minigpt/tokenizer/reference.py",), 8,
        (_TOK + "test_train_matches_naive_reference_merge_for_merge",
         _TOK + "test_train_matches_naive_reference_with_special_tokens"),
    ),
    Exercise(
        "bpe_encode", "BPE encoding: the merge rule",
        "Split one pre-token into tokens: start from its single bytes and keep merging the "
        "adjacent pair whose merged token has the lowest rank (leftmost on ties), using only "
        "ranks below `max_rank`, until no adjacent pair is a token.",
        1, ("minigpt/tokenizer/reference.py",), 5,
        (_TOK + "test_wrapper_ids_equal_hand_applied_merges",
         _TOK + "test_reference_encode_decode_with_special_tokens",
         _TOK + "test_bpe_merge_max_rank_recovers_the_two_halves"),
    ),
    Exercise(
        "sinusoidal", "the sinusoidal position table",
        "Build PE(pos, 2i) = sin(pos / base^(2i/d_model)) and PE(pos, 2i+1) = cos(...) in "
        "float64, returned as float32; an odd d_model has one more sine column than cosines.",
        2, ("minigpt/embeddings.py",), 5,
        ("tests/test_embeddings.py::test_sinusoidal_table_formula",
         "tests/test_embeddings.py::test_sinusoidal_table_odd_width",
         "tests/test_embeddings.py::test_sinusoidal_encoding_adds_table_with_offset",
         "tests/test_embeddings.py::test_rotary_tables_and_one_pair_by_hand"),
    ),
    Exercise(
        "attention", "scaled dot-product attention and its masks",
        "softmax(q k^T / sqrt(d_k)) v written out, returning (output, weights): a boolean keep "
        "mask hides keys with -inf, a float mask is added, a row whose keys are all masked gets "
        "zero weights instead of NaN; the causal mask aligned to the end of the keys, and the "
        "padding and length masks.",
        3, ("minigpt/attention.py",), 10,
        (_ATT + "test_causal_mask_aligned_to_end", _ATT + "test_padding_helpers",
         _ATT + "test_explicit_equals_torch_sdpa", _ATT + "test_float_mask_is_added",
         _ATT + "test_gradcheck_explicit_float64"),
    ),
    Exercise(
        "multihead", "multi-head split and merge",
        "Reshape projected (B, T, d_model) queries, keys and values into (B, H, T, d_head) "
        "heads, and merge the heads' outputs back into (B, T, d_model) before the output "
        "projection.",
        4, ("minigpt/attention.py",), 8,
        (_ATT + "test_self_attention_matches_pytorch",
         _ATT + "test_cross_attention_matches_pytorch",
         _ATT + "test_recorded_weights_match_pytorch_average",
         _ATT + "test_fully_masked_rows_give_zeros_not_nan"),
        ("attention",),
    ),
    Exercise(
        "feedforward", "the position-wise feed-forward block",
        "fc2(dropout(act(fc1(x)))) with act relu, exact (erf) gelu or GPT-2's tanh gelu.",
        5, ("minigpt/feedforward.py",), 4,
        ("tests/test_feedforward.py",),
    ),
    Exercise(
        "residual", "pre-norm and post-norm residual wiring",
        "Wrap each sub-layer of the encoder and decoder layers in a residual connection with "
        "its LayerNorm: post-norm x = norm(x + dropout(sublayer(x))), pre-norm "
        "x = x + dropout(sublayer(norm(x))).",
        5, ("minigpt/layers.py",), 6,
        ("tests/test_layers.py::test_encoder_layer_matches_pytorch",
         "tests/test_layers.py::test_decoder_layer_matches_pytorch",
         "tests/test_layers.py::test_gpt_block_matches_causal_pytorch_encoder_layer"),
        ("attention", "multihead", "feedforward"),
    ),
    Exercise(
        "masked_lm", "BERT's masked-LM batch (80/10/10)",
        "Select each non-special token with probability `prob` (at least one per row), label "
        "the selected ones (-100 elsewhere), and replace 80% of them by [MASK], 10% by a "
        "random ordinary token and keep 10% unchanged.",
        6, ("minigpt/objectives.py",), 8,
        (_OBJ + "test_mask_tokens_rates", _OBJ + "test_mask_tokens_invariants",
         _OBJ + "test_mask_tokens_is_deterministic_for_a_seed",
         _OBJ + "test_mask_tokens_every_row_gets_a_label",
         _OBJ + "test_mlm_batch_matches_mask_tokens"),
    ),
    Exercise(
        "causal_lm", "the causal-LM batch",
        "Split (B, T+1) windows into inputs (B, T) and targets (B, T) shifted by one, so "
        "position t predicts token t+1.",
        7, ("minigpt/objectives.py",), 3,
        (_OBJ + "test_causal_lm_batch_shifts_by_one",),
    ),
    Exercise(
        "lr_schedule", "the learning-rate schedule",
        "Linear warm-up over `warmup_steps`, then half a cosine from `lr` down to `min_lr`, "
        "at the given `progress` or the fraction of the post-warm-up steps done.",
        7, ("minigpt/training/optim.py",), 4,
        ("tests/test_train.py::test_lr_schedule_warms_up_then_decays_to_min",),
    ),
    Exercise(
        "span_corruption", "T5's span corruption",
        "Count noise tokens and spans as T5 does, cut the kept and the noise tokens into "
        "random pieces (`random_segmentation`), and interleave them: each noise span becomes a "
        "sentinel in the inputs, and the targets list each sentinel followed by its span, then "
        "eos.",
        8, ("minigpt/objectives.py",), 8,
        (_OBJ + "test_span_corruption_counts_follow_t5", _OBJ + "test_span_corruption_statistics",
         _OBJ + "test_span_corruption_round_trip_and_shape_of_output",
         _OBJ + "test_span_corruption_batch_pads_and_round_trips"),
    ),
    Exercise(
        "sampling", "sampling filters: temperature, top-k, top-p",
        "Divide logits by the temperature; keep exactly the k largest logits (the rest -inf); "
        "keep the smallest set of likeliest tokens whose probabilities reach p (the likeliest "
        "always survives).",
        9, ("minigpt/generate/filters.py",), 6,
        (_GEN + "test_top_k_keeps_exactly_k", _GEN + "test_top_p_on_the_course_example",
         _GEN + "test_top_p_batched_and_identity", _GEN + "test_temperature_sharpens_and_flattens",
         _GEN + "test_sampling_is_seeded_and_follows_the_filtered_distribution"),
    ),
    Exercise(
        "quantize", "symmetric absmax int8 quantization",
        "scale = max|x| / 127 per tensor or per output row (1 for an all-zero row), "
        "q = round(x / scale) clamped to [-127, 127] as int8, and back: q * scale.",
        10, ("minigpt/quantize.py",), 5,
        (_QUANT + "test_absmax_rounding_is_within_half_a_step",
         _QUANT + "test_per_channel_beats_per_tensor_when_rows_differ",
         _QUANT + "test_int8_linear_is_its_dequantized_matmul"),
    ),
    Exercise(
        "ddp", "data-parallel gradient sync, naive and bucketed",
        "Average the gradients over the ranks: naive, one all-reduce per parameter (divided by "
        "the world size first); bucketed, consecutive gradients packed into buckets of at most "
        "the cap (a new bucket when dtype or device changes), one all-reduce per bucket.",
        12, ("minigpt/parallel/ddp.py", "minigpt/parallel/buckets.py"), 8,
        (_DDP + "test_bucket_indices_fill_in_order_and_respect_the_cap",
         _DDP + "test_naive_reduces_each_distinct_trainable_parameter_once",
         _DDP + "test_bucketed_makes_one_all_reduce_per_bucket",
         _DDP + "test_every_strategy_trains_exactly_like_pytorch_ddp"),
        ("sinusoidal", "attention", "multihead", "feedforward", "residual"),
    ),
    Exercise(
        "zero1", "the ZeRO-1 optimizer step",
        "Deal the parameters out whole, largest first, each to the least-loaded rank; after "
        "each rank steps its own shard, broadcast every shard from its owner so all replicas "
        "are equal again.",
        12, ("minigpt/parallel/zero.py",), 6,
        ("tests/test_zero.py::test_partition_is_balanced_and_deterministic",
         "tests/test_zero.py::test_zero1_trains_exactly_like_plain_adamw"),
        ("ddp",),
    ),
    Exercise(
        "pipeline", "GPipe and 1F1B pipeline schedules",
        "Per stage, the order of forward (F) and backward (B) passes over the micro-batches: "
        "GPipe runs all forwards then all backwards; 1F1B runs S-s-1 warm-up forwards on stage "
        "s, then alternates one forward with one backward, then drains the backwards.",
        13, ("minigpt/parallel/schedules.py",), 6,
        (_PIPE + "test_every_pass_once_in_a_deadlock_free_order",
         _PIPE + "test_gpipe_and_1f1b_have_the_textbook_bubble",
         _PIPE + "test_activation_memory_bounds",
         _PIPE + "test_small_example_reads_like_the_papers"),
    ),
)

EXERCISES: dict[str, Exercise] = {e.name: e for e in _EXERCISES}


def select(names: str | Iterable[str]) -> list[Exercise]:
    """Exercises by name in registry order: "all", "a,b" or a list; ValueError for unknown."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    wanted = list(names)
    if wanted == ["all"]:
        return list(EXERCISES.values())
    unknown = [n for n in wanted if n not in EXERCISES]
    if unknown or not wanted:
        what = f"unknown exercise {unknown[0]!r}" if unknown else "no exercise named"
        raise ValueError(f"{what}; choose from {', '.join(EXERCISES)} (comma-separated) or all")
    return [e for e in EXERCISES.values() if e.name in wanted]


def markdown_table() -> str:
    """The README's exercise table, generated here so the two cannot drift."""
    rows = [
        "| exercise | lesson | points | what you write | files | builds on |",
        "|---|---|---|---|---|---|",
    ]
    for e in EXERCISES.values():
        files = ", ".join(f"`{f.removeprefix('minigpt/')}`" for f in e.files)
        after = ", ".join(e.builds_on) or "-"
        rows.append(f"| `{e.name}` | {e.lesson:02d} | {e.points} | {e.title} | {files} | {after} |")
    total = sum(e.points for e in EXERCISES.values())
    rows.append(f"| all {len(EXERCISES)} | | **{total}** | | | |")
    return "\n".join(rows)
