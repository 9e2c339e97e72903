"""Fine-tuning entry points (python -m train.vlm, python -m train.yolo, python -m train.probe)."""
import medvlm  # noqa: F401  first: importing medvlm sets the offline switches before transformers or ultralytics load
