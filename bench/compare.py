"""Images/s of the dataset comparison (python -m medvlm.compare: the detector on a batch of images in one pass, each
image's questions packed behind one prefix) versus the Compare tab's path image by image (Detector.predict, then
each question through medvlm.chat.stream_reply), on the same images and questions (the four plain and grounded
presence and type questions and every other held-out wording), side by side in one run.

    python bench/compare.py                  # 24 shared brain-tumour val images, batches of 4
    python bench/compare.py --images 48 --batch 16
"""
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medvlm import cli, models
from medvlm.chat import stream_reply
from medvlm.compare import ASKED, MORE_WORDINGS, compare_batch, questions_for, spread
from medvlm.detect import Detector
from medvlm.images import load_image
from medvlm.labels import yolo_images
from medvlm.predict import SCORING


def main() -> None:
    parser = cli.Parser("python bench/compare.py", __doc__)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "brain-tumor" / "data.yaml"))
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    _, found = yolo_images(Path(args.data), keys=("val",))
    chosen = spread(found["val"], args.images)  # an even spread over the classes (the files sort by class)
    pictures = [load_image(image) for image, _ in chosen]
    loaded = models.load(models.resolve("medvlm-tiny"), "cpu")
    detector = Detector()
    settings = SCORING
    compare_batch(loaded, detector, pictures[:2], settings)  # warm-up: first-call costs out of both timings

    start = time.perf_counter()
    one_by_one = []
    for picture in pictures:
        found_here = detector.predict(picture)
        one_by_one.append([list(stream_reply(loaded, [], loaded.family.ask(q, short_answer=True), picture, settings))[-1]
                           for q in questions_for(loaded.family, picture, found_here).values()])
    single = time.perf_counter() - start

    start = time.perf_counter()
    batched = []
    for k in range(0, len(pictures), args.batch):
        batched += [[v for key, v in a.items() if key != "p_yes"]
                    for a in compare_batch(loaded, detector, pictures[k : k + args.batch], settings)[1]]
    together = time.perf_counter() - start

    same = sum(a == b for x, y in zip(one_by_one, batched) for a, b in zip(x, y))
    n = len(pictures)
    asked = len(ASKED) + len(MORE_WORDINGS)
    print(f"{n} images, {asked} questions each (plain and grounded presence and type, other wordings), MedVLM-Tiny + YOLOv8n on CPU")
    print(f"image by image (Compare tab path)   {n / single:.2f} images/s")
    print(f"batched (medvlm.compare, batch {args.batch})   {n / together:.2f} images/s")
    print(f"ratio                               {single / together:.2f}x")
    print(f"identical answers                   {same}/{n * asked}")


if __name__ == "__main__":
    main()
