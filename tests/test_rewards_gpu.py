"""CUDA checks of the model rewards (`-m gpu`), and comparisons with the original packages when they import.

- device path: the transform and all five rewards on CUDA agree with the CPU run;
- originals: HPSv2's vendored open_clip CLIP (`hpsv2.src.open_clip.model.CLIP`) and ImageReward's
  BLIP modules (`ImageReward.models.BLIP.vit` / `.med`, `ImageReward.ImageReward.MLP`) load the tiny
  original-format checkpoints and must score as the transformers ports do; torchvision's own
  Resize / CenterCrop must match the device transform. Each is skipped when its package is absent.
"""

import json

import pytest
import torch

from tests.conftest import requires_cuda
from tests import original_image_reward
from tests.original_hpsv2 import tokenize
from tests.tiny_reward_models import tiny_hpsv2_dir, tiny_image_reward_dir
from vgrpo.rewards.hpsv2 import CHECKPOINT as HPS_CHECKPOINT
from vgrpo.rewards.hpsv2 import HPSv2Reward
from vgrpo.rewards.image_reward import CHECKPOINT as IR_CHECKPOINT
from vgrpo.rewards.image_reward import MAX_PROMPT_TOKENS, MED_CONFIG, ImageRewardReward

pytestmark = [pytest.mark.gpu, requires_cuda]
PROMPTS = ["a red circle", "two blue squares", "", "a green triangle left of a red circle"]


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, 3, 61, 47, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cls,root", [(HPSv2Reward, tiny_hpsv2_dir), (ImageRewardReward, tiny_image_reward_dir)])
def test_cuda_scores_match_cpu_and_preprocessing_stays_on_the_gpu(cls, root, images):
    cpu = cls(root())(images, PROMPTS)
    reward = cls(root(), device="cuda")
    gpu_images = images.cuda()
    assert reward.transform(gpu_images).device.type == "cuda"
    torch.testing.assert_close(reward(gpu_images, PROMPTS), cpu, atol=1e-4, rtol=1e-4)
    bf16 = cls(root(), device="cuda", dtype=torch.bfloat16)(gpu_images, PROMPTS)
    torch.testing.assert_close(bf16, cpu, atol=5e-2, rtol=0)


def test_hpsv2_equals_the_hpsv2_package(images):
    model_mod = pytest.importorskip("hpsv2.src.open_clip.model")
    reward = HPSv2Reward(tiny_hpsv2_dir(), device="cuda")
    vocab = len(reward.tokenizer.get_vocab())
    clip = model_mod.CLIP(
        32,
        vision_cfg=dict(image_size=32, layers=2, width=128, head_width=64, patch_size=8),
        text_cfg=dict(context_length=77, vocab_size=vocab, width=128, heads=2, layers=2),
    )
    clip.load_state_dict(torch.load(tiny_hpsv2_dir() / HPS_CHECKPOINT, weights_only=True)["state_dict"])
    clip = clip.cuda().eval()
    pixels = reward.transform(images.cuda())
    with torch.no_grad():
        out = clip(pixels, tokenize(reward.tokenizer, PROMPTS).cuda())
    expected = torch.diagonal(out["image_features"] @ out["text_features"].T if isinstance(out, dict) else out[0] @ out[1].T)
    torch.testing.assert_close(reward(images.cuda(), PROMPTS), expected.float().cpu(), atol=1e-4, rtol=1e-4)


def test_image_reward_equals_the_image_reward_package(images):
    vit = pytest.importorskip("ImageReward.models.BLIP.vit")
    med = pytest.importorskip("ImageReward.models.BLIP.med")
    head = pytest.importorskip("ImageReward.ImageReward")
    root = tiny_image_reward_dir()
    cfg = json.loads((root / MED_CONFIG).read_text())
    state = torch.load(root / IR_CHECKPOINT, weights_only=True)
    visual = vit.VisionTransformer(img_size=32, patch_size=8, embed_dim=128, depth=2, num_heads=2)
    text = med.BertModel(config=med.BertConfig(**dict(cfg, encoder_width=128)), add_pooling_layer=False)
    mlp = head.MLP(cfg["hidden_size"])
    for module, prefix in ((visual, "blip.visual_encoder."), (text, "blip.text_encoder."), (mlp, "mlp.")):
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        module.cuda().eval()
    reward = ImageRewardReward(root, device="cuda")
    tokens = reward.tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=MAX_PROMPT_TOKENS,
                              return_tensors="pt").to("cuda")
    with torch.no_grad():
        embeds = visual(reward.transform(images.cuda()))
        atts = torch.ones(embeds.shape[:-1], dtype=torch.long, device="cuda")
        out = text(tokens.input_ids, attention_mask=tokens.attention_mask, encoder_hidden_states=embeds,
                   encoder_attention_mask=atts, return_dict=True)
        raw = mlp(out.last_hidden_state[:, 0, :].float())
    # ImageReward.__init__ sets these (it builds BLIP-L and downloads a tokenizer, so it is not called here)
    expected = ((raw - original_image_reward.SCORE_MEAN) / original_image_reward.SCORE_STD).squeeze(1)
    torch.testing.assert_close(reward(images.cuda(), PROMPTS), expected.cpu(), atol=1e-4, rtol=1e-4)


def test_device_transform_equals_torchvision_on_tensors(images):
    tv = pytest.importorskip("torchvision.transforms")
    from vgrpo.rewards.hpsv2 import hpsv2_transform

    x = ((images * 255).round() / 255).cuda()
    pipeline = tv.Compose([
        tv.Resize(32, interpolation=tv.InterpolationMode.BICUBIC, antialias=True), tv.CenterCrop(32),
        tv.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ])
    torch.testing.assert_close(hpsv2_transform(32)(x), pipeline(x), atol=1e-5, rtol=1e-5)
