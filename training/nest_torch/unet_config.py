"""The run configuration of `nest train unet`, read with the same keys, defaults
and checks as Sources/NestTraining/BaseRunConfig.swift (one schema for both
trainers; see docs/training-at-scale.md), and its manifest of {"image",
"caption", "mask"} records."""
import json
import math
import os
from dataclasses import dataclass, field, fields

from .config import image_record, read_records, refuse_unknown, scheduled_rate

# Keys a `nest train vae` run reads: said as such, not as misspellings.
VAE_ONLY = ("kl_weight", "logvar_shift")


@dataclass
class UNetRunConfig:
    model: str
    data: str
    output: str
    resolution: int = 64
    batch_size: int = 4
    steps: int = 1000
    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    schedule: str = "constant"
    gradient_clip: float = 1.0
    seed: int = 0
    caption_dropout: float = 0.1
    checkpoint_every: int = 500
    log_every: int = 20
    flip: bool = True
    sample_every: int = None
    attention_localization: dict = None
    loss_weighting: str = "uniform"
    snr_gamma: float = None
    ema: float = None
    ema_warmup: bool = False
    validation_data: str = None
    precision: str = None
    folder: str = field(default=".", repr=False)

    def resolve(self, path):
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(self.folder, path))

    @property
    def gamma(self):
        """γ of min-SNR weighting (None: uniform)."""
        return (self.snr_gamma or 5.0) if self.loss_weighting == "min_snr" else None

    def rate(self, update):
        return scheduled_rate(self, update)

    def ema_decay(self, update):
        """Decay of the moving average at update `update` (1 for the first), ExponentialMovingAverage.swift's."""
        if not self.ema_warmup:
            return self.ema
        n = max(update, 1)
        return min(self.ema, (1 + n) / (10 + n))

    def check(self):
        def number(key, ok, wanted):
            value = getattr(self, key)
            if value is None:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise ValueError(f"{key} must be {wanted}, got {value!r}")

        for key in ("model", "data", "output"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"{key} must be a non-empty string")
        for key in ("resolution", "batch_size", "steps", "warmup_steps", "checkpoint_every", "log_every", "sample_every", "seed"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{key} must be a whole number, got {value!r}")
        number("resolution", lambda v: 8 <= v <= 8192, "between 8 and 8192")
        for key in ("batch_size", "steps", "checkpoint_every", "log_every", "sample_every"):
            number(key, lambda v: v >= 1, "at least 1")
        number("warmup_steps", lambda v: v >= 0, "at least 0")
        number("seed", lambda v: v >= 0, "at least 0")
        number("learning_rate", lambda v: v > 0, "a number > 0")
        number("weight_decay", lambda v: v >= 0, "a number >= 0")
        number("gradient_clip", lambda v: v > 0, "a number > 0")
        number("caption_dropout", lambda v: 0 <= v <= 1, "between 0 and 1")
        number("ema", lambda v: 0 <= v < 1, "at least 0 and below 1")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be constant or cosine, got {self.schedule!r}")
        if self.loss_weighting not in ("uniform", "min_snr"):
            raise ValueError(f'loss_weighting must be "uniform" or "min_snr", got {self.loss_weighting!r}')
        if self.snr_gamma is not None:
            if self.loss_weighting != "min_snr":
                raise ValueError(f'snr_gamma ({self.snr_gamma}) is for "loss_weighting": "min_snr", the run\'s weighting is uniform')
            number("snr_gamma", lambda v: v > 0, "a finite number > 0")
        if self.ema_warmup and self.ema is None:
            raise ValueError('ema_warmup needs "ema" (the decay it ramps up to)')
        if self.precision not in (None, "fp32", "bf16"):
            raise ValueError(f'precision must be "fp32" or "bf16", got {self.precision!r}')
        a = self.attention_localization
        if a is not None:
            if not isinstance(a, dict):
                raise ValueError("attention_localization must be an object {\"weight\": w, \"words\": [...]}")
            refuse_unknown("attention_localization", set(a) - {"weight", "words"}, {"weight", "words"})
            w = a.get("weight")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"attention_localization.weight must be a number >= 0, got {w!r}")
            words = a.get("words")
            if not isinstance(words, list) or not words or not all(isinstance(x, str) and x for x in words):
                raise ValueError("attention_localization.words must name at least one word")
            if self.flip:
                raise ValueError('attention_localization needs "flip": false (the masks are not mirrored with the images)')


def load_unet_config(path):
    """Reads a `nest train unet` config; relative paths are relative to the config file."""
    with open(path) as f:
        d = json.load(f)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a run config is a JSON object")
    missing = [k for k in ("model", "data", "output") if k not in d]
    if missing:
        raise ValueError(f"{path}: missing {missing}")
    for key in VAE_ONLY:
        if key in d:
            raise ValueError(f"{path}: {key} is a `nest train vae` key; this recipe trains the UNet")
    known = {f.name for f in fields(UNetRunConfig)} - {"folder"}
    refuse_unknown(path, set(d) - known, known)
    # Like the Swift decoder: an absent key or a JSON null keeps the default.
    config = UNetRunConfig(**{k: v for k, v in d.items() if v is not None},
                           folder=os.path.dirname(os.path.abspath(path)))
    try:
        config.check()
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return config


@dataclass
class ImageRecord:
    line: int
    image: str
    caption: str
    mask: str = None


def read_image_manifest(path, need_masks=False):
    """(records, problems) of a {"image", "caption", "mask"?} manifest; a record that
    cannot be used is reported with its line, never dropped silently."""
    def parse(line, number, resolve):
        record = image_record(line)
        if need_masks and not isinstance(record.get("mask"), str):
            raise ValueError('attention_localization needs a "mask" in every record')
        for file in [record["image"]] + ([record["mask"]] if need_masks else []):
            if not os.path.isfile(resolve(file)):
                raise ValueError(f"missing file {resolve(file)}")
        return ImageRecord(number, resolve(record["image"]), record["caption"],
                           resolve(record["mask"]) if need_masks else None)
    return read_records(path, parse)
