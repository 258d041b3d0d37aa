"""Special tokens: the control symbols a model needs besides text, and why text may not spell them.

A tokenizer turns text into ids, but training also needs ids that no text stands for: a document
separator (`EOT`, GPT-2's only special token), padding for batches of unequal length (`PAD`),
BERT's masked-language-modelling placeholder (`MASK`) and T5's span-corruption sentinels
(`sentinel(i)`). Each gets an id of its own after the ordinary vocabulary, so a model learns it
like any token. The names live here, in one place, so objectives, data preparation and both
tokenizers agree on them.

The one rule that makes special tokens safe: text that merely *spells* a special token (web text
quoting "<|endoftext|>", say) raises an error unless the caller allows it, because silently
turning it into the real control id would let data inject document boundaries into training.
Lesson 01 (`lessons/01_tokenization.py`) introduces tokenizers; lessons 06-08 use these tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

import regex

EOT = "<|endoftext|>"  # end of text / document separator (GPT-2's only special token)
PAD = "<|pad|>"  # padding for batches of unequal length
MASK = "[MASK]"  # BERT-style masked-language-modelling placeholder
N_SENTINELS = 32  # T5 uses 100; 32 spans is plenty for the short windows we train on


def sentinel(i: int) -> str:
    """Name of T5's i-th span-corruption sentinel, so objectives and tokenizers agree on it."""
    return f"<extra_id_{i}>"


DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = (
    EOT,
    PAD,
    MASK,
    *[sentinel(i) for i in range(N_SENTINELS)],
)


def special_splitter(special_tokens: Iterable[str]) -> regex.Pattern | None:
    """Regex matching any special token, longest first so one that contains another wins.

    None when there are no special tokens, so callers can skip the search entirely.
    """
    specials = sorted(set(special_tokens), key=len, reverse=True)
    if "" in specials:
        raise ValueError("special_tokens contains an empty string; give each a non-empty name")
    if not specials:
        return None
    return regex.compile("|".join(regex.escape(s) for s in specials))


def allowed_set(allowed_special: str | Iterable[str], special_tokens: Iterable[str]) -> set[str]:
    """Resolve `allowed_special` ("all" or names) and refuse names the tokenizer does not have."""
    known = set(special_tokens)
    if allowed_special == "all":
        return known
    allowed = {allowed_special} if isinstance(allowed_special, str) else set(allowed_special)
    unknown = allowed - known
    if unknown:
        raise ValueError(
            f"allowed_special has unknown special tokens {sorted(unknown)}; "
            f"this tokenizer has {sorted(known)}"
        )
    return allowed


def disallowed_set(
    disallowed_special: str | Iterable[str], allowed: set[str], special_tokens: Iterable[str]
) -> set[str]:
    """Which special-token spellings must raise: "all" means every one that is not allowed.

    An empty collection (`disallowed_special=()`) lets text spell special tokens; they are then
    encoded as ordinary text, never as the control id.
    """
    if disallowed_special == "all":
        return set(special_tokens) - allowed
    if isinstance(disallowed_special, str):
        return {disallowed_special}
    return set(disallowed_special)


def refuse_special(text: str, splitter: regex.Pattern | None, disallowed: set[str]) -> None:
    """Raise if `text` spells a disallowed special token (see the module docstring for why).

    `splitter` matches every special token of the tokenizer, so an allowed token that contains a
    disallowed one is seen whole and not refused.
    """
    if splitter is None or not disallowed:
        return
    for m in splitter.finditer(text):
        if m.group() in disallowed:
            raise ValueError(
                f"text contains the special token {m.group()!r} at character {m.start()}; pass "
                f"allowed_special={{{m.group()!r}}} (or 'all') to encode it as that token, or "
                "disallowed_special=() to encode it as plain text"
            )
