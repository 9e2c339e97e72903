"""The registered models, and the exact prompt a model's family builds.

    python -m medvlm.models                                # every registered model, its family and source
    python -m medvlm.models --show_prompt medvlm-tiny      # the prompt text, as the model gets it
    python -m medvlm.models --show_prompt /path/to/a/llava-checkpoint
    python -m medvlm.models export medvlm-tiny OUT        # a self-contained transformers folder (medvlm/models/export.py)

The prompt shown is that of a scored question (with the short-answer instruction) and of a two-turn chat whose last
question carries the detector's findings (the Compare tab); <image> marks where the image's tokens go.
"""
import sys

from medvlm import cli
from medvlm.models.families import FAMILIES
from medvlm.models.registry import REGISTRY, resolve

PROG = "python -m medvlm.models"


def show_prompt(name: str) -> str:
    spec = resolve(name)
    family = FAMILIES[spec.family]
    # A chat-template model's prompt is its processor's (loaded without the weights); the others' are written here.
    processor = family.load_processor(spec.source) if family.prompt_from_processor else None
    scored = family.show_prompt([(family.ask("Is there a tumor in this brain MRI?", short_answer=True), None)], processor=processor)
    chat = family.show_prompt([
        ("What does this image show?", "An axial MRI of the brain."),
        (family.ask("Is there a tumour? Where?", context=family.findings([], (512, 512))), None),
    ], processor=processor)
    return f"# {spec.name} ({family.name} family)\n\n## a scored question\n{scored}\n\n## a chat, second turn, with findings\n{chat}"


def main(argv=None) -> int:
    parser = cli.Parser(PROG, __doc__)
    parser.add_argument("--show_prompt", metavar="NAME", help="a registered model, a local model folder or a hub id")
    parser.add_argument("command", nargs="*", metavar="export NAME OUT",
                        help="write model NAME (merged with its adapter) to folder OUT, with a model card")
    args = parser.parse_args(argv)
    if args.command:
        if len(args.command) != 3 or args.command[0] != "export":
            parser.error("the one command is: export NAME OUT")
        from medvlm.models.export import export

        _, name, out = args.command
        return cli.run(PROG, lambda: print(f"wrote {export(name, out)}: load it with AutoModelForImageTextToText, "
                                          f"python app.py --model {out}, or hf upload it"))
    if args.show_prompt:
        return cli.run(PROG, lambda: print(show_prompt(args.show_prompt)))
    for spec in REGISTRY.values():
        print(f"{spec.name:<14}{spec.family:<10}{spec.source}{' + ' + spec.adapter if spec.adapter else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
