"""The Compare tab: one image, the VLM's answer on the left, the detector's boxes and table on the right, and
whether they agree underneath. Both run at once and each shows as soon as it is ready; with "give the VLM the
detector's findings" the detector goes first and its findings are put in the VLM's prompt.

Below, the same over a whole labelled set (python -m medvlm.compare with the app's model and detector): the latest
stored report, or a new run with a progress bar, stored in the review database, where the contested images go to
physicians first. With accounts, only admins see or start dataset runs (they name the models)."""
import logging
import queue
import threading

import gradio as gr
import pandas as pd

from medvlm.answers import with_confidence
from medvlm.chat import GenerationSettings, check_question
from medvlm.compare import DEFAULT_QUESTION, agreement, grounded_question, parse_args, run_comparison
from medvlm.comparison import summary_rows
from medvlm.detect import draw
from medvlm.errors import UserFacingError
from medvlm.host import ModelHost
from medvlm.images import blank_warning
from medvlm.settings import COMPARE_DATA, DEFAULT_MAX_NEW_TOKENS
from medvlm.store import Store
from review import users
from ui import scan_view
from ui.events import MODEL_EVENT, bind
from ui.pictures import picture_file
from ui.text import markdown_text, warning

log = logging.getLogger(__name__)
TABLE_HEADERS = ["class", "confidence", "x1", "y1", "x2", "y2"]
SETTINGS = GenerationSettings(max_new_tokens=DEFAULT_MAX_NEW_TOKENS, temperature=0.0)  # greedy: both sides are repeatable


def detection_rows(detections) -> list[list]:
    return [[d.label, round(d.confidence, 3)] + [round(v) for v in d.box] for d in detections]


def compare(host: ModelHost, path, text, use_findings, view=None, model_name=None):
    """The VLM's answer, the detector's boxes and table, and whether they agree, each shown as soon as it is ready.
    Both are given the picture on screen: the slice and window the viewer shows (view), or the upload's own."""
    try:
        view = scan_view.view_of(view, path)
        image = view.picture
        text = check_question(text)
        model_name = model_name or host.default_name  # the session's model, picked in the Chat tab
        if model_name is None:
            raise UserFacingError("No model is loaded: pick one in the Chat tab.")
        family = host.model(model_name).family
    except UserFacingError as e:
        yield {"status": warning(str(e))}
        return
    events: queue.Queue = queue.Queue()

    def detect():
        try:
            events.put(("detections", host.detect(image)))
        except UserFacingError as e:
            events.put(("detector_failed", str(e)))
        except Exception as e:  # keep the tab up; the log has the traceback
            log.exception("detection failed")
            events.put(("detector_failed", f"Detection failed ({type(e).__name__})."))

    def ask(prompt):
        partial = ""
        try:
            for partial in host.stream_reply(model_name, [], prompt, image, SETTINGS):
                events.put(("answer", partial))
            events.put(("answered", partial or "(no answer)"))
        except UserFacingError as e:
            events.put(("vlm_failed", str(e)))
        except Exception as e:
            log.exception("generation failed")
            events.put(("vlm_failed", f"Generation failed ({type(e).__name__})."))

    threading.Thread(target=detect, daemon=True).start()
    if not use_findings:
        threading.Thread(target=ask, args=(text,), daemon=True).start()
    detections, final_answer, problems = None, None, []
    detector_done = vlm_done = False
    # The last update carries every output: an API caller (gradio_client) sees only the final values.
    shown = {"answer": "…", "boxes": None, "table": None}
    yield shown | {"agreement": "", "status": "Running the VLM and the detector…"}
    while not (detector_done and vlm_done):
        kind, value = events.get()
        detector_done |= kind in ("detections", "detector_failed")
        vlm_done |= kind in ("answered", "vlm_failed")
        if kind in ("answer", "answered"):
            final_answer = value if kind == "answered" else final_answer
            shown["answer"] = markdown_text(with_confidence(value) if kind == "answered" else value)
            yield {"answer": shown["answer"]}
        elif kind == "detections":
            detections = value
            if use_findings:
                grounded = grounded_question(family, text, detections, image.size)
                threading.Thread(target=ask, args=(grounded,), daemon=True).start()
            shown.update(boxes=picture_file(draw(image, detections)), table=detection_rows(detections))
            yield {"boxes": shown["boxes"], "table": shown["table"]}
        elif kind == "detector_failed":
            problems.append(f"detector: {value}")
            if use_findings:  # nothing to ground on: the VLM answers the plain question
                threading.Thread(target=ask, args=(text,), daemon=True).start()
        else:
            problems.append(f"VLM: {value}")
    line = f"**Agreement:** {agreement(detections, final_answer)}" if detections is not None and final_answer is not None else ""
    blank = blank_warning(image, view.name)
    if blank and line:  # no agreement line without saying that there was nothing to read
        line = f"{warning(blank)} {line}"
    grounding = " The VLM was given the detector's findings." if use_findings and detections is not None else ""
    where = f" Both were given {markdown_text(view.where)}." if view.where else ""
    yield shown | {"agreement": line, "status": warning(" ".join(problems)) if problems else f"Done.{grounding}{where}"}


def detect_only(host: ModelHost, path, view=None) -> dict:
    """The detector's boxes and table alone (a second or so, without waiting for the VLM), on the picture on screen."""
    try:
        view = scan_view.view_of(view, path)
        detections = host.detect(view.picture)
    except UserFacingError as e:
        return {"status": warning(str(e))}
    found = f"{len(detections)} finding(s)." if detections else "No tumour found."
    where = f" ({markdown_text(view.where)})" if view.where else ""
    return {"answer": "", "boxes": picture_file(draw(view.picture, detections)), "table": detection_rows(detections), "agreement": "",
            "status": f"Detector only{where}: {found}"}


def on_upload(paths) -> dict:
    """The scan in the viewer, at its middle slice in its own window; a bad file says why and shows nothing."""
    try:
        view = scan_view.open_view(paths)
    except UserFacingError as e:
        return scan_view.shown(None) | {"status": warning(str(e))}
    return scan_view.shown(view) | {"status": view.line()}


def on_clear() -> dict:
    return scan_view.shown(None) | {"status": ""}


def on_view(control: str, view, window, width, level, slice_number, plane) -> dict:
    try:
        view = scan_view.moved(view, control, window, width, level, slice_number, plane)
    except UserFacingError as e:
        return {"status": warning(str(e))}
    return scan_view.shown(view, control) | {"status": f"Now {markdown_text(view.where)}: Compare gives both sides this picture."}


def build_compare_tab(host: ModelHost, store: Store, accounts: bool, tab: gr.Tab, model_name: gr.State) -> None:
    """model_name: the session's model, picked in the Chat tab."""
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="MRI: PNG, JPEG, DICOM (a file, a series' files or a .zip of them) or NIfTI", type="filepath",
                             file_count="multiple", elem_id="compare-upload")
            preview = gr.Image(label="What both are given", type="pil", interactive=False, height=220, elem_id="compare-preview")
            view = gr.State(None)
            controls = scan_view.build_controls("compare-")
            question = gr.Textbox(value=DEFAULT_QUESTION, label="Question for the VLM", lines=1, elem_id="compare-question")
            grounded = gr.Checkbox(value=False, label="Give the VLM the detector's findings", elem_id="compare-grounded")
            with gr.Row():
                run = gr.Button("Compare", variant="primary", elem_id="compare-run")
                detect = gr.Button("Detector only", elem_id="compare-detect")
        with gr.Column(scale=1):
            gr.Markdown("### VLM")
            answer = gr.Markdown(elem_id="compare-answer")
        with gr.Column(scale=1):
            gr.Markdown("### Detector (YOLOv8)")
            boxes = gr.Image(type="pil", interactive=False, show_label=False, height=320, elem_id="compare-boxes")
            table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="compare-table")
    verdict = gr.Markdown(elem_id="agreement")
    status = gr.Markdown(elem_id="compare-status")
    screen = {"answer": answer, "boxes": boxes, "table": table, "agreement": verdict, "status": status}
    viewer = {"view": view, "preview": preview, **controls, "status": status}
    bind(compare, screen, host=host).on(run.click, [upload, question, grounded, view, model_name], api_name="compare", **MODEL_EVENT)
    bind(detect_only, screen, host=host).on(detect.click, [upload, view], api_name="detect")
    bind(on_upload, viewer).on(upload.upload, [upload], api_name="compare_upload")
    bind(on_clear, viewer).on(upload.clear, api_visibility="private")
    scan_view.listen(on_view, viewer, controls, view, api_prefix="compare_")
    build_dataset_section(host, store, accounts, tab, model_name)


def report_summary(comparison: dict) -> str:
    """A line naming a stored comparison (medvlm.compare's report) and its agreement figures."""
    r = comparison["report"]
    kappa = r["agreement"]["kappa_vlm_detector"]
    right = r["agreement"]["who_was_right"]
    agreed = "" if kappa["value"] is None else f" Agreement: kappa {kappa['value']:.2f} [{kappa['ci95'][0]:.2f}, {kappa['ci95'][1]:.2f}]."
    return markdown_text(
        f"Comparison #{comparison['id']} ({comparison['created'][:16].replace('T', ' ')}): {comparison['model']} versus "
        f"{comparison['detector']} on {r['images']} {comparison['split'] or ''} images of {comparison['dataset'].removeprefix('compare:')} "
        f"({r['tumour_images']} with a tumour). When they disagree: detector right {right['detector_only_right']}, "
        f"VLM right {right['vlm_only_right']}, both wrong {right['both_wrong']}.{agreed}")


def build_dataset_section(host: ModelHost, store: Store, accounts: bool, tab: gr.Tab, model_name: gr.State) -> None:
    with gr.Accordion("Over a labelled dataset", open=True):
        gr.Markdown("Every image of a YOLO-layout set (a `data.yaml` on the server: boxes per image, an empty label for "
                    "no tumour), asked of the detector and of the loaded VLM, plainly and given the detector's findings. "
                    "Same as `python -m medvlm.compare`; resumable; stored in the review database (Evaluation tab), with "
                    "the images where the sides disagree first in the physicians' queue.")
        with gr.Row():
            data = gr.Textbox(value=COMPARE_DATA, label="YOLO data.yaml", scale=3, elem_id="compare-data")
            split = gr.Radio(["val", "train"], value="val", label="Split", scale=1, elem_id="compare-split")
            limit = gr.Number(value=0, precision=0, minimum=0, maximum=100_000, label="Images (0: all)", scale=1,
                              elem_id="compare-limit")
            start = gr.Button("Compare over the dataset", scale=1, elem_id="compare-dataset-run")
        summary = gr.Markdown(elem_id="compare-dataset-status")
        # Shown with a comparison only: an empty table draws Gradio's placeholder columns "1 2 3".
        figures = gr.Dataframe(interactive=False, wrap=True, elem_id="compare-dataset-table", visible=False,
                               label="Tumour presence and type per side, % [95 % interval]")
        picture = gr.Image(interactive=False, height=320, show_label=False, elem_id="compare-dataset-plot", visible=False)

    screen = {"summary": summary, "figures": figures, "picture": picture}
    bind(latest_comparison, screen, store=store, accounts=accounts).on(tab.select, api_visibility="private")
    # Its own queue: the model is taken batch by batch (host.holding), so chats go on between batches.
    bind(run_dataset, screen, host=host, store=store, accounts=accounts).on(
        start.click, [data, split, limit, model_name], concurrency_id="dataset", api_name="compare_dataset")


def comparison_shown(comparison: dict | None, line: str = "") -> dict:
    if comparison is None:
        return {"summary": line or "No dataset comparison yet.", "figures": gr.update(value=None, visible=False),
                "picture": gr.update(value=None, visible=False)}
    return {"summary": " ".join(filter(None, [line, report_summary(comparison)])),
            "figures": gr.update(value=pd.DataFrame(summary_rows(comparison["report"])), visible=True),
            "picture": gr.update(value=picture_file(comparison["plot"]), visible=True)}  # PNG bytes


def latest_comparison(store: Store, accounts: bool, request: gr.Request) -> dict:
    if not users.may_administer(store, accounts, getattr(request, "username", None)):
        return comparison_shown(None, "Only admins see dataset comparisons: they name the models.")
    found = store.comparisons(1)
    return comparison_shown(found[0] if found else None)


def run_dataset(host: ModelHost, store: Store, accounts: bool, path, which, how_many, model_name, request: gr.Request,
                progress=gr.Progress(track_tqdm=True)) -> dict:
    """python -m medvlm.compare with the app's model and detector; run folders live beside the review database."""
    try:
        if not users.may_administer(store, accounts, getattr(request, "username", None)):
            raise UserFacingError("Only admins may start a dataset comparison.")
        model_name = model_name or host.default_name  # the admin's session's model
        if model_name is None:
            raise UserFacingError("No model is loaded: pick one in the Chat tab.")
        loaded = host.model(model_name)
        if not (path or "").strip():
            raise UserFacingError("Give the path of a YOLO data.yaml.")
        spec = loaded.spec
        model = [f"--model={spec.source}", f"--served_model={spec.served_model}"] if spec.served_model else [f"--model={spec.name}"]
        argv = [f"--data={path.strip()}", f"--split={which}", *model]
        argv += [f"--adapter={loaded.spec.adapter}"] if loaded.spec.adapter else []
        argv += [f"--limit={int(how_many)}"] if how_many else []
        args = parse_args(argv)
        args.output_dir = str(store.path.parent / args.output_dir)
        result = run_comparison(args, loaded=loaded, detector=host.detector(), hold=lambda: host.holding(model_name), store=store)
    except UserFacingError as e:
        return {"summary": warning(str(e))}
    except Exception as e:  # keep the tab up; the log has the traceback
        log.exception("dataset comparison failed")
        return {"summary": f"⚠️ The dataset comparison failed ({type(e).__name__})."}
    return comparison_shown(store.comparisons(1)[0], f"Done: {result['images']} images.")
