"""Per-image latency of medvlm's detection path against ultralytics' own predict, same weights and images.

    python bench/detect.py                      # 40 brain-tumour val images, 3 interleaved rounds
    python bench/detect.py --images 100 --rounds 5 --weights runs/yolo/best.pt

Ours: medvlm.detect.Detector.predict on a decoded PIL image (format normalisation, BGR array, predict, Detection
objects). Theirs: YOLO(weights).predict on the same PIL image with the same size and confidence. The two alternate
image by image so machine noise hits both alike; the median per-image latency of each and their ratio are printed
(target: ours / theirs <= 1.10).
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medvlm import cli
from medvlm.detect import Detector
from medvlm.settings import DETECTOR_WEIGHTS

VAL_IMAGES = Path(__file__).resolve().parents[2] / "shared/data/brain-tumor/images/val"


def main() -> None:
    parser = cli.Parser("python bench/detect.py", __doc__)
    parser.add_argument("--weights", default=str(DETECTOR_WEIGHTS))
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from PIL import Image
    from ultralytics import YOLO

    ours = Detector(args.weights)
    theirs = YOLO(args.weights, task="detect")
    paths = sorted(VAL_IMAGES.glob("*.jpg"))[: args.images]
    images = [Image.open(p).copy() for p in paths]
    settings = dict(imgsz=ours.image_size, conf=ours.confidence, device="cpu", verbose=False)
    ours.predict(images[0]), theirs.predict(images[0], **settings)  # warm-up
    ours_s, theirs_s, same = [], [], 0
    for _ in range(args.rounds):
        for image in images:
            start = time.perf_counter()
            found = ours.predict(image)
            ours_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            result = theirs.predict(image, **settings)[0]
            theirs_s.append(time.perf_counter() - start)
            same += len(found) == len(result.boxes)
    ours_ms, theirs_ms = statistics.median(ours_s) * 1e3, statistics.median(theirs_s) * 1e3
    print(f"weights                 {args.weights}")
    print(f"images                  {len(images)} x {args.rounds} rounds, imgsz {ours.image_size}, cpu")
    print(f"medvlm detect, median   {ours_ms:.1f} ms/image")
    print(f"ultralytics, median     {theirs_ms:.1f} ms/image")
    print(f"same number of boxes    {same}/{len(images) * args.rounds}")
    print(f"ratio ours/theirs       {ours_ms / theirs_ms:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
