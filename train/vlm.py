"""Fine-tune any registered VLM family with LoRA (CPU, fp32) or QLoRA (CUDA, 4-bit nf4), then evaluate it.

    python -m train.vlm --model medvlm-tiny      # the shipped MedVLM-Tiny: VQA-RAD + label questions (DataArguments.data)
    python -m train.vlm --model llava-1.5-7b --data flaviagiammarino/path-vqa --eval_split test   # QLoRA on a GPU
    accelerate launch -m train.vlm --model midefics --data conversations.jsonl --eval_split none  # several GPUs
    accelerate launch --multi_gpu --num_processes 2 -m train.vlm --model medvlm-tiny   # two CPU processes (gloo)

The loss covers only the assistant's answer tokens (prompt, image and user turns are masked) and each answer ends
with the family's end-of-turn token, so the tuned model stops by itself. The run folder gets config.json (arguments
and what they resolved to), checkpoint/ (for --resume), adapter/ (a standard PEFT adapter; for MedVLM-Tiny it holds
the projector too; load it with `python app.py --model NAME --adapter RUN/adapter`), and eval.json +
predictions.jsonl from the held-out split.
"""
import hashlib
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from transformers import HfArgumentParser

from medvlm import cli, grounding, labels, metrics, models, packing, stats
from medvlm.chat import GenerationSettings
from medvlm.data import Example, load_examples, parse_mixture
from medvlm.errors import UserFacingError
from medvlm.images import load_image
from medvlm.predict import TOKEN_ALIGNED, concat_images
from medvlm.settings import EVAL_MAX_NEW_TOKENS, IGNORE_INDEX, MAX_NEW_TOKENS_LIMIT, PACK_SIZE, QUANTIZE_CHOICES


def arg(default, help: str, **kwargs):
    """A dataclass field whose help text `python -m train.vlm --help` prints (HfArgumentParser reads the metadata)."""
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class ModelArguments:
    model: str = arg("medvlm-tiny", "registry name, local folder or hub id")
    quantize: str = arg("auto", "auto: QLoRA (nf4) for the 7B/9B models on CUDA; none: plain LoRA", choices=QUANTIZE_CHOICES)


@dataclass
class DataArguments:
    data: str = arg(
        "../shared/data/vqa-rad/vqa_rad.jsonl@2,labels:../shared/data/brain-tumor/data.yaml,"
        "labels:../shared/data/vqa-rad/vqa_rad.jsonl@3,labels:../shared/data/isic/isic_ham10000_sample.jsonl@2",
        "a mixture SOURCE[@WEIGHT],...: JSONL, image folder with metadata.jsonl, hub dataset id, or labels:PATH "
        "(questions from image labels). The first source's eval split gives the headline scores; every labels: source "
        "is also scored on its held-out images (per task), and closed questions again with swapped images")
    train_split: str = arg("train", "split to train on")
    eval_split: str = arg("test", 'split of the first source for the final evaluation; "none" skips it')
    short_answer: bool = arg(True, 'append "Answer with a single word or phrase." in train and eval prompts')
    skip_bad: bool = arg(False, "skip and count bad records instead of stopping")
    limit: int | None = arg(None, "use only the first N training records")
    eval_limit: int | None = arg(None, "evaluate only the first N held-out records")
    augment: bool = arg(True, "a new random shift, zoom, tilt and contrast of each training image every time it is drawn")
    follow_ups: float = arg(0.0, "share of the training questions asked as a conversation's second turn, after another "
                            "question about the same image and its answer (python bench/follow_up.py measures why)")


@dataclass
class LoraArguments:
    lora_r: int = arg(16, "LoRA rank")
    lora_alpha: int = arg(32, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = arg(0.05, "LoRA dropout")
    lora_target: str = arg("", "regular expression of the module names LoRA adapts; empty: the family's (its language "
                               "model's attention projections), e.g. MedVLM-Tiny's MLPs as well: "
                               r"'.*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)'")


@dataclass
class TrainArguments:
    output_dir: str = arg("runs/vlm", "run folder: config.json, checkpoint/, adapter/, eval.json, predictions.jsonl")
    epochs: float = arg(2.0, "passes over the training mixture")
    max_steps: int = arg(-1, "> 0 overrides --epochs")
    batch_size: int = arg(2, "rows per step; a row packs up to --pack_size examples about one image")
    pack_size: int = arg(PACK_SIZE, "examples packed in one row (1: no packing)")
    grad_accum: int = arg(1, "steps whose gradients are summed before an update")
    lr: float | None = arg(None, "LoRA learning rate; default: the family's (1e-3 for MedVLM-Tiny, 2e-4 for the 7B/9B models)")
    projector_lr: float = arg(1e-3, "learning rate of modules trained in full (MedVLM-Tiny's fresh projector)")
    # The ImageNet features of grey medical scans share a large common part that would drown what tells them apart.
    standardize_projector: bool = arg(True, "start a fresh projector as if its inputs were standardised per vision "
                                            "channel over the training images")
    warmup_ratio: float = arg(0.03, "share of the steps spent warming the learning rate up")
    seed: int = arg(0, "random seed")
    save_steps: int = arg(100, "save a checkpoint (for --resume) every N steps")
    resume: bool = arg(False, "continue from the run folder's checkpoint")
    init_adapter: str | None = arg(None, "train on from this adapter (a train.vlm adapter/ folder of the same model: "
                                         "its LoRA, rank and projector) instead of a fresh one; the schedule starts anew")
    gradient_checkpointing: bool | None = arg(None, "default: on when quantised")
    eval_batch_size: int = arg(16, "questions per batch in the final evaluation")
    max_new_tokens: int = arg(EVAL_MAX_NEW_TOKENS, "answer length cap in the final evaluation")


def check_arguments(data: DataArguments, lora: LoraArguments, train: TrainArguments) -> str | None:
    """What is out of range, in one line; None when all is well."""
    problems = [name for name, bad in (
        ("--limit", data.limit is not None and data.limit < 1), ("--eval_limit", data.eval_limit is not None and data.eval_limit < 1),
        ("--follow_ups", not 0 <= data.follow_ups <= 1),
        ("--lora_r", lora.lora_r < 1), ("--lora_alpha", not 0 < lora.lora_alpha < math.inf), ("--lora_dropout", not 0 <= lora.lora_dropout < 1),
        ("--epochs", not 0 < train.epochs < math.inf and train.max_steps <= 0), ("--batch_size", train.batch_size < 1),
        ("--pack_size", train.pack_size < 1), ("--grad_accum", train.grad_accum < 1), ("--lr", train.lr is not None and not 0 < train.lr < math.inf),
        ("--projector_lr", not 0 < train.projector_lr < math.inf), ("--warmup_ratio", not 0 <= train.warmup_ratio < 1),
        ("--save_steps", train.save_steps < 1), ("--eval_batch_size", train.eval_batch_size < 1),
        ("--max_new_tokens", not 1 <= train.max_new_tokens <= MAX_NEW_TOKENS_LIMIT)) if bad]
    if problems:
        return f"out of range: {', '.join(problems)} (see --help)"
    try:
        re.compile(lora.lora_target)
    except re.error as e:
        return f"--lora_target: not a regular expression ({e})"
    # The adapter trained on keeps its own rank, alpha and dropout: other values would be silently ignored.
    defaults = asdict(LoraArguments())
    reshaped = [f"--{name}" for name, value in asdict(lora).items() if value != defaults[name]]
    if train.init_adapter and reshaped:
        return f"{', '.join(reshaped)}: --init_adapter trains on the adapter's own LoRA shape; leave them out"
    return None


class ImagePackedDataset(torch.utils.data.Dataset):
    """Training rows that each pack up to max_branches examples about one image (medvlm.packing): VQA-RAD's ~6
    questions per image train ~2.5x faster than one per row, with the same logits. Families whose processor output
    can't be cut into branches (IDEFICS' per-token image attention) get rows of one example. Encodings are computed
    once and kept, not redone every epoch; with augment only the image's pixel_values are made anew per draw.
    """

    def __init__(self, loaded: models.LoadedModel, sources: list[tuple[list[Example], float]], short_answer: bool,
                 max_branches: int, augment: bool, follow_ups: float):  # no defaults of their own: DataArguments' are the ones
        """sources: (examples, weight) per mixture part. A source's rows are drawn weight times per epoch: whole
        repeats, then a fixed hash-chosen share of its rows for the fraction. follow_ups: the share of one-turn
        examples that become a row's second turn (with_follow_ups)."""
        self.loaded, self.short_answer = loaded, short_answer
        self.augment = image_augmentation() if augment else None
        if not loaded.family.packable:
            max_branches = 1
        self.packs, self.order = [], []  # order: the pack drawn at each dataset index
        for number, (examples, weight) in enumerate(sources):
            first = len(self.packs)
            self.packs += [with_follow_ups([examples[i] for i in row], follow_ups)
                           for row in packing.rows_by_image([e.image_key for e in examples], max_branches)]
            indices = range(first, len(self.packs))
            whole, fraction = divmod(weight, 1)
            self.order += [i for _ in range(int(whole)) for i in indices]
            self.order += [i for i in indices if labels.stable_fraction(str(number), str(i)) < fraction]
        self.encoded: dict[int, dict] = {}

    def __len__(self):
        return len(self.order)

    def __getitem__(self, position):
        index = self.order[position]
        if index not in self.encoded:
            group = self.packs[index]
            image = group[0].image()
            items = [encode_with_labels(self.loaded, [(self.loaded.family.ask(q, self.short_answer), a) for q, a in e.turns], image) for e in group]
            self.encoded[index] = packing.pack(items)
        if self.augment is None:
            return self.encoded[index]
        # A new view of the image per draw; the family's own encoder gives its pixel_values layout (tokens unused).
        first = self.packs[index][0]
        view = self.augment(first.image().convert("RGB"))
        pixels = self.loaded.family.encode(self.loaded.processor, first.turns[:1], view)["pixel_values"]
        return self.encoded[index] | {"pixel_values": pixels}


def with_follow_ups(row: list[Example], share: float) -> list[Example]:
    """A hash-chosen share of a row's one-turn examples asked as the second turn of a conversation, after another
    example's question about the same image and its answer (both answers trained). Trained on first questions only,
    MedVLM-Tiny lost the image behind an earlier turn: presence right 97.2 % asked alone, 68.1 % after "What kind of
    scan is this?" (python bench/follow_up.py, the shipped adapter)."""
    if share <= 0 or len(row) < 2:
        return row
    out = []
    for number, example in enumerate(row):
        if len(example.turns) == 1 and labels.stable_fraction(example.id, example.question, "follow-up") < share:
            lead = labels.pick(row[:number] + row[number + 1:], example.id, example.question, "lead")
            example = replace(example, turns=lead.turns[:1] + example.turns)
        out.append(example)
    return out


def image_augmentation():
    """A mild random view of a medical image. No flips: left and right are answers in radiology ("which lung?")."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomAffine(degrees=8, translate=(0.06, 0.06), scale=(0.9, 1.12)),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
    ])


def encode_with_labels(loaded: models.LoadedModel, turns: list[tuple[str, str]], image) -> dict:
    """Processor outputs for the whole conversation, plus labels that are IGNORE_INDEX everywhere but the answers.

    Answer spans come from token positions (prefix lengths), not from pad or eos ids: when pad == eos, masking by id
    would also drop each answer's own end-of-turn token. A span ends at the answer's end-of-turn token: what a
    template writes after it (a newline) is not the answer's. Token-aligned tensors lose the batch axis of one; image
    tensors keep theirs (Qwen2.5-VL's pixel_values have none), for collate to concatenate.
    """
    family, processor = loaded.family, loaded.processor
    full = family.encode(processor, turns, image)
    ids = full["input_ids"][0]
    labels = torch.full_like(ids, IGNORE_INDEX)
    ends_turn = torch.tensor(family.eos_token_ids(processor))
    for k, (question, _) in enumerate(turns):
        prompt = family.encode(processor, turns[:k] + [(question, None)], image)["input_ids"][0]
        start = prompt.shape[0]
        if not torch.equal(ids[:start], prompt):  # the answer's span is found by prefix: it must be one
            raise ValueError(f"{loaded.spec.name}'s prompt for turn {k + 1} is not a prefix of the whole conversation's")
        end = ids.shape[0] if k == len(turns) - 1 else family.encode(processor, turns[: k + 1], image)["input_ids"].shape[1]
        closing = torch.isin(ids[start:end], ends_turn).nonzero()
        end = start + int(closing[0, 0]) + 1 if len(closing) else end
        labels[start:end] = ids[start:end]
    item = {key: value[0] if key in TOKEN_ALIGNED else value for key, value in full.items()}
    item["labels"] = labels
    return item


def collate(pad_token_id: int):
    """Right-pad a batch (training); image tensors are stacked, IDEFICS' image_attention_mask padded like the text.

    When a row is a pack, the batch gets medvlm.packing's 4-D attention mask and position_ids. "examples" counts the
    examples in the batch (for samples/s); answer_loss drops it.
    """

    def pad(rows, value):
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value)

    def fn(items: list[dict]) -> dict:
        batch = {"labels": pad([i["labels"] for i in items], IGNORE_INDEX)}
        for key in items[0]:
            if key in TOKEN_ALIGNED:
                batch[key] = pad([i[key] for i in items], pad_token_id if key == "input_ids" else 0)
            elif key not in packing.PACKING_KEYS and key != "labels":  # the image's tensors
                batch[key] = concat_images(key, [i[key] for i in items])
        batch["examples"] = torch.tensor(sum(packing.branches_in(i) for i in items))
        if any("branch" in i for i in items):
            batch["attention_mask"], batch["position_ids"] = packing.attention(items, batch["input_ids"].shape[1])
        return batch

    return fn


def answer_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens. Only the positions that predict an answer token go through the
    vocabulary projection (49k x 576 for MedVLM-Tiny, a fifth of its compute when run on every position)."""
    batch = dict(batch)
    batch.pop("examples", None)
    labels = batch.pop("labels")
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t + 1
    logits = model(**batch, logits_to_keep=keep).logits  # (answer tokens, vocabulary), rows flattened
    return torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][keep[:, :-1]])


def add_lora(loaded: models.LoadedModel, lora: LoraArguments, quantized: bool, checkpointing: bool, start: str | None = None):
    """A fresh LoRA (and the family's modules_to_save) on the loaded base, or the saved adapter `start` made trainable."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = loaded.model
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        model.gradient_checkpointing_enable()
    if start:
        return models.loading.attach_adapter(model, start, trainable=True)
    config = LoraConfig(
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=lora.lora_target or loaded.family.lora_target,
        modules_to_save=list(loaded.family.modules_to_save) or None,
    )
    # peft matches a string target with re.fullmatch on each module's name; asked first, not read from its error text
    if lora.lora_target and not any(re.fullmatch(lora.lora_target, name) for name, _ in model.named_modules()):
        raise UserFacingError(f"--lora_target: {lora.lora_target!r} names no module of {loaded.spec.source}.")
    return get_peft_model(model, config)


@torch.no_grad()
def standardize_projector(model, pixel_batches) -> None:
    """Fold per-channel standardisation of the vision features into the fresh projector's first layer:
    W x + b == (W / s)(x - m) * ... i.e. W' = W / s, b' = b - W' m, with m, s the channels' mean and spread over the
    given images. Only an initialisation: the model keeps its class and saves as usual."""
    inner = model.model
    features = []
    for pixels in pixel_batches:
        hidden = inner.vision_tower(pixels).last_hidden_state  # (batch, channels, h, w)
        features.append(hidden.flatten(2).transpose(1, 2).reshape(-1, hidden.shape[1]))
    features = torch.cat(features)
    mean, std = features.mean(0), features.std(0)
    # Near-constant channels are not blown up into noise: none is scaled up by more than ten times the median channel's
    # spread. Dark images leave most channels at zero (more than half: a zero median); the floor then comes from the
    # channels that vary, and with none varying nothing is scaled.
    varying = std[std > 0]
    if len(varying):
        std = std.clamp_min(0.1 * (std.median() if std.median() > 0 else varying.median()))
    else:
        std = torch.ones_like(std)
    linear = inner.multi_modal_projector.linear_1
    linear.weight.div_(std)
    if linear.bias is not None:
        linear.bias.sub_(linear.weight @ mean)


def evenly_spread(items: list, count: int) -> list:
    """count items spread evenly over the list (all of them when it holds no more), the same on every run."""
    n = min(count, len(items))
    return [items[int(i * len(items) / n)] for i in range(n)]


def freeze_batchnorm(model) -> None:
    """Frozen vision towers keep their running statistics: BatchNorm must stay in eval mode while training."""
    for name, module in model.named_modules():
        if name.endswith("vision_tower"):
            module.eval()


def make_optimizer(model, lora_lr: float, projector_lr: float, paged_8bit: bool):
    """AdamW; paged 8-bit AdamW (bitsandbytes) for QLoRA on CUDA, where optimizer state is what runs out."""
    full, lora = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (full if "modules_to_save" in name else lora).append(param)
    groups = [{"params": lora, "lr": lora_lr}] + ([{"params": full, "lr": projector_lr}] if full else [])
    if paged_8bit:
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(groups, weight_decay=0.0)
    return torch.optim.AdamW(groups, weight_decay=0.0)


def as_records(examples: list[Example]) -> list[dict]:
    return [{"id": e.id, "question": e.question, "answer": e.answer, "answer_type": e.answer_type} for e in examples]


def evaluate(loaded: models.LoadedModel, eval_sets: dict[str, list[Example]], data: DataArguments, train: TrainArguments,
             run: Path, train_examples: list[Example] = ()) -> dict:
    """Batched greedy answers on each source's held-out split (medvlm.grounding: per task, and the closed questions
    again with swapped images), the main source's majority baseline; predictions.jsonl and eval.json."""
    from tqdm import tqdm

    settings = GenerationSettings(max_new_tokens=train.max_new_tokens, temperature=0.0)
    result, all_records = {}, []
    for number, (source, examples) in enumerate(eval_sets.items()):
        start = time.perf_counter()
        with tqdm(desc=f"evaluate {source}", unit="q") as bar:
            scores, records = grounding.evaluate(loaded, examples, data.short_answer, settings, train.eval_batch_size, bar.update)
        scores |= {"questions": len(examples), "seconds": round(time.perf_counter() - start, 1)}
        all_records += [dict(r, source=source) for r in records]
        if number == 0:  # the headline: the main source's scores at the top level, as before mixtures
            result |= scores
            if train_examples:
                # a baseline ignores images: score each question once
                own_images = [r for r in records if not r["swapped_image"] and not r.get("no_image")]
                result["majority_baseline"] = metrics.majority_baseline(as_records(train_examples), own_images)
        else:
            result.setdefault("labels", {})[source] = scores
    result |= overall_scores(all_records, run)
    with open(run / "predictions.jsonl", "w") as f:
        for record in all_records:
            f.write(json.dumps(record) + "\n")
    for folder in (run, run / "adapter"):
        (folder / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def overall_scores(records: list[dict], run: Path) -> dict:
    """Figures over every source: "yes" to a brain-tumour question about images that are no brain MRI (other
    sources' held-out images and blanks), and the calibration of every yes/no answer with its reliability plot."""
    out = {}
    not_brain = [r for r in records if r.get("task") == "tumor_presence_not_brain" and not r["swapped_image"] and not r.get("no_image")]
    if not_brain:
        out["not_brain_said_yes"] = stats.percent(sum(metrics.yes_no(r["prediction"]) == "yes" for r in not_brain), len(not_brain))
    calibrated = grounding.calibration([r for r in records if not r["swapped_image"] and not r.get("no_image")])
    if calibrated:
        out["calibration"] = calibrated
        grounding.reliability_plot(calibrated, run / "reliability.png")
    return out


PROG = "python -m train.vlm"
ARGUMENT_GROUPS = {"model": ModelArguments, "data": DataArguments, "lora": LoraArguments, "train": TrainArguments}
NOT_IN_PRESETS = {"output_dir", "resume"}  # a preset is a recipe, not a run: each run names its own folder


def questions_fingerprint(mixture, reports) -> str:
    """A hash of every training question a run draws (source, weight, image, turns): the same on a resume only when
    neither --data nor the code that builds label questions (medvlm/labels.py, medvlm/wordings.py) has changed."""
    digest = hashlib.sha256()
    for part, report in zip(mixture, reports):
        digest.update(json.dumps([part.source, part.weight, [[e.image_path, e.turns] for e in report.examples]]).encode())
    return digest.hexdigest()[:16]


def check_same_questions(run: Path, fingerprint: str, train_records: dict[str, int]) -> None:
    """A resumed run trains on the questions it started with: a checkpoint trained on other questions would go on
    under a config.json that describes neither. Runs saved before the fingerprint are checked by their counts."""
    if not (run / "config.json").is_file():
        return  # a checkpoint without its config (a run from before config.json): nothing to check against
    try:
        started = json.loads((run / "config.json").read_text())["resolved"]
        then = started.get("train_fingerprint")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # as preset() reads one
        raise UserFacingError(f"{run / 'config.json'} is not a run's config: its questions cannot be checked, so the "
                              "run cannot be resumed.") from None
    if (then is not None and then != fingerprint) or (then is None and started.get("train_records", train_records) != train_records):
        raise UserFacingError(f"{run} started on other training questions (--data, or the code that builds label questions, "
                              "changed since): resume it at the commit it started from, or train into another --output_dir.")


def check_same_lora(run: Path, lora: LoraArguments) -> None:
    """A resumed run keeps the LoRA it started with: its checkpoint holds weights of that rank on those modules only."""
    try:
        started = json.loads((run / "config.json").read_text())["lora"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no config (a run from before config.json), or check_same_questions has already refused it
    changed = [f"--{name}" for name, value in asdict(lora).items() if name in started and started[name] != value]
    if changed:
        raise UserFacingError(f"{run} started with another LoRA ({', '.join(changed)}): resume it with the values in its "
                              "config.json, or train into another --output_dir.")


def preset(path: str) -> dict:
    """Argument defaults from a run's config.json, or from an adapter's train_config.json (the same file): the
    shipped adapter's recipe is `--config medvlm/weights/medvlm-tiny-grounded/train_config.json`."""
    try:
        saved = json.loads(Path(path).read_text())
        groups = {group: saved[group] for group in ARGUMENT_GROUPS}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserFacingError(f"--config {path}: not a train.vlm config.json ({type(e).__name__}: {e}).") from None
    defaults = {}
    for group, values in groups.items():
        known = {f.name for f in fields(ARGUMENT_GROUPS[group])}
        unknown = set(values) - known
        if unknown:
            raise UserFacingError(f"--config {path}: unknown {group} argument(s) {', '.join(sorted(unknown))}.")
        defaults |= {k: v for k, v in values.items() if k not in NOT_IN_PRESETS}
    return defaults


def parse_arguments(argv=None) -> tuple:
    """(model, data, lora, train) arguments: a --config FILE's values, overridden by what the command line says."""
    parser = HfArgumentParser(tuple(ARGUMENT_GROUPS.values()), prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="FILE", help="start from a run's config.json or an adapter's train_config.json "
                        "(all but output_dir and resume); flags given here override it")
    argv = sys.argv[1:] if argv is None else list(argv)
    config = parser.parse_known_args(argv)[0].config
    if config:
        try:
            parser.set_defaults(**preset(config))
        except UserFacingError as e:
            parser.error(str(e))
    *groups, _, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)  # _: --config
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    problem = check_arguments(*groups[1:])
    if problem:
        parser.error(problem)
    return tuple(groups)


def main(argv=None) -> int:
    model_args, data_args, lora_args, train_args = parse_arguments(argv)
    return cli.run(PROG, lambda: train(model_args, data_args, lora_args, train_args))


def train(model_args: ModelArguments, data_args: DataArguments, lora_args: LoraArguments, train_args: TrainArguments) -> int:
    # Here, not at the top: transformers' trainer helpers import peft and bitsandbytes (10 s and more on 2 cores),
    # which a mistyped flag should not wait for.
    from accelerate import Accelerator
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup, set_seed

    set_seed(train_args.seed)
    # Without CUDA, processes started together (accelerate launch --multi_gpu, torchrun) train as one over gloo.
    accelerator = Accelerator(gradient_accumulation_steps=train_args.grad_accum, cpu=not torch.cuda.is_available())
    run = Path(train_args.output_dir)
    checkpoint = run / "checkpoint"
    if checkpoint.exists() and not train_args.resume:
        raise UserFacingError(f"{run} already holds a checkpoint: pass --resume to continue it, or another --output_dir.")

    if train_args.init_adapter and (reason := models.loading.adapter_reason(train_args.init_adapter)):
        raise UserFacingError(f"--init_adapter: {reason}")

    mixture = parse_mixture(data_args.data)
    reports = [load_examples(part.source, data_args.train_split, data_args.skip_bad, data_args.limit) for part in mixture]
    main_examples, skipped = reports[0].examples, [why for report in reports for why in report.skipped]
    eval_sets = {}  # source -> held-out examples: the main source's eval_split, every label source's held-out images
    if data_args.eval_split != "none":
        for part in mixture:
            if part is mixture[0] or labels.is_label_source(part.source):
                eval_sets[part.source] = load_examples(part.source, data_args.eval_split, data_args.skip_bad, data_args.eval_limit).examples
    if skipped:
        print(f"skipped {len(skipped)} bad record(s): {'; '.join(skipped[:3])}", file=sys.stderr)
    fingerprint = questions_fingerprint(mixture, reports)
    train_records = {part.source: len(report.examples) for part, report in zip(mixture, reports)}
    if train_args.resume and checkpoint.exists():
        check_same_questions(run, fingerprint, train_records)
        check_same_lora(run, lora_args)

    # A fresh LoRA on the bare base (or --init_adapter's): a registry entry's own adapter (the shipped MedVLM-Tiny or
    # MIDEFICS weights) is what this trainer produces, not where it starts unless asked.
    spec = replace(models.resolve(model_args.model, in_process=True), adapter=None)
    device = str(accelerator.device)
    quantize = models.loading.resolve_quantize(spec, device, model_args.quantize)
    # Training computes in bf16 where the GPU has it (fp16 overflows more easily in backward passes).
    dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else None
    loaded = models.load(spec, device=device, quantize=model_args.quantize, dtype=dtype)
    checkpointing = train_args.gradient_checkpointing if train_args.gradient_checkpointing is not None else quantize == "nf4"
    if train_args.standardize_projector and not train_args.init_adapter and "multi_modal_projector" in loaded.family.modules_to_save:
        images = sorted({e.image_path for report in reports for e in report.examples if e.image_path})
        picked = evenly_spread(images, 256)
        standardize_projector(loaded.model, [
            loaded.family.encode(loaded.processor, [("", None)], load_image(path))["pixel_values"] for path in picked])
    model = add_lora(loaded, lora_args, quantize == "nf4", checkpointing, train_args.init_adapter)
    loaded.processor.tokenizer.padding_side = "right"  # training pads on the right; generation switches back
    pad_id = loaded.family.generate_kwargs(loaded.processor)["pad_token_id"]

    sources = [(report.examples, part.weight) for part, report in zip(mixture, reports)]
    dataset = ImagePackedDataset(loaded, sources, data_args.short_answer, train_args.pack_size, data_args.augment, data_args.follow_ups)
    generator = torch.Generator().manual_seed(train_args.seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=train_args.batch_size, shuffle=True, generator=generator, collate_fn=collate(pad_id)
    )
    steps_per_epoch = math.ceil(len(loader) / train_args.grad_accum)
    total_steps = train_args.max_steps if train_args.max_steps > 0 else math.ceil(steps_per_epoch * train_args.epochs)
    lora_lr = train_args.lr if train_args.lr is not None else loaded.family.lora_lr
    optimizer = make_optimizer(model, lora_lr, train_args.projector_lr, paged_8bit=quantize == "nf4" and device.startswith("cuda"))
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(train_args.warmup_ratio * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    run.mkdir(parents=True, exist_ok=True)
    resolved = {
        "model_source": spec.source, "family": spec.family, "device": device, "quantize": quantize,
        "compute_dtype": str(dtype or ("float16" if device.startswith("cuda") else "float32")).replace("torch.", ""),
        "gradient_checkpointing": checkpointing, "lora_target": lora_args.lora_target or loaded.family.lora_target, "lora_lr": lora_lr,
        "modules_to_save": list(loaded.family.modules_to_save), "train_records": train_records, "train_fingerprint": fingerprint,
        "train_rows": len(dataset), "eval_records": {source: len(e) for source, e in eval_sets.items()},
        "skipped_records": len(skipped), "total_steps": total_steps,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if train_args.init_adapter:  # the LoRA shape trained, which is the adapter's, not the command line's
        peft_config = accelerator.unwrap_model(model).peft_config["default"]  # DDP-wrapped with several processes
        resolved["lora"] = {"lora_r": peft_config.r, "lora_alpha": peft_config.lora_alpha, "lora_dropout": peft_config.lora_dropout}
    config = {"model": asdict(model_args), "data": asdict(data_args), "lora": asdict(lora_args), "train": asdict(train_args), "resolved": resolved}
    if accelerator.is_main_process:
        (run / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    step = 0
    if train_args.resume and checkpoint.exists():
        accelerator.load_state(str(checkpoint))
        step = json.loads((checkpoint / "progress.json").read_text())["step"]

    model.train()
    freeze_batchnorm(model)
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not accelerator.is_main_process)
    samples, started = 0, time.perf_counter()
    batches_per_epoch = len(loader)
    while step < total_steps:
        epoch, done_in_epoch = divmod(step * train_args.grad_accum, batches_per_epoch)
        generator.manual_seed(train_args.seed + epoch)  # the same order on a resumed run
        epoch_loader = accelerator.skip_first_batches(loader, done_in_epoch) if done_in_epoch else loader
        for batch in epoch_loader:
            examples = int(batch.pop("examples"))
            with accelerator.accumulate(model):
                loss = answer_loss(model, batch)
                if not torch.isfinite(loss):  # stop before the update, so the last checkpoint stays usable
                    bar.close()  # the error line below the bar, not after it
                    raise UserFacingError(f"the loss is {loss.item()} at step {step + 1}: training stopped, nothing saved "
                                          f"after step {step} (a learning rate too high?)")
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            samples += examples
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", samples_per_s=f"{samples / (time.perf_counter() - started):.2f}")
            if step % train_args.save_steps == 0 or step == total_steps:
                accelerator.save_state(str(checkpoint))
                if accelerator.is_main_process:
                    (checkpoint / "progress.json").write_text(json.dumps({"step": step, "loss": loss.item()}))
            if step >= total_steps:
                break
    bar.close()

    if accelerator.num_processes > 1:
        # Proof that gradients were synchronised: every process ends with bit-identical trainable weights.
        sums = torch.stack([p.detach().float().sum() for p in model.parameters() if p.requires_grad])
        gathered = accelerator.gather(sums.to(accelerator.device)).reshape(accelerator.num_processes, -1)
        same = all(torch.equal(gathered[0], other) for other in gathered[1:])
        if accelerator.is_main_process:
            print(f"{accelerator.num_processes} processes: trainable weights {'identical' if same else 'DIFFER'} on every process")
        if not same:
            raise UserFacingError("The processes ended with different weights: gradients were not synchronised.")
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return 0
    model = accelerator.unwrap_model(model)
    model.save_pretrained(run / "adapter")
    # The adapter folder carries its recipe and, after evaluation, its scores: the app's model panel shows both.
    (run / "adapter" / "train_config.json").write_text((run / "config.json").read_text())
    print(f"adapter saved to {run / 'adapter'}")
    if eval_sets:
        model.eval()
        loaded.model = model
        loaded.processor.tokenizer.padding_side = "left"
        result = evaluate(loaded, eval_sets, data_args, train_args, run, main_examples)
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
