"""The Compare tab: one image, the VLM's answer on the left, the detector's boxes and table on the right, and
whether they agree underneath. Both run at once and each shows as soon as it is ready; with "give the VLM the
detector's findings" the detector goes first and its findings are put in the VLM's prompt."""
import logging
import queue
import threading

import gradio as gr

from medvlm.chat import GenerationSettings, check_question, stream_reply
from medvlm.compare import DEFAULT_QUESTION, agreement, grounded_question
from medvlm.detect import draw
from medvlm.errors import UserFacingError
from medvlm.host import ModelHost
from medvlm.images import load_image
from medvlm.ui.text import markdown_text

log = logging.getLogger(__name__)
TABLE_HEADERS = ["class", "confidence", "x1", "y1", "x2", "y2"]
SETTINGS = GenerationSettings(max_new_tokens=96, temperature=0.0)


def detection_rows(detections) -> list[list]:
    return [[d.label, round(d.confidence, 3)] + [round(v) for v in d.box] for d in detections]


def build_compare_tab(host: ModelHost) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="MRI image: PNG, JPEG or DICOM", type="filepath", elem_id="compare-upload")
            question = gr.Textbox(value=DEFAULT_QUESTION, label="Question for the VLM", lines=1, elem_id="compare-question")
            grounded = gr.Checkbox(value=False, label="Give the VLM the detector's findings", elem_id="compare-grounded")
            run = gr.Button("Compare", variant="primary", elem_id="compare-run")
        with gr.Column(scale=1):
            gr.Markdown("### VLM")
            answer = gr.Markdown(elem_id="compare-answer")
        with gr.Column(scale=1):
            gr.Markdown("### Detector (YOLOv8)")
            boxes = gr.Image(type="pil", interactive=False, show_label=False, height=320, elem_id="compare-boxes")
            table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="compare-table")
    verdict = gr.Markdown(elem_id="agreement")
    status = gr.Markdown(elem_id="compare-status")

    def compare(path, text, use_findings):
        """-> answer, boxes, table, agreement, status; yields whenever either side has something new."""
        try:
            if not path:
                raise UserFacingError("Upload an image first.")
            image = load_image(path)
            text = check_question(text)
            if host.current is None:
                raise UserFacingError("No model is loaded: pick one in the Chat tab.")
        except UserFacingError as e:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), f"⚠️ {markdown_text(str(e))}"
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
                with host.lock:
                    for partial in stream_reply(host.current, [], prompt, image, SETTINGS):
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
        yield "…", None, None, "", "Running the VLM and the detector…"
        while not (detector_done and vlm_done):
            kind, value = events.get()
            detector_done |= kind in ("detections", "detector_failed")
            vlm_done |= kind in ("answered", "vlm_failed")
            if kind == "answer":
                yield markdown_text(value), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            elif kind == "answered":
                final_answer = value
                yield markdown_text(value), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            elif kind == "detections":
                detections = value
                if use_findings:
                    threading.Thread(target=ask, args=(grounded_question(text, detections, image.size),), daemon=True).start()
                yield gr.skip(), draw(image, detections), detection_rows(detections), gr.skip(), gr.skip()
            elif kind == "detector_failed":
                problems.append(f"detector: {value}")
                if use_findings:  # nothing to ground on: the VLM answers the plain question
                    threading.Thread(target=ask, args=(text,), daemon=True).start()
            else:
                problems.append(f"VLM: {value}")
        line = f"**Agreement:** {agreement(detections, final_answer)}" if detections is not None and final_answer is not None else ""
        grounding = " The VLM was given the detector's findings." if use_findings and detections is not None else ""
        yield gr.skip(), gr.skip(), gr.skip(), line, ("⚠️ " + markdown_text(" ".join(problems))) if problems else f"Done.{grounding}"

    run.click(compare, [upload, question, grounded], [answer, boxes, table, verdict, status], concurrency_id="model")
