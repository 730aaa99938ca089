"""Web-like captions: a documented model of how real alt-text under-describes an image.

Real text-to-image models learn from captions that leave out or get wrong much of what the image
shows, which is why they follow prompts only loosely and why RL on a prompt-following reward has
room to work. `web_caption` corrupts the ground-truth caption (the prompt an image was rendered
for) the same way, always staying inside the grammar of `vgrpo.world.prompts`:

- each color word is dropped with probability `color_drop`, else replaced by another color
  (uniformly) with probability `color_swap`;
- a count ("three squares") is omitted (-> "a square") with probability `count_drop`, else
  replaced by another count with probability `count_swap`;
- a relation ("a circle left of a square") is omitted (-> "a circle and a square") with
  probability `relation_drop`, else replaced by another relation with probability `relation_swap`;
- of two objects, only the first or the second (uniformly) is mentioned with probability
  `object_drop` (a relation is then omitted too).
Shape words are kept, so the model still learns what each shape looks like. The decisions are
drawn in this order from the generator given, so a seeded generator gives the same captions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vgrpo.world.prompts import COLORS, COUNTS, RELATIONS, ObjectSpec, PromptSpec, parse

_COUNT_WORDS = {n: w for w, n in COUNTS.items()}


@dataclass(frozen=True)
class CaptionNoise:
    """Probabilities of the alt-text model (see the module docstring)."""

    color_drop: float = 0.3
    color_swap: float = 0.3
    count_drop: float = 0.4
    count_swap: float = 0.2
    relation_drop: float = 0.5
    relation_swap: float = 0.2
    object_drop: float = 0.2

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"CaptionNoise.{name} must be a probability in [0, 1], got {value}")


def _other(options: tuple, current, rng: np.random.Generator):
    rest = [o for o in options if o != current]
    return rest[int(rng.integers(len(rest)))]


def format_object(obj: ObjectSpec) -> str:
    """`a [color] shape` or `<count> [color] <shape>s`."""
    color = f"{obj.color} " if obj.color else ""
    if obj.count == 1:
        return f"a {color}{obj.shape}"
    return f"{_COUNT_WORDS[obj.count]} {color}{obj.shape}s"


def format_prompt(objects: tuple[ObjectSpec, ...], relation: str | None) -> str:
    """The sentence of the grammar for one or two objects and an optional relation between them."""
    if len(objects) == 1:
        return format_object(objects[0])
    return f" {relation or 'and'} ".join(format_object(o) for o in objects)


def web_caption(prompt: str, rng: np.random.Generator, noise: CaptionNoise = CaptionNoise()) -> str:
    """A web-like caption of an image rendered for `prompt` (see the module docstring); "" stays ""."""
    if not prompt:
        return prompt
    spec: PromptSpec = parse(prompt)
    objects = []
    for o in spec.objects:
        if o.color is not None:
            if rng.random() < noise.color_drop:
                o = replace(o, color=None)
            elif rng.random() < noise.color_swap:
                o = replace(o, color=_other(COLORS, o.color, rng))
        if o.count > 1:
            if rng.random() < noise.count_drop:
                o = replace(o, count=1)
            elif rng.random() < noise.count_swap:
                o = replace(o, count=_other(tuple(_COUNT_WORDS), o.count, rng))
        objects.append(o)
    relation = spec.relation
    if relation is not None:
        if rng.random() < noise.relation_drop:
            relation = None
        elif rng.random() < noise.relation_swap:
            relation = _other(RELATIONS, relation, rng)
    if len(objects) == 2 and rng.random() < noise.object_drop:
        objects = [objects[int(rng.integers(2))]]
        relation = None
    return format_prompt(tuple(objects), relation)
