"""The Fashion-MNIST classifier: task accuracy and the feature network of FD-cls / KID-cls.

A small VGG-style CNN (two conv stages with batch norm, a 128-d penultimate feature layer). It
serves (1) machine-centric task accuracy on reconstructions, (2) classifier guidance
λ∇ log p(c | x̂0) in the receivers, and (3) the feature space of the Fréchet distance and kernel
inception-style distance that diffcomm reports as **FD-cls** and **KID-cls** — these use *our*
classifier's features, not Inception-v3, so they are not FID/KID and are not comparable with
published FID numbers.

Example:
    >>> net = Classifier()
    >>> logits, feats = net(torch.rand(2, 1, 28, 28), return_features=True)
    >>> tuple(logits.shape), tuple(feats.shape)
    ((2, 10), (2, 128))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffcomm.checks import bounds, dataclass_from_dict
from diffcomm.training import TrainConfig, batch_indices, seeded_init, shard, train, validate_training_config


@dataclass
class ClassifierConfig:
    in_channels: int = field(default=1, metadata=bounds(choices=(1, 3)))
    num_classes: int = field(default=10, metadata=bounds(2, 100_000))
    width: int = field(default=32, metadata=bounds(1, 1024))
    feature_dim: int = field(default=128, metadata=bounds(1, 16384))
    dropout: float = field(default=0.3, metadata=bounds(0, 1, high_open=True))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        return dataclass_from_dict(cls, d, "[model]")


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class Classifier(nn.Module):
    """CNN classifier over pixels in [0, 1]; ``forward(x, return_features=False)``."""

    def __init__(self, config: ClassifierConfig | None = None, **kwargs):
        super().__init__()
        cfg = config or ClassifierConfig(**kwargs)
        self.config = cfg
        w = cfg.width
        self.features = nn.Sequential(_stage(cfg.in_channels, w), _stage(w, 2 * w),
                                      nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                                      nn.Linear(2 * w * 9, cfg.feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        feats = self.features((x - 0.5) / 0.5)
        logits = self.head(self.dropout(feats))
        return (logits, feats) if return_features else logits


@torch.no_grad()
def predict(net: Classifier, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and features for pixels ``x`` (B, C, H, W) in [0, 1], batched, in eval mode."""
    net.eval()
    logits, feats = [], []
    for i in range(0, len(x), batch_size):
        lo, fe = net(x[i:i + batch_size].float(), return_features=True)
        logits.append(lo)
        feats.append(fe)
    return torch.cat(logits), torch.cat(feats)


def accuracy(net: Classifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``net`` on pixels ``x`` against integer ``labels``."""
    logits, _ = predict(net, x)
    return float((logits.argmax(1) == labels).float().mean())


class ClassifierTask:
    """Cross-entropy training with random horizontal flips and ±2-pixel shifts."""

    def __init__(self, images, labels, test_images, test_labels, cfg: ClassifierConfig,
                 batch_size: int, seed: int):
        with seeded_init(seed):
            self.model = Classifier(cfg)
        self.images, self.labels = images, labels
        self.test_images, self.test_labels = test_images, test_labels
        self.batch_size, self.seed = batch_size, seed

    def loss(self, model: Classifier, step: int, generator: torch.Generator) -> torch.Tensor:
        idx = batch_indices(len(self.images), self.batch_size, self.seed, step)
        x = self.images[idx]
        flip = torch.rand(len(idx), generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        dx, dy = torch.randint(-2, 3, (2,), generator=generator).tolist()
        x = torch.roll(F.pad(x, (2, 2, 2, 2)), shifts=(dy, dx), dims=(2, 3))[..., 2:-2, 2:-2]
        x, labels = shard(x, self.labels[idx])  # this rank's slice under data-parallel training
        return F.cross_entropy(model(x), labels, label_smoothing=0.05)

    def snapshot(self, ema: Classifier, step: int, out_dir: Path) -> dict[str, Any]:
        return {"test_accuracy": accuracy(ema, self.test_images, self.test_labels)}


def run_classifier_training(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """``diffcomm train classifier --config FILE``: train and report test accuracy."""
    from diffcomm.data import get_dataset

    validate_training_config("classifier", config)  # the one schema, before any work
    model_cfg = ClassifierConfig.from_dict(config.get("model", {}))
    train_cfg = TrainConfig.from_dict(config.get("train", {}))
    dataset = config.get("data", {}).get("dataset", "fashion-mnist")
    x, y = get_dataset(dataset, "train")[:2]
    xt, yt = get_dataset(dataset, "test")[:2]
    task = ClassifierTask(x, y, xt, yt, model_cfg, train_cfg.batch_size, train_cfg.seed)
    run_config = {"kind": "classifier", "name": config.get("name", "classifier"),
                  "model": model_cfg.to_dict(), "data": {"dataset": dataset, "n_train": len(x),
                                                         "n_test": len(xt)}}
    return train(task, train_cfg, out_dir, run_config=run_config, progress=progress)
