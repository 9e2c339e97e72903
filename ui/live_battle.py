"""Live battles, in the Arena tab: a reviewer uploads a scan and asks; two models drawn at random (review.arena.contenders)
answer the same conversation side by side, streamed, as "Model A" and "Model B"; follow-ups go to both; after the
vote both are named, and the vote joins the dataset battles' on the leaderboard (review.arena.record_live_battle).

Blinding: until the vote the models' names stay in the session's state on the server; no status line names them, and
an error message that would is reworded. Keys as in the dataset arena (1 A better, 2 B better, 3 tie, 4 both bad). A
vote names the battle on screen (a hidden token) and comes at least MIN_DWELL_S after the last answer ended; a double
click is stored once. Without review accounts the names are shown after a vote, but nothing is stored.
"""
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field, replace

import gradio as gr
from PIL import Image

from medvlm.chat import GenerationSettings, check_question
from medvlm.errors import UserFacingError
from medvlm.host import ModelHost
from medvlm.leaderboard import OUTCOMES
from medvlm.settings import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE
from medvlm.store import Store
from review import arena, users
from review.queue import model_label
from ui.arena_tab import VOTE_LABELS
from ui.chat_tab import uploaded
from ui.events import MODEL_EVENT, bind
from ui.pictures import picture_file
from ui.review_tab import MIN_DWELL_S
from ui.text import html_text, markdown_text, warning

SIDES = ("Model A", "Model B")


@dataclass(frozen=True)
class LiveBattle:
    """One session's battle: the two models (A, B; empty until drawn), the image, the finished turns, and the vote."""

    models: tuple = ()
    image: Image.Image | None = None
    questions: tuple = ()
    answers: tuple = ((), ())  # A's and B's answers, one per question
    token: str = ""  # names this battle for its vote
    answered_at: float = 0.0  # time.monotonic() when the last answers ended
    decided: str = ""  # the vote, once cast
    chats: tuple = field(default_factory=lambda: ([], []))


def blinded(host: ModelHost, models: tuple, text: str) -> str:
    """`text` with every name the two models go by (registry name, served model, adapter folder) as "Model A" / "B"."""
    for side, name in zip(SIDES, models):
        spec = host.specs.get(name)
        aliases = [name] + ([spec.served_model] if spec and spec.served_model else []) + (
            [spec.adapter.rstrip("/").rsplit("/", 1)[-1]] if spec and spec.adapter else [])
        for alias in sorted(set(aliases), key=len, reverse=True):
            text = text.replace(alias, side)
    return text


def drawn(host: ModelHost, store: Store, accounts: bool, request: gr.Request) -> LiveBattle:
    """A new battle with two models drawn (UserFacingError when no two can answer)."""
    admin = users.may_administer(store, accounts, getattr(request, "username", None))
    return LiveBattle(models=arena.contenders(host, admin), token=secrets.token_hex(8))


def new_battle(host: ModelHost, store: Store, accounts: bool, battle: LiveBattle, request: gr.Request) -> dict:
    """Two new models for the image on screen; the conversation starts again."""
    try:
        fresh = replace(drawn(host, store, accounts, request), image=battle.image)
    except UserFacingError as e:
        return {"battle": LiveBattle(image=battle.image), "chat_a": [], "chat_b": [], "token": "", "status": warning(str(e))}
    return {"battle": fresh, "chat_a": [], "chat_b": [], "token": fresh.token, "note": "",
            "status": "Two models drawn. Ask about the image; both answer, unnamed until you vote."}


def on_upload(path, battle: LiveBattle) -> dict:
    """A new image: the same two models (new ones if this battle was decided), a new conversation."""
    try:
        image, _, loaded = uploaded(path)
    except UserFacingError as e:
        return {"status": warning(str(e))}
    fresh = LiveBattle(image=image) if battle.decided else LiveBattle(models=battle.models, image=image, token=battle.token)
    return {"battle": fresh, "preview": picture_file(image), "chat_a": [], "chat_b": [], "token": fresh.token,
            "status": f"{loaded} Ask a question: both models answer."}


def side_by_side(host: ModelHost, models: tuple, histories: tuple, question: str, image, settings: GenerationSettings):
    """Both models' answers as they grow, generated at once -> yields (A's so far, B's so far); raises the first error
    either side meets."""
    events: queue.Queue = queue.Queue()

    def run(side: int) -> None:
        try:
            for text in host.stream_reply(models[side], list(histories[side]), question, image, settings):
                events.put((side, text, None))
            events.put((side, None, None))
        except Exception as e:  # handed to the caller, which words it
            events.put((side, None, e))

    for side in (0, 1):
        threading.Thread(target=run, args=(side,), daemon=True).start()
    answers, finished = ["", ""], 0
    while finished < 2:
        side, text, error = events.get()
        if error is not None:
            raise error
        if text is None:
            finished += 1
            continue
        answers[side] = text
        yield tuple(answers)


def ask(host: ModelHost, store: Store, accounts: bool, text, battle: LiveBattle, request: gr.Request):
    """The question to both models, streamed side by side; the turn joins the battle once both have answered."""
    try:
        text = check_question(text)
        if battle.decided:
            raise UserFacingError("This battle is decided: press New battle to start another.")
        if not battle.models:
            battle = replace(drawn(host, store, accounts, request), image=battle.image)
    except UserFacingError as e:
        yield {"battle": battle, "status": warning(str(e))}
        return
    chats = [list(chat) for chat in battle.chats]
    for chat in chats:
        chat += [{"role": "user", "content": html_text(text)}, {"role": "assistant", "content": ""}]
    yield {"battle": battle, "chat_a": chats[0], "chat_b": chats[1], "question": "", "token": battle.token,
           "status": "Both models are answering…"}
    histories = tuple(tuple(zip(battle.questions, said)) for said in battle.answers)
    settings = GenerationSettings(max_new_tokens=DEFAULT_MAX_NEW_TOKENS, temperature=DEFAULT_TEMPERATURE)
    answers = ("", "")
    try:
        for answers in side_by_side(host, battle.models, histories, text, battle.image, settings):
            for chat, answer in zip(chats, answers):
                chat[-1] = {"role": "assistant", "content": html_text(answer)}
            yield {"chat_a": chats[0], "chat_b": chats[1]}
    except Exception as e:  # the turn is dropped on both sides: the two conversations stay the same questions
        said = str(e) if isinstance(e, UserFacingError) else f"Generation failed ({type(e).__name__})."
        chats = [list(chat) for chat in battle.chats]
        yield {"chat_a": chats[0], "chat_b": chats[1], "question": text,
               "status": warning(blinded(host, battle.models, f"{said} Ask again, or press New battle."))}
        return
    answers = tuple(answer or "(no answer)" for answer in answers)
    for chat, answer in zip(chats, answers):
        chat[-1] = {"role": "assistant", "content": html_text(answer)}
    done = replace(battle, questions=battle.questions + (text,), answers=tuple(said + (answer,) for said, answer in zip(battle.answers, answers)),
                   answered_at=time.monotonic(), chats=tuple(chats))
    yield {"battle": done, "chat_a": chats[0], "chat_b": chats[1], "status": "Which answer is better? Vote, or ask a follow-up (both answer)."}


def vote(host: ModelHost, store: Store, accounts: bool, outcome: str, on_screen, note, battle: LiveBattle, request: gr.Request) -> dict:
    """The vote on the battle on screen; then both models are named."""
    if battle.decided:  # a second click, or a vote after the names were shown
        return {}
    if not battle.questions:
        return {"status": warning("Ask a question first: both models answer, then you vote.")}
    if on_screen != battle.token:
        return {"status": warning("Not saved: that vote was for a battle no longer on screen.")}
    if time.monotonic() - battle.answered_at < MIN_DWELL_S:
        return {"status": warning("Not saved: read both answers first.")}
    names = [model_label(name, host.specs[name].adapter) for name in battle.models]
    said = f"{VOTE_LABELS[outcome].capitalize()}. A was {markdown_text(names[0])}, B was {markdown_text(names[1])}."
    if accounts:
        account = users.role(store, getattr(request, "username", None))
        if account is None:
            return {"status": warning("Sign in to vote.")}
        try:
            arena.record_live_battle(store, tuple((name, host.specs[name].adapter) for name in battle.models), battle.image,
                                     list(battle.questions), battle.answers, outcome, account["id"], note, request_id=f"live:{battle.token}")
        except UserFacingError as e:
            return {"status": warning(str(e))}
        said = f"Saved: {said}"
    else:
        said = f"{said} Not stored: votes need review accounts (python -m review.users add NAME)."
    return {"battle": replace(battle, decided=outcome), "status": f"{said} Press New battle for two more."}


def build_live_battle(host: ModelHost, store: Store, accounts: bool) -> None:
    battle = gr.State(LiveBattle())
    gr.Markdown("Upload a scan and ask: two models drawn at random answer side by side, unnamed. Follow-ups go to both. "
                "Vote (keys 1 A better, 2 B better, 3 tie, 4 both bad) and both are named; the vote joins the leaderboard.")
    with gr.Row():
        with gr.Column(scale=1):
            # No file_types filter: DICOM files often have no extension; the decoder checks every upload itself.
            upload = gr.File(label="Image: PNG, JPEG or DICOM", type="filepath", elem_id="battle-upload")
            preview = gr.Image(label="What both models see", type="pil", interactive=False, height=220, elem_id="battle-preview")
            new = gr.Button("New battle (two other models)", elem_id="battle-new")
        with gr.Column(scale=3):
            with gr.Row():
                # Text, never markup: a model's answer must not draw a form or fetch an image.
                chat_a = gr.Chatbot(label=SIDES[0], height=340, render_markdown=False, allow_tags=False, elem_id="battle-a-chat")
                chat_b = gr.Chatbot(label=SIDES[1], height=340, render_markdown=False, allow_tags=False, elem_id="battle-b-chat")
            question = gr.Textbox(placeholder="Ask both models about the image and press Enter", show_label=False, lines=1,
                                  max_lines=6, submit_btn=False, elem_id="battle-question")
            ask_button = gr.Button("Ask both", variant="primary", elem_id="battle-ask")
            note = gr.Textbox(label="Note (optional; Escape leaves the field)", lines=1, elem_id="battle-note")
            token = gr.Textbox(visible=False, elem_id="battle-token")  # the battle a vote is for
            with gr.Row():
                buttons = {outcome: gr.Button(f"{k} · {VOTE_LABELS[outcome].capitalize()}", elem_id=f"battle-{outcome.replace('_', '-')}")
                           for k, outcome in enumerate(OUTCOMES, start=1)}
    status = gr.Markdown(elem_id="battle-status")

    screen = {"battle": battle, "preview": preview, "chat_a": chat_a, "chat_b": chat_b, "question": question, "note": note,
              "token": token, "status": status}
    context = {"host": host, "store": store, "accounts": accounts}
    bind(on_upload, {k: screen[k] for k in ("battle", "preview", "chat_a", "chat_b", "token", "status")}).on(
        upload.upload, [upload, battle], api_name="battle_upload")
    asking = bind(ask, {k: screen[k] for k in ("battle", "chat_a", "chat_b", "question", "token", "status")}, **context)
    asking.on(ask_button.click, [question, battle], api_name="battle_ask", **MODEL_EVENT)
    asking.on(question.submit, [question, battle], api_visibility="private", **MODEL_EVENT)
    bind(new_battle, screen, **context).on(new.click, [battle], api_name="battle_new", concurrency_limit=None)
    for outcome, button in buttons.items():
        bind(vote, {"battle": battle, "status": status}, outcome=outcome, **context).on(
            button.click, [token, note, battle], api_name=f"battle_vote_{outcome}", concurrency_limit=None)
