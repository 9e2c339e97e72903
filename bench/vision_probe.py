"""Is a tumour's side and height in what MedVLM-Tiny's language model is shown? Linear probes (scikit-learn's
logistic regression) fitted on the brain-tumour train slices with one box and scored on the val ones, on the frozen
vision tower's 7 x 7 map and on each adapter's projector output (the 49 tokens the language model reads). Every run
since the shipped adapter answers side and height at chance (one answer for most slices); if a probe reads them off
the tokens, the information reaches the language model and the shortfall is in the language model's use of it.

    python bench/vision_probe.py medvlm/weights/medvlm-tiny-grounded runs/RUN/adapter    # ~2 min per adapter, 2 cores

Each row: where the features come from, how they are pooled, the probe's val accuracy for side and for height, and
the majority answer's share (what a model that ignores the image gets). "whole" pools all 49 tokens (no position
left), "halves" pools the left, right, upper and lower halves apart (position kept at the coarsest grain).
"""
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reliance_mix import adapter_folders  # noqa: E402  (bench/, this script's folder)

from medvlm import labels, models  # noqa: E402

DATA_YAML = Path("../shared/data/brain-tumor/data.yaml")
GRID = 7  # the vision tower's map is GRID x GRID, in raster order as the language model reads it


def slices(found: dict, key: str) -> tuple[list[Path], np.ndarray]:
    """The split's slices with one box (those asked side and height) and their box centres (x, y)."""
    kept = [(image, boxes[0]) for image, boxes in found[key] if len(boxes) == 1]
    return [image for image, _ in kept], np.array([(box[1], box[2]) for _, box in kept])


@torch.no_grad()
def features(loaded, images: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(vision tower map, projector tokens), each (images, GRID, GRID, channels), from the model's own processor."""
    model = loaded.model.get_base_model() if hasattr(loaded.model, "get_base_model") else loaded.model
    towers, tokens = [], []
    for start in range(0, len(images), 16):
        batch = [Image.open(image).convert("RGB") for image in images[start:start + 16]]
        pixels = loaded.processor.image_processor(batch, return_tensors="pt")["pixel_values"]
        outputs = model.model.get_image_features(pixel_values=pixels)
        # last_hidden_state: the tower's map (batch, channels, GRID, GRID); pooler_output: the projector's tokens
        towers.append(outputs.last_hidden_state.permute(0, 2, 3, 1).numpy())
        tokens.append(outputs.pooler_output.reshape(len(batch), GRID, GRID, -1).numpy())
    return np.concatenate(towers), np.concatenate(tokens)


def pooled(grid: np.ndarray, how: str) -> np.ndarray:
    half = GRID // 2  # the middle row and column belong to neither half
    if how == "whole":
        return grid.mean((1, 2))
    return np.concatenate([grid[:, :, :half].mean((1, 2)), grid[:, :, half + 1:].mean((1, 2)),
                           grid[:, :half].mean((1, 2)), grid[:, half + 1:].mean((1, 2))], axis=1)


def probe_rows(name: str, train: np.ndarray, val: np.ndarray, train_centres: np.ndarray, val_centres: np.ndarray):
    for how in ("whole", "halves"):
        cells = []
        for axis in (0, 1):  # side from x, height from y; near-midline boxes are asked neither (labels.CENTRE_MARGIN)
            fit_on = np.abs(train_centres[:, axis] - 0.5) > labels.CENTRE_MARGIN
            score_on = np.abs(val_centres[:, axis] - 0.5) > labels.CENTRE_MARGIN
            truth = val_centres[score_on, axis] < 0.5
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000))
            probe.fit(pooled(train, how)[fit_on], train_centres[fit_on, axis] < 0.5)
            accuracy = 100 * (probe.predict(pooled(val, how)[score_on]) == truth).mean()
            cells.append(f"{accuracy:>8.1f}{100 * max(truth.mean(), 1 - truth.mean()):>10.1f}")
        print(f"{name[:41]:<42}{how:<8}" + "".join(cells), flush=True)


def main(adapters: list[str]) -> None:
    _, found = labels.yolo_images(REPO / DATA_YAML)  # both splits in one read
    train_images, train_centres = slices(found, "train")
    val_images, val_centres = slices(found, "val")
    print(f"{len(train_images)} train and {len(val_images)} val slices with one box")
    print(f"{'features':<42}{'pooled':<8}{'side':>8}{'majority':>10}{'height':>8}{'majority':>10}")
    for number, adapter in enumerate(adapters):
        loaded = models.load(replace(models.resolve("medvlm-tiny"), adapter=adapter), device="cpu")
        (tower_train, tokens_train), (tower_val, tokens_val) = features(loaded, train_images), features(loaded, val_images)
        if number == 0:  # the tower is frozen: the same map under every adapter
            probe_rows("vision tower (frozen)", tower_train, tower_val, train_centres, val_centres)
        probe_rows(f"tokens: {adapter}", tokens_train, tokens_val, train_centres, val_centres)


if __name__ == "__main__":
    main(adapter_folders("bench/vision_probe.py"))
