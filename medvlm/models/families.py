"""Model families: how each one is loaded, prompted, and told where its answer ends.

A conversation reaches a family as `turns`: [(question, answer), ..., (question, None)], the last one being asked
now. The image, if any, belongs to the first turn. Everything else (streaming, context fitting, the UI) is shared.
"""
import weakref

from PIL import Image

Turn = tuple[str, str | None]


class Family:
    name: str  # the transformers config "model_type" it runs: how a folder or hub id finds its family
    quantizable = True  # whether quantize="auto" may pick 4-bit on CUDA
    stop_strings: tuple[str, ...] = ()  # text that means the model has started inventing the next turn
    # LoRA goes on the language model's attention projections only (transformers 5 module paths), never the
    # vision tower; modules_to_save are trained in full and saved with the adapter. (Adding the MLP projections cost
    # MedVLM-Tiny 12 % more time per step for no clear gain on VQA-RAD: closed 61.0 vs 59.9, open recall 24.3 vs 26.0.)
    lora_target = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
    lora_lr = 2e-4  # LLaVA-1.5's LoRA recipe, and QLoRA's for 7B models
    modules_to_save: tuple[str, ...] = ()
    # Whether training may pack several examples of one image behind a shared prefix (train.vlm.ImagePackedDataset):
    # true where the image lives in input_ids and the language model takes a 4D attention mask.
    packable = False

    # The prompt's own words, as data (print a family's whole prompt: python -m medvlm.models --show_prompt NAME).
    # The short-answer instruction is LLaVA-1.5's for VQA; training and scoring append it alike.
    short_answer_instruction = "Answer with a single word or phrase."
    # Text the model is given before the question: the detector's findings (medvlm.compare, the Compare tab).
    context_format = "{context}\n{question}"
    findings_none = "A tumour detector (YOLOv8) found no tumour in this {width}x{height} image."
    findings_some = "A tumour detector (YOLOv8) found, in this {width}x{height} image: {found}."
    finding = "{label} (confidence {confidence:.2f}) at x {x0:.0f}-{x1:.0f}, y {y0:.0f}-{y1:.0f}"
    finding_separator = "; "

    def ask(self, question: str, short_answer: bool = False, context: str | None = None) -> str:
        """The user's question as the model is asked it: after any context, before the short-answer instruction."""
        if context:
            question = self.context_format.format(context=context, question=question)
        return f"{question}\n{self.short_answer_instruction}" if short_answer else question

    def findings(self, detections, size: tuple[int, int]) -> str:
        """Detections (medvlm.detect.Detection) as one sentence the model can read: MIDEFICS' idea of a model's
        output as context."""
        width, height = size
        if not detections:
            return self.findings_none.format(width=width, height=height)
        found = self.finding_separator.join(
            self.finding.format(label=d.label, confidence=d.confidence, x0=d.box[0], y0=d.box[1], x1=d.box[2], y1=d.box[3])
            for d in detections)
        return self.findings_some.format(width=width, height=height, found=found)

    prompt_from_processor = False  # whether show_prompt needs the model's processor (its chat template)

    def show_prompt(self, turns: list[Turn], image_marker: str = "<image>", processor=None) -> str:
        """The prompt text this family builds for `turns` about an image, the image shown as `image_marker`."""
        raise NotImplementedError

    def load(self, source: str, **from_pretrained_kwargs):
        """(model, processor) from a hub id or local folder."""
        raise NotImplementedError

    def encode(self, processor, turns: list[Turn], image: Image.Image | None):
        """Processor outputs (input_ids, attention_mask, pixel values...) for one conversation."""
        raise NotImplementedError

    def encode_batch(self, processor, conversations: list[tuple[list[Turn], Image.Image | None]]):
        """Left-padded processor outputs for several conversations (all with an image, or all without)."""
        raise NotImplementedError

    def eos_token_ids(self, processor) -> list[int]:
        """The tokens that end an answer."""
        return [processor.tokenizer.eos_token_id]

    def generate_kwargs(self, processor) -> dict:
        tokenizer = processor.tokenizer
        kwargs = {"eos_token_id": self.eos_token_ids(processor), "pad_token_id": tokenizer.pad_token_id}
        if kwargs["pad_token_id"] is None:
            kwargs["pad_token_id"] = kwargs["eos_token_id"][0]
        if self.stop_strings:
            kwargs["stop_strings"] = list(self.stop_strings)
            kwargs["tokenizer"] = tokenizer
        return kwargs

    def context_length(self, model) -> int:
        config = model.config
        text_config = getattr(config, "text_config", None) or config
        return int(text_config.max_position_embeddings)


class TextPromptFamily(Family):
    """Families whose prompt is one string; the processor expands the image placeholder into image tokens."""

    header = ""
    user_turn: str  # template with {image} and {question}
    answer_turn: str  # template with {answer} and {eos}
    image_placeholder = "<image>\n"
    packable = True

    def prompt(self, turns: list[Turn], has_image: bool, eos: str) -> str:
        text = self.header
        for i, (question, answer) in enumerate(turns):
            image = self.image_placeholder if i == 0 and has_image else ""
            text += self.user_turn.format(image=image, question=question)
            if answer is not None:
                text += self.answer_turn.format(answer=answer, eos=eos)
        return text

    eos_text = "</s>"  # the tokenizer's end-of-sequence text, for show_prompt (encode reads the tokenizer's own)

    def show_prompt(self, turns, image_marker="<image>", processor=None):
        return self.prompt(turns, True, self.eos_text).replace(self.image_placeholder, image_marker + "\n", 1)

    def encode(self, processor, turns, image):
        text = self.prompt(turns, image is not None, processor.tokenizer.eos_token)
        return processor(images=image, text=text, return_tensors="pt")

    def encode_batch(self, processor, conversations):
        eos = processor.tokenizer.eos_token
        texts = [self.prompt(turns, image is not None, eos) for turns, image in conversations]
        images = [image for _, image in conversations if image is not None]
        return processor(images=images or None, text=texts, padding=True, return_tensors="pt")


class LlavaFamily(TextPromptFamily):
    """LLaVA-1.5 (llava-hf layout): `USER: <image>\\n{question}\\nASSISTANT:`, turns closed by </s>."""

    name = "llava"
    stop_strings = ("USER:", "ASSISTANT:")
    user_turn = "USER: {image}{question}\nASSISTANT:"
    answer_turn = " {answer}{eos}"

    def load(self, source, **kwargs):
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        return LlavaForConditionalGeneration.from_pretrained(source, **kwargs), AutoProcessor.from_pretrained(source)


class IdeficsFamily(Family):
    """IDEFICS-instruct (MIDEFICS): `User: {question}<image><end_of_utterance>\\nAssistant:`."""

    name = "idefics"
    end_of_utterance = "<end_of_utterance>"
    image_tokens = ("<image>", "<fake_token_around_image>")
    stop_strings = ("\nUser:",)
    lora_target = r"model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"  # not the vision/perceiver/cross-attn

    def load(self, source, **kwargs):
        from transformers import AutoProcessor, IdeficsForVisionText2Text

        return IdeficsForVisionText2Text.from_pretrained(source, **kwargs), AutoProcessor.from_pretrained(source)

    def prompt_items(self, turns: list[Turn], image) -> list:
        """Text and image items in the IDEFICS processor's interleaved format; adjacent texts merged."""
        eou = self.end_of_utterance
        items: list = []
        for i, (question, answer) in enumerate(turns):
            items.append(f"User: {question}")
            if i == 0 and image is not None:
                items.append(image)
            items.append(f"{eou}\nAssistant:")
            if answer is not None:
                items.append(f" {answer}{eou}\n")
        merged: list = []
        for item in items:
            if isinstance(item, str) and merged and isinstance(merged[-1], str):
                merged[-1] += item
            else:
                merged.append(item)
        return merged

    def show_prompt(self, turns, image_marker="<image>", processor=None):
        return "".join(item if isinstance(item, str) else image_marker for item in self.prompt_items(turns, image_marker))

    def encode(self, processor, turns, image):
        # The IDEFICS processor takes its interleaved prompt only as the `text=` keyword.
        return processor(text=self.prompt_items(turns, image), return_tensors="pt")

    def encode_batch(self, processor, conversations):
        return processor(text=[self.prompt_items(turns, image) for turns, image in conversations], padding=True, return_tensors="pt")

    def eos_token_ids(self, processor):
        return [processor.tokenizer.eos_token_id, processor.tokenizer.convert_tokens_to_ids(self.end_of_utterance)]

    def generate_kwargs(self, processor):
        kwargs = super().generate_kwargs(processor)
        tokenizer = processor.tokenizer
        kwargs["bad_words_ids"] = [[tokenizer.convert_tokens_to_ids(t)] for t in self.image_tokens]
        return kwargs


class FastVlmFamily(TextPromptFamily):
    """FastVLM-class models with a ChatML language model; MedVLM-Tiny is one (see medvlm/models/tiny.py)."""

    name = "fast_vlm"
    quantizable = False  # 135M parameters: 4-bit would save nothing worth its accuracy cost
    modules_to_save = ("multi_modal_projector",)  # MedVLM-Tiny's projector starts untrained
    lora_lr = 1e-3  # a 135M model wants more than a 7B one: on VQA-RAD 1e-3 beat 3e-4 (closed 59.6 vs 57.0)
    system_prompt = "You are a medical imaging assistant. Answer the clinician's question about the image."
    header = f"<|im_start|>system\n{system_prompt}<|im_end|>\n"
    user_turn = "<|im_start|>user\n{image}{question}<|im_end|>\n<|im_start|>assistant\n"
    answer_turn = "{answer}<|im_end|>\n"
    eos_text = "<|endoftext|>"

    def load(self, source, **kwargs):
        from transformers import AutoProcessor, FastVlmForConditionalGeneration

        from medvlm.models import tiny

        if source == tiny.MEDVLM_TINY_SOURCE:
            source = tiny.base_model_dir()
        return FastVlmForConditionalGeneration.from_pretrained(source, **kwargs), AutoProcessor.from_pretrained(source)

    def eos_token_ids(self, processor):
        return [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]


class ChatTemplateFamily(Family):
    """Any image-text-to-text checkpoint whose processor has a chat template: MedGemma / Gemma 3, Qwen2.5-VL
    (Lingshu), Idefics3 (SmolVLM), LLaVA-OneVision... Loaded with AutoModelForImageTextToText + AutoProcessor; every
    prompt is the processor's own template (processor.apply_chat_template), nothing written here by hand.

    Not packable: Qwen2.5-VL's 3-D rotary positions and Gemma 3's bidirectional image attention are computed by the
    model from the plain sequence, which a packed row's custom positions and 4-D mask would override; so training rows
    hold one example and batched answers go through one left-padded generate.
    """

    name = "chat_template"
    # The language model's attention only: its module is language_model (Gemma 3, Qwen2.5-VL, LLaVA-OneVision) or
    # text_model (Idefics3); the vision towers' are vision_tower / visual / vision_model.
    lora_target = r".*(language_model|text_model)\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"

    @staticmethod
    def messages(turns: list[Turn], image) -> list[dict]:
        """The conversation in the chat-template format every processor takes; the image on the first user turn."""
        out = []
        for i, (question, answer) in enumerate(turns):
            picture = [{"type": "image", "image": image}] if i == 0 and image is not None else []
            out.append({"role": "user", "content": [*picture, {"type": "text", "text": question}]})
            if answer is not None:
                out.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return out

    prompt_from_processor = True

    def load_processor(self, source):
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(source)
        if not getattr(processor, "chat_template", None):
            raise ValueError(f"{source}'s processor has no chat template, so medvlm cannot build its prompts")
        return processor

    def load(self, source, **kwargs):
        from transformers import AutoModelForImageTextToText

        processor = self.load_processor(source)
        return AutoModelForImageTextToText.from_pretrained(source, **kwargs), processor

    def encode(self, processor, turns, image):
        return self.encode_batch(processor, [(turns, image)])

    def encode_batch(self, processor, conversations):
        # A conversation that ends with an answer (training) gets no generation prompt after it.
        open_ended = [turns[-1][1] is None for turns, _ in conversations]
        if len(set(open_ended)) > 1:
            raise ValueError("a batch mixes finished conversations with open ones")
        return processor.apply_chat_template([self.messages(turns, image) for turns, image in conversations],
                                             add_generation_prompt=open_ended[0], tokenize=True, return_dict=True,
                                             return_tensors="pt", processor_kwargs={"padding": True})

    def show_prompt(self, turns, image_marker="<image>", processor=None):
        """The processor's own token ids for `turns` about a blank image, decoded; each run of image tokens shown
        as one image_marker."""
        if processor is None:
            raise ValueError("the chat-template family's prompt comes from the model's processor: pass it")
        tokenizer = processor.tokenizer
        image_id = getattr(tokenizer, "image_token_id", None) or processor.image_token_id
        ids = self.encode(processor, turns, Image.new("RGB", (64, 64)))["input_ids"][0].tolist()
        pieces, text = [], []
        for k, token in enumerate(ids):
            if token != image_id:
                text.append(token)
            elif k == 0 or ids[k - 1] != image_id:  # a run of image tokens begins
                pieces += [tokenizer.decode(text), image_marker]
                text = []
        return "".join(pieces + [tokenizer.decode(text)])

    def __init__(self):
        # eos_token_ids per processor: every generate asks, and rendering the template each time is wasted work.
        # Weak keys, so a model the pool unloads takes its entry with it.
        self._eos_by_processor = weakref.WeakKeyDictionary()

    def eos_token_ids(self, processor):
        """The template's end of turn, read from the template itself: the first special token it writes after an
        answer (<end_of_turn>, <|im_end|>, <end_of_utterance>); and the tokenizer's end of sequence."""
        if processor not in self._eos_by_processor:
            self._eos_by_processor[processor] = self._read_eos_token_ids(processor)
        return list(self._eos_by_processor[processor])

    def _read_eos_token_ids(self, processor):
        mark = "MEDVLM_ANSWER_MARK"
        text = processor.apply_chat_template(self.messages([("q", mark)], None), tokenize=False)
        tokenizer = processor.tokenizer
        after = tokenizer(text.split(mark, 1)[1], add_special_tokens=False)["input_ids"]
        special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special} | set(tokenizer.all_special_ids)
        end_of_turn = next((t for t in after if t in special), None)
        return list(dict.fromkeys(t for t in (end_of_turn, tokenizer.eos_token_id) if t is not None))


FAMILIES: dict[str, Family] = {f.name: f for f in (LlavaFamily(), IdeficsFamily(), FastVlmFamily(), ChatTemplateFamily())}
