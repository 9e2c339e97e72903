"""Accounts and roles, the sign-in brake, reads beside a blocked writer, and the exposure warning: on real SQLite files
and the real scrypt check. The browser and API sides are in test_browser.py."""
import io
import sqlite3
import threading

import pytest

from medvlm.store import MIGRATIONS, Store
from review import users
from ui.app import exposure_warning
from ui.text import html_text, markdown_text


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "s.db")
    users.add(store, "dr.ada", "correct horse")
    users.add(store, "prof.lee", "admin password", admin=True)
    yield store
    store.close()


def test_roles(store):
    assert users.role(store, "dr.ada") == {"id": 1, "name": "dr.ada", "admin": False}
    assert users.role(store, "prof.lee")["admin"] is True
    assert users.role(store, None) is None and users.role(store, "nobody") is None
    assert store.has_reviewers()


def test_guessing_is_braked_per_name_and_per_client(store):
    clock = Clock()
    auth = users.Authenticator(store, users.Brake(clock=clock))
    for _ in range(users.Brake.FREE):
        assert not auth.check("dr.ada", "guess", "10.0.0.1")
    assert auth.check("dr.ada", "correct horse", "10.0.0.2")  # FREE failures cost nothing yet; a success clears the name
    for _ in range(users.Brake.FREE + 1):
        auth.check("dr.ada", "guess", "10.0.0.3")
    assert not auth.check("dr.ada", "correct horse", "10.0.0.4")  # locked: even the right password is refused unchecked
    clock.now += 2.1  # the first lock is 2 s (then 4, 8, ... up to MAX_LOCK_S)
    assert auth.check("dr.ada", "correct horse", "10.0.0.4")
    # One client trying many names is braked as a client: the account it then tries is refused, from that client only.
    for k in range(users.Brake.FREE + 1):
        auth.check(f"user{k}", "guess", "10.6.6.6")
    assert not auth.check("prof.lee", "admin password", "10.6.6.6")
    assert auth.check("prof.lee", "admin password", "10.0.0.9")


def test_lock_doubles_and_is_capped():
    clock = Clock()
    brake = users.Brake(clock=clock)
    for _ in range(users.Brake.FREE + 20):
        brake.failed("name:x")
    assert brake.locked_until["name:x"] - clock.now == users.Brake.MAX_LOCK_S


def test_unknown_names_cost_a_scrypt_check_too(store, monkeypatch):
    """Equal work for unknown and known names (bench/signin.py prints the timings): both run verify_password."""
    checked = []
    real = users.verify_password
    monkeypatch.setattr(users, "verify_password", lambda password, stored: checked.append(stored) or real(password, stored))
    for name in ("dr.ada", "nobody"):
        with pytest.raises(Exception, match="Unknown reviewer or wrong password"):
            users.sign_in(store, name, "wrong password")
    assert len(checked) == 2 and all(h.startswith("scrypt$16384$8$1$") for h in checked)


def test_reads_do_not_wait_for_a_blocked_writer(store, tmp_path):
    """A verdict waiting on another process's write lock must not hold up a sign-in (a read) in this one."""
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    writer = threading.Thread(target=lambda: store.add_run("m", "d"), daemon=True)
    writer.start()  # waits for the lock, inside the store's write lock
    read = []
    reader = threading.Thread(target=lambda: read.append(store.reviewer("dr.ada")), daemon=True)
    reader.start()
    reader.join(timeout=10)
    finished = not reader.is_alive()
    other.execute("COMMIT")
    writer.join(timeout=40)
    assert finished and read[0]["name"] == "dr.ada", "a read queued behind a waiting writer"
    assert not writer.is_alive() and store.query("SELECT COUNT(*) FROM runs")[0][0] == 1


def test_schema_3_upgrade_keeps_reviewers_as_non_admins(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:2]:
        for statement in filter(str.strip, migration.split(";")):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO reviewers (name, password_hash, created) VALUES ('old', 'h', 'then')")
    conn.close()
    store = Store(path)
    assert store.version == len(MIGRATIONS) and users.role(store, "old") == {"id": 1, "name": "old", "admin": False}


def test_cli_adds_an_admin(tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "cli.db")
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pass\n"))
    assert users.main(["add", "boss", "--admin", "--password-stdin", "--db", db]) == 0
    assert users.main(["list", "--db", db]) == 0
    assert "boss" in capsys.readouterr().out.splitlines()[-1].split("\t")[0] and Store(db).reviewer("boss")["admin"] == 1


@pytest.mark.parametrize("host, share, accounts, warned", [
    ("127.0.0.1", False, False, False), ("0.0.0.0", False, False, True), ("127.0.0.1", True, False, True),
    ("0.0.0.0", False, True, False), ("192.168.1.5", False, False, True),
])
def test_serving_beyond_localhost_without_accounts_warns(host, share, accounts, warned):
    assert bool(exposure_warning(host, share, accounts)) == warned


def test_on_a_space_the_warning_names_the_accounts_secret():
    assert "python -m review.users add" in exposure_warning("0.0.0.0", False, False)
    on_space = exposure_warning("0.0.0.0", False, False, on_space=True)
    assert "Space secret MEDVLM_ACCOUNTS" in on_space and "review.users" not in on_space


def test_text_is_escaped_for_html_and_markdown():
    hostile = '<img src="http://x/y.png"> **b** [l](http://x) _i_ `c` # h'
    assert "<img" not in html_text(hostile) and "&lt;img" in html_text(hostile)
    escaped = markdown_text(hostile)
    assert "<" not in escaped and "\\*\\*b\\*\\*" in escaped and "\\[l\\]\\(http\\://x\\)" in escaped.replace("\\.", ".")
