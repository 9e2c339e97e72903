"""medvlm: an interactive clinician demo for medical vision-language models."""
from medvlm.settings import apply_offline_env

# Once, for every entry point: each imports medvlm before transformers, gradio or ultralytics, which read these.
apply_offline_env()


def _quiet_start() -> None:
    """Library notices nobody running medvlm can act on, silenced; every other warning stays."""
    import logging
    import warnings

    # PEFT asks transformers 5 for is_gradient_checkpointing, which warns of its own rename on every model load.
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    # On CPUs with AVX512-BF16, bitsandbytes tries to download a 4-bit kernel from the hub (offline here by design)
    # and says so; it falls back to its own CPU kernel.
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
        lambda record: not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward"))


_quiet_start()
