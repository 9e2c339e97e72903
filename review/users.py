"""Reviewer accounts for the review tab; passwords are stored as salted scrypt hashes, never in clear.

    python -m review.users add NAME [--db medvlm.db]          # asks for the password twice
    echo "$PASSWORD" | python -m review.users add NAME --password-stdin
    python -m review.users list [--db medvlm.db]
"""
import argparse
import getpass
import hashlib
import hmac
import secrets
import sys

from medvlm.errors import UserFacingError
from review.store import DEFAULT_DB, Store

SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if kind != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(candidate.hex(), digest)


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-" for c in name):
        raise UserFacingError("A reviewer name is 1-64 letters, digits, '.', '_' or '-'.")
    return name


def add(store: Store, name: str, password: str) -> int:
    if len(password) < MIN_PASSWORD:
        raise UserFacingError(f"The password needs at least {MIN_PASSWORD} characters.")
    return store.add_reviewer(check_name(name), hash_password(password))


def sign_in(store: Store, name: str, password: str) -> dict:
    """The reviewer's row when name and password match; the same message for an unknown name or a wrong password."""
    reviewer = store.reviewer((name or "").strip())
    if reviewer is None or not verify_password(password or "", reviewer["password_hash"]):
        raise UserFacingError("Unknown reviewer or wrong password.")
    return reviewer


def main(argv=None) -> int:
    # --db is accepted before or after the command; SUPPRESS keeps a command's parser from resetting it to the default.
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--db", default=argparse.SUPPRESS, help=f"review database (default: {DEFAULT_DB})")
    parser = argparse.ArgumentParser(prog="python -m review.users", description="Reviewer accounts.")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"review database (default: {DEFAULT_DB})")
    commands = parser.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="create a reviewer account", parents=[database])
    adding.add_argument("name")
    adding.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    commands.add_parser("list", help="list reviewer names", parents=[database])
    args = parser.parse_args(argv)
    try:
        store = Store(args.db)
        if args.command == "list":
            for row in store.query("SELECT name, created FROM reviewers ORDER BY name"):
                print(f"{row[0]}\t{row[1]}")
            return 0
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"Password for {args.name}: ")
            if password != getpass.getpass("Again: "):
                raise UserFacingError("The two passwords differ.")
        add(store, args.name, password)
    except (EOFError, KeyboardInterrupt):
        print("\nreview.users: error: no password given (pipe one in with --password-stdin).", file=sys.stderr)
        return 2
    except UserFacingError as e:
        print(f"review.users: error: {e}", file=sys.stderr)
        return 2
    print(f"reviewer {args.name} added to {args.db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
