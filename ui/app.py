"""The Gradio app: one Blocks with a tab per feature; each tab is built by its own module."""
import gradio as gr
from starlette.middleware import Middleware

from medvlm.host import ModelHost
from medvlm.settings import MAX_UPLOAD_BYTES, SPACE_ACCOUNTS_ENV
from medvlm.store import Store
from review import users
from ui.arena_tab import build_arena_tab
from ui.chat_tab import build_chat_tab
from ui.compare_tab import build_compare_tab
from ui.evaluation_tab import build_evaluation_tab
from ui.live_battle import build_live_battle
from ui.review_tab import KEYBOARD_JS, build_review_tab
from ui.text import markdown_text

# System fonts only: the default theme would fetch Google Fonts, and the app makes no network call.
THEME = gr.themes.Soft(
    font=[gr.themes.Font("system-ui"), gr.themes.Font("sans-serif")],
    font_mono=[gr.themes.Font("ui-monospace"), gr.themes.Font("monospace")],
)
HEADER = (
    "# medvlm\n"
    "Ask a medical vision-language model about an image. A research demo: **not for clinical use**."
)


def build_app(host: ModelHost, store: Store, reveal_model: bool = False, notice: str | None = None) -> gr.Blocks:
    """With review accounts in `store`, everyone signs in (launch() turns Gradio's login on); without, the app is a
    one-person local tool and reviewing is off. notice: a warning every visitor sees at the top (exposure_warning)."""
    accounts = store.has_reviewers()
    # Uploads and previews live only in Gradio's temporary folder, and are deleted after an hour.
    with gr.Blocks(title="medvlm", delete_cache=(600, 3600)) as demo:
        gr.Markdown(HEADER)
        if notice:
            gr.Markdown(f"⚠️ **{markdown_text(notice)}**", elem_id="exposure-warning")
        model_name = gr.State(host.default_name)  # each browser session's own model (medvlm.host: the pool)
        with gr.Tab("Chat"):
            build_chat_tab(demo, host, store, accounts, model_name)
        with gr.Tab("Compare") as compare:
            build_compare_tab(host, store, accounts, compare, model_name)
        with gr.Tab("Review"):
            build_review_tab(demo, store, accounts, reveal_model)
        with gr.Tab("Arena"):
            with gr.Tab("Dataset pairs"):
                build_arena_tab(demo, store, accounts)
            with gr.Tab("Live battle"):
                build_live_battle(host, store, accounts)
        with gr.Tab("Evaluation") as evaluation:
            build_evaluation_tab(store, evaluation, accounts)
    demo.accounts = accounts
    return demo


def exposure_warning(host: str, share: bool, accounts: bool, on_space: bool = False) -> str | None:
    """A loud line when the app listens beyond this machine and no one has to sign in; on a Space, where no one
    types commands, it names the secret that adds accounts."""
    if accounts or not (share or host not in ("127.0.0.1", "localhost", "::1")):
        return None
    where = "a public share link" if share else f"{host} (other machines)"
    fix = (f"set the Space secret {SPACE_ACCOUNTS_ENV} (README: Deploy as a Space) and restart the Space" if on_space
           else "python -m review.users add NAME --admin")
    return (f"WARNING: serving on {where} with no review accounts: anyone who reaches it can chat, see every run and "
            f"its scores, and export the review data. Add an account first: {fix}")


def launch(demo: gr.Blocks, host: str, port: int, share: bool = False, store: Store | None = None) -> None:
    demo.queue(default_concurrency_limit=1)  # events run one at a time unless they say otherwise (MODEL_EVENT)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        # Gradio's login page and session cookie: a password never passes through an event, a log or the run history.
        auth=users.Authenticator(store).login if store is not None and demo.accounts else None,
        auth_message="medvlm: sign in with your review account.",
        app_kwargs={"middleware": [Middleware(users.ClientAddress)]},  # the client address, for the sign-in brake
        run_history=False,  # it would keep every input (notes, questions) in the browser's storage
        footer_links=["api", "settings"],
        theme=THEME,
        js=KEYBOARD_JS,
        ssr_mode=False,  # server-side rendering needs Node and a second server
        max_file_size=MAX_UPLOAD_BYTES,
        show_error=False,
        quiet=False,
    )
