"""The grammar every command line shares (app.py, medvlm.*, review.*, train.*, bench/*):

- options are spelt with underscores (`--batch_size`, `--password_stdin`); the hyphenated spelling is read as the
  same option, as transformers' HfArgumentParser does for train.vlm;
- the model options (`--model --adapter --device --quantize`) and `--db` are defined here, once;
- every error is one line, `PROG: error: MESSAGE` on stderr, and exit code 2: argparse's own errors, out-of-range
  values (`check`), and the UserFacingError a command raises (`run`).
"""
import argparse
import sys
from collections.abc import Callable

from medvlm.errors import UserFacingError
from medvlm.settings import DEFAULT_DB, DEFAULT_MODEL, DEVICE_CHOICES, QUANTIZE_CHOICES

ERROR_EXIT = 2


class Parser(argparse.ArgumentParser):
    def __init__(self, prog: str, doc: str | None = None, **kwargs):
        # The first line of the module's docstring describes the command; its usage lines are the module's own.
        super().__init__(prog=prog, description=(doc or "").strip().splitlines()[0] if doc else None, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args([self._underscored(token) for token in args], namespace)

    def _underscored(self, token: str) -> str:
        """`--batch-size[=V]` -> `--batch_size[=V]` where that is one of this parser's options."""
        if not token.startswith("--") or "-" not in token[2:].split("=")[0]:
            return token
        name, sep, value = token.partition("=")
        spelt = "--" + name[2:].replace("-", "_")
        return spelt + sep + value if spelt in self._option_string_actions else token

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(ERROR_EXIT, f"{self.prog}: error: {' '.join(message.split())}\n")

    def check(self, problems: dict[str, bool]) -> None:
        """Exit with one line naming every option whose value is out of range ({option: is_bad})."""
        bad = [option for option, is_bad in problems.items() if is_bad]
        if bad:
            self.error(f"out of range: {', '.join(bad)} (see --help)")


def add_model_arguments(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MODEL, adapter: bool = True,
                        quantize: bool = True, served: bool = True) -> None:
    """--model [--adapter] [--served_model] --device [--quantize]: which model, and how it is loaded on this machine
    (or which server answers for it)."""
    from medvlm.models.registry import REGISTRY

    parser.add_argument("--model", default=default, required=default is None,
                        help=f"registered model ({', '.join(REGISTRY)}), a local model folder, a hub id"
                             + (", or openai:URL (an OpenAI-compatible server; API key from MEDVLM_API_KEY)" if served else "")
                             + (f" (default: {default})" if default else ""))
    if adapter:
        parser.add_argument("--adapter", help="PEFT adapter for --model: local folder or hub id; "
                                              '"none": a registered model without its own (MedVLM-Tiny\'s bare base)')
    if served:
        parser.add_argument("--served_model", help="with --model openai:URL: the model's name on that server")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="default: cuda if present, else cpu")
    if quantize:
        parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="auto",
                            help="auto: 4-bit nf4 for the 7B/9B models on CUDA, none on CPU; none turns 4-bit off")


def model_spec(args: argparse.Namespace):
    """The --model, --adapter and --served_model choice as a medvlm.models.ModelSpec."""
    from medvlm import models

    return models.resolve(args.model, adapter=getattr(args, "adapter", None), served_model=getattr(args, "served_model", None))


def device_of(args: argparse.Namespace) -> str | None:
    """The --device choice as ModelHost / models.load take it: None lets them pick."""
    return None if args.device == "auto" else args.device


def add_db_argument(parser: argparse.ArgumentParser, **kwargs) -> None:
    parser.add_argument("--db", **{"default": DEFAULT_DB, "help": f"review database (default: {DEFAULT_DB})"} | kwargs)


def fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return ERROR_EXIT


def run(prog: str, command: Callable[[], int | None]) -> int:
    """Run a command; a UserFacingError becomes its one error line and exit code 2."""
    try:
        return command() or 0
    except UserFacingError as e:
        return fail(prog, str(e))
