"""One way per job: the package layers, the command-line grammar, prompts as data, a new family in a few lines."""
import ast
import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from conftest import REPO

ENTRY_POINTS = ["app", "medvlm.evaluate", "medvlm.compare", "medvlm.serve", "medvlm.models.__main__", "review.users", "review.report",
                "train.vlm", "train.yolo", "train.probe", "train.conversations"]


def imported_packages(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_layers_import_downwards_only():
    """medvlm (models, data, scoring, the store) < review (accounts, queue, report) < ui (the tabs) < app.py."""
    assert not imported_packages(REPO / "medvlm") & {"review", "ui", "train", "app"}
    assert not imported_packages(REPO / "review") & {"ui", "train", "app"}
    assert not imported_packages(REPO / "train") & {"review", "ui", "app"}


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_command_line_speaks_one_grammar(module, capsys):
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    # Options are spelt with underscores; the hyphenated spelling is an alias (train.vlm's HfArgumentParser lists it).
    hyphenated = set(re.findall(r"--[a-z]+-[a-z-]+", text))
    assert all("--" + option[2:].replace("-", "_") in text for option in hyphenated), hyphenated
    assert "usage: python " in text
    with pytest.raises(SystemExit) as done:
        main(["--no_such_option"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert done.value.code == 2 and len(errors) == 1 and errors[0].startswith("python ")


@pytest.mark.parametrize("module, argv, message", [
    ("medvlm.compare", ["--split", "val"], "--data"), ("medvlm.compare", ["--data", "d.yaml", "--batch_size", "0"], "--batch_size"),
    ("medvlm.compare", ["--data", "d.yaml", "--split", "test"], "invalid choice"),
    ("medvlm.compare", ["--data", "d.yaml", "--concurrency", "0"], "--concurrency"),
    ("medvlm.evaluate", ["--model", "openai:http://h/v1", "--data", "x.jsonl", "--concurrency", "0"], "--concurrency"),
    ("medvlm.serve", ["--port", "0", "--max_batch", "0"], "out of range: --port, --max_batch"),
    ("medvlm.evaluate", ["--model", "openai:http://127.0.0.1:9/v1", "--data", "x.jsonl"], "Name the model on http://127.0.0.1:9/v1"),
    ("medvlm.evaluate", ["--model", "openai:http://h/v1", "--adapter", "a", "--served_model", "m", "--data", "x.jsonl"], "--lora-modules"),
    ("train.probe", ["--model", "openai:http://h/v1"], "needs the model's weights here"),
    ("train.yolo", ["--val", "--data", "x.yaml"], "--val needs --weights"), ("train.yolo", ["--data", "d.yaml", "--epochs", "0"], "--epochs"),
])
def test_bad_arguments_get_one_line(module, argv, message, capsys):
    import importlib

    try:  # argparse exits; a command's own UserFacingError returns the code (medvlm.cli.run)
        code = importlib.import_module(module).main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and message in errors[0]


def test_no_command_loads_the_model_libraries_before_reading_its_flags():
    """peft, bitsandbytes and ultralytics load with a model, not with a command: imported at the top of a module (or
    through transformers' trainer helpers, which import peft) they kept a mistyped flag of train.vlm waiting 20 s.
    torch and transformers too, except where a command's own flags need them; medvlm.evaluate, medvlm.compare,
    medvlm.serve and review.report took 5 to 10 s over a bad flag before generation was imported where it runs,
    train.probe 3 s before torch was."""
    import subprocess
    import sys

    heavy = ("peft", "bitsandbytes", "ultralytics", "transformers.trainer_utils")
    with_torch = ("train.vlm",)  # its flags are transformers' HfArgumentParser dataclasses
    script = ("import contextlib, importlib, io, sys\n"
              # One interpreter for all, so the commands allowed torch come last.
              f"for module in {sorted(ENTRY_POINTS, key=lambda module: module in with_torch)!r}:\n"
              "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
              "        importlib.import_module(module).main(['--help'])\n"
              f"    forbidden = {heavy!r} + (() if module in {with_torch!r} else ('torch', 'transformers'))\n"
              "    loaded = [name for name in forbidden if name in sys.modules]\n"
              "    if loaded:\n"
              "        sys.exit(f'{module} imports {loaded}')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_hyphenated_spellings_read_as_the_same_option():
    from medvlm.evaluate import parse_args

    args = parse_args(["--model", "medvlm-tiny", "--data", "x.jsonl", "--batch-size", "3", "--max-new-tokens=5"])
    assert args.batch_size == 3 and args.max_new_tokens == 5 and args.model == "medvlm-tiny"  # values keep their hyphens


def test_out_of_range_values_are_named_in_one_line(capsys):
    from medvlm.compare import parse_args

    with pytest.raises(SystemExit) as done:
        parse_args(["--data", "d.yaml", "--limit", "0", "--max_new_tokens", "99999"])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "python -m medvlm.compare: error: out of range: --limit, --max_new_tokens (see --help)"


def test_a_saved_recipe_is_a_preset_and_flags_override_it(tmp_path, capsys):
    from train.vlm import DataArguments, parse_arguments

    shipped = REPO / "medvlm" / "weights" / "medvlm-tiny-grounded" / "train_config.json"
    model, data, lora, train = parse_arguments(["--config", str(shipped), "--lora_r", "4", "--output_dir", str(tmp_path)])
    saved = json.loads(shipped.read_text())
    # An argument added since the recipe was saved keeps its default (the saved run never had it)
    assert asdict(data) == asdict(DataArguments()) | saved["data"] and lora.lora_alpha == saved["lora"]["lora_alpha"] and lora.lora_r == 4
    assert train.epochs == saved["train"]["epochs"] and train.output_dir == str(tmp_path)  # a preset names no run folder
    broken = tmp_path / "bad.json"
    broken.write_text(json.dumps({**saved, "lora": {"lora_rank": 8}}))
    with pytest.raises(SystemExit) as done:
        parse_arguments(["--config", str(broken)])
    assert done.value.code == 2 and "unknown lora argument(s) lora_rank" in capsys.readouterr().err


def test_show_prompt_is_the_prompt_the_model_gets(medvlm_tiny):
    """The text `python -m medvlm.models --show-prompt` prints, with the image's tokens in place of <image>, is what
    the processor feeds the model."""
    from medvlm.models.__main__ import show_prompt

    family, processor = medvlm_tiny.family, medvlm_tiny.processor
    turns = [(family.ask("Is there a tumor in this brain MRI?", short_answer=True), None)]
    from PIL import Image

    fed = processor.tokenizer.decode(family.encode(processor, turns, Image.new("RGB", (64, 64)))["input_ids"][0])
    assert re.sub(r"(<image>)+", "<image>", fed) == family.show_prompt(turns)
    assert family.show_prompt(turns) in show_prompt("medvlm-tiny")


def test_a_new_family_is_a_few_lines(monkeypatch):
    """A family is data (its prompt's words) plus how to load; everything else (scoring, chat, packing) is shared."""
    from medvlm import models
    from medvlm.data import Example
    from medvlm.models.families import FAMILIES, FastVlmFamily
    from medvlm.predict import answer_examples

    class TerseFamily(FastVlmFamily):
        name = "terse"
        header = "<|im_start|>system\nBe terse.<|im_end|>\n"
        short_answer_instruction = "One word."

    monkeypatch.setitem(FAMILIES, "terse", TerseFamily())
    spec = replace(models.REGISTRY["medvlm-tiny"], name="terse-tiny", family="terse", adapter=None)
    loaded = models.load(spec, device="cpu")
    image = REPO.parent / "shared" / "data" / "vqa-rad" / "images" / "synpic54610.jpg"
    answers = answer_examples(loaded, [Example(str(image), (("Is this a CT?", "yes"),)), Example(None, (("What is a CT?", ""),))])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    prompt = loaded.family.show_prompt([(loaded.family.ask("Is this a CT?", short_answer=True), None)])
    assert prompt.startswith("<|im_start|>system\nBe terse.") and "Is this a CT?\nOne word.<|im_end|>" in prompt
