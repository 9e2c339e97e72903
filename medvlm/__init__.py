"""medvlm: an interactive clinician demo for medical vision-language models."""
from medvlm.settings import apply_offline_env

# Once, for every entry point: each imports medvlm before transformers, gradio or ultralytics, which read these.
apply_offline_env()
