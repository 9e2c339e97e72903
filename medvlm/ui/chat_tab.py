"""The Chat tab: upload an image (PNG, JPEG, DICOM), ask, watch the answer stream in, follow up, switch models."""
import logging
from dataclasses import dataclass, field, replace

import gradio as gr
from PIL import Image

from medvlm.chat import GenerationSettings, check_question, stream_reply
from medvlm.errors import UserFacingError
from medvlm.host import ModelHost
from medvlm.images import load_image
from medvlm.settings import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, MAX_NEW_TOKENS_LIMIT
from medvlm.ui.pictures import picture_file
from medvlm.ui.text import html_text, markdown_text
from review import chat_answers, users
from review.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conversation:
    """One session's chat: the image (kept for follow-ups) and the finished (question, answer) turns."""

    image: Image.Image | None = None
    image_name: str = ""
    turns: tuple = field(default_factory=tuple)


def warning(message: str) -> str:
    return f"⚠️ {markdown_text(message)}"


def on_upload(path, conversation: Conversation):
    """-> preview, chat messages, conversation, status. A bad file changes nothing but the status line."""
    try:
        image = load_image(path)
    except UserFacingError as e:
        return None, gr.skip(), conversation, warning(str(e))
    name = path.rsplit("/", 1)[-1]
    status = f"Loaded {markdown_text(name)} ({image.width}×{image.height}). Ask a question; follow-ups keep this image."
    return picture_file(image), [], Conversation(image=image, image_name=name), status


def on_remove_image():
    return None, [], Conversation(), "Image removed: new conversation; questions are now text-only."


def build_chat_tab(host: ModelHost, store: Store, accounts: bool) -> None:
    conversation = gr.State(Conversation())
    with gr.Row():
        with gr.Column(scale=1):
            # No file_types filter: DICOM files often have no extension; the decoder checks every upload itself.
            upload = gr.File(label="Image: PNG, JPEG or DICOM", type="filepath", elem_id="upload")
            preview = gr.Image(label="What the model sees", type="pil", interactive=False, height=260, elem_id="preview")
            picker = gr.Dropdown(choices=host.choices(), value=host.current_name, label="Model", elem_id="model")
            model_info = gr.Markdown(host.describe(), elem_id="model-info")
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
            status = gr.Markdown(host.startup_notice and warning(host.startup_notice), elem_id="status")

    def respond(text, conv: Conversation, messages, temp, max_tokens):
        """-> chat messages, conversation, question box, status; streamed."""
        messages = list(messages or [])
        try:
            text = check_question(text)
            settings = GenerationSettings(max_new_tokens=int(max_tokens), temperature=float(temp)).check()
            if host.current is None:
                raise UserFacingError("No model is loaded: pick one that can load here.")
        except UserFacingError as e:
            yield messages, conv, gr.skip(), warning(str(e))
            return
        messages += [{"role": "user", "content": html_text(text)}, {"role": "assistant", "content": ""}]
        yield messages, conv, "", f"{host.current_name} is answering…"
        answer = ""
        try:
            with host.lock:
                for answer in stream_reply(host.current, list(conv.turns), text, conv.image, settings):
                    messages[-1] = {"role": "assistant", "content": html_text(answer)}
                    yield messages, conv, gr.skip(), gr.skip()
        except UserFacingError as e:
            yield messages[:-2], conv, text, warning(str(e))
            return
        except Exception as e:  # keep the app up; the log has the traceback
            log.exception("generation failed")
            yield messages[:-2], conv, text, warning(f"Generation failed ({type(e).__name__}). Try again or pick another model.")
            return
        answer = answer or "(no answer)"
        messages[-1] = {"role": "assistant", "content": html_text(answer)}
        yield messages, replace(conv, turns=conv.turns + ((text, answer),)), gr.skip(), ""

    def switch_model(name):
        """-> picker, model info, status. A model that cannot load leaves the current one in place."""
        if name == host.current_name:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            host.switch(name)
        except UserFacingError as e:
            return gr.update(value=host.current_name, choices=host.choices()), host.describe(), warning(str(e))
        return gr.update(choices=host.choices()), host.describe(), f"Switched to {name}; the conversation continues."

    def clear_all():
        return None, None, [], Conversation(), "", ""

    def send_to_review(conv: Conversation, request: gr.Request):
        # Only a signed-in account puts text in front of reviewers.
        if not accounts:
            return warning("Reviewing is off: it needs accounts (python -m review.users add NAME), then a restart.")
        if users.role(store, getattr(request, "username", None)) is None:
            return warning("Sign in to send answers to review.")
        if not conv.turns:
            return warning("Ask a question first: there is no answer to send.")
        question, answer = conv.turns[-1]
        spec = host.current.spec
        try:
            chat_answers.submit(store, spec.name, spec.adapter, conv.image, question, answer)
        except UserFacingError as e:
            return warning(str(e))
        return "Sent to the Review tab: physicians will grade it."

    upload.upload(on_upload, [upload, conversation], [preview, chatbot, conversation, status])
    upload.clear(on_remove_image, None, [preview, chatbot, conversation, status])
    ask_inputs = [question, conversation, chatbot, temperature, max_new_tokens]
    ask_outputs = [chatbot, conversation, question, status]
    ask.click(respond, ask_inputs, ask_outputs, concurrency_id="model")
    question.submit(respond, ask_inputs, ask_outputs, concurrency_id="model")
    picker.change(switch_model, [picker], [picker, model_info, status], concurrency_id="model")
    send.click(send_to_review, [conversation], [status], api_visibility="private")
    clear.click(clear_all, None, [upload, preview, chatbot, conversation, question, status])
