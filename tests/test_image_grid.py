"""The one grid writer: tile sizes for tiny and large images, captions under tiles, row labels."""

import pytest
import torch

from vgrpo.utils.image_grid import LINE_H, PAD, image_grid


def test_small_images_are_upscaled_and_large_ones_downscaled():
    small = image_grid(torch.rand(5, 3, 32, 32), columns=3)
    assert small.size == (3 * (128 + PAD) + PAD, 2 * (128 + PAD) + PAD)  # 4x nearest, no caption rows
    large = image_grid(torch.rand(2, 3, 1024, 512), ["a cat", "a dog"], columns=2)
    assert large.size == (2 * (128 + PAD) + PAD, 256 + LINE_H + 2 * PAD)  # longer side 256, one caption line


def test_captions_are_drawn_wrapped_and_cut():
    black = torch.zeros(1, 3, 32, 32)
    white = torch.ones(1, 3, 32, 32)
    bare = image_grid(white, [""], columns=1)
    long = image_grid(white, ["word " * 200], columns=1, caption_lines=3)
    assert long.size[1] == bare.size[1] + 2 * LINE_H  # at most three lines
    # the caption area holds dark text pixels; the tile keeps its colour
    caption = long.crop((0, 128 + PAD, long.size[0], long.size[1]))
    assert caption.convert("L").getextrema()[0] < 100
    assert image_grid(black, None).getpixel((PAD + 5, PAD + 5)) == (0, 0, 0)
    with pytest.raises(ValueError, match="2 captions for 1 images"):
        image_grid(black, ["a", "b"])


def test_row_labels_shift_the_tiles_right():
    grid = image_grid(torch.zeros(4, 3, 32, 32), columns=2, row_labels=["first", "second"], label_width=100)
    assert grid.size[0] == 100 + 2 * (128 + PAD) + PAD
    assert grid.getpixel((100 + PAD + 1, PAD + 1)) == (0, 0, 0) and grid.getpixel((PAD + 1, PAD + 1)) == (255, 255, 255)
