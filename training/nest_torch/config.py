"""The run configuration and the JSON-lines manifest of `nest train adapter`,
read with the same keys, defaults and checks as
Sources/NestTraining/{AdapterTrainingRun,AdapterTrainer,Manifest}.swift
(one schema for both trainers; see docs/training-at-scale.md)."""
import json
import os
from dataclasses import dataclass, field, fields

KINDS = ("nested", "ip-adapter", "single-token")


def check_nested_value(value, kind, key):
    """`nested_value`: replace (the paper's form, the default) or add, for nested adapters only."""
    if value is None:
        return
    if value not in ("replace", "add"):
        raise ValueError(f'{key} must be "replace" or "add", got {value!r}')
    if kind != "nested":
        raise ValueError(f'{key} "{value}" applies to nested adapters only, not "{kind}"')


@dataclass
class TrainingOptions:
    """`training` of the run config. Defaults: the IP-Adapter SDXL recipe the
    paper's authors build on (AdamW 1e-4, weight decay 1e-2, 5% dropped image,
    text, both)."""
    resolution: int = 64
    batch_size: int = 4
    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    steps: int = 1000
    schedule: str = "constant"
    gradient_clip: float = 1.0
    gradient_accumulation: int = 1
    ema: float = None
    drop_image: float = 0.05
    drop_text: float = 0.05
    drop_both: float = 0.05
    seed: int = 0
    flip_targets: bool = True
    subject_loss_weight: float = 1.0
    timestep_range: list = None

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        if d.get("unet_learning_rate") is not None:
            # A Swift key this recipe does not implement: said as such, not as a misspelling.
            raise ValueError("training.unet_learning_rate: this recipe trains the adapter on a frozen UNet; "
                             "`nest train adapter` trains the UNet with it")
        refuse_unknown("training", set(d) - known - {"unet_learning_rate"}, known)
        # Like the Swift decoder: an absent key or a JSON null keeps the default
        # (except ema and timestep_range, whose default is null: off).
        options = cls(**{k: v for k, v in d.items() if k in known and v is not None})
        options.check()
        return options

    def check(self):
        r = self.timestep_range
        if r is not None and (len(r) != 2 or r[0] < 0 or r[0] >= r[1]):
            raise ValueError(f"training: timestep_range must be [lower, upper] with 0 <= lower < upper, got {r}")
        if min(self.resolution, self.batch_size, self.steps, self.gradient_accumulation) <= 0:
            raise ValueError("training: resolution, batch_size, steps and gradient_accumulation must be positive")
        if self.subject_loss_weight <= 0:
            raise ValueError("training: subject_loss_weight must be positive")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"training: schedule must be constant or cosine, got {self.schedule}")

    def rate(self, update):
        return scheduled_rate(self, update)


def scheduled_rate(options, update):
    """Learning rate of optimizer update `update` (0-based) for `options` with learning_rate,
    warmup_steps, steps and schedule: LearningRateSchedule.swift (linear warmup, then constant
    or cosine decay to 0 at `steps`)."""
    import math
    if options.warmup_steps > 0 and update < options.warmup_steps:
        return options.learning_rate * (update + 1) / options.warmup_steps
    if options.schedule == "constant":
        return options.learning_rate
    span = max(1, options.steps - options.warmup_steps)
    progress = min(1.0, (update - options.warmup_steps) / span)
    return options.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def refuse_unknown(where, keys, known):
    """As the Swift trainer: an unknown or misspelled key is an error naming it, with the
    nearest known key when one is close (`training: unknown key "lerning_rate"
    (did you mean "learning_rate"?)`)."""
    import difflib
    for key in sorted(keys):
        near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
        hint = f' (did you mean "{near[0]}"?)' if near else ""
        raise ValueError(f'{where}: unknown key "{key}"{hint}')


@dataclass
class RunConfig:
    model: str
    data: str
    output: str
    adapter: dict
    training: TrainingOptions
    checkpoint_every: int = 200
    log_every: int = 10
    sample_every: int = None
    bad_records: str = "skip"
    validation_batches: int = None
    folder: str = field(default=".", repr=False)

    def resolve(self, path):
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(self.folder, path))


def load_run_config(path):
    """Reads a `nest train adapter` config; relative paths are relative to the config file."""
    with open(path) as f:
        d = json.load(f)
    missing = [k for k in ("model", "data", "output", "adapter") if k not in d]
    if missing:
        raise ValueError(f"{path}: missing {missing}")
    spec = d["adapter"]
    for key in ("placeholder_token", "class_word", "resampler"):
        if key not in spec:
            raise ValueError(f"{path}: adapter.{key} is required")
    if spec.get("kind", "nested") not in KINDS:
        raise ValueError(f"{path}: adapter.kind must be one of {KINDS}")
    try:
        check_nested_value(spec.get("nested_value"), spec.get("kind", "nested"), "adapter.nested_value")
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    for key in ("width", "depth", "heads", "queries"):
        if key not in spec["resampler"]:
            raise ValueError(f"{path}: adapter.resampler.{key} is required")
    top = {"model", "data", "output", "adapter", "training", "checkpoint_every", "log_every",
           "sample_every", "bad_records", "validation_batches"}
    refuse_unknown(path, set(d) - top, top)
    config = RunConfig(model=d["model"], data=d["data"], output=d["output"], adapter=spec,
                       training=TrainingOptions.from_dict(d.get("training", {})),
                       folder=os.path.dirname(os.path.abspath(path)))
    for key in ("checkpoint_every", "log_every", "sample_every", "bad_records", "validation_batches"):
        if d.get(key) is not None:
            setattr(config, key, d[key])
    if config.bad_records not in ("skip", "fail"):
        raise ValueError(f"{path}: bad_records must be skip or fail")
    return config


@dataclass
class Sample:
    line: int
    image: str
    caption: str
    references: list
    mask: str = None


def read_manifest(path, placeholder, policy="skip"):
    """(samples, problems): every record that cannot be used is reported with its line, never dropped silently."""
    return read_records(path, lambda line, number, resolve: _parse(line, number, resolve, placeholder), policy)


def read_records(path, parse, policy="skip"):
    """(items, problems) of a JSON-lines manifest: `parse(line, number, resolve)` makes an
    item or raises ValueError, which is reported with the line (`policy` "fail": raised);
    blank lines and # comments are skipped; paths resolve relative to the manifest."""
    folder = os.path.dirname(os.path.abspath(path))
    resolve = lambda p: p if os.path.isabs(p) else os.path.join(folder, p)
    items, problems = [], []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                items.append(parse(line, number, resolve))
            except ValueError as problem:
                if policy == "fail":
                    raise ValueError(f"{path}: line {number}: {problem}") from None
                problems.append((number, str(problem)))
    if not items:
        first = f" ({len(problems)} bad records, first: line {problems[0][0]}: {problems[0][1]})" if problems else ""
        raise ValueError(f"{path}: no usable samples{first}")
    return items, problems


def image_record(line):
    """A manifest line as a JSON object with a string "image" and "caption", or ValueError."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if not isinstance(record.get("image"), str):
        raise ValueError('missing "image"')
    if not isinstance(record.get("caption"), str):
        raise ValueError('missing "caption"')
    return record


def _parse(line, number, resolve, placeholder):
    record = image_record(line)
    if placeholder not in record["caption"]:
        raise ValueError(f'caption "{record["caption"]}" does not contain the placeholder {placeholder}')
    references = record.get("references") or []
    if not references:
        raise ValueError('no "references" for a personalization sample')
    if record["image"] in references:
        raise ValueError(f"a reference is the target image itself ({record['image']})")
    files = [record["image"]] + references + ([record["mask"]] if record.get("mask") else [])
    for file in files:
        if not os.path.isfile(resolve(file)):
            raise ValueError(f"missing file {resolve(file)}")
    return Sample(number, resolve(record["image"]), record["caption"], [resolve(r) for r in references],
                  resolve(record["mask"]) if record.get("mask") else None)
