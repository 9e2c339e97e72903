"""Batched answers for many questions: every score (train.vlm's final evaluation, medvlm.evaluate, medvlm.compare,
the benches) goes through `answer_examples`; chat streams through medvlm.chat; medvlm.serve streams the answers to
conversations that arrive together through `stream_rows`.

Greedy answers from families that can pack (LLaVA, MedVLM-Tiny) are decoded with every question about one image in
one row behind a single copy of the image's prompt prefix (medvlm.packing): the prefix is computed once per image,
not once per question. Sampling, text-only questions and IDEFICS go through model.generate, left-padded.
"""
from collections.abc import Callable
from dataclasses import replace

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from medvlm import packing
from medvlm.answers import Answer, yes_probability
from medvlm.chat import GenerationSettings, final_answer, generate_kwargs, visible_prefix
from medvlm.data import Example
from medvlm.images import fingerprint
from medvlm.models.loading import LoadedModel
from medvlm.remote import RemoteModel
from medvlm.settings import EVAL_MAX_NEW_TOKENS, IGNORE_INDEX, PACK_SIZE, REMOTE_CONCURRENCY

SCORING = GenerationSettings(max_new_tokens=EVAL_MAX_NEW_TOKENS, temperature=0.0)


class DecodedImages:
    """Each example's image decoded once while it is in use (test sets ask several questions about one image).
    Pass one to several answer_examples calls to share it; decoded scans are large, so it keeps a bounded set."""

    def __init__(self, limit: int = 256):
        self.limit, self.images, self.fingerprints = limit, {}, {}

    def __call__(self, example: Example):
        key = example.image_key
        if key not in self.images:
            if len(self.images) >= self.limit:
                self.images.clear()
            self.images[key] = example.image()
        return self.images[key]

    def fingerprint(self, example: Example) -> str:
        """medvlm.images.fingerprint of the example's image, computed once per image."""
        key = example.image_key
        if key not in self.fingerprints:
            self.fingerprints[key] = fingerprint(self(example))
        return self.fingerprints[key]


def answer_examples(
    loaded: LoadedModel,
    examples: list[Example],
    settings: GenerationSettings = SCORING,
    batch_size: int = 16,
    short_answer: bool = True,
    on_batch: Callable[[int], None] | None = None,
    images: DecodedImages | None = None,
    share_prefix: bool = True,
    concurrency: int = REMOTE_CONCURRENCY,
) -> list[Answer]:
    """Each example's last question about its image (None: text only), asked as the family asks it (with the
    short-answer instruction unless short_answer=False) -> its answers, in order, each with its p_yes. A served
    model (medvlm.remote) is sent `concurrency` questions at once, for its server to batch."""
    images = images or DecodedImages()
    items = [(images(e) if e.image_key is not None else None, loaded.family.ask(e.question, short_answer)) for e in examples]
    if isinstance(loaded, RemoteModel):
        return loaded.answer_many(items, settings, concurrency, on_batch)
    return answer_batch(loaded, items, settings, batch_size, on_batch, share_prefix)


def answer_batch(
    loaded: LoadedModel,
    items: list[tuple],
    settings: GenerationSettings = SCORING,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
    share_prefix: bool = True,
) -> list[Answer]:
    """Greedy (or sampled) answers for [(image or None, prompt text)], in order, about batch_size questions at a time,
    each with its p_yes (greedy only: under sampling the first token's distribution is not the model's own).

    share_prefix=False forces plain model.generate on left-padded batches (batch_size=1: one question at a time).
    """
    greedy_with_images = settings.temperature == 0 and all(image is not None for image, _ in items)
    if share_prefix and greedy_with_images and loaded.family.packable:
        return _answer_packed(loaded, items, int(settings.max_new_tokens), batch_size, on_batch)
    answers: list[str] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs = loaded.family.encode_batch(loaded.processor, [([(question, None)], image) for image, question in chunk])
        with torch.inference_mode():
            output = loaded.model.generate(**generate_kwargs(loaded, inputs, settings), return_dict_in_generate=True, output_logits=True)
        new_tokens = output.sequences[:, inputs["input_ids"].shape[1]:]  # left padding: every row's answer starts here
        for row, text in enumerate(loaded.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            p_yes = yes_probability(output.logits[0][row], loaded.tokenizer) if settings.temperature == 0 else None
            answers.append(Answer(final_answer(text, loaded.family.stop_strings), p_yes))
        if on_batch:
            on_batch(len(chunk))
    return answers


def _answer_packed(loaded: LoadedModel, items: list[tuple], max_new_tokens: int, batch_size: int, on_batch) -> list[Answer]:
    rows = packing.rows_by_image([fingerprint(image) for image, _ in items], PACK_SIZE)
    # Rows of a batch are padded to its widest (branches) and longest (tokens) row: rows of alike width batch together.
    rows.sort(key=len, reverse=True)
    answers: list[str | None] = [None] * len(items)
    batch: list[list[int]] = []
    for k, row in enumerate(rows):
        batch.append(row)
        if sum(map(len, batch)) >= batch_size or k == len(rows) - 1:
            texts, p_yes = _greedy_rows(loaded, [[items[i] for i in row] for row in batch], max_new_tokens)
            for index, text, p in zip([i for row in batch for i in row], texts, p_yes):
                answers[index] = Answer(final_answer(text, loaded.family.stop_strings), p)
            if on_batch:
                on_batch(sum(map(len, batch)))
            batch = []
    return answers


@torch.inference_mode()
def _greedy_rows(loaded: LoadedModel, rows: list[list[tuple]], max_new_tokens: int) -> tuple[list[str], list[float | None]]:
    """Greedy answers for rows of questions that share an image, decoded together, and each one's p_yes: each step
    feeds one token per question, which sees its row's prefix, its own prompt and its own answer so far."""
    family, processor, model = loaded.family, loaded.processor, loaded.model
    eos = torch.tensor(family.eos_token_ids(processor))
    pad_id = family.generate_kwargs(processor)["pad_token_id"]
    packed = []
    for row in rows:
        image = row[0][0]
        encoded = []
        for _, question in row:
            item = {k: v[0] for k, v in family.encode(processor, [(question, None)], image).items()}
            item["labels"] = torch.full_like(item["input_ids"], IGNORE_INDEX)
            item["labels"][-1] = 0  # the last prompt token stays in its branch: its logits give the first answer token
            encoded.append(item)
        packed.append(packing.pack(encoded))

    n_rows, width = len(rows), max(map(len, rows))
    length = max(p["input_ids"].shape[0] for p in packed)
    input_ids = torch.full((n_rows, length), pad_id, dtype=torch.long)
    ends = torch.zeros(n_rows, width, dtype=torch.long)  # where each question's prompt ends
    visible = torch.zeros(n_rows, width, length, dtype=torch.bool)  # what each question's next token may attend to
    for r, p in enumerate(packed):
        n = p["input_ids"].shape[0]
        input_ids[r, :n] = p["input_ids"]
        if "branch" not in p:  # one question: the whole row is its own
            ends[r, 0], visible[r, 0, :n] = n - 1, True
            continue
        branch, sees = p["branch"], packing.sees(p)
        for k in range(len(rows[r])):
            ends[r, k] = int((branch == k).nonzero()[-1, 0])
            visible[r, k, :n] = sees[k + 1, branch + 1]  # its own tokens and every part it shares with others
    mask, positions = packing.attention(packed, length)
    exists = torch.zeros(n_rows, width, dtype=torch.bool)
    for r, row in enumerate(rows):
        exists[r, : len(row)] = True
    keep = torch.zeros(n_rows, length, dtype=torch.bool)
    keep[torch.arange(n_rows)[:, None].expand(-1, width)[exists], ends[exists]] = True

    dtype = model.get_input_embeddings().weight.dtype
    pixel_values = torch.stack([p["pixel_values"] for p in packed]).to(loaded.device, dtype)
    out = model(input_ids=input_ids.to(loaded.device), pixel_values=pixel_values, attention_mask=mask.to(loaded.device),
                position_ids=positions.to(loaded.device), use_cache=True, logits_to_keep=keep.to(loaded.device))
    logits = torch.zeros(n_rows, width, out.logits.shape[-1])
    # keep's logits come row by row in token order; the prefix tree may lay a row's questions out in another order.
    order, offset = [], 0
    for r, row in enumerate(rows):
        order += (offset + ends[r, : len(row)].argsort().argsort()).tolist()
        offset += len(row)
    logits[exists] = out.logits.float().cpu()[order]
    p_yes = [yes_probability(logits[r, k], processor.tokenizer) for r, row in enumerate(rows) for k in range(len(row))]

    cache, next_position = out.past_key_values, positions.gather(1, ends) + 1
    alive, generated = exists.clone(), [[[] for _ in row] for row in rows]
    self_only = torch.eye(width, dtype=torch.bool)
    live_rows = torch.arange(n_rows)  # which of `rows` each batch row of the decode still is
    for step in range(max_new_tokens):
        tokens = logits.argmax(-1)
        for r, k in alive.nonzero().tolist():
            if tokens[r, k] in eos:
                alive[r, k] = False
            else:
                generated[live_rows[r]][k].append(int(tokens[r, k]))
        if step == max_new_tokens - 1 or not alive.any():
            break
        # A row whose questions are all answered leaves the batch (and its cache): one long answer elsewhere should
        # not keep decoding it.
        still = alive.any(1)
        if not still.all():
            kept = still.nonzero()[:, 0]
            cache.batch_select_indices(kept.to(loaded.device))
            alive, tokens, visible, next_position, live_rows = alive[kept], tokens[kept], visible[kept], next_position[kept], live_rows[kept]
        visible = torch.cat([visible, self_only.expand(len(live_rows), -1, -1)], dim=-1)
        out = model(input_ids=tokens.masked_fill(~alive, pad_id).to(loaded.device), attention_mask=visible[:, None].to(loaded.device),
                    position_ids=next_position.to(loaded.device), past_key_values=cache, use_cache=True)
        cache, logits, next_position = out.past_key_values, out.logits.float().cpu(), next_position + 1
    return processor.tokenizer.batch_decode([g for row in generated for g in row], skip_special_tokens=True), p_yes


# --- several conversations decoded together, each answer streamed (medvlm.serve) ------------------------------------


class _RowStreams(StoppingCriteria):
    """model.generate's streamer and stopping criterion for a batch of conversations: it follows each row's tokens,
    tells its reader the visible answer as it grows, and stops a row at its end of turn, its own token limit, or when
    its reader leaves (the others go on)."""

    def __init__(self, loaded: LoadedModel, limits: list[int], on_text, top_logprobs: int = 0):
        self.tokenizer, self.limits, self.on_text = loaded.tokenizer, limits, on_text
        self.first = _FirstTokenLogprobs(loaded.tokenizer, top_logprobs) if top_logprobs else None
        self.stops, self.eos = loaded.family.stop_strings, set(loaded.family.eos_token_ids(loaded.processor))
        self.tokens = [[] for _ in limits]
        self.shown = [""] * len(limits)
        self.done = [False] * len(limits)
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate's first call passes the prompt
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if token in self.eos:
                self._finish(row, "stop")
                continue
            self.tokens[row].append(token)
            text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
            if any(stop in text for stop in self.stops):
                self._finish(row, "stop")
            elif len(self.tokens[row]) >= self.limits[row]:
                self._finish(row, "length")
            else:
                shown = visible_prefix(text, self.stops)
                if shown != self.shown[row]:
                    self.shown[row] = shown
                    self.done[row] = bool(self.on_text(row, shown, None, self._top(row)))  # True: the reader left

    def _top(self, row: int) -> list | None:
        return self.first.top[row] if self.first is not None and self.first.top is not None else None

    def _finish(self, row: int, reason: str) -> None:
        self.done[row] = True
        text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        self.on_text(row, final_answer(text, self.stops), reason, self._top(row))

    def end(self) -> None:
        for row, done in enumerate(self.done):
            if not done:
                self._finish(row, "length")

    def __call__(self, input_ids, scores, **kwargs):
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)


class _FirstTokenLogprobs(LogitsProcessor):
    """Keeps each row's k likeliest first answer tokens as (text, log-probability), for a served answer's
    top_logprobs (medvlm.answers.p_yes_from_logprobs reads them back). Greedy decoding only: it sees the scores
    after generate's own processors, which under sampling are reshaped by temperature and top-p."""

    def __init__(self, tokenizer, k: int):
        self.tokenizer, self.k, self.top = tokenizer, k, None

    def __call__(self, input_ids, scores):
        if self.top is None:  # the first step: the answer's first token
            values, ids = torch.log_softmax(scores.float(), dim=-1).topk(self.k, dim=-1)
            self.top = [[(self.tokenizer.decode([i]), round(v, 4)) for v, i in zip(vs, row)]
                        for vs, row in zip(values.tolist(), ids.tolist())]
        return scores


# Processor outputs with one entry per prompt token: padded on the left in a batch, as the processors pad them.
TOKEN_ALIGNED = ("input_ids", "attention_mask", "image_attention_mask", "token_type_ids", "mm_token_type_ids")
# Image outputs whose tile count differs by image (Idefics3 / SmolVLM split each image by its size). Batching several
# images, that processor pads them with all-zero tiles, which the model drops; left_padded pads them the same way.
# Every other image output (Qwen2.5-VL's flattened patches, fixed-size pixels) must match beyond its first axis.
TILE_PADDED = ("pixel_values", "pixel_attention_mask")


def left_padded(encoded: list[dict], pad_id: int) -> dict:
    """Conversations encoded one by one (family.encode) as one left-padded batch, the same tensors the processor
    gives for them together: no second pass of the processor over prompts already encoded."""
    length = max(e["input_ids"].shape[1] for e in encoded)
    batch = {}
    for key in encoded[0]:
        parts = []
        for e in encoded:
            value, missing = e[key], length - e["input_ids"].shape[1]
            if missing and key in TOKEN_ALIGNED:
                fill = value.new_full((value.shape[0], missing, *value.shape[2:]), pad_id if key == "input_ids" else 0)
                value = torch.cat([fill, value], dim=1)
            parts.append(value)
        batch[key] = torch.cat(parts) if key in TOKEN_ALIGNED else concat_images(key, parts)
    return batch


def concat_images(key: str, parts: list[torch.Tensor]) -> torch.Tensor:
    """A processor's image output `key` for several conversations, along the first axis; tile counts that differ
    padded with zero tiles (TILE_PADDED), any other shape mismatch refused."""
    if len({p.shape[1:] for p in parts}) > 1:
        if key not in TILE_PADDED:
            raise ValueError(f"cannot batch {key} of shapes {sorted({tuple(p.shape) for p in parts})}")
        shape = [max(sizes) for sizes in zip(*(p.shape[1:] for p in parts))]
        parts = [torch.nn.functional.pad(p, [x for d in reversed(range(1, p.dim())) for x in (0, shape[d - 1] - p.shape[d])])
                 for p in parts]
    return torch.cat(parts)


@torch.inference_mode()
def stream_rows(loaded: LoadedModel, encoded: list[dict], settings: list[GenerationSettings],
                on_text: Callable[[int, str, str | None, list | None], bool | None], top_logprobs: int = 0) -> None:
    """Decode conversations together: `encoded`, each one's family.encode outputs (all with an image, or all
    without), left-padded into one batch; one temperature; each row up to its own settings' max_new_tokens.
    on_text(row, answer_so_far, finish) is called as a row's visible answer grows (finish None; return True to drop
    the row: its reader left) and once when it ends (finish "stop" or "length", with the final answer). Its last
    argument: with top_logprobs > 0 and greedy decoding, the row's top_logprobs likeliest first tokens as (text,
    log-probability), likeliest first (the token it said); else None."""
    pad_id = loaded.family.generate_kwargs(loaded.processor)["pad_token_id"]
    inputs = encoded[0] if len(encoded) == 1 else left_padded(encoded, pad_id)
    limits = [int(s.max_new_tokens) for s in settings]
    streams = _RowStreams(loaded, limits, on_text, top_logprobs if settings[0].temperature == 0 else 0)
    kwargs = generate_kwargs(loaded, inputs, replace(settings[0], max_new_tokens=max(limits)))
    kwargs.update(streamer=streams, stopping_criteria=StoppingCriteriaList([streams]))
    if streams.first is not None:
        kwargs.update(logits_processor=LogitsProcessorList([streams.first]))
    loaded.model.generate(**kwargs)
