"""The pieces of a step that need no model: dropout partition, forward process,
augmentation geometry, data order."""
import random
import types

import torch
from diffusers import DDPMScheduler

from nest_torch.config import TrainingOptions
from nest_torch.data import augment, latent_weights, sample_rng
from nest_torch.step import add_noise, dropout
from nest_torch.train import global_batch


def test_dropout_partition_matches_the_probabilities():
    o = TrainingOptions.from_dict({"drop_image": 0.1, "drop_text": 0.2, "drop_both": 0.3})
    draws = [dropout((i + 0.5) / 10000, o) for i in range(10000)]
    share = lambda case: sum(d == case for d in draws) / len(draws)
    assert abs(share((True, False)) - 0.1) < 1e-3 and abs(share((False, True)) - 0.2) < 1e-3
    assert abs(share((True, True)) - 0.3) < 1e-3 and abs(share((False, False)) - 0.4) < 1e-3


def test_forward_process_and_velocity_are_diffusers():
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([0, 500, 999])
    for velocity in (False, True):
        base = types.SimpleNamespace(alphas_cumprod=lambda ts: scheduler.alphas_cumprod[ts], predicts_velocity=velocity)
        noisy, target = add_noise(base, z0, eps, t)
        assert torch.allclose(noisy, scheduler.add_noise(z0, eps, t), atol=1e-6)
        assert torch.allclose(target, scheduler.get_velocity(z0, eps, t) if velocity else eps, atol=1e-6)


def test_augmentation_geometry():
    image = torch.rand(3, 16, 16)
    same, flipped = augment(image, 16, random.Random(0), crop_scale=(1, 1), crop_ratio=(1, 1), flip=False, jitter=0)
    assert not flipped and torch.allclose(same, image, atol=1e-6)
    mirror, _ = augment(image, 16, random.Random(0), crop_scale=(1, 1), crop_ratio=(1, 1), jitter=0, flipped=True)
    assert torch.allclose(mirror, image.flip(-1), atol=1e-6)
    half, _ = augment(image, 8, random.Random(0), crop_scale=(1, 1), crop_ratio=(1, 1), flip=False, jitter=0)
    assert torch.allclose(half, torch.nn.functional.avg_pool2d(image[None], 2)[0], atol=1e-6)  # centres between 2x2 pixels
    jittered, _ = augment(image, 16, random.Random(1))
    assert jittered.shape == (3, 16, 16) and 0 <= jittered.min() and jittered.max() <= 1


def test_latent_weights_follow_the_mask():
    mask = torch.zeros(3, 16, 16)
    mask[:, :, :8] = 1
    w = latent_weights(mask, (2, 2), 5.0)
    assert torch.equal(w, torch.tensor([[[5.0, 1.0], [5.0, 1.0]]]))


def test_data_order_and_per_sample_randomness():
    order = [i for step in range(3) for i in global_batch(step, 4, 6, seed=2)]
    assert sorted(order[:6]) == list(range(6)) and sorted(order[6:12]) == list(range(6)), "each epoch visits every sample once"
    assert sample_rng(1, 2, 3).random() == sample_rng(1, 2, 3).random() != sample_rng(1, 2, 4).random()
