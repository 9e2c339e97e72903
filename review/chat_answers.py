"""Chat answers sent to review: each becomes a prediction of a per-model "chat" run, its image kept beside the
database (Gradio's upload folder is emptied after an hour) so reviewers see what the model saw."""
import io
from pathlib import Path

from medvlm.images import fingerprint
from medvlm.metrics import yes_no
from medvlm.store import Store

CHAT_DATASET = "chat"


def image_folder(store: Store) -> Path:
    return store.path.parent / f"{store.path.stem}-images"


def keep_image(store: Store, image) -> tuple[str | None, str | None]:
    """The image saved beside the database (once per picture) -> (its path, its fingerprint); (None, None) for none."""
    if image is None:
        return None, None
    image_hash = fingerprint(image)
    folder = image_folder(store)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{image_hash}.png"
    if not target.exists():
        png = io.BytesIO()
        image.save(png, format="PNG")
        target.write_bytes(png.getvalue())
    return str(target), image_hash


def submit(store: Store, model: str, adapter: str | None, image, question: str, answer: str) -> int:
    """Store one chat turn for review -> prediction id. A resubmitted turn is stored once."""
    image_ref, image_hash = keep_image(store, image)
    run = store.find_run(model, CHAT_DATASET, None, adapter, {}) or store.add_run(model, CHAT_DATASET, None, adapter, {})
    kind = "CLOSED" if yes_no(answer) is not None else "OPEN"
    item = store.add_item(CHAT_DATASET, question, None, kind, image_ref=image_ref, image_hash=image_hash)
    return store.add_prediction(run, item, answer)
