"""The Gradio app: one Blocks with a tab per feature; each tab is built by its own module."""
import gradio as gr

from medvlm.host import ModelHost
from medvlm.settings import MAX_UPLOAD_BYTES
from medvlm.ui.chat_tab import build_chat_tab
from medvlm.ui.compare_tab import build_compare_tab
from medvlm.ui.evaluation_tab import build_evaluation_tab
from medvlm.ui.review_tab import KEYBOARD_JS, build_review_tab
from review.store import Store

# System fonts only: the default theme would fetch Google Fonts, and the app makes no network call.
THEME = gr.themes.Soft(
    font=[gr.themes.Font("system-ui"), gr.themes.Font("sans-serif")],
    font_mono=[gr.themes.Font("ui-monospace"), gr.themes.Font("monospace")],
)
HEADER = (
    "# medvlm\n"
    "Ask a medical vision-language model about an image. A research demo: **not for clinical use**."
)


def build_app(host: ModelHost, store: Store) -> gr.Blocks:
    # Uploads and previews live only in Gradio's temporary folder, and are deleted after an hour.
    with gr.Blocks(title="medvlm", delete_cache=(600, 3600)) as demo:
        gr.Markdown(HEADER)
        with gr.Tab("Chat"):
            build_chat_tab(host, store)
        with gr.Tab("Compare"):
            build_compare_tab(host)
        with gr.Tab("Review"):
            build_review_tab(store)
        with gr.Tab("Evaluation") as evaluation:
            build_evaluation_tab(store, evaluation)
    return demo


def launch(demo: gr.Blocks, host: str, port: int, share: bool = False) -> None:
    demo.queue(default_concurrency_limit=1)  # one generation at a time: the model is shared by every session
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        theme=THEME,
        js=KEYBOARD_JS,
        ssr_mode=False,  # server-side rendering needs Node and a second server
        max_file_size=MAX_UPLOAD_BYTES,
        show_error=False,
        quiet=False,
    )
