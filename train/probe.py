"""Linear probes on a model's frozen vision features: how much of each label the image tower already holds, the
ceiling the VLM's answers should approach (medvlm.grounding measures the answers).

    python -m train.probe                                   # MedVLM-Tiny's vision tower, the shared label sets
    python -m train.probe --model llava-1.5-7b --device cuda

Features: the vision tower's output, averaged over its positions, standardised; for the tumour's side and height
(where in the image, which an average over positions cannot hold) averaged over each cell of a 2 x 2 grid instead.
Probe: multinomial logistic regression (L2, L-BFGS). Tasks, from medvlm.labels: VQA-RAD region (5-fold
cross-validation over its images, folds by a hash of the image name), brain-tumour presence, type (4 classes with
"none"), side and height (fitted on train, scored on val), ISIC diagnosis (fitted on train lesions, scored on the
held-out ones). Accuracy in %, with the majority class.
"""
import math
import sys
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING

from medvlm import cli, labels, models
from medvlm.data import load_examples
from medvlm.errors import UserFacingError
from medvlm.images import load_image

# torch is imported where features are read and probes fit, so a bad flag answers at once; models.LoadedModel is
# quoted in annotations too (naming it loads medvlm.models.loading, and torch with it).
if TYPE_CHECKING:
    import torch

PROG = "python -m train.probe"

SOURCES = (
    "labels:../shared/data/vqa-rad/vqa_rad.jsonl",
    "labels:../shared/data/brain-tumor/data.yaml",
    "labels:../shared/data/isic/isic_ham10000_sample.jsonl",
)
FOLDS = 5
SPATIAL_TASKS = ("tumor_side", "tumor_height")  # probed on the 2 x 2 grid of positions


def image_labels(source: str) -> list[tuple[str, str, dict]]:
    """(image path, split, {task: label}) per image of a label source: region, tumour type ("none" when the slice
    is tumour-free), diagnosis."""
    by_image: dict[str, tuple[str, dict]] = {}
    for example in load_examples(source).examples:
        split, found = by_image.setdefault(example.image_path, (example.split, {}))
        if example.task in ("organ", "tumor_type", "lesion_diagnosis", *SPATIAL_TASKS):
            found[example.task] = example.answer
        elif example.task == "tumor_presence" and (example.answer == "no") != example.reversed:  # "normal? yes": none
            found["tumor_type"] = "none"
    rows = []
    for image, (split, found) in sorted(by_image.items()):
        if not found:  # a blank: only asked whether it shows a brain tumour (no)
            continue
        if "tumor_type" in found:
            found["tumor_presence"] = "no" if found["tumor_type"] == "none" else "yes"
        rows.append((image, split, found))
    return rows


def vision_maps(loaded: "models.LoadedModel", paths: list[str], batch_size: int = 16) -> "torch.Tensor":
    """(images, channels, side, side): the vision tower's output as a square map of positions (a CNN's map, or a
    ViT's patch tokens laid out in their grid, a leading class token dropped)."""
    import torch

    model = loaded.model
    inner = getattr(model, "model", model)
    tower = getattr(inner, "vision_tower", None) or getattr(inner, "vision_model", None)
    if tower is None:
        raise UserFacingError(f"{type(model).__name__} has no vision tower medvlm can probe.")
    dtype = next(tower.parameters()).dtype
    rows = []
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            pixels = torch.cat([loaded.family.encode(loaded.processor, [("", None)], load_image(p))["pixel_values"]
                                for p in paths[start : start + batch_size]])
            pixels = pixels.reshape(-1, *pixels.shape[-3:])  # IDEFICS keeps an images-per-sample axis
            hidden = tower(pixels.to(loaded.device, dtype)).last_hidden_state.float()
            rows.append(hidden if hidden.dim() == 4 else token_grid(hidden))
    return torch.cat(rows).cpu()


def token_grid(tokens: "torch.Tensor") -> "torch.Tensor":
    """(images, tokens, channels) -> (images, channels, side, side)."""
    count = tokens.shape[1]
    side = math.isqrt(count)
    if side * side != count:  # a class token first
        tokens, side = tokens[:, 1:], math.isqrt(count - 1)
        if side * side != count - 1:
            raise UserFacingError(f"The vision tower gives {count} tokens, not a square grid of positions to probe.")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def fit_predict(train_x: "torch.Tensor", train_y: list[str], test_x: "torch.Tensor", l2: float = 1e-2) -> list[str]:
    import torch

    classes = sorted(set(train_y))
    if len(classes) == 1:
        return classes * len(test_x)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    x, t = (train_x - mean) / std, (test_x - mean) / std
    y = torch.tensor([classes.index(v) for v in train_y])
    linear = torch.nn.Linear(x.shape[1], len(classes))
    torch.nn.init.zeros_(linear.weight), torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return [classes[i] for i in linear(t).argmax(1).tolist()]


def accuracy(predicted: list[str], expected: list[str]) -> float:
    return round(100 * sum(p == e for p, e in zip(predicted, expected)) / len(expected), 1)


def majority(train_y: list[str], expected: list[str]) -> float:
    return accuracy([Counter(train_y).most_common(1)[0][0]] * len(expected), expected)


def probe(loaded: "models.LoadedModel", sources) -> list[dict]:
    import torch

    results = []
    for source in sources:
        rows = image_labels(source)
        maps = vision_maps(loaded, [image for image, _, _ in rows])
        pooled, grid = maps.mean((2, 3)), torch.nn.functional.adaptive_avg_pool2d(maps, 2).flatten(1)
        tasks = sorted({task for _, _, found in rows for task in found})
        for task in tasks:
            features = grid if task in SPATIAL_TASKS else pooled
            index = [i for i, (_, _, found) in enumerate(rows) if task in found]
            y = [rows[i][2][task] for i in index]
            if task == "organ":  # every VQA-RAD image, cross-validated: its held-out images have no train twin here
                fold = [int(labels.stable_fraction("fold", rows[i][0]) * FOLDS) for i in index]
                predicted, expected, base = [], [], []
                for k in range(FOLDS):
                    train = [j for j, f in enumerate(fold) if f != k]
                    test = [j for j, f in enumerate(fold) if f == k]
                    predicted += fit_predict(features[[index[j] for j in train]], [y[j] for j in train], features[[index[j] for j in test]])
                    expected += [y[j] for j in test]
                    base += [Counter(y[j] for j in train).most_common(1)[0][0]] * len(test)
                how, majority_score = f"{FOLDS}-fold", accuracy(base, expected)
            else:
                train = [j for j, i in enumerate(index) if rows[i][1] == labels.TRAIN]
                test = [j for j, i in enumerate(index) if rows[i][1] != labels.TRAIN]
                if not train or not test:
                    continue
                predicted = fit_predict(features[[index[j] for j in train]], [y[j] for j in train], features[[index[j] for j in test]])
                expected = [y[j] for j in test]
                how, majority_score = "train -> held-out", majority([y[j] for j in train], expected)
            per_class = [accuracy([p for p, e in zip(predicted, expected) if e == c], [c] * expected.count(c)) for c in sorted(set(expected))]
            results.append({"source": source, "task": task, "how": how, "images": len(expected), "classes": len(set(y)),
                            "accuracy": accuracy(predicted, expected), "balanced_accuracy": round(sum(per_class) / len(per_class), 1),
                            "majority": majority_score})
    return results


def main(argv=None) -> int:
    parser = cli.Parser(PROG, __doc__)
    cli.add_model_arguments(parser, adapter=False, quantize=False, served=False)  # an adapter never changes the frozen tower
    parser.add_argument("--data", default=",".join(SOURCES), help="comma-separated labels:PATH sources")
    args = parser.parse_args(argv)
    sources = [s.strip() for s in args.data.split(",") if s.strip()]
    bad = [s for s in sources if not labels.is_label_source(s)]
    if bad or not sources:
        parser.error(f"--data takes labels:PATH sources (comma-separated); not: {', '.join(bad) or 'nothing'}")
    return cli.run(PROG, lambda: print_results(probe(models.load(replace(models.resolve(args.model, in_process=True), adapter=None),
                                                                 cli.device_of(args)), sources)))


def print_results(results: list[dict]) -> None:
    print(f"{'source':<56}{'task':<18}{'how':<19}{'images':>7}{'classes':>8}{'acc %':>8}{'bal %':>8}{'majority %':>11}")
    for r in results:
        print(f"{r['source']:<56}{r['task']:<18}{r['how']:<19}{r['images']:>7}{r['classes']:>8}{r['accuracy']:>8}"
              f"{r['balanced_accuracy']:>8}{r['majority']:>11}")


if __name__ == "__main__":
    sys.exit(main())
