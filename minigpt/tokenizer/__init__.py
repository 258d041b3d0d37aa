"""Tokenizers: how text becomes the integers a transformer reads (lesson 01).

Import every name from here (`from minigpt.tokenizer import BPETokenizer`); the files below are
where each idea is explained, one per file, in the order a reader meets them:

    special_tokens.py   EOT, PAD, MASK, sentinel(i): control ids, refused when text spells them
    pretokenize.py      GPT2_SPLIT_PATTERN: the regex cut before BPE, and where streams may cut
    reference.py        BPE in plain Python to read: naive_train_bpe, bpe_merge, naive_encode
    bpe.py              train_bpe: the same ranks, fast, by incremental pair counts
    tiktoken_bpe.py     BPETokenizer: the ranks served by tiktoken's Rust core
    gpt2.py             GPT-2's published files read into ranks (BPETokenizer.from_gpt2_files)
    char.py             CharTokenizer: one id per character, the baseline
    storage.py          the saved dict / JSON format shared by both tokenizers and checkpoints
    base.py             the Tokenizer protocol, TOKENIZER_KINDS, load_tokenizer
"""

from minigpt.tokenizer.base import (
    TOKENIZER_KINDS,
    Tokenizer,
    load_tokenizer,
    tokenizer_from_dict,
)
from minigpt.tokenizer.bpe import train_bpe
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.pretokenize import GPT2_SPLIT_PATTERN
from minigpt.tokenizer.reference import bpe_merge, naive_decode, naive_encode, naive_train_bpe
from minigpt.tokenizer.special_tokens import (
    DEFAULT_SPECIAL_TOKENS,
    EOT,
    MASK,
    N_SENTINELS,
    PAD,
    sentinel,
)
from minigpt.tokenizer.tiktoken_bpe import BPETokenizer

__all__ = [
    "DEFAULT_SPECIAL_TOKENS",
    "EOT",
    "GPT2_SPLIT_PATTERN",
    "MASK",
    "N_SENTINELS",
    "PAD",
    "TOKENIZER_KINDS",
    "BPETokenizer",
    "CharTokenizer",
    "Tokenizer",
    "bpe_merge",
    "load_tokenizer",
    "naive_decode",
    "naive_encode",
    "naive_train_bpe",
    "sentinel",
    "tokenizer_from_dict",
    "train_bpe",
]
