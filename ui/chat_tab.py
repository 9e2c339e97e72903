"""The Chat tab: upload an image (PNG, JPEG, DICOM), ask, watch the answer stream in, follow up, switch models."""
import logging
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image

from medvlm import models, remote
from medvlm.answers import with_confidence
from medvlm.chat import GenerationSettings, check_question
from medvlm.errors import UserFacingError
from medvlm.host import ModelHost
from medvlm.metrics import normalize_tokens, yes_no
from medvlm.models import card
from medvlm.settings import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, MAX_NEW_TOKENS_LIMIT
from medvlm.store import Store
from review import chat_answers, users
from ui import scan_view
from ui.events import MODEL_EVENT, bind
from ui.text import html_text, markdown_text, warning

log = logging.getLogger(__name__)
# Gradio's own checks of a slider or text box answer a wrong type with its generic "AppError"; the chat's inputs
# (text, sliders, state) go to respond() as sent, which checks each in one line. The history is not an input: the
# conversation keeps it, so a script cannot send one that is not a list.
CHAT_EVENT = MODEL_EVENT | {"preprocess": False}
WINDOW_SETTINGS = GenerationSettings(max_new_tokens=DEFAULT_MAX_NEW_TOKENS, temperature=0.0)  # greedy: windows compare


@dataclass(frozen=True)
class Conversation:
    """One session's chat: the image (kept for follow-ups), the finished (question, answer) turns the model is given,
    and the chat as drawn (escaped text, each yes or no with its probability)."""

    image: Image.Image | None = None
    image_name: str = ""
    where: str = ""  # a volume's slice and window the image is ("slice 42/120, window lung 1500/−600")
    turns: tuple = field(default_factory=tuple)
    messages: tuple = field(default_factory=tuple)  # {role, content} dicts for the Chatbot

    @classmethod
    def about(cls, view: "scan_view.View") -> "Conversation":
        """A new conversation about the picture a viewer shows."""
        return cls(view.picture, view.name, view.where)


def model_panel(host: ModelHost, name: str | None) -> str:
    """Markdown about a session's model for the UI, including what its answers can be trusted for. Names, paths,
    descriptions and the adapter's card come from the command line, an admin or files: shown as text."""
    name = name or host.default_name
    loaded = host.pool.get(name) if name else None
    if loaded is None:
        if name is None:
            return "**No model loaded.** " + markdown_text(host.startup_notice)
        return f"**{markdown_text(name)}**: not loaded now; it loads when asked."
    spec = loaded.spec
    if remote.is_remote(spec.source):
        return "\n\n".join([f"**{markdown_text(spec.served_model)}** on a server", markdown_text(spec.description),
                              "Its answers are only as trustworthy as the model the server runs: medvlm cannot see its weights."])
    model = loaded.model
    precision = "4-bit nf4" if getattr(model, "is_loaded_in_4bit", False) else str(model.dtype).replace("torch.", "")
    lines = [f"**{markdown_text(spec.name)}** on {loaded.device} ({precision})", markdown_text(spec.description)]
    # An export (python -m medvlm.models export) carries the adapter merged into it, with its training and scores.
    bundled = Path(spec.source) / "adapter"
    trained = spec.adapter or (str(bundled) if Path(spec.source).is_dir() and (bundled / "train_config.json").is_file() else None)
    if spec.adapter:
        lines.append(f"Adapter: {markdown_text(Path(spec.adapter).name)}")
    lines += [markdown_text(line) for line in card.summary(trained)]
    if spec.source == models.registry.MEDVLM_TINY_SOURCE or card.base_model(trained) == "medvlm-tiny":
        if trained:
            lines.append(
                "⚠️ **A 135M-parameter research model:** it answers in a word or phrase and is often wrong. "
                "It reads the image for what its label questions taught (tumour or not, tumour type, body region), "
                "in wordings it never trained on too, but not equally well in each (the figures above give its worst "
                "wording); its answers to other questions barely change when the image is swapped: they come mostly "
                "from the question's wording. Use it to try the app, not to read scans."
            )
            lines += [markdown_text(line) for line in card.conversation_limits(trained)]
        else:
            lines.append(
                "⚠️ **Not yet image-grounded:** MedVLM-Tiny's image projector is untrained, so its answers come from "
                "the language model alone and do not reflect the image. Use it to try the app, not to read scans."
            )
    return "\n\n".join(line for line in lines if line)


def uploaded(paths) -> tuple:
    """An upload -> (the picture the model is given: a volume's middle slice in its own window, its name, the
    "Loaded NAME (W×H), slice..., window ..." line with any warning before it). Raises UserFacingError for an upload
    that is no readable scan."""
    view = scan_view.open_view(paths)
    return view.picture, view.name, view.line()


def on_upload(paths, conversation: Conversation) -> dict:
    """A new scan starts a new conversation, shown at its middle slice in its own window. A bad file changes nothing
    but the status line."""
    try:
        view = scan_view.open_view(paths)
    except UserFacingError as e:
        return {"conversation": conversation, "status": warning(str(e))}
    return scan_view.shown(view) | {"chatbot": [], "conversation": Conversation.about(view),
                                    "status": f"{view.line()} Ask a question; follow-ups keep this picture."}


def on_view(control: str, view, conversation: Conversation, window, width, level, slice_number, plane) -> dict:
    """Another slice, window or plane: the model is shown the new picture, so the conversation starts again."""
    try:
        view = scan_view.moved(view, control, window, width, level, slice_number, plane)
    except UserFacingError as e:
        return {"status": warning(str(e))} | scan_view.shown(view if isinstance(view, scan_view.View) else None)
    return scan_view.shown(view, control) | {"chatbot": [], "conversation": Conversation.about(view),
                                             "status": f"Now {markdown_text(view.where)}: a new conversation about this picture."}


def on_remove_image() -> dict:
    return scan_view.shown(None) | {"chatbot": [], "conversation": Conversation(),
                                    "status": "Image removed: new conversation; questions are now text-only."}


def ask_every_window(host: ModelHost, view, conversation: Conversation, text, model_name=None) -> dict:
    """The last question (or the one typed) asked once per window about the slice on screen, answers side by side,
    and whether they agree: an answer about a lesion that flips between windows says the model reads the contrast."""
    model_name = model_name or host.default_name
    try:
        if not isinstance(view, scan_view.View) or not view.scan.windows:
            raise UserFacingError("Upload a DICOM or NIfTI scan first: a PNG or JPEG has no windows.")
        question = conversation.turns[-1][0] if conversation.turns else check_question(text)
        if model_name is None:
            raise UserFacingError("No model is loaded: pick one that can load here.")
        rows = []
        for window in view.scan.windows:
            picture = view.scan.render(view.index, window, view.plane)
            answer = next(iter(deque(host.stream_reply(model_name, [], question, picture, WINDOW_SETTINGS), maxlen=1)), "")
            rows.append([window.label(), with_confidence(answer or "(no answer)")])
    except UserFacingError as e:
        return {"status": warning(str(e))}
    said = {normalize_answer(answer) for _, answer in rows}
    verdict = (f"All {len(rows)} windows give the same answer." if len(said) == 1
               else f"The answers differ between windows ({len(said)} different answers in {len(rows)} windows).")
    where = view.scan.where(view.index, None, view.plane)
    return {"windows_table": gr.update(value=pd.DataFrame(rows, columns=["window", "answer"]), visible=True),
            "status": markdown_text(f"{question} — asked in every window{' of ' + where if where else ''}. {verdict}")}


def normalize_answer(answer: str) -> str:
    """What counts as the same answer in two windows: its words, and for a yes/no answer its yes or no alone."""
    return yes_no(answer) or " ".join(normalize_tokens(answer.split(" (p = ")[0]))


def respond(host: ModelHost, text, conversation: Conversation, temperature, max_new_tokens, model_name=None):
    """The question's answer from the session's model (model_name; None: the app's default), streamed into the chat;
    the turn joins the conversation once the answer is complete. The arguments arrive unprocessed (CHAT_EVENT): from
    the API they can be any JSON value, and each bad one gets one line here."""
    model_name = model_name or host.default_name
    shown = list(conversation.messages)
    try:
        text = check_question(text)
        settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature).check()
        if model_name is None:
            raise UserFacingError("No model is loaded: pick one that can load here.")
    except UserFacingError as e:
        yield {"chatbot": shown, "conversation": conversation, "status": warning(str(e))}
        return
    seeing = f" about {markdown_text(conversation.where)}" if conversation.where and conversation.image is not None else ""
    messages = shown + [{"role": "user", "content": html_text(text)}, {"role": "assistant", "content": ""}]
    yield {"chatbot": messages, "conversation": conversation, "question": "", "status": f"{markdown_text(model_name)} is answering{seeing}…"}
    answer = ""
    try:
        for answer in host.stream_reply(model_name, list(conversation.turns), text, conversation.image, settings):
            messages[-1] = {"role": "assistant", "content": html_text(answer)}
            yield {"chatbot": messages, "conversation": conversation}
    except UserFacingError as e:
        yield {"chatbot": shown, "conversation": conversation, "question": text, "status": warning(str(e))}
        return
    except Exception as e:  # keep the app up; the log has the traceback
        log.exception("generation failed")
        yield {"chatbot": shown, "conversation": conversation, "question": text,
               "status": warning(f"Generation failed ({type(e).__name__}). Try again or pick another model.")}
        return
    answer = answer or "(no answer)"
    # Shown with the model's probability of the yes or no it said; the model is given the answer alone.
    messages[-1] = {"role": "assistant", "content": html_text(with_confidence(answer))}
    yield {"chatbot": messages, "conversation": replace(conversation, turns=conversation.turns + ((text, str(answer)),),
                                                        messages=tuple(messages)), "status": ""}


def switch_model(host: ModelHost, store: Store, accounts: bool, name, model_name, request: gr.Request) -> dict:
    """This session's model, and no one else's. A model that cannot load (or that admins keep from reviewers)
    leaves the session's in place, and says why."""
    model_name = model_name or host.default_name
    if name == model_name:  # e.g. the picker set back after a refusal
        return {}
    try:
        if not isinstance(name, str) or name not in host.specs:
            raise UserFacingError(f"Unknown model {name!r}.")
        admin = users.may_administer(store, accounts, getattr(request, "username", None))
        if not host.may_pick(name, admin):
            raise UserFacingError(f"Admins keep {name} from reviewers here; pick another model.")
        host.model(name)
    except UserFacingError as e:
        return {"picker": gr.update(value=model_name, choices=host.choices()), "model_info": model_panel(host, model_name),
                "status": warning(str(e))}
    return {"model_name": name, "picker": gr.update(choices=host.choices()), "model_info": model_panel(host, name),
            "status": f"Switched to {markdown_text(name)}; the conversation continues. Other sessions keep their models."}


def set_pool_rules(host: ModelHost, store: Store, accounts: bool, pinned, reviewer_models, request: gr.Request) -> dict:
    """Admins': models never unloaded, and the models reviewers may pick."""
    try:
        if not users.may_administer(store, accounts, getattr(request, "username", None)):
            raise UserFacingError("Only admins may pin models or limit reviewers' models.")
        if not isinstance(pinned, list) or not isinstance(reviewer_models, list):
            raise UserFacingError("Pinned and reviewers' models are lists of model names.")
        host.set_rules(pinned, reviewer_models)
    except UserFacingError as e:
        return {"status": warning(str(e))}
    return {"picker": gr.update(choices=host.choices()),
            "status": f"Pinned: {markdown_text(', '.join(sorted(host.pinned)) or 'none')}. Reviewers may pick: "
                      f"{markdown_text(', '.join(sorted(host.reviewer_models)) if host.reviewer_models is not None else 'any model')}."}


def add_server(host: ModelHost, store: Store, accounts: bool, url, served_model, api_key, request: gr.Request) -> dict:
    """A model on an OpenAI-compatible server joins the picker. Admins only: the app would send requests (and the
    key typed here) wherever the address points. The key field is emptied either way."""
    try:
        if not users.may_administer(store, accounts, getattr(request, "username", None)):
            raise UserFacingError("Only admins may add model servers.")
        if not (url or "").strip() or not (served_model or "").strip():
            raise UserFacingError("Give the server's address (http://HOST:PORT/v1) and the model's name on it.")
        name = host.add_server(url, served_model, api_key)
    except UserFacingError as e:
        return {"picker": gr.update(choices=host.choices()), "server_key": "", "status": warning(str(e))}
    return {"picker": gr.update(choices=host.choices()), "server_key": "",
            "status": f"Added {markdown_text(name)}: pick it in the Model list."}


def show_pool(host: ModelHost) -> dict:
    """A page's model list and pool rules as they are now (on load): the rules an admin saved in another session,
    and the models added since the app started, not those of the app's start."""
    in_process = [name for name, spec in host.specs.items() if not spec.served_model]
    allowed = list(host.specs) if host.reviewer_models is None else [name for name in host.specs if name in host.reviewer_models]
    return {"picker": gr.update(choices=host.choices()), "pinned": gr.update(choices=in_process, value=sorted(host.pinned)),
            "allowed": gr.update(choices=list(host.specs), value=allowed)}


def refresh_models(host: ModelHost) -> dict:
    """The picker's list again: each server is asked whether it answers now (elsewhere its last answer stands for
    SERVER_CHECK_S)."""
    return {"picker": gr.update(choices=host.choices(fresh=True))}


def clear_all() -> dict:
    return scan_view.shown(None) | {"upload": None, "chatbot": [], "conversation": Conversation(), "question": "", "status": "",
                                    "windows_table": gr.update(value=None, visible=False)}


def send_to_review(host: ModelHost, store: Store, accounts: bool, conversation: Conversation, model_name, request: gr.Request) -> dict:
    """The last answer, with its image, into the review queue. Only a signed-in account puts text before reviewers."""
    if not accounts:
        return {"status": warning("Reviewing is off: it needs accounts (python -m review.users add NAME), then a restart.")}
    if users.role(store, getattr(request, "username", None)) is None:
        return {"status": warning("Sign in to send answers to review.")}
    if not conversation.turns:
        return {"status": warning("Ask a question first: there is no answer to send.")}
    question, answer = conversation.turns[-1]
    spec = host.specs[model_name or host.default_name]
    try:
        chat_answers.submit(store, spec.name, spec.adapter, conversation.image, question, answer)
    except UserFacingError as e:
        return {"status": warning(str(e))}
    return {"status": "Sent to the Review tab: physicians will grade it."}


def build_chat_tab(demo: gr.Blocks, host: ModelHost, store: Store, accounts: bool, model_name: gr.State) -> None:
    """model_name: the session's model (the Compare tab answers with it too)."""
    conversation = gr.State(Conversation())
    with gr.Row():
        with gr.Column(scale=1):
            # No file_types filter: DICOM files often have no extension; the decoder checks every upload itself.
            upload = gr.File(label="Scan: PNG, JPEG, DICOM (a file, a series' files or a .zip of them) or NIfTI",
                             type="filepath", file_count="multiple", elem_id="upload")
            preview = gr.Image(label="What the model sees", type="pil", interactive=False, height=260, elem_id="preview")
            view = gr.State(None)
            controls = scan_view.build_controls()
            picker = gr.Dropdown(choices=host.choices(), value=host.default_name, label="Model", elem_id="model")
            model_info = gr.Markdown(model_panel(host, host.default_name), elem_id="model-info")
            refresh = gr.Button("Check the models again", size="sm", elem_id="refresh-models")
            with gr.Accordion("Add a model server (admins)", open=False):
                server_url = gr.Textbox(label="OpenAI-compatible address", placeholder="http://gpu-box:8000/v1", elem_id="server-url")
                server_model = gr.Textbox(label="Model name on the server", placeholder="llava-hf/llava-1.5-7b-hf", elem_id="server-model")
                server_key = gr.Textbox(label="API key (if it wants one)", type="password", elem_id="server-key")
                add = gr.Button("Add server", elem_id="add-server")
            with gr.Accordion("Model pool (admins)", open=False):  # filled on load (show_pool)
                pinned = gr.CheckboxGroup([], label="Pinned: never unloaded", elem_id="pinned")
                allowed = gr.CheckboxGroup([], label="Reviewers may pick", elem_id="reviewer-models")
                save_rules = gr.Button("Save", elem_id="save-pool-rules")
            with gr.Accordion("Generation settings", open=False):
                temperature = gr.Slider(0, 2, value=DEFAULT_TEMPERATURE, step=0.05, label="Temperature (0 = greedy)")
                max_new_tokens = gr.Slider(
                    1, MAX_NEW_TOKENS_LIMIT, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="Max new tokens"
                )
        with gr.Column(scale=2):
            # Questions and answers are text: no Markdown, no HTML (a message must not draw a form or fetch an image).
            chatbot = gr.Chatbot(label="Conversation", height=420, elem_id="chatbot", render_markdown=False, allow_tags=False)
            question = gr.Textbox(
                placeholder="Ask about the image (or ask without one) and press Enter", show_label=False,
                elem_id="question", lines=1, max_lines=6, submit_btn=False,
            )
            with gr.Row():
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
                clear = gr.Button("Clear", elem_id="clear")
                send = gr.Button("Send last answer to review", elem_id="send-review")
                every = gr.Button("Ask in every window", elem_id="ask-every-window")
            status = gr.Markdown(host.startup_notice and warning(host.startup_notice), elem_id="status")
            windows_table = gr.Dataframe(headers=["window", "answer"], interactive=False, wrap=True, visible=False,
                                         elem_id="window-answers", label="The last question in every window")

    screen = {"upload": upload, "preview": preview, "chatbot": chatbot, "conversation": conversation, "question": question,
              "view": view, **controls, "windows_table": windows_table, "status": status}

    def outputs(*names):  # each event lists only what its handler may change: the API's outputs, in this order
        return {name: screen[name] for name in names}

    # The API (gradio_client, README "Use from Python") has one endpoint per user action: /upload, the viewer's
    # (scan_view.listen), /chat, /switch_model, /models, /add_server; the rest (Enter in the question box, clearing)
    # are the page's own.
    shown = scan_view.VIEW_OUTPUTS
    bind(on_upload, outputs(*shown, "chatbot", "conversation", "status")).on(upload.upload, [upload, conversation], api_name="upload")
    bind(on_remove_image, outputs(*shown, "chatbot", "conversation", "status")).on(upload.clear, api_visibility="private")
    scan_view.listen(on_view, outputs(*shown, "chatbot", "conversation", "status"), controls, view, conversation)
    bind(ask_every_window, outputs("windows_table", "status"), host=host).on(
        every.click, [view, conversation, question, model_name], api_visibility="private", **MODEL_EVENT)
    answering = bind(respond, outputs("chatbot", "conversation", "question", "status"), host=host)
    chat_inputs = [question, conversation, temperature, max_new_tokens, model_name]
    answering.on(ask.click, chat_inputs, api_name="chat", **CHAT_EVENT)
    answering.on(question.submit, chat_inputs, api_visibility="private", **CHAT_EVENT)
    bind(switch_model, {"model_name": model_name, "picker": picker, "model_info": model_info, "status": status},
         host=host, store=store, accounts=accounts).on(picker.change, [picker, model_name], api_name="switch_model", **MODEL_EVENT)
    bind(set_pool_rules, {"picker": picker, "status": status}, host=host, store=store, accounts=accounts).on(
        save_rules.click, [pinned, allowed], api_visibility="private")
    bind(refresh_models, {"picker": picker}, host=host).on(refresh.click, api_name="models")
    bind(show_pool, {"picker": picker, "pinned": pinned, "allowed": allowed}, host=host).on(demo.load, api_visibility="private")
    bind(add_server, {"picker": picker, "server_key": server_key, "status": status}, host=host, store=store, accounts=accounts).on(
        add.click, [server_url, server_model, server_key], api_name="add_server")
    bind(send_to_review, outputs("status"), host=host, store=store, accounts=accounts).on(send.click, [conversation, model_name],
                                                                                         api_visibility="private")
    bind(clear_all, screen).on(clear.click, api_visibility="private")
