"""The Review tab: reviewers sign in, then grade model answers one at a time, blinded to the model.

Keys (outside text boxes): 1 correct, 2 rephrased, 3 wrong, U undo the last verdict, S skip. Each verdict is stored
at once (review.store); a double click or a resubmitted request is stored once.
"""
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr

from medvlm.errors import UserFacingError
from medvlm.images import load_image
from review import queue, users
from review.store import Store

log = logging.getLogger(__name__)
ALL = "all"

# Loaded with the page (launch(js=...)): the shortcuts click the tab's buttons, never while typing in a field.
KEYBOARD_JS = """
() => {
  const keys = {"1": "review-correct", "2": "review-rephrased", "3": "review-wrong", "u": "review-undo", "s": "review-skip"};
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
    const id = keys[event.key.toLowerCase()];
    const button = id && document.getElementById(id);
    if (button && button.offsetParent !== null) { event.preventDefault(); button.click(); }
  });
}
"""


@dataclass(frozen=True)
class Session:
    """One browser's review session: who signed in, the prediction on screen, what was skipped."""

    reviewer_id: int | None = None
    reviewer: str = ""
    shown: int | None = None  # prediction id on screen
    shown_token: str = ""  # identifies this showing: a double click sends the same token, stored once
    skipped: tuple = field(default_factory=tuple)


def build_review_tab(store: Store) -> None:
    session = gr.State(Session())
    with gr.Column(visible=True, elem_id="review-signin") as signin_box:
        gr.Markdown("Sign in to grade answers. Accounts: `python -m review.users add NAME`.")
        with gr.Row():
            name = gr.Textbox(label="Reviewer", elem_id="review-name")
            password = gr.Textbox(label="Password", type="password", elem_id="review-password")
        signin = gr.Button("Sign in", variant="primary", elem_id="review-signin-button")
    with gr.Column(visible=False, elem_id="review-panel") as panel:
        with gr.Row():
            run_filter = gr.Dropdown(choices=[ALL], value=ALL, label="Run", elem_id="review-run")
            type_filter = gr.Dropdown(choices=[ALL, "CLOSED", "OPEN"], value=ALL, label="Question type", elem_id="review-type")
            progress = gr.Markdown(elem_id="review-progress")
        with gr.Row():
            image = gr.Image(type="pil", interactive=False, show_label=False, height=320, elem_id="review-image")
            with gr.Column():
                question = gr.Markdown(elem_id="review-question")
                reference = gr.Markdown(elem_id="review-reference")
                answer = gr.Markdown(elem_id="review-answer")
                note = gr.Textbox(label="Note (optional)", lines=1, elem_id="review-note")
                with gr.Row():
                    correct = gr.Button("1 · Correct", variant="primary", elem_id="review-correct")
                    rephrased = gr.Button("2 · Rephrased", elem_id="review-rephrased")
                    wrong = gr.Button("3 · Wrong", variant="stop", elem_id="review-wrong")
                with gr.Row():
                    undo = gr.Button("U · Undo last", elem_id="review-undo")
                    skip = gr.Button("S · Skip", elem_id="review-skip")
    status = gr.Markdown(elem_id="review-status")

    screen = [session, image, question, reference, answer, note, progress]

    def run_choices():
        return [ALL] + [str(row[0]) for row in store.query("SELECT id FROM runs ORDER BY id")]

    def show_next(s: Session, run, kind, message: str = "", first: int | None = None):
        """-> session, image, question, reference, answer, note, progress, status. `first`: show it if pending."""
        pending, graded = queue.queue(store, s.reviewer_id, None if run == ALL else int(run), None if kind == ALL else kind)
        total = graded + len(pending)
        fresh = [p for p in pending if p["prediction_id"] not in s.skipped] or pending  # skipped ones come back last
        fresh.sort(key=lambda p: p["prediction_id"] != first)
        counts = f"**{graded} / {total} graded**" + (f" · {len(s.skipped)} skipped" if s.skipped else "")
        if not fresh:
            return (replace(s, shown=None), None, "Nothing left to grade with these filters.", "", "", "", counts, message)
        item = fresh[0]
        picture = None
        if item["image_ref"] and Path(item["image_ref"]).is_file():
            try:
                picture = load_image(item["image_ref"])
            except UserFacingError as e:
                message = f"{message} ⚠️ {e}".strip()
        token = f"{s.reviewer_id}:{item['prediction_id']}:{len(store.history(item['prediction_id'], s.reviewer_id))}"
        return (
            replace(s, shown=item["prediction_id"], shown_token=token), picture,
            f"**Question** ({item['answer_type'].lower()}): {item['question']}",
            f"**Reference answer:** {item['reference'] or '(none: a chat answer)'}",
            f"**Model answer:** {item['answer'] or '(empty)'}", "", counts, message,
        )

    def sign_in(user, secret, run, kind):
        try:
            reviewer = users.sign_in(store, user, secret)
        except UserFacingError as e:
            return (Session(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), f"⚠️ {e}",
                    gr.update(visible=True), gr.update(visible=False), "", gr.skip())
        shown = show_next(Session(reviewer_id=reviewer["id"], reviewer=reviewer["name"]), run, kind, f"Signed in as {reviewer['name']}.")
        return (*shown, gr.update(visible=False), gr.update(visible=True), "", gr.update(choices=run_choices()))

    def grade(verdict):
        def handler(s: Session, text_note, run, kind):
            if s.reviewer_id is None:
                return (s, *[gr.skip()] * 6, "⚠️ Sign in first.")
            if s.shown is None:
                return show_next(s, run, kind, "Nothing to grade.")
            try:
                store.record_verdict(s.shown, s.reviewer_id, verdict, note=text_note, request_id=f"{s.shown_token}:{verdict}")
            except UserFacingError as e:
                return (s, *[gr.skip()] * 6, f"⚠️ {e}")
            revealed = f"Saved **{verdict}** for an answer by {queue.model_of(store, s.shown)}."
            return show_next(replace(s, skipped=tuple(p for p in s.skipped if p != s.shown)), run, kind, revealed)

        return handler

    def undo_last(s: Session, run, kind):
        if s.reviewer_id is None:
            return (s, *[gr.skip()] * 6, "⚠️ Sign in first.")
        try:
            prediction = store.undo_last(s.reviewer_id)
        except UserFacingError as e:
            return (s, *[gr.skip()] * 6, f"⚠️ {e}")
        if prediction is None:
            return show_next(s, run, kind, "Nothing to undo.")
        return show_next(replace(s, skipped=tuple(p for p in s.skipped if p != prediction)), run, kind,
                         "Undone: grade this answer again.", first=prediction)

    def skip_current(s: Session, run, kind):
        if s.reviewer_id is None or s.shown is None:
            return (s, *[gr.skip()] * 6, gr.skip())
        return show_next(replace(s, skipped=s.skipped + (s.shown,)), run, kind, "Skipped.")

    outputs = screen + [status]
    signin.click(sign_in, [name, password, run_filter, type_filter], outputs + [signin_box, panel, password, run_filter])
    password.submit(sign_in, [name, password, run_filter, type_filter], outputs + [signin_box, panel, password, run_filter])
    for button, verdict in ((correct, "correct"), (rephrased, "rephrased"), (wrong, "wrong")):
        button.click(grade(verdict), [session, note, run_filter, type_filter], outputs)
    undo.click(undo_last, [session, run_filter, type_filter], outputs)
    skip.click(skip_current, [session, run_filter, type_filter], outputs)
    for dropdown in (run_filter, type_filter):
        dropdown.change(lambda s, run, kind: show_next(s, run, kind) if s.reviewer_id else (s, *[gr.skip()] * 7),
                        [session, run_filter, type_filter], outputs)
