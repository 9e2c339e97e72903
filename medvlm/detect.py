"""Tumour detection with a YOLOv8 model: load the weights once, predict on any image the chat accepts (grayscale,
RGBA, 16-bit, DICOM-derived: all normalised by medvlm.images.to_rgb8), return boxes in the image's own pixels, draw.

The app's default detector is medvlm/weights/yolov8n-brain-tumor.pt (trained by `python -m train.yolo`, see README).
"""
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from medvlm.errors import UserFacingError
from medvlm.images import to_rgb8
from medvlm.settings import DETECTOR_CONFIDENCE, DETECTOR_IMAGE_SIZE, DETECTOR_WEIGHTS, apply_offline_env

COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0")


def provide_ultralytics_font() -> None:
    """ultralytics downloads Arial.ttf for plots unless a font of that name sits in its config dir: put matplotlib's
    DejaVuSans there under the names it asks for, so training and validation stay offline."""
    import matplotlib

    apply_offline_env()
    config = Path(os.environ["YOLO_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (config / name).exists():
            shutil.copyfile(source, config / name)


@dataclass(frozen=True)
class Detection:
    label: str
    confidence: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the input image's pixels

    def as_dict(self) -> dict:
        """As stored (medvlm.compare's answers.jsonl, the review database's predictions.boxes)."""
        return {"label": self.label, "confidence": round(self.confidence, 4), "box": [round(v, 1) for v in self.box]}

    @classmethod
    def from_dict(cls, stored: dict) -> "Detection":
        return cls(stored["label"], stored["confidence"], tuple(stored["box"]))


class Detector:
    """A YOLO detection model, loaded once. Not thread-safe: callers serialise (the app holds a lock)."""

    def __init__(self, weights: str | Path = DETECTOR_WEIGHTS, device: str = "cpu", confidence: float = DETECTOR_CONFIDENCE,
                 image_size: int = DETECTOR_IMAGE_SIZE):
        weights = Path(weights)
        if not weights.is_file():
            raise UserFacingError(f"Detector weights not found: {weights}. Train them with `python -m train.yolo` or pass --detector PATH.")
        provide_ultralytics_font()
        from ultralytics import YOLO

        try:
            self.model = YOLO(str(weights), task="detect")
        except Exception as e:  # a torn or foreign file: say which file, not a traceback
            raise UserFacingError(f"Could not load detector weights {weights.name}: {type(e).__name__}.") from e
        self.weights, self.device, self.confidence, self.image_size = weights, device, confidence, image_size
        self.names: dict[int, str] = dict(self.model.names)

    def predict(self, image: Image.Image) -> list[Detection]:
        """Detections on one image, highest confidence first."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: list[Image.Image]) -> list[list[Detection]]:
        """Detections on each image (one forward pass for the lot), highest confidence first."""
        bgr = [np.ascontiguousarray(np.asarray(to_rgb8(image))[:, :, ::-1]) for image in images]  # ultralytics reads BGR
        results = self.model.predict(bgr, imgsz=self.image_size, conf=self.confidence, device=self.device, verbose=False)
        found = []
        for result in results:
            boxes = result.boxes
            detections = [
                Detection(self.names[int(c)], float(p), tuple(float(v) for v in xyxy))
                for xyxy, p, c in zip(boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy())
            ]
            found.append(sorted(detections, key=lambda d: -d.confidence))
        return found


def draw(image: Image.Image, detections: list[Detection]) -> Image.Image:
    """An RGB copy of the image with each box and its label drawn; line width scales with the image."""
    canvas = to_rgb8(image).copy()
    pen = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 250))
    font = ImageFont.load_default(size=max(12, round(max(canvas.size) / 40)))
    labels = sorted({d.label for d in detections})
    for d in detections:
        colour = COLOURS[labels.index(d.label) % len(COLOURS)]
        pen.rectangle(d.box, outline=colour, width=width)
        caption = f"{d.label} {d.confidence:.2f}"
        x, y = d.box[0], max(0, d.box[1] - font.size - 2 * width)
        pen.rectangle(pen.textbbox((x, y), caption, font=font), fill=colour)
        pen.text((x, y), caption, fill="white", font=font)
    return canvas
