"""Reviewer accounts; passwords are stored as salted scrypt hashes, never in clear. Once one account exists, the app
asks everyone to sign in (its login page, a session cookie); an admin also sees every run's model, every reviewer's
verdicts and the exports.

    python -m review.users add NAME [--admin] [--db medvlm.db]   # asks for the password twice
    echo "$PASSWORD" | python -m review.users add NAME --password_stdin
    python -m review.users list [--db medvlm.db]
"""
import argparse
import asyncio
import contextvars
import getpass
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field

from medvlm import cli
from medvlm.errors import UserFacingError
from medvlm.store import Store

PROG = "python -m review.users"

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


def add(store: Store, name: str, password: str, admin: bool = False) -> int:
    if len(password) < MIN_PASSWORD:
        raise UserFacingError(f"The password needs at least {MIN_PASSWORD} characters.")
    return store.add_reviewer(check_name(name), hash_password(password), admin=admin)


def add_from_secret(store: Store, text: str) -> list[str]:
    """Review accounts from a secret (a Space's MEDVLM_ACCOUNTS): a JSON list of {"name", "password", "admin"}.
    Accounts not yet in the store are added; existing ones are left as they are. -> the names added."""
    try:
        accounts = json.loads(text)
        if not isinstance(accounts, list) or not all(isinstance(a, dict) for a in accounts):
            raise ValueError
        wanted = [(a["name"], a["password"], a.get("admin", False)) for a in accounts]
        if not all(isinstance(n, str) and isinstance(p, str) and isinstance(admin, bool) for n, p, admin in wanted):
            raise ValueError
    except (ValueError, KeyError):
        raise UserFacingError('The accounts secret must be a JSON list of {"name": ..., "password": ..., "admin": true|false}.') from None
    added = []
    for name, password, admin in wanted:
        if store.reviewer(check_name(name)) is None:
            add(store, name, password, admin)
            added.append(name)
    return added


# An unknown name is checked against this hash, so it costs one scrypt like a known one: timing tells no names.
_UNKNOWN_NAME_HASH = hash_password(secrets.token_hex(16))


def sign_in(store: Store, name: str, password: str) -> dict:
    """The reviewer's row when name and password match; the same message, after the same work, for an unknown name or
    a wrong password."""
    reviewer = store.reviewer((name or "").strip()[:128])
    matched = verify_password(password or "", reviewer["password_hash"] if reviewer else _UNKNOWN_NAME_HASH)
    if reviewer is None or not matched:
        raise UserFacingError("Unknown reviewer or wrong password.")
    return reviewer


# The client address of the login request being answered (set by ClientAddress, read by Authenticator).
login_client: contextvars.ContextVar[str] = contextvars.ContextVar("login_client", default="")


class ClientAddress:
    """ASGI middleware: puts each request's client address where the login check can read it (Gradio passes only
    the name and password to an auth function)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("client"):
            login_client.set(scope["client"][0])
        await self.app(scope, receive, send)


@dataclass
class Brake:
    """Failed sign-ins per key (a name, a client): after FREE failures each further one locks the key for twice as
    long as the last, up to MAX_LOCK_S; a success clears the name. While locked every attempt fails unchecked."""

    FREE = 5
    MAX_LOCK_S = 300.0
    clock: callable = time.monotonic
    failures: dict = field(default_factory=dict)
    locked_until: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def locked(self, *keys) -> bool:
        now = self.clock()
        with self.lock:
            return any(self.locked_until.get(k, 0.0) > now for k in keys if k)

    def failed(self, *keys) -> None:
        now = self.clock()
        with self.lock:
            for key in filter(None, keys):
                count = self.failures[key] = self.failures.get(key, 0) + 1
                if count > self.FREE:
                    self.locked_until[key] = now + min(self.MAX_LOCK_S, 2.0 ** (count - self.FREE))

    def succeeded(self, key) -> None:
        with self.lock:
            self.failures.pop(key, None)
            self.locked_until.pop(key, None)


class Authenticator:
    """Gradio's `auth=` check against the review accounts: scrypt off the event loop, the same work for unknown names,
    and a per-name and per-client brake on guessing."""

    def __init__(self, store: Store, brake: Brake | None = None):
        self.store, self.brake = store, brake or Brake()

    def check(self, name: str, password: str, client: str = "") -> bool:
        name = (name or "").strip()[:128]
        keys = (f"name:{name.lower()}", f"client:{client}" if client else "")
        if self.brake.locked(*keys):
            return False
        try:
            sign_in(self.store, name, password)
        except UserFacingError:
            self.brake.failed(*keys)
            return False
        self.brake.succeeded(keys[0])
        return True

    async def login(self, name: str, password: str) -> bool:
        """Gradio's `auth=`: pass this bound coroutine function itself. (Gradio awaits only what
        inspect.iscoroutinefunction recognises; an object with an async __call__ would hand back a coroutine, which
        is truthy: every password would pass.)"""
        return await asyncio.to_thread(self.check, name, password, login_client.get())


def role(store: Store, name: str | None) -> dict | None:
    """The signed-in account (id, name, admin) for a Gradio request's username; None when not signed in."""
    reviewer = store.reviewer(name) if name else None
    return {"id": reviewer["id"], "name": reviewer["name"], "admin": bool(reviewer["admin"])} if reviewer else None


def may_administer(store: Store, accounts: bool, name: str | None) -> bool:
    """Whether a request may see every run's model and everyone's verdicts, export, or start dataset runs. No
    accounts: a one-person local app, all its own. Accounts: admins only."""
    if not accounts:
        return True
    account = role(store, name)
    return bool(account and account["admin"])


def main(argv=None) -> int:
    # --db is accepted before or after the command; SUPPRESS keeps a command's parser from resetting it to the default.
    database = cli.Parser(PROG, add_help=False)
    cli.add_db_argument(database, default=argparse.SUPPRESS)
    parser = cli.Parser(PROG, "Reviewer accounts.")
    cli.add_db_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="create a reviewer account", parents=[database])
    adding.add_argument("name")
    adding.add_argument("--password_stdin", action="store_true", help="read the password from standard input")
    adding.add_argument("--admin", action="store_true", help="may see every run's model, every reviewer's verdicts, and export")
    commands.add_parser("list", help="list reviewer names", parents=[database])
    args = parser.parse_args(argv)
    try:
        return cli.run(PROG, lambda: run(args))
    except (EOFError, KeyboardInterrupt):
        return cli.fail(PROG, "no password given (pipe one in with --password_stdin).")


def run(args: argparse.Namespace) -> None:
    store = Store(args.db)
    if args.command == "list":
        for name, created, admin in store.query("SELECT name, created, admin FROM reviewers ORDER BY name"):
            print(f"{name}\t{created}\t{'admin' if admin else 'reviewer'}")
        return
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if password != getpass.getpass("Again: "):
            raise UserFacingError("The two passwords differ.")
    add(store, args.name, password, admin=args.admin)
    print(f"{'admin' if args.admin else 'reviewer'} {args.name} added to {args.db}")


if __name__ == "__main__":
    sys.exit(main())
