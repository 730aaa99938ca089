"""One-time conversion of reward checkpoints in their original formats to safetensors directories.

    python -m vgrpo.rewards.convert hpsv2 SRC DST        # SRC: HPS_v2.1_compressed.pt + vocab.json + merges.txt
    python -m vgrpo.rewards.convert imagereward SRC DST  # SRC: ImageReward.pt + med_config.json + vocab.txt

DST receives config.json, model.safetensors and the tokenizer files of SRC; the rewards then load
it directly (no key mapping, no pickle). Originals are read with torch.load(weights_only=True).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

TOKENIZER_EXTRAS = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def convert_hpsv2(src: str | Path, dst: str | Path, **heads) -> Path:
    """HPS_v2.1_compressed.pt (+ tokenizer files) -> transformers CLIP directory."""
    from vgrpo.rewards.hpsv2 import load_hpsv2_clip

    model, _ = load_hpsv2_clip(src, **heads)
    dst = Path(dst)
    model.save_pretrained(dst, safe_serialization=True)
    _copy(Path(src), dst, TOKENIZER_EXTRAS)
    return dst


def convert_image_reward(src: str | Path, dst: str | Path) -> Path:
    """ImageReward.pt + med_config.json (+ vocab.txt) -> config.json + model.safetensors + vocab.txt."""
    from safetensors.torch import save_file

    from vgrpo.rewards.image_reward import CONVERTED_FILES, TOKENIZER_FILE, load_image_reward

    model, _ = load_image_reward(src)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(dst)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(dst / CONVERTED_FILES[1]), metadata={"format": "pt"})
    _copy(Path(src), dst, (TOKENIZER_FILE,) + TOKENIZER_EXTRAS)
    return dst


def _copy(src: Path, dst: Path, names) -> None:
    for name in names:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


CONVERTERS = {"hpsv2": convert_hpsv2, "imagereward": convert_image_reward}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reward", choices=sorted(CONVERTERS))
    parser.add_argument("src", help="directory with the original checkpoint and tokenizer files")
    parser.add_argument("dst", help="output directory (created)")
    args = parser.parse_args(argv)
    if Path(args.dst).resolve() == Path(args.src).resolve():
        parser.error("dst must differ from src")
    out = CONVERTERS[args.reward](args.src, args.dst)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
