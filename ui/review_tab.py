"""The Review tab: signed-in reviewers grade model answers one at a time, blinded to the model.

Who grades is the app's signed-in account (Gradio's login page, a session cookie: the password never passes through an
event). Keys (outside text boxes; Escape leaves one): 1 correct, 2 rephrased, 3 wrong, U undo the last verdict, S skip.
Each verdict names the answer it is for (the one on screen): a verdict for an answer no longer shown (a stale API
call, a second key press sent before the next answer arrived) is refused, and so is one that comes within MIN_DWELL_S
of its answer being sent (a second key press that arrived just after it: nobody read that answer). A double click or
a resubmitted request is stored once. Reviewers see no run and no model; admins may filter by run, and see the model
once they have graded. Answers from a VLM-versus-detector comparison show the detector's boxes on the image, and the
contested ones (the sides disagree, or one contradicts the label) come first.
"""
import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr

from medvlm.detect import Detection, draw
from medvlm.errors import UserFacingError
from medvlm.images import load_image
from medvlm.store import Store
from review import queue, users
from ui.events import bind
from ui.pictures import picture_file
from ui.text import warning

log = logging.getLogger(__name__)
ALL = "all"
MIN_DWELL_S = 0.3
NO_ACCOUNTS = ("Reviewing needs accounts: `python -m review.users add NAME` (`--admin` for one who may see models and "
               "export), then restart the app. Everyone then signs in.")

# Loaded with the page (launch(js=...)): the shortcuts click the tab's buttons, never while typing in a field; Escape
# leaves the field, so the next key grades.
KEYBOARD_JS = """
() => {
  const keys = {"1": ["review-correct", "arena-a", "battle-a"], "2": ["review-rephrased", "arena-b", "battle-b"],
                "3": ["review-wrong", "arena-tie", "battle-tie"], "4": ["arena-both-bad", "battle-both-bad"],
                "u": ["review-undo", "arena-undo"], "s": ["review-skip", "arena-skip"]};
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable);
    if (typing) { if (event.key === "Escape") target.blur(); return; }
    // The Review tab and the Arena's two share keys: the button of the tab on screen is the visible one.
    const button = (keys[event.key.toLowerCase()] || []).map((id) => document.getElementById(id))
      .find((b) => b && b.offsetParent !== null);
    if (button) { event.preventDefault(); button.click(); }
  });
}
"""


@dataclass(frozen=True)
class Session:
    """One browser's review session: the prediction on screen and what was skipped. Who is signed in is read from
    each request, never kept here."""

    shown: int | None = None  # prediction id on screen
    shown_token: str = ""  # names this showing: the verdict must carry it; a double click sends it twice, stored once
    shown_at: float = 0.0  # time.monotonic() when it was sent to the page
    skipped: tuple = field(default_factory=tuple)


class Sessions:
    """Each browser session's Session, kept on the server and changed under that session's lock: two events of one
    session (two keys pressed at once) run one after the other and each sees what the other left."""

    def __init__(self):
        self.by_key, self.locks, self.guard = {}, {}, threading.Lock()

    @contextmanager
    def hold(self, request: gr.Request):
        key = getattr(request, "session_hash", None) or ""
        with self.guard:
            lock = self.locks.setdefault(key, threading.Lock())
        with lock:
            box = {"session": self.by_key.get(key, Session())}
            yield box
            self.by_key[key] = box["session"]

    def forget(self, request: gr.Request) -> None:
        key = getattr(request, "session_hash", None) or ""
        with self.guard:
            self.by_key.pop(key, None)
            self.locks.pop(key, None)


@dataclass
class ReviewDesk:
    """What every review handler works with: the store, whether the app has accounts, whether reviewers are told the
    model after a verdict, and the sessions."""

    store: Store
    accounts: bool
    reveal_model: bool = False
    sessions: Sessions = field(default_factory=Sessions)

    def account(self, request: gr.Request) -> dict | None:
        """The signed-in account of a request (None without accounts, or when not signed in)."""
        return users.role(self.store, getattr(request, "username", None)) if self.accounts else None


def show_next(desk: ReviewDesk, box: dict, account: dict, run, kind, message: str = "", first: int | None = None) -> dict:
    """Put the next answer in box["session"] and on screen. `first`: show that prediction if it is pending."""
    s = box["session"]
    run_id = int(run) if account["admin"] and run not in (None, ALL) else None
    answer_type = None if kind == ALL else kind
    graded, total = queue.progress(desk.store, account["id"], run_id, answer_type)
    again = queue.pending_one(desk.store, account["id"], first, run_id, answer_type) if first is not None else None
    fresh = [again] if again else queue.pending(desk.store, account["id"], run_id, answer_type, skipped=s.skipped)
    counts = f"**{graded} / {total} graded**" + (f" · {len(s.skipped)} skipped" if s.skipped else "")
    if not fresh:
        box["session"] = replace(s, shown=None, shown_token="")
        return {"image": None, "question": "Nothing left to grade with these filters.", "reference": "", "answer": "", "note": "",
                "item": "", "progress": counts, "status": message}
    row = fresh[0]
    picture = None
    if row["image_ref"] and Path(row["image_ref"]).is_file():
        try:
            picture = load_image(row["image_ref"])
            if row["boxes"] is not None:  # a comparison answer: the detector's findings, drawn
                picture = draw(picture, [Detection.from_dict(d) for d in json.loads(row["boxes"])])
        except UserFacingError:
            message = f"{message} ⚠️ This answer's image cannot be read.".strip()
    token = f"{account['id']}:{row['prediction_id']}:{len(desk.store.history(row['prediction_id'], account['id']))}"
    box["session"] = replace(s, shown=row["prediction_id"], shown_token=token, shown_at=time.monotonic())
    return {"image": picture_file(picture), "question": f"({row['answer_type'].lower()}) {row['question']}",
            "reference": row["reference"] or "(none: a chat answer)", "answer": row["answer"] or "(empty)", "note": "",
            "item": token, "progress": counts, "status": message}


def open_review(desk: ReviewDesk, run, kind, request: gr.Request) -> dict:
    """On page load: who is signed in, their panel and their first answer."""
    account = desk.account(request)
    if account is None:
        return {"who": NO_ACCOUNTS if not desk.accounts else "Sign in to grade.", "sign_out": gr.update(visible=False),
                "panel": gr.update(visible=False), "run_filter": gr.update(visible=False), "status": ""}
    role = "admin" if account["admin"] else "reviewer"
    runs = [ALL] + [str(r[0]) for r in desk.store.query("SELECT id FROM runs ORDER BY id")] if account["admin"] else [ALL]
    with desk.sessions.hold(request) as box:
        box["session"] = Session()
        shown = show_next(desk, box, account, run, kind)
    return {"who": f"Signed in as **{account['name']}** ({role}).", "sign_out": gr.update(visible=True),
            "panel": gr.update(visible=True), "run_filter": gr.update(visible=account["admin"], choices=runs)} | shown


def grade(desk: ReviewDesk, verdict: str, on_screen, note, run, kind, request: gr.Request) -> dict:
    """Store `verdict` for the answer on screen (named by its showing token), then show the next."""
    account = desk.account(request)
    if account is None:
        return {"status": "⚠️ Sign in first."}
    with desk.sessions.hold(request) as box:
        s = box["session"]
        if s.shown is None or not on_screen:
            return show_next(desk, box, account, run, kind, "Nothing to grade.")
        if on_screen != s.shown_token or time.monotonic() - s.shown_at < MIN_DWELL_S:
            return {"status": "⚠️ Not saved: that verdict was for an answer no longer on screen."}
        try:
            desk.store.record_verdict(s.shown, account["id"], verdict, note=note, request_id=f"{s.shown_token}:{verdict}")
        except UserFacingError as e:
            return {"status": warning(str(e))}
        saved = f"Saved **{verdict}**."
        if account["admin"] or desk.reveal_model:
            saved = f"Saved **{verdict}** for an answer by {queue.model_of(desk.store, s.shown, with_run=account['admin'])}."
        box["session"] = replace(s, skipped=tuple(p for p in s.skipped if p != s.shown))
        return show_next(desk, box, account, run, kind, saved)


def undo_latest(desk: ReviewDesk, request: gr.Request, undo, show, again: str) -> dict:
    """Undo the signed-in reviewer's latest verdict or vote and show what it was for again. undo(reviewer_id) -> that
    item's id, or None; show(box, account, message, first=None) puts the tab's next item on screen (the Review and
    Arena tabs share this)."""
    account = desk.account(request)
    if account is None:
        return {"status": "⚠️ Sign in first."}
    with desk.sessions.hold(request) as box:
        try:
            undone = undo(account["id"])
        except UserFacingError as e:
            return {"status": warning(str(e))}
        if undone is None:
            return show(box, account, "Nothing to undo.")
        box["session"] = replace(box["session"], skipped=tuple(p for p in box["session"].skipped if p != undone))
        return show(box, account, again, undone)


def skip_shown(desk: ReviewDesk, request: gr.Request, show, nothing: dict) -> dict:
    """Put the item on screen at the back of this session's queue and show the next (`nothing` when none is shown)."""
    account = desk.account(request)
    if account is None:
        return {}
    with desk.sessions.hold(request) as box:
        if box["session"].shown is None:
            return nothing
        box["session"] = replace(box["session"], skipped=box["session"].skipped + (box["session"].shown,))
        return show(box, account, "Skipped.")


def undo_last(desk: ReviewDesk, run, kind, request: gr.Request) -> dict:
    def show(box, account, message, first=None):
        return show_next(desk, box, account, run, kind, message, first=first)

    return undo_latest(desk, request, desk.store.undo_last, show, "Undone: grade this answer again.")


def skip_current(desk: ReviewDesk, run, kind, request: gr.Request) -> dict:
    return skip_shown(desk, request, lambda box, account, message: show_next(desk, box, account, run, kind, message), {})


def refilter(desk: ReviewDesk, run, kind, request: gr.Request) -> dict:
    account = desk.account(request)
    if account is None:
        return {}
    with desk.sessions.hold(request) as box:
        return show_next(desk, box, account, run, kind)


def build_review_tab(demo: gr.Blocks, store: Store, accounts: bool, reveal_model: bool = False) -> None:
    """`accounts`: the app asks for sign-in. `reveal_model`: after each verdict, tell any reviewer which model answered
    (never the run); otherwise only admins see it, and reviewers learn it from the study's report."""
    desk = ReviewDesk(store, accounts, reveal_model)
    with gr.Row():
        who = gr.Markdown(elem_id="review-who")
        sign_out = gr.Button("Sign out", link="/logout", visible=False, size="sm", scale=0, elem_id="review-sign-out")
    with gr.Column(visible=False, elem_id="review-panel") as panel:
        with gr.Row():
            run_filter = gr.Dropdown(choices=[ALL], value=ALL, label="Run", visible=False, elem_id="review-run")
            type_filter = gr.Dropdown(choices=[ALL, "CLOSED", "OPEN"], value=ALL, label="Question type", elem_id="review-type")
            progress = gr.Markdown(elem_id="review-progress")
        with gr.Row():
            image = gr.Image(type="pil", interactive=False, show_label=False, height=320, elem_id="review-image")
            with gr.Column():
                # Text boxes, not Markdown: questions and answers come from users and models, and are shown as text.
                question = gr.Textbox(label="Question", interactive=False, elem_id="review-question")
                reference = gr.Textbox(label="Reference answer", interactive=False, elem_id="review-reference")
                answer = gr.Textbox(label="Model answer", interactive=False, elem_id="review-answer")
                note = gr.Textbox(label="Note (optional; Escape leaves the field)", lines=1, elem_id="review-note")
                item = gr.Textbox(visible=False, elem_id="review-item")  # the showing a verdict is for
                with gr.Row():
                    correct = gr.Button("1 · Correct", variant="primary", elem_id="review-correct")
                    rephrased = gr.Button("2 · Rephrased", elem_id="review-rephrased")
                    wrong = gr.Button("3 · Wrong", variant="stop", elem_id="review-wrong")
                with gr.Row():
                    undo = gr.Button("U · Undo last", elem_id="review-undo")
                    skip = gr.Button("S · Skip", elem_id="review-skip")
    status = gr.Markdown(elem_id="review-status")

    screen = {"image": image, "question": question, "reference": reference, "answer": answer, "note": note, "item": item,
              "progress": progress, "status": status}
    filters = [run_filter, type_filter]
    # Verdicts run beside other sessions' (the store serialises writes); one session's events queue on its own lock.
    for button, verdict in ((correct, "correct"), (rephrased, "rephrased"), (wrong, "wrong")):
        bind(grade, screen, desk=desk, verdict=verdict).on(button.click, [item, note] + filters, api_name=f"grade_{verdict}",
                                                           concurrency_limit=None)
    bind(undo_last, screen, desk=desk).on(undo.click, filters, api_name="undo", concurrency_limit=None)
    bind(skip_current, screen, desk=desk).on(skip.click, filters, api_name="skip", concurrency_limit=None)
    for dropdown in filters:
        bind(refilter, screen, desk=desk).on(dropdown.change, filters, api_visibility="private", concurrency_limit=None)
    page = {"who": who, "sign_out": sign_out, "panel": panel, "run_filter": run_filter} | screen  # the API's output order
    bind(open_review, page, desk=desk).on(demo.load, filters, api_name="open_review", concurrency_limit=None)
    demo.unload(desk.sessions.forget)
