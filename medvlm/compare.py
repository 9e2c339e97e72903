"""VLM versus detector, one image (the Compare tab) or a whole labelled YOLO set (this module's CLI).

    python -m medvlm.compare --data ../shared/data/brain-tumor/data.yaml --split val
    python -m medvlm.compare --data ../shared/data/brain-tumor/data.yaml --split val --model medvlm-tiny --db medvlm.db
    python -m medvlm.compare --data ../shared/data/brain-tumor/data.yaml --model openai:http://gpu-box:8000/v1 --served_model llava

Over a set, every image is asked about by the detector and by the VLM (plainly, in every held-out wording of the
presence and type questions of medvlm.wordings, and given the detector's findings as text), batched, with a progress
bar; the report gives the VLM's sensitivity and specificity per wording and the worst wording, so one lucky wording
cannot carry the table. --other_images asks images that are no brain MRI the brain-tumour wordings: how often the
VLM says "yes" there is the "not a brain MRI" count; each image's findings are appended to the run folder's
answers.jsonl as it is done, so a rerun resumes. The report (medvlm.comparison) goes to report.json and plot.png in
the run folder and is printed; with --db, each side's answers are stored as a comparison run that physicians grade
in the Review tab.
"""
import argparse
import json
import re
import sys
from contextlib import nullcontext
from pathlib import Path

from medvlm import cli, wordings, zerogpu
from medvlm.detect import Detection
from medvlm.errors import UserFacingError
from medvlm.metrics import normalize_tokens, yes_no
from medvlm.settings import COMPARE_BATCH_GPU_SECONDS

PROG = "python -m medvlm.compare"
DEFAULT_QUESTION = "Is there a tumour in this MRI? Where?"
TUMOUR_WORDS = {"tumour", "tumor", "tumours", "tumors", "mass", "masses", "lesion", "lesions", "glioma", "gliomas",
                "glioblastoma", "astrocytoma", "meningioma", "meningiomas", "pituitary", "adenoma", "macroadenoma",
                "schwannoma", "lymphoma", "neoplasm", "neoplasms", "malignancy", "cancer", "carcinoma", "metastasis",
                "metastases"}
NEGATIONS = {"no", "not", "none", "without", "absent", "normal", "negative", "unremarkable", "free"}
NORMAL_WORDS = {"normal", "unremarkable", "negative"}
# A hedge leaves the question open: "possibly a tumour", "a glioma is not excluded", "cannot be ruled out".
HEDGES = ("possibl", " may ", " might ", "exclude", "ruled out", "rule out", "uncertain", "unclear", "maybe", "suspicious",
          "questionable", "indeterminate", "not sure", "cannot determine", "cannot tell", "difficult to")
CLAUSE = re.compile(r"[;,.:!?]|\bbut\b|\bhowever\b|\balthough\b|\bwhereas\b")


COMPARISON_ITEMS_SQL = """SELECT DISTINCT p.item_id FROM predictions p JOIN runs r ON r.id = p.run_id
                          WHERE r.settings LIKE '%"kind": "comparison"%'"""
COMPARISON_ANSWERS_SQL = """SELECT p.id, p.answer, i.reference FROM predictions p JOIN runs r ON r.id = p.run_id JOIN items i ON i.id = p.item_id
                            WHERE p.item_id = ? AND r.settings LIKE '%"kind": "comparison"%'"""


def mark_contested(db, item_ids: list[int]) -> None:
    """Inside a store write (db: its sqlite_utils Database): flag every comparison answer about these images that
    physicians should grade first, the ones where the sides disagree or either contradicts the label (review.queue)."""
    for item in item_ids:
        answers = db.execute(COMPARISON_ANSWERS_SQL, [item]).fetchall()
        said = {vlm_finds_tumour(answer) for _, answer, _ in answers}
        truth = {reference == "yes" for _, _, reference in answers if reference in ("yes", "no")}
        contested = len(said) > 1 or bool(truth) and said != truth
        ids = [prediction for prediction, _, _ in answers]
        db.execute(f"UPDATE predictions SET contested = ? WHERE id IN ({', '.join('?' * len(ids))})", [int(contested), *ids])


def grounded_question(family, question: str, detections: list[Detection], size: tuple[int, int]) -> str:
    """The question after the detector's findings, in the family's words (medvlm.models.families)."""
    return family.ask(question, context=family.findings(detections, size))


def vlm_finds_tumour(answer: str) -> bool | None:
    """True/False when the answer says whether there is a tumour; None when it doesn't say, hedges, or says both.

    Clause by clause, a tumour word counts unless its clause negates it ("no mass seen"), and "normal" or
    "unremarkable" count as no; clauses that disagree leave it open. "Mass effect" names no tumour. With no such
    clause, a lone yes or no decides."""
    text = f" {' '.join(normalize_tokens(answer))} "
    if any(hedge in text for hedge in HEDGES):
        return None
    verdicts = set()
    for clause in CLAUSE.split((answer or "").lower().replace("mass effect", "effect")):
        words = set(normalize_tokens(clause))
        if words & TUMOUR_WORDS:
            verdicts.add(not (words & NEGATIONS))
        elif words & NORMAL_WORDS or {"no", "abnormality"} <= words or {"no", "abnormalities"} <= words:
            verdicts.add(False)
    if len(verdicts) == 1:
        return verdicts.pop()
    if verdicts or "mass effect" in (answer or "").lower():
        return None
    said = yes_no(answer)
    return None if said is None else said == "yes"


def agreement(detections: list[Detection], answer: str) -> str:
    detector, vlm = bool(detections), vlm_finds_tumour(answer)
    if vlm is None:
        return f"The VLM's answer does not say whether there is a tumour; the detector {'finds one' if detector else 'finds none'}."
    if detector and vlm:
        return "Both find a tumour."
    if not detector and not vlm:
        return "Neither finds a tumour."
    return "Only the detector finds a tumour." if detector else "Only the VLM finds a tumour."


# --- a whole labelled set ---------------------------------------------------------------------------------------------

PRESENCE_WORDINGS = wordings.wordings("tumor_presence", wordings.HELDOUT)
TYPE_WORDINGS = wordings.wordings("tumor_type", wordings.HELDOUT)
PRESENCE_QUESTION = PRESENCE_WORDINGS[0].text  # "Is there a tumor in this brain MRI?": the first held-out wording
TYPE_QUESTION = TYPE_WORDINGS[0].text
ASKED = {"vlm_presence": (PRESENCE_QUESTION, False), "vlm_type": (TYPE_QUESTION, False),
         "grounded_presence": (PRESENCE_QUESTION, True), "grounded_type": (TYPE_QUESTION, True)}
# Every other held-out wording, asked plainly: the answers' key is "presence|WORDING" or "type|WORDING".
MORE_WORDINGS = [("presence", w) for w in PRESENCE_WORDINGS[1:]] + [("type", w) for w in TYPE_WORDINGS[1:]]
NOT_BRAIN_WORDINGS = wordings.wordings("tumor_presence", wordings.HELDOUT, reversed=False, naming="brain")


def presence_said(answer: str, reversed: bool = False) -> bool | None:
    """vlm_finds_tumour, for a wording that may ask the other way round ("Is this brain normal?" "yes": no tumour).
    Only a bare yes or no flips; "no, there is a glioma" names its finding whatever the wording."""
    found = vlm_finds_tumour(answer)
    if reversed and found is not None and normalize_tokens(answer) in (["yes"], ["no"]):
        return not found
    return found


def parse_args(argv=None) -> argparse.Namespace:
    from medvlm.remote import is_remote
    from medvlm.settings import COMPARE_BATCH_SIZE, DETECTOR_WEIGHTS, EVAL_MAX_NEW_TOKENS, MAX_NEW_TOKENS_LIMIT, REMOTE_CONCURRENCY

    parser = cli.Parser(PROG, __doc__)
    parser.add_argument("--data", required=True, help="a YOLO data.yaml (boxes per image; an empty label = no tumour)")
    parser.add_argument("--split", default="val", choices=("train", "val"))
    cli.add_model_arguments(parser)
    parser.add_argument("--detector", default=str(DETECTOR_WEIGHTS), help="YOLO weights")
    cli.add_db_argument(parser, default=None, help="also store each side's answers in this review database, for physicians")
    parser.add_argument("--output_dir", help="run folder (default: runs/compare/DATA-SPLIT-MODEL)")
    parser.add_argument("--limit", type=int, help="only N images, spread evenly over the split (its files sort by class)")
    parser.add_argument("--other_images", help="a folder of images that are no brain MRI (chest films, skin photos, "
                        "blanks): asked the brain-tumour wordings, counted as 'not a brain MRI' answers")
    parser.add_argument("--batch_size", type=int, default=COMPARE_BATCH_SIZE, help="images per batch, 4 questions each")
    parser.add_argument("--concurrency", type=int, default=REMOTE_CONCURRENCY,
                        help=f"with --model openai:URL: requests in flight at once (default: {REMOTE_CONCURRENCY})")
    parser.add_argument("--max_new_tokens", type=int, default=EVAL_MAX_NEW_TOKENS)
    args = parser.parse_args(argv)
    parser.check({"--limit": args.limit is not None and args.limit < 1, "--batch_size": args.batch_size < 1,
                  "--concurrency": not 1 <= args.concurrency <= 256, "--max_new_tokens": not 1 <= args.max_new_tokens <= MAX_NEW_TOKENS_LIMIT})
    if args.output_dir is None:
        data = Path(args.data)
        adapter = f"-{Path(args.adapter).name}" if args.adapter else ""
        model = f"{args.served_model or 'served'}-{args.model.split('//')[-1]}" if is_remote(args.model) else Path(args.model).name
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{data.parent.name}-{args.split}-{model}{adapter}")
        args.output_dir = str(Path("runs") / "compare" / name)
    return args


def spread(images: list, n: int | None) -> list:
    """n of the images at even steps (all when n is None or larger): the first n would be one class only."""
    if n is None or n >= len(images):
        return images
    return [images[k * len(images) // n] for k in range(n)]


def findings_row(image: Path, boxes: list, names: list[str], picture, detections: list[Detection], answers: dict) -> dict:
    from medvlm.images import fingerprint

    return {"image": image.name, "path": str(image), "fingerprint": fingerprint(picture), "label": names[boxes[0][0]] if boxes else None,
            "boxes": boxes, "size": list(picture.size), "detections": [d.as_dict() for d in detections], "answers": answers}


def case_of(row: dict, names: list[str]):
    """A stored row -> medvlm.comparison.Case."""
    from medvlm.comparison import Case, iou, vlm_type

    detections, answers = row["detections"], row["answers"]
    box_iou = None
    if len(row["boxes"]) == 1 and detections:
        _, xc, yc, w, h = row["boxes"][0]
        width, height = row["size"]
        labelled = ((xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height)
        box_iou = iou(tuple(detections[0]["box"]), labelled)
    elif row["boxes"]:
        box_iou = 0.0  # a labelled tumour the detector missed
    by_wording = {"presence": {PRESENCE_QUESTION: presence_said(answers["vlm_presence"])},
                  "type": {TYPE_QUESTION: vlm_type(answers["vlm_type"], names)}}
    for kind, w in MORE_WORDINGS:
        if f"{kind}|{w.text}" in answers:
            said = answers[f"{kind}|{w.text}"]
            by_wording[kind][w.text] = presence_said(said, w.reversed) if kind == "presence" else vlm_type(said, names)
    return Case(
        image=row["image"], label=row["label"],
        presence={"detector": bool(detections), "vlm": vlm_finds_tumour(answers["vlm_presence"]),
                  "vlm_grounded": vlm_finds_tumour(answers["grounded_presence"])},
        kind={"detector": detections[0]["label"] if detections else None, "vlm": vlm_type(answers["vlm_type"], names),
              "vlm_grounded": vlm_type(answers["grounded_type"], names)},
        box_iou=box_iou, wordings=by_wording,
    )


def read_rows(path: Path) -> dict[str, dict]:
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                rows[row["image"]] = row
            except (json.JSONDecodeError, KeyError):
                continue  # a line torn by a kill mid-write: that image is asked again
    return rows


def questions_for(family, picture, detections: list[Detection]) -> dict[str, str]:
    """The questions asked about one image, by answer key: ASKED's four (grounded ones after the detector's
    findings), then every other held-out wording of presence and type."""
    asked = {key: grounded_question(family, question, detections, picture.size) if grounded else question
             for key, (question, grounded) in ASKED.items()}
    return asked | {f"{kind}|{w.text}": w.text for kind, w in MORE_WORDINGS}


@zerogpu.gpu(COMPARE_BATCH_GPU_SECONDS)  # a ZeroGPU Space attaches its GPU batch by batch
def compare_batch(loaded, detector, pictures: list, settings, concurrency: int | None = None) -> tuple[list[list[Detection]], list[dict]]:
    """The detector on all pictures in one pass, then every picture's questions in one batch of the VLM
    (medvlm.predict packs each picture's questions behind one prefix) -> (detections, answers) per picture; each
    answers dict also holds "p_yes": {key: the model's probability of yes} where it was measured."""
    from medvlm.data import Example
    from medvlm.predict import answer_examples

    detections = detector.predict_batch(pictures)
    asked = [questions_for(loaded.family, picture, found) for picture, found in zip(pictures, detections)]
    examples = [Example(image_path=None, turns=((question, ""),), answer_type="CLOSED", inline_image=picture)
                for picture, questions in zip(pictures, asked) for question in questions.values()]
    said = iter(answer_examples(loaded, examples, settings, batch_size=len(examples), concurrency=concurrency or len(examples)))
    answers = []
    for questions in asked:
        row = {key: next(said) for key in questions}
        answers.append({key: str(a) for key, a in row.items()} | {
            "p_yes": {key: a.p_yes for key, a in row.items() if getattr(a, "p_yes", None) is not None}})
    return detections, answers


def not_brain_answers(loaded, folder: Path, settings, concurrency: int | None = None) -> dict:
    """The brain-tumour wordings asked about each image of a folder that holds no brain MRI -> the count of images
    and answers, and how many answers said a tumour is there (each should say no)."""
    from medvlm.data import Example
    from medvlm.images import load_image
    from medvlm.predict import answer_examples

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm")) if Path(folder).is_dir() else []
    if not files:
        raise UserFacingError(f"--other_images {folder}: no PNG, JPEG or DICOM images there.")
    examples = [Example(image_path=None, turns=((w.text, ""),), answer_type="CLOSED", inline_image=load_image(path))
                for path in files for w in NOT_BRAIN_WORDINGS]
    said = answer_examples(loaded, examples, settings, batch_size=16, concurrency=concurrency or 8)
    found = [presence_said(a) for a in said]
    from medvlm.stats import percent

    per_wording = {w.text: percent(sum(found[k] is True for k in range(i, len(found), len(NOT_BRAIN_WORDINGS))), len(files))
                   for i, w in enumerate(NOT_BRAIN_WORDINGS)}
    return {"images": len(files), "answers": len(said), "said_tumour": percent(sum(f is True for f in found), len(said)),
            "images_with_a_yes": sum(any(found[k * len(NOT_BRAIN_WORDINGS):(k + 1) * len(NOT_BRAIN_WORDINGS)]) for k in range(len(files))),
            "per_wording": per_wording}


def run_comparison(args: argparse.Namespace, loaded=None, detector=None, hold=nullcontext, store=None) -> dict:
    """Compare over args.data's split, resuming from the run folder -> the report. The CLI loads the model and the
    detector; the app passes its own (`loaded`, `detector`) and `hold`, a context manager taken around each batch
    (its model locks), and `store`, its review database. Progress is a tqdm bar (the app's progress bar tracks it)."""
    from tqdm import tqdm

    from medvlm import models
    from medvlm.chat import GenerationSettings
    from medvlm.comparison import report
    from medvlm.detect import Detector
    from medvlm.images import load_image
    from medvlm.labels import yolo_images

    names, found = yolo_images(Path(args.data), keys=(args.split,))
    images = spread(found[args.split], args.limit)
    if not images:
        raise UserFacingError(f"No images in the {args.split} split of {Path(args.data).name}.")
    spec = loaded.spec if loaded is not None else cli.model_spec(args)
    detector_weights = detector.weights if detector is not None else Path(args.detector)
    run = Path(args.output_dir)
    run.mkdir(parents=True, exist_ok=True)
    config = {"data": str(Path(args.data).resolve()), "split": args.split, "model": spec.name, "adapter": spec.adapter,
              "detector": str(Path(detector_weights).resolve()), "max_new_tokens": args.max_new_tokens,
              "wordings": [PRESENCE_QUESTION, TYPE_QUESTION] + [w.text for _, w in MORE_WORDINGS]}
    saved = run / "config.json"
    if saved.is_file() and json.loads(saved.read_text()) != config:
        raise UserFacingError(f"{run} holds a comparison with other settings: pass another --output_dir.")
    saved.write_text(json.dumps(config, indent=2) + "\n")
    answers_file = run / "answers.jsonl"
    rows = read_rows(answers_file)
    todo = [(image, boxes) for image, boxes in images if image.name not in rows]
    print(f"{len(images)} images, {len(images) - len(todo)} already compared", file=sys.stderr)
    if todo:
        if loaded is None:
            loaded = models.load(spec, cli.device_of(args), args.quantize)
        if detector is None:
            detector = Detector(detector_weights, device="0" if (cli.device_of(args) or models.default_device()).startswith("cuda") else "cpu")
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
        with open(answers_file, "a") as out, tqdm(total=len(todo), desc="compare", unit="image") as bar:
            for start in range(0, len(todo), args.batch_size):
                chunk = todo[start : start + args.batch_size]
                pictures = [load_image(image) for image, _ in chunk]
                with hold():
                    detections, answers = compare_batch(loaded, detector, pictures, settings, args.concurrency)
                for (image, boxes), picture, found_here, said in zip(chunk, pictures, detections, answers):
                    row = findings_row(image, boxes, names, picture, found_here, said)
                    out.write(json.dumps(row) + "\n")
                    rows[image.name] = row
                out.flush()
                bar.update(len(chunk))
    ordered = [rows[image.name] for image, _ in images]
    result = report([case_of(row, names) for row in ordered], names)
    result["settings"] = config
    if getattr(args, "other_images", None):
        if loaded is None:
            loaded = models.load(spec, cli.device_of(args), args.quantize)
        with hold():
            result["not_brain"] = not_brain_answers(loaded, Path(args.other_images), GenerationSettings(
                max_new_tokens=args.max_new_tokens, temperature=0.0), args.concurrency)
    (run / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, run / "plot.png")
    if store is not None or args.db:
        result["review_runs"] = store_in_review_db(store if store is not None else args.db, spec, config, ordered, result, run / "plot.png")
    return result


def plot(result: dict, path: Path) -> None:
    """Sensitivity, specificity, accuracy and type accuracy per side, with 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medvlm.comparison import SIDES

    measures = [("sensitivity", lambda s: result["presence"][s]["sensitivity"]), ("specificity", lambda s: result["presence"][s]["specificity"]),
                ("accuracy", lambda s: result["presence"][s]["accuracy"]), ("type accuracy", lambda s: result["type"][s])]
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(SIDES)
    for k, side in enumerate(SIDES):
        values = [(get(side)["value"] or 0.0, get(side)["ci95"] or [0.0, 0.0]) for _, get in measures]
        centres = [m + (k - 1) * width for m in range(len(measures))]
        errors = [[v - ci[0] for v, ci in values], [ci[1] - v for v, ci in values]]
        axis.bar(centres, [v for v, _ in values], width, yerr=errors, capsize=3, label=side.replace("_", " "))
    axis.set_xticks(range(len(measures)), [name for name, _ in measures])
    axis.set_ylim(0, 105)
    axis.set_ylabel("% (95 % interval)")
    axis.set_title(f"VLM versus detector on {result['images']} images ({result['tumour_images']} with a tumour)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def store_in_review_db(db, spec, config: dict, rows: list[dict], result: dict, plot_path: Path) -> dict:
    """The report and plot (for the Evaluation tab), and each side's presence answer per image as a comparison run
    (the detector's as "yes, glioma" / "no"), so physicians grade both sides, disagreements first. -> {side: run id}."""
    from medvlm.images import fingerprint, load_image
    from medvlm.store import Store

    store = db if isinstance(db, Store) else Store(db)
    dataset = f"compare:{Path(config['data']).parent.name}"
    store.add_comparison(spec.name, spec.adapter, Path(config["detector"]).name, dataset, config["split"], result,
                         plot_path.read_bytes() if plot_path.is_file() else None)
    items = [store.add_item(dataset, PRESENCE_QUESTION, "yes" if row["label"] else "no", "CLOSED", image_ref=row["path"],
                            image_hash=row.get("fingerprint") or fingerprint(load_image(row["path"])), task="tumor_presence") for row in rows]
    runs = {}
    for side, model, adapter in (("detector", Path(config["detector"]).name, None), ("vlm", spec.name, spec.adapter),
                                 ("vlm_grounded", spec.name, spec.adapter)):
        settings = {"kind": "comparison", "side": side, "detector": Path(config["detector"]).name,
                    "max_new_tokens": config["max_new_tokens"]}
        run = store.find_run(model, dataset, config["split"], adapter, settings) or store.add_run(model, dataset, config["split"], adapter, settings)
        runs[side] = run
        for row, item in zip(rows, items):
            if side == "detector":
                answer = f"yes, {row['detections'][0]['label']}" if row["detections"] else "no"
            else:
                answer = row["answers"]["vlm_presence" if side == "vlm" else "grounded_presence"]
            store.add_prediction(run, item, answer, boxes=row["detections"])
    with store.write() as written:
        mark_contested(written, items)
    if store is not db:
        store.close()
    return runs


def format_report(result: dict) -> str:
    from medvlm.comparison import cell, summary_rows

    rows = summary_rows(result)
    lines = [f"{result['images']} images, {result['tumour_images']} with a labelled tumour"]
    for first, *sides in [["", *list(rows[0])[1:]]] + [list(row.values()) for row in rows]:
        lines.append(f"{first:24s}" + "".join(f"{value:>24s}" for value in sides))
    kappa = result["agreement"]["kappa_vlm_detector"]
    lines.append(f"detector box IoU >= 0.5: {cell(result['detector_box_iou50'])}")
    if kappa["value"] is not None:
        low, high = kappa["ci95"]
        lines.append(f"VLM-detector agreement: kappa {kappa['value']:.2f} [{low:.2f}, {high:.2f}] on {kappa['n']} clear answers")
    lines.append("who was right: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result["agreement"]["who_was_right"].items()))
    g = result["grounding"]
    lines.append(f"grounding the VLM on the detector: presence {g['presence']['to_right']} flips to right, {g['presence']['to_wrong']} to wrong; "
                 f"type {g['type']['to_right']} to right, {g['type']['to_wrong']} to wrong")
    wording = result.get("wordings")
    if wording:
        lines.append(f"VLM per presence wording ({len(wording['presence'])}): worst balanced accuracy {wording['worst_presence']['balanced']:.1f} "
                     f"({wording['worst_presence']['wording']!r}), mean {wording['mean_presence_balanced']:.1f}")
        for text, entry in wording["presence"].items():
            lines.append(f"  {text[:60]:60s} sensitivity {cell(entry['sensitivity']):>16s}  specificity {cell(entry['specificity']):>16s}")
        worst_type = wording["worst_type"]
        lines.append(f"VLM type per wording ({len(wording['type'])}): worst {cell(worst_type['accuracy'])} ({worst_type['wording']!r})")
    if "not_brain" in result:
        nb = result["not_brain"]
        lines.append(f"not a brain MRI: the VLM said tumour in {cell(nb['said_tumour'])} % of {nb['answers']} answers "
                     f"about {nb['images']} other images ({nb['images_with_a_yes']} images with a yes)")
    for label, sides in result["per_class"].items():
        lines.append(f"  {label:12s} n={sides['detector']['n']:<4d}" + "  ".join(
            f"{s}: presence {v['presence_accuracy']:.0f}" + (f", type {v['type_accuracy']:.0f}" if v["type_accuracy"] is not None else "")
            for s, v in sides.items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run(PROG, lambda: print_report(run_comparison(args), Path(args.output_dir)))


def print_report(result: dict, run: Path) -> None:
    print(format_report(result))
    print(f"report: {run / 'report.json'}, plot: {run / 'plot.png'}")


if __name__ == "__main__":
    sys.exit(main())
