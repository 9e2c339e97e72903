"""Fine-tuning entry points (python -m train.vlm, python -m train.yolo)."""
