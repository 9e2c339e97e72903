"""The Arena tab: physicians compare two anonymous answers to the same question about the same image (dataset
battles, review.arena), and the votes rank the models (medvlm.leaderboard).

As the Review tab: signed-in accounts only; keys outside text boxes (1 A better, 2 B better, 3 tie, 4 both bad, U undo,
S skip); a vote names the pair on screen and is refused when that pair is no longer shown or came less than
MIN_DWELL_S ago; a double click is stored once. Until the vote no model name, run or adapter reaches the page; after
it, the two models are named. Admins choose which runs enter the arena.
"""
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr

from medvlm.errors import UserFacingError
from medvlm.images import load_image
from medvlm.leaderboard import OUTCOMES
from medvlm.store import Store
from review import arena
from ui.events import bind
from ui.pictures import picture_file
from ui.review_tab import MIN_DWELL_S, NO_ACCOUNTS, ReviewDesk, skip_shown, undo_latest
from ui.text import markdown_text, warning

VOTE_LABELS = {"a": "A is better", "b": "B is better", "tie": "a tie", "both_bad": "both bad"}
NOTHING = {"image": None, "question": "Nothing left to compare.", "reference": "", "answer_a": "", "answer_b": "", "note": "", "item": ""}


def show_pair(desk: ReviewDesk, box: dict, account: dict, message: str = "", first: int | None = None) -> dict:
    """Put the reviewer's next pair in box["session"] and on screen (`first` if it is pending); skipped ones last."""
    s = box["session"]
    voted, total = arena.progress(desk.store, account["id"])
    again = arena.pending_one(desk.store, account["id"], first) if first is not None else None
    fresh = [again] if again else arena.pending(desk.store, account["id"], skipped=s.skipped)
    progress = f"**{voted} / {total} compared**" + (f" · {len(s.skipped)} skipped" if s.skipped else "")
    if not fresh:
        box["session"] = replace(s, shown=None, shown_token="")
        return NOTHING | {"progress": progress, "status": message}
    row = fresh[0]
    picture = None
    if row["image_ref"] and Path(row["image_ref"]).is_file():
        try:
            picture = load_image(row["image_ref"])
        except UserFacingError:
            message = f"{message} ⚠️ This question's image cannot be read.".strip()
    token = f"{account['id']}:{row['pair_id']}:{arena.votes_on(desk.store, row['pair_id'], account['id'])}"
    box["session"] = replace(s, shown=row["pair_id"], shown_token=token, shown_at=time.monotonic())
    return {"image": picture_file(picture), "question": f"({row['answer_type'].lower()}) {row['question']}",
            "reference": row["reference"] or "(none)", "answer_a": row["answer_a"] or "(empty)",
            "answer_b": row["answer_b"] or "(empty)", "note": "", "item": token, "progress": progress, "status": message}


def open_arena(desk: ReviewDesk, request: gr.Request) -> dict:
    """On page load: the signed-in reviewer's first pair; for admins, the runs they may enter."""
    account = desk.account(request)
    if account is None:
        return {"who": NO_ACCOUNTS if not desk.accounts else "Sign in to compare.", "panel": gr.update(visible=False),
                "admin": gr.update(visible=False), "status": ""}
    with desk.sessions.hold(request) as box:
        shown = show_pair(desk, box, account)
    runs = desk.store.query("SELECT r.id, r.model, r.adapter, r.dataset, COUNT(p.id) FROM runs r "
                            "LEFT JOIN predictions p ON p.run_id = r.id GROUP BY r.id ORDER BY r.id")
    choices = [(f"run {i}: {arena.run_model(desk.store, i)}, {dataset}, {n} answers", i) for i, _, _, dataset, n in runs]
    return {"who": f"Signed in as **{markdown_text(account['name'])}**.", "panel": gr.update(visible=True),
            "admin": gr.update(visible=bool(account["admin"])),
            "runs": gr.update(choices=choices if account["admin"] else [], value=[])} | shown


def vote(desk: ReviewDesk, outcome: str, on_screen, note, request: gr.Request) -> dict:
    """Store the vote for the pair on screen, name its two models, show the next pair."""
    account = desk.account(request)
    if account is None:
        return {"status": "⚠️ Sign in first."}
    with desk.sessions.hold(request) as box:
        s = box["session"]
        if s.shown is None or not on_screen:
            return show_pair(desk, box, account, "Nothing to vote on.")
        if on_screen != s.shown_token or time.monotonic() - s.shown_at < MIN_DWELL_S:
            return {"status": "⚠️ Not saved: that vote was for a pair no longer on screen."}
        try:
            desk.store.record_vote(s.shown, account["id"], outcome, note=note, request_id=f"{s.shown_token}:{outcome}")
        except UserFacingError as e:
            return {"status": warning(str(e))}
        pair = arena.pairs(desk.store, s.shown)[0]
        run_a, run_b = pair["run_a"], pair["run_b"]
        said = (f"Saved: {VOTE_LABELS[outcome]}. A was {markdown_text(arena.run_model(desk.store, run_a))}, "
                f"B was {markdown_text(arena.run_model(desk.store, run_b))}.")
        box["session"] = replace(s, skipped=tuple(p for p in s.skipped if p != s.shown))
        return show_pair(desk, box, account, said)


def undo_vote(desk: ReviewDesk, request: gr.Request) -> dict:
    def show(box, account, message, first=None):
        return show_pair(desk, box, account, message, first=first)

    return undo_latest(desk, request, desk.store.undo_last_vote, show, "Undone: compare this pair again.")


def skip_pair(desk: ReviewDesk, request: gr.Request) -> dict:
    return skip_shown(desk, request, lambda box, account, message: show_pair(desk, box, account, message), {"status": "Nothing to skip."})


def enter_runs(desk: ReviewDesk, run_ids, mode, request: gr.Request) -> dict:
    """Admins': the chosen runs' answers to the same items become pairs."""
    account = desk.account(request)
    if account is None or not account["admin"]:
        return {"status": "⚠️ Only admins choose which runs enter the arena."}
    try:
        if not isinstance(run_ids, list) or not all(isinstance(r, int) for r in run_ids):
            raise UserFacingError("Choose runs from the list.")
        added = arena.enter_runs(desk.store, run_ids, mode)
    except UserFacingError as e:
        return {"status": warning(str(e))}
    with desk.sessions.hold(request) as box:
        return show_pair(desk, box, account, f"{added} new pairs entered the arena.")


def build_arena_tab(demo: gr.Blocks, store: Store, accounts: bool) -> None:
    desk = ReviewDesk(store, accounts)
    who = gr.Markdown(elem_id="arena-who")
    with gr.Column(visible=False, elem_id="arena-admin") as admin:
        with gr.Accordion("Enter runs (admins)", open=False):
            runs = gr.CheckboxGroup([], label="Runs that answered the same items", elem_id="arena-runs")
            mode = gr.Radio([("every two of them", "all"), ("the first against each other", "one_vs_rest")], value="all",
                            label="Pairs", elem_id="arena-mode")
            enter = gr.Button("Enter into the arena", elem_id="arena-enter")
    with gr.Column(visible=False, elem_id="arena-panel") as panel:
        progress = gr.Markdown(elem_id="arena-progress")
        with gr.Row():
            image = gr.Image(type="pil", interactive=False, show_label=False, height=320, elem_id="arena-image")
            with gr.Column():
                # Text boxes, not Markdown: questions and answers come from users and models, and are shown as text.
                question = gr.Textbox(label="Question", interactive=False, elem_id="arena-question")
                reference = gr.Textbox(label="Reference answer", interactive=False, elem_id="arena-reference")
                with gr.Row():
                    answer_a = gr.Textbox(label="Answer A", interactive=False, elem_id="arena-answer-a")
                    answer_b = gr.Textbox(label="Answer B", interactive=False, elem_id="arena-answer-b")
                note = gr.Textbox(label="Note (optional; Escape leaves the field)", lines=1, elem_id="arena-note")
                item = gr.Textbox(visible=False, elem_id="arena-item")  # the showing a vote is for
                with gr.Row():
                    buttons = {outcome: gr.Button(f"{k} · {VOTE_LABELS[outcome].capitalize()}", elem_id=f"arena-{outcome.replace('_', '-')}")
                               for k, outcome in enumerate(OUTCOMES, start=1)}
                with gr.Row():
                    undo = gr.Button("U · Undo last", elem_id="arena-undo")
                    skip = gr.Button("S · Skip", elem_id="arena-skip")
    status = gr.Markdown(elem_id="arena-status")

    screen = {"image": image, "question": question, "reference": reference, "answer_a": answer_a, "answer_b": answer_b,
              "note": note, "item": item, "progress": progress, "status": status}
    for outcome, button in buttons.items():
        bind(vote, screen, desk=desk, outcome=outcome).on(button.click, [item, note], api_name=f"vote_{outcome}", concurrency_limit=None)
    bind(undo_vote, screen, desk=desk).on(undo.click, api_name="arena_undo", concurrency_limit=None)
    bind(skip_pair, screen, desk=desk).on(skip.click, api_name="arena_skip", concurrency_limit=None)
    bind(enter_runs, screen, desk=desk).on(enter.click, [runs, mode], api_visibility="private", concurrency_limit=None)
    page = {"who": who, "panel": panel, "admin": admin, "runs": runs} | screen
    bind(open_arena, page, desk=desk).on(demo.load, api_name="open_arena", concurrency_limit=None)
    demo.unload(desk.sessions.forget)
