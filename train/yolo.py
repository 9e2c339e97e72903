"""Train YOLOv8 on a YOLO-layout dataset, fully offline, or evaluate any weights on one.

    python -m train.yolo --data ../shared/data/brain-tumor/data.yaml                  # yolov8n.yaml, from scratch
    python -m train.yolo --data D --weights yolov8n.pt --epochs 50                   # start from weights you have
    python -m train.yolo --data ../shared/data/brain-tumor/data.yaml --resume     # continue an interrupted run
    python -m train.yolo --val --weights medvlm/weights/yolov8n-brain-tumor.pt --data ../shared/data/brain-tumor/data.yaml

Nothing is downloaded: the model is built from its yaml (or your --weights), the font ultralytics plots with is
matplotlib's, its settings live in a writable YOLO_CONFIG_DIR. The dataset is copied into the run folder first,
because ultralytics writes label caches beside the labels and shared data is read-only. At the end the best
weights are validated: per-class precision, recall, mAP50 and mAP50-95 are printed and saved to results.json, and
confusion_matrix.png lands in the run folder. Copy RUN/weights/best.pt to medvlm/weights/yolov8n-brain-tumor.pt to
make it the app's detector.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

from medvlm import cli
from medvlm.detect import provide_ultralytics_font
from medvlm.errors import UserFacingError
from medvlm.settings import DETECTOR_IMAGE_SIZE

provide_ultralytics_font()
PROG = "python -m train.yolo"


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.Parser(PROG, __doc__)
    parser.add_argument("--data", required=True, help="data.yaml of a YOLO-layout dataset")
    parser.add_argument("--model", default="yolov8n.yaml", help="architecture yaml to build from scratch")
    parser.add_argument("--weights", help="a .pt to start from (training) or to evaluate (--val)")
    parser.add_argument("--val", action="store_true", help="only evaluate --weights on the dataset's val split")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output_dir from its last epoch")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--imgsz", type=int, default=DETECTOR_IMAGE_SIZE)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, 0, 0,1 ...")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--patience", type=int, default=50, help="stop after this many epochs without improvement")
    parser.add_argument("--fraction", type=float, default=1.0, help="train on this fraction of the training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="runs/yolo", help="the run folder")
    args = parser.parse_args(argv)
    if args.val and not args.weights:
        parser.error("--val needs --weights")
    parser.check({"--epochs": args.epochs < 1, "--imgsz": args.imgsz < 32, "--batch": args.batch < 1, "--workers": args.workers < 0,
                  "--patience": args.patience < 0, "--fraction": not 0 < args.fraction <= 1})
    return args


def copy_dataset(data_yaml: Path, work: Path) -> Path:
    """Copy the dataset that data_yaml describes into work/dataset and return a data.yaml with absolute paths."""
    import yaml

    if not data_yaml.is_file():
        raise UserFacingError(f"No dataset description at {data_yaml}.")
    try:
        spec = yaml.safe_load(data_yaml.read_text())
    except yaml.YAMLError as e:
        raise UserFacingError(f"{data_yaml} is not valid YAML (line {getattr(e, 'problem_mark', None) and e.problem_mark.line + 1}).") from e
    if not isinstance(spec, dict) or not {"train", "val", "names"} <= spec.keys():
        raise UserFacingError(f"{data_yaml} needs train, val and names entries.")
    root = Path(spec.get("path") or ".")
    root = root if root.is_absolute() else (data_yaml.parent / root).resolve()  # relative to the yaml, not the cwd
    copy = work / "dataset"
    if copy.exists():
        shutil.rmtree(copy)
    copied = set()  # a quick check often names one folder for train and val: copy it once
    for split in ("train", "val", "test"):
        if split not in spec:
            continue
        for kind in ("images", "labels"):
            relative = Path(str(spec[split]).replace("images", kind, 1)) if kind == "labels" else Path(spec[split])
            source = root / relative
            if kind == "images" and not source.is_dir():
                raise UserFacingError(f"The {split} images folder {source} does not exist.")
            if source.is_dir() and relative not in copied:
                shutil.copytree(source, copy / relative)
                copied.add(relative)
    spec["path"] = str(copy.resolve())
    local = work / "data.yaml"
    local.write_text(yaml.safe_dump(spec, sort_keys=False))
    return local


def class_table(metrics) -> list[dict]:
    """Per-class precision, recall, mAP50 and mAP50-95 from ultralytics' validation metrics, plus "all"."""
    box = metrics.box
    rows = []
    for i, c in enumerate(box.ap_class_index):
        rows.append({"class": metrics.names[int(c)], "precision": float(box.p[i]), "recall": float(box.r[i]),
                     "mAP50": float(box.ap50[i]), "mAP50-95": float(box.ap[i])})
    rows.append({"class": "all", "precision": float(box.mp), "recall": float(box.mr), "mAP50": float(box.map50),
                 "mAP50-95": float(box.map)})
    return rows


def validate(weights: Path, data: Path, args: argparse.Namespace, run: Path) -> dict:
    from ultralytics import YOLO

    metrics = YOLO(str(weights), task="detect").val(
        data=str(data), imgsz=args.imgsz, batch=args.batch, device=args.device, workers=args.workers, plots=True,
        project=str(run.resolve()), name="val", exist_ok=True, verbose=False,
    )
    result = {"weights": str(weights), "data": args.data, "imgsz": args.imgsz, "classes": class_table(metrics),
              "confusion_matrix": str(Path(metrics.save_dir) / "confusion_matrix.png")}
    (run / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_table(result: dict) -> None:
    print(f"{'class':<12}{'precision':>10}{'recall':>8}{'mAP50':>8}{'mAP50-95':>10}")
    for row in result["classes"]:
        print(f"{row['class']:<12}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['mAP50']:>8.3f}{row['mAP50-95']:>10.3f}")
    print(f"confusion matrix: {result['confusion_matrix']}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return cli.run(PROG, lambda: train(args))
    except OSError as e:  # a disk, permission or file problem: one line, not a traceback
        return cli.fail(PROG, f"{e.strerror or e} ({Path(e.filename).name if e.filename else 'no file named'}).")


def train(args: argparse.Namespace) -> None:
    run = Path(args.output_dir)
    run.mkdir(parents=True, exist_ok=True)
    data = copy_dataset(Path(args.data).expanduser(), run)
    if args.val:
        weights = Path(args.weights)
        if not weights.is_file():
            raise UserFacingError(f"No weights at {weights}.")
    else:
        from ultralytics import YOLO

        last = run / "train" / "weights" / "last.pt"
        if args.resume:
            if not last.is_file():
                raise UserFacingError(f"Nothing to resume: {last} does not exist.")
            YOLO(str(last), task="detect").train(resume=True)
        else:
            if args.weights and not Path(args.weights).is_file():
                raise UserFacingError(f"No weights at {args.weights} (nothing is downloaded: give a local .pt).")
            if last.exists():
                raise UserFacingError(f"{run} already holds a run: pass --resume to continue it, or another --output_dir.")
            YOLO(args.weights or args.model, task="detect").train(
                data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device=args.device,
                workers=args.workers, patience=args.patience, fraction=args.fraction, seed=args.seed, deterministic=True,
                project=str(run.resolve()), name="train", exist_ok=True, plots=True, pretrained=bool(args.weights),
            )
        weights = run / "train" / "weights" / "best.pt"
        shutil.copyfile(weights, run / "best.pt")
        weights = run / "best.pt"
    result = validate(weights, data, args, run)
    print_table(result)


if __name__ == "__main__":
    sys.exit(main())
