"""medvlm: chat with a medical vision-language model about an image, in the browser.

    python app.py                                   # MedVLM-Tiny on CPU, offline: http://127.0.0.1:7860
    python app.py --model llava-1.5-7b --adapter runs/pathvqa-qlora   # needs the hub cache and a GPU
    python app.py --model midefics --port 8080
    python app.py --model /path/to/any/llava-or-idefics-checkpoint

No network call is made unless you set the switches yourself (e.g. HF_HUB_OFFLINE=0 to let the hub download).
"""
import argparse
import logging
import sys

from medvlm.settings import DEFAULT_MODEL, DETECTOR_WEIGHTS, HOST, PORT, apply_offline_env
from review.store import DEFAULT_DB


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, not {port}")
    return port


def parse_args(argv=None) -> argparse.Namespace:
    from medvlm.models.loading import QUANTIZE_CHOICES
    from medvlm.models.registry import REGISTRY

    parser = argparse.ArgumentParser(description="medvlm: chat with a medical VLM about an image.")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL,
        help=f"registered model ({', '.join(REGISTRY)}), a local model folder, or a hub id (default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--adapter", help="PEFT adapter for --model: local folder or hub id")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if present")
    parser.add_argument(
        "--quantize", choices=QUANTIZE_CHOICES, default="auto",
        help="auto: 4-bit nf4 for 7B/9B models on CUDA, none on CPU; none turns 4-bit off",
    )
    parser.add_argument(
        "--detector", default=str(DETECTOR_WEIGHTS),
        help="YOLO weights for the Compare tab (default: the shipped brain-tumour YOLOv8n)",
    )
    parser.add_argument("--db", default=DEFAULT_DB, help=f"review database (default: {DEFAULT_DB})")
    parser.add_argument("--host", default=HOST, help=f"address to listen on (default: {HOST})")
    parser.add_argument("--port", type=port_number, default=PORT, help=f"default: {PORT}")
    parser.add_argument("--share", action="store_true", help="open a public Gradio share link (off by default)")
    parser.add_argument(
        "--reveal-model", action="store_true",
        help="after each verdict, tell reviewers which model answered (never the run); default: only admins see it",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    apply_offline_env()  # before gradio / transformers are imported
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from medvlm.errors import UserFacingError
    from medvlm.host import ModelHost
    from medvlm.ui.app import build_app, exposure_warning, launch
    from review.store import Store

    try:
        store = Store(args.db)
    except UserFacingError as e:
        print(f"medvlm: error: {e}", file=sys.stderr)
        return 1

    model_host = ModelHost(
        device=None if args.device == "auto" else args.device, quantize=args.quantize, detector_weights=args.detector
    )
    print(f"medvlm: loading {args.model} on {model_host.device}...", flush=True)
    model_host.start(args.model, adapter=args.adapter)  # logs why, if it falls back to the default model
    demo = build_app(model_host, store, reveal_model=args.reveal_model)
    warning = exposure_warning(args.host, args.share, demo.accounts)
    if warning:
        print(f"\n{'!' * 100}\nmedvlm: {warning}\n{'!' * 100}\n", file=sys.stderr, flush=True)
    try:
        launch(demo, args.host, args.port, args.share, store)
    except OSError as e:
        print(f"medvlm: error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
