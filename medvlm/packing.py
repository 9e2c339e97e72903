"""Several sequences about one image in one row: their shared prefix once, then each one's remainder as a branch.

The system prompt and the image's tokens are most of a VQA prompt, and datasets ask several questions per image
(VQA-RAD: ~6 in train, ~2 in test). A branch sees the shared prefix and itself only, and its positions continue from
the prefix, so each branch gets the logits it would get alone (tested) for a fraction of the compute. Training
packs (image, question, answer) sequences (train.vlm); evaluation packs prompts and decodes every branch at once
(medvlm.predict).
"""
import torch

PREFIX = -1  # branch id of the shared prefix


def pack(items: list[dict]) -> dict:
    """One row from encoded sequences of the same image (processor outputs with 1-D input_ids and labels).

    The shared prefix is the longest common token prefix that holds no labelled token (labels != -100), so every
    branch keeps all of its own targets. A single item is returned unchanged.
    """
    if len(items) == 1:
        return items[0]
    first = items[0]["input_ids"]
    shared = min(int((item["labels"] != -100).nonzero()[0, 0]) for item in items)
    for item in items[1:]:
        ids = item["input_ids"]
        n = min(shared, len(ids))
        differs = (ids[:n] != first[:n]).nonzero()
        shared = int(differs[0, 0]) if len(differs) else n
    lengths = [item["input_ids"].shape[0] - shared for item in items]
    row = {
        "input_ids": torch.cat([first[:shared]] + [item["input_ids"][shared:] for item in items]),
        "labels": torch.cat([items[0]["labels"][:shared]] + [item["labels"][shared:] for item in items]),
        "position_ids": torch.cat([torch.arange(shared)] + [torch.arange(shared, shared + n) for n in lengths]),
        "branch": torch.cat([torch.full((shared,), PREFIX)] + [torch.full((n,), k) for k, n in enumerate(lengths)]),
    }
    row["attention_mask"] = torch.ones_like(row["input_ids"])
    row["pixel_values"] = items[0]["pixel_values"]
    return row


def branches_in(row: dict) -> int:
    return int(row["branch"].max()) + 1 if "branch" in row else 1


def attention(rows: list[dict], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(4-D boolean attention mask (rows, 1, length, length), position_ids (rows, length)) for right-padded rows.

    Causal, within a token's own branch or the shared prefix. A row without "branch" is one plain sequence.
    Padding positions attend to themselves only: an empty softmax row would give NaN.
    """
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    mask = torch.eye(length, dtype=torch.bool).repeat(len(rows), 1, 1, 1)
    positions = torch.arange(length).repeat(len(rows), 1)
    for r, row in enumerate(rows):
        n = row["input_ids"].shape[0]
        branch = row.get("branch", torch.zeros(n, dtype=torch.long))
        visible = (branch[:, None] == branch[None, :]) | (branch[None, :] == PREFIX)
        mask[r, 0, :n, :n] = causal[:n, :n] & visible
        positions[r, :n] = row.get("position_ids", torch.arange(n))
    return mask, positions
