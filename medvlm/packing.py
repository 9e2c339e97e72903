"""Several sequences about one image in one row, as a prefix tree: what they share once, then each one's own part.

The system prompt and the image's tokens are most of a VQA prompt, and datasets ask several questions per image
(VQA-RAD: ~6 in train, ~2 in test); questions that open alike ("Is there a ...", or a detector's findings before
the question in medvlm.compare) share those tokens too. A branch sees only its own tokens and the parts it shares,
and its positions continue from them, so each gets the logits it would get alone (tested) for a fraction of the
compute. Training
packs (image, question, answer) sequences (train.vlm); evaluation packs prompts and decodes every branch at once
(medvlm.predict).
"""
import torch

from medvlm.settings import IGNORE_INDEX

PREFIX = -1  # branch id of the prefix that every sequence shares
PACKING_KEYS = ("position_ids", "branch", "parents")  # what pack() adds to a row beside the processor's tensors


def rows_by_image(keys: list, size: int) -> list[list[int]]:
    """Indices grouped by image key, in first-seen order, cut into rows of at most `size`: what one packed row holds
    (a training row, or a row of questions answered together)."""
    groups: dict = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


def pack(items: list[dict]) -> dict:
    """One row from encoded sequences of the same image (processor outputs with 1-D input_ids and labels).

    The row is a prefix tree laid out depth first: tokens several sequences share are stored once, as long as they
    hold no labelled token (labels != IGNORE_INDEX), so every sequence keeps all of its own targets. Branch ids: PREFIX for
    what all share, k for what only sequence k has, len(items) and up for a part that some of them share (its
    "parents" entry names the part it continues). A single item is returned unchanged.
    """
    if len(items) == 1:
        return items[0]
    unlabelled = [int((item["labels"] != IGNORE_INDEX).nonzero()[0, 0]) for item in items]
    parents: list[int] = [PREFIX] * len(items)  # segment id -> the segment it continues
    pieces: list[tuple[int, int, int]] = []  # (segment id, source item, start): in row order, ancestors first

    def split(group: list[int], start: int, parent: int) -> None:
        if len(group) == 1:
            pieces.append((group[0], group[0], start))
            parents[group[0]] = parent
            return
        first = items[group[0]]["input_ids"]
        end = min(unlabelled[i] for i in group)
        for i in group[1:]:
            ids = items[i]["input_ids"]
            differs = (ids[start:end] != first[start:end]).nonzero()
            end = start + int(differs[0, 0]) if len(differs) else end
        if end > start:
            segment = PREFIX if parent is None else len(parents)
            if segment != PREFIX:
                parents.append(parent)
            pieces.append((segment, group[0], start))
            parent = segment
        forks: dict = {}
        for i in group:  # who goes on together: the same next token, while it is still unlabelled
            key = int(items[i]["input_ids"][end]) if end < unlabelled[i] else ("own", i)
            forks.setdefault(key, []).append(i)
        for fork in forks.values():
            split(fork, end, PREFIX if parent is None else parent)

    split(list(range(len(items))), 0, None)
    input_ids, labels, positions, branch = [], [], [], []
    for n, (segment, source, start) in enumerate(pieces):
        stop = _segment_end(pieces, n, items)
        input_ids.append(items[source]["input_ids"][start:stop])
        labels.append(items[source]["labels"][start:stop])
        positions.append(torch.arange(start, stop))
        branch.append(torch.full((stop - start,), segment))
    row = {"input_ids": torch.cat(input_ids), "labels": torch.cat(labels), "position_ids": torch.cat(positions),
           "branch": torch.cat(branch), "parents": torch.tensor(parents)}
    row["attention_mask"] = torch.ones_like(row["input_ids"])
    row["pixel_values"] = items[0]["pixel_values"]
    return row


def _segment_end(pieces: list[tuple[int, int, int]], n: int, items: list[dict]) -> int:
    """Where piece n stops: a sequence's own piece at its end; a shared piece where its first child starts."""
    segment, source, _ = pieces[n]
    if 0 <= segment < len(items):
        return items[source]["input_ids"].shape[0]
    return pieces[n + 1][2]  # depth first: the next piece is its first child


def branches_in(row: dict) -> int:
    """How many sequences a row holds: its segments that no other segment continues."""
    if "parents" not in row:
        return 1
    parents = row["parents"].tolist()
    return len(parents) - len(set(parents) - {PREFIX})


def sees(row: dict) -> torch.Tensor:
    """sees[a + 1, b + 1]: whether a token of branch a may attend to one of branch b (b is a or one of its
    ancestors); index 0 is PREFIX, which every branch sees."""
    parents = row["parents"].tolist()
    n = len(parents)
    table = torch.zeros(n + 1, n + 1, dtype=torch.bool)
    table[:, 0] = True
    for a in range(n):
        b = a
        while b != PREFIX:
            table[a + 1, b + 1] = True
            b = parents[b]
    return table


def attention(rows: list[dict], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(4-D boolean attention mask (rows, 1, length, length), position_ids (rows, length)) for right-padded rows.

    Causal, within a token's own branch and the parts it shares (sees). A row without "branch" is one plain sequence.
    Padding positions attend to themselves only: an empty softmax row would give NaN.
    """
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    mask = torch.eye(length, dtype=torch.bool).repeat(len(rows), 1, 1, 1)
    positions = torch.arange(length).repeat(len(rows), 1)
    for r, row in enumerate(rows):
        n = row["input_ids"].shape[0]
        if "branch" in row:
            visible = sees(row)[row["branch"][:, None] + 1, row["branch"][None, :] + 1]
        else:
            visible = torch.ones(n, n, dtype=torch.bool)
        mask[r, 0, :n, :n] = causal[:n, :n] & visible
        positions[r, :n] = row.get("position_ids", torch.arange(n))
    return mask, positions
