"""The shapes world's prompt grammar, parser, GenEval-style categories and fixed train/held-out split.

Grammar (words separated by single spaces, lower case):

    prompt   := object                          single_object (no color) / colors (with color)
              | object " and " object           two_objects (no colors) / color_attr (both colored)
              | count " " [color " "] plural    counting
              | object " " relation " " object  position
    object   := "a " [color " "] shape
    count    := "two" | "three" | "four"
    color    := "red" | "green" | "blue" | "yellow"
    shape    := "circle" | "square" | "triangle"      (plural: shape + "s")
    relation := "left of" | "right of" | "above" | "below"

"a red circle left of a blue square" means: a red circle and a blue square are the only objects,
and the circle's centre is left of the square's (see `vgrpo.world.detect.relation_holds`).
The generated prompt sets (`train_prompts`, `heldout_prompts`) use distinct shapes in two-object
prompts and distinct colors in color_attr prompts, and count shapes with and without a color;
`parse` accepts every sentence of the grammar.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COUNTS: dict[str, int] = {"two": 2, "three": 3, "four": 4}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
CATEGORIES: tuple[str, ...] = ("single_object", "two_objects", "counting", "colors", "position", "color_attr")
MAX_OBJECTS = 4
SPLIT_SEED = 20260
HELDOUT_FRACTION = 0.25
MIN_HELDOUT = 3  # held-out prompts per category at least (all but one where a category has fewer)

_PLURALS = {s + "s": s for s in SHAPES}
_RELATION_WORDS = {"left": "left of", "right": "right of", "above": "above", "below": "below"}


@dataclass(frozen=True)
class ObjectSpec:
    """`count` objects of `shape`, all of `color` (None: any color)."""

    shape: str
    color: str | None
    count: int = 1


@dataclass(frozen=True)
class PromptSpec:
    """A parsed prompt: the required objects and an optional relation objects[0] <relation> objects[1]."""

    objects: tuple[ObjectSpec, ...]
    relation: str | None
    category: str

    @property
    def total_objects(self) -> int:
        return sum(o.count for o in self.objects)


def vocabulary() -> list[str]:
    """Every word the grammar can produce, in a fixed order (the tokenizer's vocabulary)."""
    words = ["a", "and", "of", "left", "right", "above", "below"]
    words += list(COUNTS) + list(COLORS) + list(SHAPES) + list(_PLURALS)
    return words


def _parse_object(words: list[str], i: int, prompt: str) -> tuple[ObjectSpec, int]:
    """Parse `a [color] shape` starting at words[i]; returns the spec and the next index."""
    if i >= len(words):
        raise ValueError(f"prompt {prompt!r} ends where an object ('a [color] shape') was expected")
    if words[i] != "a":
        raise ValueError(f"prompt {prompt!r}: expected 'a' at word {i + 1}, got {words[i]!r}")
    i += 1
    color = None
    if i < len(words) and words[i] in COLORS:
        color = words[i]
        i += 1
    if i >= len(words):
        raise ValueError(f"prompt {prompt!r} ends where a shape {SHAPES} was expected")
    if words[i] not in SHAPES:
        raise ValueError(f"prompt {prompt!r}: unknown shape or color word {words[i]!r} (shapes {SHAPES}, colors {COLORS})")
    return ObjectSpec(words[i], color), i + 1


@functools.lru_cache(maxsize=8192)
def parse(prompt: str) -> PromptSpec:
    """Parse one prompt of the grammar above.

    Raises:
        ValueError naming the word or construct that does not fit the grammar.
    """
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
    words = prompt.strip().split()
    if not words:
        raise ValueError("empty prompt: the grammar needs at least one object")
    known = set(vocabulary())
    for w in words:
        if w not in known:
            raise ValueError(f"prompt {prompt!r}: unknown word {w!r}")
    if words[0] in COUNTS:
        count = COUNTS[words[0]]
        color = None
        i = 1
        if i < len(words) and words[i] in COLORS:
            color = words[i]
            i += 1
        if i >= len(words) or words[i] not in _PLURALS:
            got = words[i] if i < len(words) else "end of prompt"
            raise ValueError(f"prompt {prompt!r}: counting needs a plural shape {tuple(_PLURALS)}, got {got!r}")
        if i + 1 != len(words):
            raise ValueError(f"prompt {prompt!r}: unexpected words after the counted shape: {' '.join(words[i + 1:])!r}")
        return PromptSpec((ObjectSpec(_PLURALS[words[i]], color, count),), None, "counting")
    first, i = _parse_object(words, 0, prompt)
    if i == len(words):
        return PromptSpec((first,), None, "colors" if first.color else "single_object")
    relation = None
    if words[i] == "and":
        i += 1
    elif words[i] in ("left", "right"):
        if i + 1 >= len(words) or words[i + 1] != "of":
            raise ValueError(f"prompt {prompt!r}: relation {words[i]!r} must be followed by 'of'")
        relation = _RELATION_WORDS[words[i]]
        i += 2
    elif words[i] in ("above", "below"):
        relation = words[i]
        i += 1
    else:
        raise ValueError(
            f"prompt {prompt!r}: expected 'and' or a relation {RELATIONS} after the first object, got {words[i]!r}"
        )
    second, i = _parse_object(words, i, prompt)
    if i != len(words):
        raise ValueError(f"prompt {prompt!r}: unexpected words after the second object: {' '.join(words[i:])!r}")
    if relation is not None:
        cat = "position"
    elif first.color and second.color:
        cat = "color_attr"
    elif first.color or second.color:
        cat = "colors"  # "a red circle and a square": color of one object, GenEval's nearest category
    else:
        cat = "two_objects"
    return PromptSpec((first, second), relation, cat)


def category(prompt: str) -> str:
    """GenEval-style category of a prompt (one of CATEGORIES); raises ValueError outside the grammar."""
    return parse(prompt).category


def _object(shape: str, color: str | None) -> str:
    return f"a {color} {shape}" if color else f"a {shape}"


@functools.lru_cache(maxsize=1)
def all_prompts() -> dict[str, list[str]]:
    """The generated prompt set per category (the union of train and held-out), in a fixed order."""
    pairs = [(a, b) for a in SHAPES for b in SHAPES if a != b]
    color_pairs = [(a, b) for a in COLORS for b in COLORS if a != b]
    out = {
        "single_object": [_object(s, None) for s in SHAPES],
        "colors": [_object(s, c) for c in COLORS for s in SHAPES],
        "two_objects": [f"{_object(a, None)} and {_object(b, None)}" for a, b in pairs],
        "counting": [f"{n} {s}s" for n in COUNTS for s in SHAPES]
        + [f"{n} {c} {s}s" for n in COUNTS for c in COLORS for s in SHAPES],
        "color_attr": [
            f"{_object(a, ca)} and {_object(b, cb)}" for a, b in pairs for ca, cb in color_pairs
        ],
        "position": [f"{_object(a, None)} {r} {_object(b, None)}" for a, b in pairs for r in RELATIONS]
        + [f"{_object(a, ca)} {r} {_object(b, cb)}" for a, b in pairs for r in RELATIONS for ca, cb in color_pairs],
    }
    return {c: out[c] for c in CATEGORIES}


@functools.lru_cache(maxsize=1)
def _split() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per category, a seeded HELDOUT_FRACTION is held out: at least MIN_HELDOUT prompts, and never
    the whole category (a category of n <= MIN_HELDOUT prompts holds out n - 1)."""
    rng = random.Random(SPLIT_SEED)
    train, held = {}, {}
    for cat, prompts in all_prompts().items():
        order = list(prompts)
        rng.shuffle(order)
        k = min(len(order) - 1, max(MIN_HELDOUT, round(HELDOUT_FRACTION * len(order))))
        held[cat] = sorted(order[:k], key=prompts.index)
        train[cat] = sorted(order[k:], key=prompts.index)
    return train, held


def train_prompts_by_category() -> dict[str, list[str]]:
    return {c: list(p) for c, p in _split()[0].items()}


def heldout_prompts_by_category() -> dict[str, list[str]]:
    return {c: list(p) for c, p in _split()[1].items()}


def train_prompts() -> list[str]:
    """The fixed training prompts (all categories, category order)."""
    return [p for ps in _split()[0].values() for p in ps]


def heldout_prompts() -> list[str]:
    """The fixed held-out prompts (disjoint from train_prompts), all categories."""
    return [p for ps in _split()[1].values() for p in ps]
