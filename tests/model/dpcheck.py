#!/usr/bin/env python3
"""dpcheck.py - the model-based, randomised end-to-end checker of datapipe.

Each run generates a configuration (declared types with adversarial names, fields and
constraints), starts one or two appliances (server + loader each) against one PostgreSQL
schema, drives a seeded workload with faults through every entry point, keeps a model of
what must be true, then drains and checks PostgreSQL exactly against it. A violation is
printed with its seed and, when it can be, shrunk to a short replayable op sequence.
Test code only: it touches nothing but its own schema, directories and processes (by PID),
and listens on or connects to 127.0.0.1 only. Python 3 standard library only.
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUILTINS = ["crash_report", "ad_event", "user_login", "product", "data_sample"]
OWN_TABLES = ["dead_letter", "loader_batches", "product_stage", "watermark"]
RESERVED_WORDS = ["order", "user", "select", "table", "group", "default", "check", "from",
                  "limit", "primary", "all", "end", "column", "constraint"]
SYSTEM_COLUMNS = ["xmin", "xmax", "cmin", "cmax", "ctid", "tableoid"]
PG_CATALOG = ["pg_type", "pg_class", "pg_attribute", "pg_index", "pg_proc", "pg_namespace"]
RESERVED_FIELDS = ["id", "event_name", "idempotency_key", "source", "extra", "received_at",
                   "loaded_at"]
FIELD_TYPES = ["string", "integer", "number", "boolean", "timestamp", "ip", "url", "uuid",
               "object", "array"]
# Patterns the generator knows a matching and a failing value for.
PATTERNS = [("^[a-z]+$", "abc", "ABC"), ("^v[0-9]+$", "v12", "w12"), ("x", "axb", "abc")]
# Built-in types whose rows carry the generator's marker in a text column.
MARKED_BUILTINS = {"crash_report": "message", "ad_event": "user_agent",
                   "user_login": "user_id"}
MARKER_RE = re.compile(r"dpm[0-9]+x[0-9]+")


# What --avoid can steer the generator clear of.
AVOIDABLE = {
    "declared-field-key": "the idempotency_key field in events of declared types",
    "empty-key-header": "an Idempotency-Key header on a body of no event",
    "system-names": "system column names as fields, pg_* and queue_* tables as type names",
    "keyed-suffix": "a type named like another one's keyed temporary table (<type>_keyed)",
    "index-names": "type names ending like index names (_idem_key, _pkey, ...)",
    "long-names": "63-byte type names",
    "ce-key-spaces": "CloudEvents sources and ids with spaces",
    "required-drop": "a required field dropped from a declared type",
    "key-reuse": "a key sent again with other bytes in another body (after the window, or to "
                 "the other appliance)",
}


# The findings not fixed yet in this tree: what --avoid open means (test_model.sh passes it).
# A fix removes its name here, and the checker then looks for that bug again.
OPEN_FINDINGS = []


class Violation(Exception):
    """A property of the model that does not hold; its text says which and why."""


# --- names -----------------------------------------------------------------------------------

def rand_name(rng, maxlen=10):
    first = rng.choice("abcdefghijklmnopqrstuvwxyz")
    rest = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789_")
                   for _ in range(rng.randint(0, maxlen)))
    return first + rest


def long_name(rng, base):
    """A 63-byte name (the most PostgreSQL keeps), starting with base."""
    name = base + "_" + rand_name(rng, 62)
    while len(name) < 63:
        name += rng.choice("abcdefghijklmnopqrstuvwxyz0123456789_")
    return name[:63]


def pick(rng, choices, avoid):
    """One of (finding, make) pairs whose finding is not avoided, made."""
    return rng.choice([make for finding, make in choices if finding not in avoid])()


def gen_type_name(rng, taken, avoid=()):
    """A type name: plain, or adversarial against the names already taken and the built-ins."""
    bases = list(taken) + BUILTINS
    r = rng.random()
    if r < 0.35:
        return rand_name(rng, 8)
    base = rng.choice(bases)
    return pick(rng, [
        ("keyed-suffix", lambda: base + "_keyed"),
        ("index-names", lambda: base + "_idem_key"),
        ("index-names", lambda: base + "_pkey"),
        ("index-names", lambda: rng.choice(BUILTINS) + "_idempotency_key"),
        ("", lambda: base[:rng.randint(1, len(base))]),
        ("long-names", lambda: long_name(rng, base)),
        ("", lambda: rng.choice(RESERVED_WORDS)),
        ("system-names", lambda: rng.choice(PG_CATALOG)),
        ("system-names", lambda: rng.choice(["queue_owners", "queue_watermarks"])),
        ("", lambda: base + "_" + rand_name(rng, 3)),
        ("", lambda: rng.choice(OWN_TABLES)),
    ], avoid)


def gen_field_name(rng, taken, avoid=()):
    r = rng.random()
    if r < 0.5 or not taken:
        return rand_name(rng, 8)
    base = rng.choice(list(taken))
    return pick(rng, [
        ("system-names", lambda: rng.choice(SYSTEM_COLUMNS)),
        ("", lambda: rng.choice(RESERVED_WORDS)),
        ("", lambda: base + "_" + rand_name(rng, 2)),
        ("", lambda: base[:rng.randint(1, len(base))]),
        ("", lambda: long_name(rng, base)),
        ("", lambda: rng.choice(RESERVED_FIELDS) if rng.random() < 0.2 else rand_name(rng, 5)),
    ], avoid)


# --- configuration ---------------------------------------------------------------------------

def gen_field(rng):
    f = {"type": rng.choice(FIELD_TYPES)}
    if rng.random() < 0.3:
        f["required"] = True
    t = f["type"]
    if t in ("string", "url") and rng.random() < 0.3:
        f["max_length"] = rng.choice([1, 8, 64, 300] if t == "string" else [30, 64, 300])
    if t == "string" and rng.random() < 0.2:
        f["enum"] = rng.sample(["free", "pro", "x", "team"], rng.randint(1, 3))
    elif t == "string" and rng.random() < 0.2:
        f["pattern"] = rng.choice(PATTERNS)[0]
    if "enum" in f or "pattern" in f:
        f.pop("max_length", None)    # so that a valid value always exists
    if t in ("integer", "number") and rng.random() < 0.3:
        lo = rng.randint(-100, 100)
        f["min"] = lo
        f["max"] = lo + rng.randint(0, 1000)
    return f


def marker_ok(f):
    """Whether a field can carry the generator's marker (a plain string of about 24 bytes)."""
    return (f["type"] == "string" and "enum" not in f and "pattern" not in f
            and f.get("max_length", 1000) >= 40)


def gen_type(rng, avoid=()):
    fields = {}
    for _ in range(rng.randint(0, 5)):
        name = gen_field_name(rng, fields.keys(), avoid)
        fields[name] = gen_field(rng)
    if not any(marker_ok(f) for f in fields.values()):
        name = gen_field_name(rng, fields.keys(), avoid)
        fields[name] = {"type": "string", "required": rng.random() < 0.5}
    decl = {"fields": fields}
    if rng.random() < 0.3:
        decl["unknown_fields"] = rng.choice(["keep", "reject"])
    return decl


def gen_types(rng, n, avoid=()):
    types = {}
    for _ in range(n):
        name = gen_type_name(rng, types.keys(), avoid)
        if name not in types:
            types[name] = gen_type(rng, avoid)
    return types


def gen_settings(rng):
    """The run's settings other than types: windows, schedule, queue sizes."""
    return {
        "dedup_window_s": rng.choice([1, 1, 2, 86400]),
        "sync": rng.random() < 0.5,
        "small_queue": rng.random() < 0.25,
        "interval_s": rng.choice([1, 2, 3600]),
        "batch_rows": rng.choice([1, 3, 100, 50000]),
        "workers": rng.choice([1, 2]),
        "appliances": rng.choice([1, 2, 2]),
    }


def config_json(env, app, settings, types):
    return {
        "server": {"listen": "127.0.0.1:%d" % app.port, "threads": 8,
                   "request_timeout_ms": 10000},
        "queue": {"path": app.qdir, "id": app.qid, "sync": settings["sync"],
                  "max_bytes": 1048576 if settings["small_queue"] and app.index == 0
                  else 268435456,
                  "dedup_window_s": settings["dedup_window_s"]},
        "database": {"conninfo": env.conninfo, "schema": env.schema},
        "loader": {"interval_s": settings["interval_s"], "min_interval_s": 0,
                   "high_water": 1000000, "batch_rows": settings["batch_rows"],
                   "workers": settings["workers"]},
        "log": {"level": "info"},
        "types": types,
    }


# --- events ----------------------------------------------------------------------------------

def field_value(rng, f, marker=None):
    t = f["type"]
    if marker is not None:
        return marker
    if t == "string":
        if "enum" in f:
            return rng.choice(f["enum"])
        if "pattern" in f:
            return [p[1] for p in PATTERNS if p[0] == f["pattern"]][0]
        return "s" * rng.randint(0, min(f.get("max_length", 12), 12))
    if t == "integer":
        return rng.randint(f.get("min", -10**6), f.get("max", 10**6))
    if t == "number":
        return round(rng.uniform(f.get("min", -1e6), f.get("max", 1e6)), 3)
    if t == "boolean":
        return rng.random() < 0.5
    if t == "timestamp":
        return rng.choice([1700000000, "2026-05-01T10:00:00+02:00", "2024-01-01T00:00:00Z"])
    if t == "ip":
        return rng.choice(["10.1.2.3", "::1", "2001:db8::7"])
    if t == "url":
        return "https://example.com/" + "p" * rng.randint(0, min(f.get("max_length", 30) - 20,
                                                                  8))
    if t == "uuid":
        return "%08x-%04x-4%03x-8%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                                                rng.getrandbits(12), rng.getrandbits(12),
                                                rng.getrandbits(48))
    if t == "object":
        return {"k": rng.randint(0, 9)}
    return [1, "two", None]


def bad_value(rng, f):
    """A value the field refuses."""
    t = f["type"]
    if t == "string" and "enum" in f:
        return "not-in-enum"
    if t == "string" and "pattern" in f:
        return [p[2] for p in PATTERNS if p[0] == f["pattern"]][0]
    if t in ("integer", "number") and "max" in f:
        return f["max"] + 1
    return {"string": 5, "integer": "x", "number": "x", "boolean": 1, "timestamp": "yesterday",
            "ip": "999.1.1.1", "url": "ftp://x", "uuid": "nope", "object": [],
            "array": {}}[t]


class TypeModel:
    """What the generator knows of one event type: its fields and where its marker goes."""

    def __init__(self, name, decl=None):
        self.name = name
        self.decl = decl
        if decl is None:
            self.marker_field = MARKED_BUILTINS[name]
        else:
            self.marker_field = [k for k, f in decl["fields"].items() if marker_ok(f)][0]

    def valid(self, rng, marker):
        if self.decl is None:
            return builtin_event(self.name, marker)
        ev = {}
        for name, f in self.decl["fields"].items():
            if name == self.marker_field:
                ev[name] = marker
            elif f.get("required") or rng.random() < 0.5:
                ev[name] = field_value(rng, f)
            elif rng.random() < 0.2:
                ev[name] = None
        return ev

    def invalid(self, rng, marker):
        ev = self.valid(rng, marker)
        fields = self.decl["fields"] if self.decl else {}
        choices = ["unknown"] if not self.decl or self.decl.get("unknown_fields") != "keep" \
            else []
        req = [k for k, f in fields.items() if f.get("required") and k != self.marker_field]
        if req:
            choices.append("missing")
        other = [k for k in fields if k != self.marker_field]
        if other:
            choices.append("bad")
        if self.decl is None:
            choices.append("builtin_bad")
        if not choices:
            return None
        how = rng.choice(choices)
        if how == "unknown":
            ev["zz_unknown_" + rand_name(rng, 3)] = 1
        elif how == "missing":
            del ev[rng.choice(req)]
        elif how == "bad":
            k = rng.choice(other)
            ev[k] = bad_value(rng, fields[k])
        else:
            ev[{"crash_report": "user_id", "ad_event": "ip_address",
                "user_login": "timestamp"}[self.name]] = "not valid"
        return ev


def builtin_event(name, marker):
    if name == "crash_report":
        return {"user_id": 7, "timestamp": 1700000000, "message": marker}
    if name == "ad_event":
        return {"ip_address": "10.1.2.3", "user_agent": marker,
                "referring_url": "https://example.com/", "advertiser_id": "adv-1"}
    return {"user_id": marker, "timestamp": 1700000000}


def dumps(rng, obj):
    return json.dumps(obj, separators=rng.choice([(",", ":"), (", ", ": ")]))


# --- one item of a request: an event the model follows ---------------------------------------

class Item:
    """One event in a request body: its bytes, marker, type, key and whether it is valid.
    valid is the generator's verdict; key is (kind, text) or None. An item sent again
    (same bytes) is the same Item object."""

    def __init__(self, tname, marker, text, valid, key=None, key_in="none"):
        self.tname = tname
        self.marker = marker
        self.text = text
        self.valid = valid
        self.key = key
        self.key_in = key_in
        self.digest = hashlib.sha256(text.strip().encode()).hexdigest()
        self.named = False
        self.malformed = False
        self.poolable = True
        self.decl_seen = None     # the declaration it was made for (None: built-in, SIGHUP)

    def short(self):
        k = "" if self.key is None else " key=%r(%s)" % (
            self.key[1] if self.key[0] == "k" else self.key[1:], self.key_in)
        return "%s %s%s%s" % (self.tname, self.marker, "" if self.valid else " INVALID", k)


# --- processes -------------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Appliance:
    """One server + loader pair with its own queue directory and queue.id."""

    def __init__(self, env, index):
        self.env = env
        self.index = index
        self.name = "a%d" % index
        self.port = free_port()
        self.qdir = os.path.join(env.dir, "q%d" % index)
        self.qid = "%s-%d" % (env.schema, index)
        self.cfg = os.path.join(env.dir, "cfg%d.json" % index)
        self.server = None
        self.loader = None
        self.killed = set()

    def log(self, what):
        return os.path.join(self.env.dir, "%s-%s.log" % (self.name, what))

    def start_server(self):
        out = open(self.log("server"), "ab")
        self.server = subprocess.Popen([self.env.bin("datapipe-server"), "-c", self.cfg],
                                       stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.server.poll() is not None:
                raise Violation("%s: server exited %s at start: %s" %
                                (self.name, self.server.returncode, tail(self.log("server"))))
            try:
                if http_call(self.port, "GET", "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise Violation("%s: server did not answer /healthz within 20 s" % self.name)

    def start_loader(self):
        """Start the loader and wait until it says "starting" (its signals are taken from
        then on: a SIGUSR1 or SIGHUP before that would end it, as it would any process)."""
        out = open(self.log("loader"), "ab")
        size = out.tell()
        self.loader = subprocess.Popen([self.env.bin("datapipe-loader"), "-c", self.cfg],
                                       stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        deadline = time.time() + 20
        while time.time() < deadline and self.loader.poll() is None:
            with open(self.log("loader"), "rb") as f:
                f.seek(size)
                if b" starting " in f.read():
                    return
            time.sleep(0.02)

    def check_alive(self, wait_s=0.0):
        """A daemon that exited without our signal is a crash. wait_s: how long to give a
        server that just dropped a connection to finish dying."""
        deadline = time.time() + wait_s
        while self.server is not None and self.server.poll() is None and \
                time.time() < deadline:
            time.sleep(0.05)
        for what, p in (("server", self.server), ("loader", self.loader)):
            if p is None or p.poll() is None:
                continue
            if (what, p.pid) in self.killed:
                continue
            raise Violation("%s: %s (pid %d) exited by itself with status %s: %s" %
                            (self.name, what, p.pid, p.returncode,
                             tail(self.log(what))))

    def kill(self, what, sig=signal.SIGKILL):
        p = self.server if what == "server" else self.loader
        if p is None or p.poll() is not None:
            return None
        self.killed.add((what, p.pid))
        p.send_signal(sig)
        try:
            return p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise Violation("%s: %s did not exit within 60 s of signal %d" %
                            (self.name, what, sig))

    def stop_all(self):
        for what in ("loader", "server"):
            p = self.server if what == "server" else self.loader
            if p is not None and p.poll() is None:
                self.killed.add((what, p.pid))
                p.kill()
                p.wait()


def tail(path, n=6):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return " | ".join(lines[-n:])
    except OSError:
        return "(no log)"


def http_call(port, method, path, body=b"", headers=None, timeout=30):
    """One request on a fresh connection: (status, parsed JSON or None, raw body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return resp.status, parsed, raw


# --- the environment of one run --------------------------------------------------------------

class Env:
    def __init__(self, args, seed):
        self.args = args
        self.conninfo = os.environ["DP_PG_CONNINFO"]
        self.schema = "dpm_%d_%d" % (os.getpid(), seed % 1000000)
        self.dir = tempfile.mkdtemp(prefix="dpcheck-%d." % seed)
        self.pg_is_down = False

    def bin(self, name):
        return os.path.join(self.args.bin, name)

    def psql(self, query):
        """Rows of a query as lists of text fields (psql -At, unit separator)."""
        pgbin = os.environ.get("DP_PG_BINDIR", "")
        cmd = [os.path.join(pgbin, "psql") if pgbin else "psql", self.conninfo, "-AtqX",
               "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-c", query]
        r = subprocess.run(cmd, capture_output=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("psql: %s: %s" % (query[:80], r.stderr.decode()[:300]))
        out = r.stdout.decode()
        return [line.split("\x1f") for line in out.splitlines()]

    def pg_ctl(self, action):
        pgbin = os.environ["DP_PG_BINDIR"]
        pgdir = os.environ["DP_PG_DIR"]
        cmd = [os.path.join(pgbin, "pg_ctl"), "-D", os.path.join(pgdir, "data"), "-w"]
        if action == "stop":
            cmd += ["-m", "immediate", "stop"]
        else:
            cmd += ["-l", os.path.join(pgdir, "server.log"), "-t", "60", "restart"]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", os.environ.get("DP_PG_OWNER", "postgres"), "--"] + cmd
        subprocess.run(cmd, capture_output=True, timeout=90)

    def pg_down(self):
        self.pg_ctl("stop")
        self.pg_is_down = True

    def pg_up(self):
        if self.pg_is_down:
            self.pg_ctl("restart")
            self.pg_is_down = False

    def cleanup(self, keep):
        try:
            self.pg_up()
            self.psql("DROP SCHEMA IF EXISTS %s CASCADE" % self.schema)
        except (RuntimeError, subprocess.SubprocessError):
            pass
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- the model ---------------------------------------------------------------------------------

class Model:
    """What must be true. Per item: how often the appliances stored it for sure (acks of a
    new event), how often they may have (no answer), and what each appliance's key table
    holds; per key and appliance the first answer and its times."""

    def __init__(self, window_s):
        self.window = window_s
        self.items = {}           # marker -> Item
        self.acked = {}           # marker -> definite new acknowledgements
        self.maybe = {}           # marker -> sends without a definite answer
        self.dl_ingest = {}       # marker -> definite ingest dead letters
        self.ids = {}             # marker -> ids answered for it
        self.keys = [{}, {}]      # per appliance: key -> dict(item, id, t0, t1, status)
        self.conflicted = set()   # keys used with more than one set of bytes
        self.digests = {}         # key -> digests sent under it
        self.notes = []

    def note(self, item):
        self.items.setdefault(item.marker, item)
        if item.key is not None:
            d = self.digests.setdefault(item.key, set())
            d.add(item.digest)
            if len(d) > 1:
                self.conflicted.add(item.key)

    def add(self, table, marker, n=1):
        table[marker] = table.get(marker, 0) + n

    def key_state(self, app, item, t0, t1):
        """For a keyed item sent to appliance app at t0 and answered at t1 (before the model
        learns the answer): the outcomes the appliance may give it ("new", "dup",
        "conflict"), and the first answer's record."""
        rec = self.keys[app].get(item.key)
        if rec is None:
            return {"new"}, None
        if rec.get("any"):
            return {"dup", "conflict", "new"}, rec
        if rec.get("maybe"):
            hit = "dup" if rec["item"].digest == item.digest else "conflict"
            return {hit, "new"}, rec
        same = rec["item"].digest == item.digest and rec["item"].tname == item.tname
        hit = "dup" if same else "conflict"
        # The server judged the age at an instant between this send and its answer, of a
        # key it recorded between the first send and its answer (0.05 s for the clocks).
        if t0 - rec["t1"] >= self.window + 0.05:
            return {"new"}, rec
        if t1 - rec["t0"] < self.window - 0.05:
            return {hit}, rec
        return {hit, "new"}, rec

    def remember(self, app, item, status, ev_id, t0, t1):
        self.keys[app][item.key] = {"item": item, "id": ev_id, "t0": t0, "t1": t1,
                                    "status": status}

    def remember_maybe(self, app, item, t0, t1):
        """A keyed send without a definite answer: the appliance may hold its key now."""
        rec = self.keys[app].get(item.key)
        if rec is None:
            self.keys[app][item.key] = {"item": item, "id": None, "t0": t0, "t1": t1,
                                        "status": None, "maybe": True}
        elif rec["item"].digest != item.digest:
            rec.update(any=True, t1=max(rec["t1"], t1))

    def learned_dup(self, app, item, ev_id, t1):
        """The appliance answered a duplicate: it holds item's bytes under the key."""
        rec = self.keys[app][item.key]
        rec.update(item=item, id=rec["id"] if rec["item"] is item else ev_id, maybe=False,
                   any=False, t1=max(rec["t1"], t1))


# --- the run ---------------------------------------------------------------------------------

class Run:
    def __init__(self, args, seed, ops=None, settings=None, types=None, log=print):
        self.args = args
        self.seed = seed
        self.rng = random.Random(seed)
        self.log = log
        self.env = Env(args, seed)
        self.settings = settings or gen_settings(self.rng)
        # A copy: a replay's changes of declaration must not reach the next attempt's.
        self.types = json.loads(json.dumps(types)) if types is not None else None
        self.replay_ops = ops
        self.ops_done = []
        self.apps = []
        self.initial_types = types
        self.model = Model(self.settings["dedup_window_s"])
        self.serial = 0
        self.typemodels = {}
        self.hup_types = {}
        self.field_history = {}   # declared type -> every field name it ever had
        self.ce_sent = []         # (appliance, key, type) of every CloudEvent generated
        self.counts = {"requests": 0, "faults": 0}
        self.last_status = None

    # -- configuration --
    def check_config(self, types):
        """--check-config on a configuration with these types: True if accepted."""
        app = self.apps[0]
        self.write_configs(types)
        r = subprocess.run([self.env.bin("datapipe-server"), "-c", app.cfg, "--check-config"],
                           capture_output=True, timeout=60)
        return r.returncode == 0, r.stderr.decode()

    def write_configs(self, types):
        for app in self.apps:
            with open(app.cfg, "w") as f:
                json.dump(config_json(self.env, app, self.settings, types), f)

    def refused_never_starts(self, types, why):
        """A refused configuration must stop both daemons before anything starts."""
        app = self.apps[0]
        for prog in ("datapipe-server", "datapipe-loader"):
            extra = ["--once"] if prog == "datapipe-loader" else []
            p = subprocess.Popen([self.env.bin(prog), "-c", app.cfg] + extra,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                rc = p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = "still running after 20 s"
            if rc == 0 or isinstance(rc, str):
                raise Violation("%s started (%s) with a configuration --check-config "
                                "refused (%s)" % (prog, rc, why.strip()[:200]))
        if self.env.psql("SELECT count(*) FROM pg_namespace WHERE nspname = '%s'"
                         % self.env.schema)[0][0] != "0":
            raise Violation("a refused configuration created the schema")
        if os.path.exists(os.path.join(app.qdir, "data.mdb")):
            raise Violation("a refused configuration created the queue")

    def choose_types(self):
        """Generate configurations until --check-config accepts one (the refused ones must
        not start anything); returns the accepted types."""
        if self.types is not None:
            ok, why = self.check_config(self.types)
            if not ok:
                raise Violation("replayed configuration refused: %s" % why[:300])
            return self.types
        for attempt in range(20):
            types = gen_types(self.rng, self.rng.randint(1, 6), self.args.avoid)
            ok, why = self.check_config(types)
            if ok:
                self.log("  config accepted after %d refused: types %s" %
                         (attempt, ", ".join(sorted(types))))
                return types
            self.counts["refused_configs"] = self.counts.get("refused_configs", 0) + 1
            self.refused_never_starts(types, why)
        return {}

    # -- ops --
    def replayable(self, op):
        """Whether a replayed op still fits: shrinking may drop the SIGHUP or the change of
        declaration an event needs."""
        inner = op.get("op", op)
        known = set(self.known_types())
        if op["kind"] == "hup" and op["name"] in known:
            return False
        if op["kind"] == "evolve" and op["type"] not in self.types:
            return False
        for it in inner.get("items", []):
            if it.tname not in known:
                return False
            if it.tname in self.types and it.decl_seen != self.types[it.tname]:
                return False
        return True

    def oplog(self, text):
        """A line of the run's ops.log (kept with the run directory on a violation)."""
        with open(os.path.join(self.env.dir, "ops.log"), "a") as f:
            f.write("%.3f %s\n" % (time.time(), text))

    def avoid(self, what):
        """Whether the generator steers clear of a known finding (--avoid), so that a run
        can look past it for others."""
        return what in self.args.avoid

    def next_marker(self):
        self.serial += 1
        return "dpm%dx%d" % (self.seed % 100000, self.serial)

    def tm(self, name):
        if name not in self.typemodels:
            decl = self.types.get(name) if self.types else None
            if decl is None:
                decl = self.hup_types.get(name)
            self.typemodels[name] = TypeModel(name, decl)
        return self.typemodels[name]

    def known_types(self):
        return list(MARKED_BUILTINS) + list(self.types) + list(self.hup_types)

    def gen_key(self, tname):
        """A key: from a small pool, so that keys meet again (once per run with --avoid
        key-reuse); long, with spaces, or plain."""
        r = self.rng.random()
        n = self.rng.randint(0, 30)
        if self.avoid("key-reuse"):
            n = "u%d" % self.serial
        if r < 0.1:
            return ("%s" % n).rjust(255, "k")
        if r < 0.2:
            return "key with spaces %s" % n
        return "%s-k%s" % (tname[:20], n)

    def gen_item(self, tname, key_in, valid=True, named=False):
        """A new item of type tname; key_in is "none", "header" or "field"; named: the
        event carries "event_name" (for POST /v1/events and /)."""
        t = self.tm(tname)
        marker = self.next_marker()
        ev = t.invalid(self.rng, marker) if not valid else None
        if ev is None:
            ev = t.valid(self.rng, marker)
            valid = True
        if named:
            ev = dict([("event_name", tname)] + list(ev.items()))
        key = None
        if key_in == "field" and self.avoid("declared-field-key") and tname not in BUILTINS:
            key_in = "none"
        if key_in != "none":
            key = ("k", self.gen_key(tname))
            if key_in == "field":
                ev["idempotency_key"] = key[1]
        item = Item(tname, marker, dumps(self.rng, ev), valid, key, key_in)
        item.named = named
        item.decl_seen = self.types.get(tname) if self.types else None
        return item

    def sent_items(self, keyed_only=False):
        return [i for i in self.model.items.values()
                if i.valid and (not keyed_only or i.key is not None) and i.key_in != "ce"
                and i.poolable]

    def gen_op(self):
        """The next op, from the rng alone (never from an answer), so a seed replays."""
        rng = self.rng
        apps = len(self.apps)
        app = rng.randrange(apps)
        r = rng.random()
        types = self.known_types()
        if r < 0.30:
            return self.gen_single(app, rng.choice(types))
        if r < 0.45:
            return self.gen_batch(app, types)
        if r < 0.58:
            return self.gen_repeat(app)
        if r < 0.64:
            return self.gen_cloudevent(app, types)
        if r < 0.68:
            return {"kind": "sleep", "s": self.settings["dedup_window_s"] + 0.5
                    if self.settings["dedup_window_s"] < 10 else 0.5}
        if r < 0.76:
            return {"kind": "kick_loader", "app": app}
        if r < 0.80:
            return {"kind": "kill", "app": app, "what": rng.choice(["server", "loader"])}
        if r < 0.83:
            return {"kind": "kill_during", "app": app, "delay": rng.uniform(0, 0.05),
                    "op": self.gen_batch(app, types, big=True)}
        if r < 0.86:
            return {"kind": "restart_loader", "app": app}
        if r < 0.90:
            return {"kind": "pg_restart", "down_s": rng.uniform(0, 2)}
        if r < 0.93:
            return self.gen_hup()
        if r < 0.965:
            return self.gen_evolve()
        if self.settings["small_queue"] and app == 0:
            # The full-queue fault: the same big body again and again until the small queue
            # answers 503 (each answer checked like any other; a 503 must store nothing).
            return {"kind": "fill", "app": app, "times": 8,
                    "op": self.gen_batch(app, types, big=True)}
        return self.gen_batch(app, types, big=True)

    def gen_single(self, app, tname):
        rng = self.rng
        key_in = rng.choice(["none", "header", "field", "header"])
        valid = rng.random() < 0.85
        entry = rng.choice(["typed", "event_name", "root"] +
                           (["submit"] if tname == "ad_event" else []))
        item = self.gen_item(tname, key_in, valid, named=entry in ("event_name", "root") or
                             (entry == "typed" and rng.random() < 0.2))
        return {"kind": "post", "app": app, "entry": entry, "items": [item],
                "shape": "single"}

    def gen_batch(self, app, types, big=False):
        rng = self.rng
        tname = rng.choice(types)
        entry = rng.choice(["typed", "event_name", "root"])
        if big:
            n = rng.randint(200, 3000)
        else:
            n = rng.choice([0, 1, 2, 3, rng.randint(4, 40)])
        items = []
        pool = self.sent_items(keyed_only=True)
        named = entry != "typed" or rng.random() < 0.2
        for _ in range(n):
            t = tname if entry == "typed" else rng.choice(types)
            r = rng.random()
            if 0.14 <= r < 0.18:
                twin = self.gen_twin(items)
                if twin is not None:
                    items.append(twin)
                    continue
            if r < 0.14 and pool and not self.avoid("key-reuse"):
                old = rng.choice(pool)
                fits = old.tname == tname if entry == "typed" else old.named
                fits = fits and (old.tname in BUILTINS or not self.avoid("declared-field-key"))
                if fits and r < 0.08 and old.key_in == "field":
                    items.append(old)
                    continue
                if fits and r >= 0.08:
                    it = self.gen_item(old.tname, "field", named=old.named)
                    items.append(self.rekey(it, old.key))
                    continue
            items.append(self.gen_item(t, rng.choice(["none", "none", "field"]),
                                       rng.random() < 0.9, named=named))
        shape = rng.choice(["array", "ndjson"])
        if shape == "ndjson" and items and rng.random() < 0.15:
            bad = Item(tname, self.next_marker(), "", False)
            bad.text = '{"message": "%s", "user_id": 1 oops}' % bad.marker
            bad.malformed = True
            items.insert(rng.randrange(len(items) + 1), bad)
        header = None
        if rng.random() < 0.15:
            header = "hk-%d" % rng.randint(0, 5)
        if not items and rng.random() < 0.4:
            header = "hk-%d" % rng.randint(0, 5)
        if not items and self.avoid("empty-key-header"):
            header = None
        return {"kind": "post", "app": app, "entry": entry, "items": items,
                "shape": shape, "header_key": header}

    def gen_twin(self, items):
        """An event keyed like one earlier in the same body: the same bytes, or a conflict."""
        keyed = [i for i in items if i.key_in == "field" and i.valid]
        if not keyed:
            return None
        first = self.rng.choice(keyed)
        if self.rng.random() < 0.5:
            return first
        it = self.rekey(self.gen_item(first.tname, "field", named=first.named), first.key)
        # Sent again later on its own, it would reuse the key with other bytes.
        it.poolable = not self.avoid("key-reuse")
        return it

    def rekey(self, item, key):
        """The same event with another key in its idempotency_key field."""
        ev = json.loads(item.text)
        ev["idempotency_key"] = key[1]
        new = Item(item.tname, item.marker, dumps(self.rng, ev), item.valid, key, "field")
        new.named = item.named
        new.decl_seen = item.decl_seen
        return new

    def gen_repeat(self, app):
        """A keyed event sent again: same bytes, or other bytes under the same key; to this
        appliance or the other."""
        rng = self.rng
        pool = self.sent_items(keyed_only=True)
        if not pool:
            return self.gen_single(app, rng.choice(self.known_types()))
        old = rng.choice(pool)
        if rng.random() < 0.6 or self.avoid("key-reuse"):
            item = old
        else:
            item = self.gen_item(old.tname, old.key_in, named=old.named)
            if old.key_in == "field":
                item = self.rekey(item, old.key)
            else:
                item.key = old.key
        entry = rng.choice(["event_name", "root"]) if item.named else "typed"
        op = {"kind": "post", "app": app, "entry": entry, "items": [item], "shape": "single"}
        if rng.random() < 0.3 and self.settings["dedup_window_s"] < 10:
            # After the window: the appliance forgets the key, PostgreSQL is the judge.
            op["delay_s"] = self.settings["dedup_window_s"] + 0.2
        return op

    def gen_cloudevent(self, app, types):
        rng = self.rng
        mode = rng.choice(["structured", "binary", "batch"])
        n = 1 if mode != "batch" else rng.choice([0, 1, 2, 5])
        items = []
        for _ in range(n):
            tname = rng.choice(types)
            item = self.gen_item(tname, "none", rng.random() < 0.9)
            src = rng.choice(["/a", "/a b", "/shop", "/s p"])
            cid = rng.choice(["c", "b c", "e-%d" % rng.randint(0, 9), "1"])
            if self.avoid("ce-key-spaces"):
                src = src.replace(" ", "")
                cid = cid.replace(" ", "")
            if self.avoid("key-reuse"):
                cid = "%s-%d" % (cid, self.serial)
            shifted = self.shifted_ce_key(app)
            if shifted is not None and rng.random() < 0.3:
                src, cid, tname = shifted
                item = self.gen_item(tname, "none", True)
            item.key = ("ce", src, cid)
            item.key_in = "ce"
            self.ce_sent.append((app, item.key, tname))
            items.append(item)
        return {"kind": "ce", "app": app, "mode": mode, "items": items,
                "path": rng.choice(["/v1/events", "/"])}

    def gen_evolve(self):
        """A declared type changed as README allows: a field dropped, a required field made
        optional, an optional field added (applied by a restart, see do_evolve)."""
        rng = self.rng
        if not self.types:
            return self.gen_hup()
        name = rng.choice(sorted(self.types))
        decl = json.loads(json.dumps(self.types[name]))
        marker = self.tm(name).marker_field
        others = [k for k in decl["fields"] if k != marker]
        required = [k for k in others if decl["fields"][k].get("required")]
        if self.avoid("required-drop"):
            others = [k for k in others if k not in required]
        how = rng.choice(["add"] + (["drop"] if others else []) +
                         (["optional"] if required else []))
        if how == "drop":
            req = [k for k in required if k in others]
            del decl["fields"][rng.choice(req if req and rng.random() < 0.7 else others)]
        elif how == "optional":
            decl["fields"][rng.choice(required)]["required"] = False
        else:
            f = gen_field(rng)
            f.pop("required", None)
            # Never a name the type had before: its column stays, maybe of another type.
            used = self.field_history.setdefault(name, set(decl["fields"]))
            new = gen_field_name(rng, decl["fields"].keys(), self.args.avoid)
            while new in used:
                new = new[:60] + "_" + rand_name(rng, 0)
            used.add(new)
            decl["fields"][new] = f
        return {"kind": "evolve", "type": name, "how": how, "decl": decl}

    def shifted_ce_key(self, app):
        """(source, id, type): another CloudEvent's of this appliance, with a space moved
        across the two: a different key, whose source + " " + id is the same text."""
        cands = [(k, t) for a, k, t in self.ce_sent if a == app and " " in k[1] + k[2]]
        if self.avoid("ce-key-spaces") or not cands:
            return None
        (_, src, cid), tname = self.rng.choice(cands)
        if " " in src:
            src, rest = src.rsplit(" ", 1)
            shifted = (src, rest + " " + cid)
        else:
            first, rest = cid.split(" ", 1)
            shifted = (src + " " + first, rest)
        if ("ce",) + shifted in self.model.digests and self.avoid("key-reuse"):
            return None
        return shifted + (tname,)

    def gen_hup(self):
        taken = set(self.known_types())
        # Cut to the 63 bytes a name may have before it is compared: a long name cut there
        # may be a taken one.
        name = gen_type_name(self.rng, taken, self.args.avoid)[:63]
        while name in taken:
            # A new type, never a changed one (that needs a restart, and may be refused).
            name = (name[:60] + "_" + rand_name(self.rng, 0))[:63]
        return {"kind": "hup", "name": name, "decl": gen_type(self.rng, self.args.avoid)}

    # -- executing ops --
    def body_of(self, op):
        items = op["items"]
        texts = []
        for it in items:
            texts.append(it.text)
        if op["shape"] == "single":
            return texts[0]
        body = "[" + ",".join(texts) + "]" if op["shape"] == "array" else \
            "".join(t + "\n" for t in texts)
        return body

    def path_of(self, op):
        entry = op["entry"]
        if entry == "typed":
            return "/v1/events/" + op["items"][0].tname if op["items"] else \
                "/v1/events/crash_report"
        if entry == "ce":
            return op["path"]
        return {"event_name": "/v1/events", "root": "/", "submit": "/submit"}[entry]

    def execute(self, op):
        if self.replay_ops is not None and not self.replayable(op):
            return
        self.current = op
        self.oplog("op %d: %s" % (len(self.ops_done) + 1, op_text(op, full=True)))
        getattr(self, "do_" + op["kind"])(op)
        self.ops_done.append(op)
        self.current = None

    def send(self, app, method, path, body, headers, timeout=30):
        """One request; (status, json, raw) or None when no answer came."""
        self.counts["requests"] += 1
        try:
            res = http_call(self.apps[app].port, method, path, body.encode(), headers, timeout)
            self.last_status = res[0]
            self.oplog("  a%d %s %s -> %d %s" % (app, method, path, res[0], res[2][:400]))
            return res
        except (OSError, http.client.HTTPException) as e:
            self.oplog("  a%d %s %s -> no answer (%s)" % (app, method, path, e))
            return None

    def do_post(self, op, answer_box=None):
        app = op["app"]
        items = op["items"]
        for it in items:
            self.model.note(it)
        # An op replayed with items of a type that is gone would not be a fair test.
        body = self.body_of(op) if items or op["shape"] == "single" else \
            ("[]" if op["shape"] == "array" else "")
        headers = {"Content-Type": "application/json"}
        if op["shape"] == "single" and items[0].key_in == "header":
            headers["Idempotency-Key"] = items[0].key[1]
        if op.get("header_key"):
            headers["Idempotency-Key"] = op["header_key"]
        if op.get("delay_s"):
            time.sleep(op["delay_s"])
        t0 = time.time()
        if answer_box is not None:
            res = answer_box(body, headers)
        else:
            res = self.send(app, "POST", self.path_of(op), body, headers)
        t1 = time.time()
        states = [self.model.key_state(app, it, t0, t1) if it.key else ({"new"}, None)
                  for it in items]
        self.judge_post(op, res, states, t0, t1, body)

    def judge_post(self, op, res, states, t0, t1, body):
        m = self.model
        app = op["app"]
        items = op["items"]
        desc = "%s POST %s %s" % (self.apps[app].name, self.path_of(op),
                                  "; ".join(i.short() for i in items[:4]))
        if res is None:
            for it in items:
                m.add(m.maybe, it.marker)
                if it.key is not None:
                    m.remember_maybe(app, it, t0, t1)
            self.apps[app].check_alive(wait_s=1.0)
            return
        status, ans, raw = res
        small = self.settings["small_queue"] and app == 0
        if status == 503 or (status == 413 and small):
            # Nothing stored (queue full; a body over half the small queue): the final
            # check holds the model to that.
            expect(status == 413 or small or self.env.pg_is_down, desc,
                   "503 with a queue far from full: %s" % raw[:200])
            return
        if op.get("header_key") and len(items) == 1:
            # The header names the one event; its own key field decides the answer then.
            self.maybe_all(items, app, t0, t1)
            return
        # A body of one event is answered as one event, whatever its shape.
        if len(items) == 1 and not items[0].malformed:
            it = items[0]
            allowed, rec = states[0]
            if not it.valid:
                expect(status == 400, desc, "an invalid event: want 400, got %d %s" %
                       (status, raw[:200]))
                return
            if status == 409:
                expect("conflict" in allowed, desc, "409 but the model says %s" % allowed)
                return
            ok_status = 204 if op["entry"] == "submit" else 202
            expect(status in (200, 202, 204), desc, "a valid event: want %d, got %d %s" %
                   (ok_status, status, raw[:300]))
            dup = bool(ans and ans.get("duplicate"))
            if status == 204:
                dup = None   # /submit answers no body: the model cannot tell
            if it.key is not None and dup:
                expect("dup" in allowed, desc, "answered duplicate but the model says %s" %
                       allowed)
                # The first answer's id is known only while the record holds these bytes
                # alone: "any" (other bytes may have taken the key since) leaves it open.
                expect(rec["id"] is None or rec.get("any") or
                       rec["item"].digest != it.digest or ans.get("id") == rec["id"], desc,
                       "a duplicate's id %s is not the first answer's %s" %
                       (ans.get("id"), rec["id"]))
                m.learned_dup(app, it, ans.get("id"), t1)
                return
            if it.key is not None and dup is False:
                expect("new" in allowed, desc, "answered new (id %s) but the model says %s"
                       % (ans.get("id"), allowed))
            if dup is None and it.key is not None and allowed != {"new"}:
                m.add(m.maybe, it.marker)
                m.remember_maybe(app, it, t0, t1)
                return
            m.add(m.acked, it.marker)
            ev_id = ans.get("id") if ans else None
            if ev_id:
                m.ids.setdefault(it.marker, []).append(ev_id)
            if it.key is not None:
                m.remember(app, it, status, ev_id, t0, t1)
            return
        self.judge_batch(op, status, ans, raw, states, t0, t1, desc, body)

    def judge_batch(self, op, status, ans, raw, states, t0, t1, desc, body):
        m = self.model
        app = op["app"]
        items = op["items"]
        if op.get("header_key") and len(items) != 1:
            expect(status == 400, desc, "Idempotency-Key on a body of %d events: want 400, "
                   "got %d %s" % (len(items), status, raw[:200]))
            return
        if not items:
            expect(status == 400, desc, "an empty body: want 400, got %d %s" %
                   (status, raw[:200]))
            return
        # Predict each item: "invalid", or its key outcomes; a key twice in one body is
        # judged against the first.
        seen = {}
        preds = []
        for it, (allowed, rec) in zip(items, states):
            if not it.valid:
                preds.append({"invalid"})
                continue
            if it.key is not None and it.key in seen:
                # The key's first event in this body may have been recorded: then this one
                # is judged against it, else against what the appliance held before.
                first, first_allowed = seen[it.key]
                vs_first = "dup" if first.digest == it.digest else "conflict"
                preds.append({vs_first} if first_allowed == {"new"} else
                             set(allowed) | {vs_first})
                continue
            if it.key is not None and "new" in allowed:
                seen[it.key] = (it, allowed)
            preds.append(set(allowed))
        if all(p == {"invalid"} for p in preds):
            expect(status == 400, desc, "no valid event in the body: want 400, got %d %s" %
                   (status, raw[:200]))
            return
        expect(status != 400, desc, "a body with a valid event answered 400: %s" % raw[:300])
        # 409: every valid event conflicted (kept as dead letters like other rejections).
        expect(status in (202, 409) and ans is not None, desc, "want 202 or 409, got %d %s" %
               (status, raw[:300]))
        expect(status == 202 or ans.get("accepted") == 0, desc, "409 with events accepted")
        err_idx = {e["index"] for e in ans.get("errors", [])}
        dups = ans.get("duplicates", 0)
        min_dup = sum(1 for p in preds if p == {"dup"})
        max_dup = sum(1 for p in preds if "dup" in p)
        for i, p in enumerate(preds):
            if i in err_idx:
                expect(p & {"invalid", "conflict"}, desc, "item %d (%s) rejected (%s) but "
                       "the model says %s" % (i, items[i].short(), errors_for(ans, i), p))
            elif len(ans.get("errors", [])) < 100:
                expect(p & {"new", "dup"}, desc, "item %d (%s) accepted but the model says "
                       "%s" % (i, items[i].short(), p))
        expect(min_dup <= dups <= max_dup, desc, "duplicates %d, the model says %d..%d; "
               "keyed items: %s" % (dups, min_dup, max_dup, "; ".join(
                   "%d %s %s" % (i, items[i].short(), sorted(p))
                   for i, p in enumerate(preds) if items[i].key is not None)[:1500]))
        expect(ans.get("accepted", -1) + ans.get("rejected", -1) == len(items), desc,
               "accepted + rejected != %d events" % len(items))
        exact_dups = min_dup == max_dup
        # "ids": one per event, in order: its id (the first one's for a repeat) or null.
        ids = ans.get("ids") if isinstance(ans.get("ids"), list) and \
            len(ans["ids"]) == len(items) else [None] * len(items)
        for i, (it, p) in enumerate(zip(items, preds)):
            if i in err_idx:
                m.add(m.dl_ingest, it.marker)
            elif p == {"new"}:
                m.add(m.acked, it.marker)
                if ids[i]:
                    m.ids.setdefault(it.marker, []).append(ids[i])
                if it.key is not None:
                    m.remember(app, it, 202, ids[i], t0, t1)
            elif p == {"dup"} and exact_dups:
                rec = m.keys[app].get(it.key)
                first = rec and rec["item"] is it and not rec.get("any") and rec["id"]
                expect(not (first and ids[i]) or ids[i] == first, desc,
                       "item %d (%s): a repeat's id %s is not the first answer's %s" %
                       (i, it.short(), ids[i], first))
            else:
                m.add(m.maybe, it.marker)
                if it.key is not None:
                    m.remember_maybe(app, it, t0, t1)

    def maybe_all(self, items, app, t0, t1):
        for it in items:
            self.model.add(self.model.maybe, it.marker)
            if it.key is not None:
                self.model.remember_maybe(app, it, t0, t1)

    def do_ce(self, op):
        app = op["app"]
        items = op["items"]
        for it in items:
            self.model.note(it)
        t0 = time.time()
        headers = {}
        if op["mode"] == "binary":
            it = items[0]
            headers = {"ce-specversion": "1.0", "ce-id": pct(it.key[2]),
                       "ce-source": pct(it.key[1]), "ce-type": it.tname,
                       "Content-Type": "application/json"}
            body = it.text
        else:
            ces = ['{"specversion":"1.0","id":%s,"source":%s,"type":%s,"data":%s}' %
                   (json.dumps(it.key[2]), json.dumps(it.key[1]), json.dumps(it.tname),
                    it.text) for it in items]
            if op["mode"] == "structured":
                headers["Content-Type"] = "application/cloudevents+json"
                body = ces[0]
            else:
                headers["Content-Type"] = "application/cloudevents-batch+json"
                body = "[" + ",".join(ces) + "]"
        res = self.send(app, "POST", op["path"], body, headers)
        t1 = time.time()
        states = [self.model.key_state(app, it, t0, t1) for it in items]
        shaped = dict(op, entry="ce", shape="single" if op["mode"] != "batch" else "array")
        self.judge_post(shaped, res, states, t0, t1, body)

    def do_sleep(self, op):
        time.sleep(op["s"])

    def do_kick_loader(self, op):
        a = self.apps[op["app"]]
        a.check_alive()
        if a.loader is not None and a.loader.poll() is None:
            a.loader.send_signal(signal.SIGUSR1)

    def do_kill(self, op):
        a = self.apps[op["app"]]
        a.check_alive()
        self.counts["faults"] += 1
        if op["what"] == "server":
            a.kill("server")
            a.start_server()
        else:
            a.kill("loader")
            a.start_loader()

    def do_kill_during(self, op):
        """SIGKILL the server while a big batch is in flight, then start it again."""
        a = self.apps[op["app"]]
        a.check_alive()
        self.counts["faults"] += 1
        inner = op["op"]

        def killed_request(body, headers):
            box = {}

            def request():
                box["res"] = self.send(inner["app"], "POST", self.path_of(inner), body,
                                       headers, timeout=60)
            th = threading.Thread(target=request)
            th.start()
            time.sleep(op["delay"])
            a.kill("server")
            th.join()
            a.start_server()
            return box.get("res")
        self.do_post(inner, answer_box=killed_request)

    def do_fill(self, op):
        """Post op's big body up to op["times"] times, until the queue answers 503."""
        self.apps[op["app"]].check_alive()
        self.counts["faults"] += 1
        for _ in range(op["times"]):
            self.last_status = None
            self.do_post(op["op"])
            if self.last_status == 503:
                break

    def do_restart_loader(self, op):
        a = self.apps[op["app"]]
        a.check_alive()
        rc = a.kill("loader", signal.SIGTERM)
        if rc not in (None, 0, -signal.SIGTERM):
            raise Violation("%s: loader exited %s on SIGTERM: %s" %
                            (a.name, rc, tail(a.log("loader"))))
        a.start_loader()

    def do_pg_restart(self, op):
        self.counts["faults"] += 1
        self.env.pg_down()
        time.sleep(op["down_s"])
        self.env.pg_up()

    def do_hup(self, op):
        """Add a declared type to the running daemons with SIGHUP."""
        types = dict(self.types)
        types.update(self.hup_types)
        types[op["name"]] = op["decl"]
        ok, why = self.check_config(types)
        if not ok:
            self.write_configs(dict(self.types, **self.hup_types))
            return
        self.hup_types[op["name"]] = op["decl"]
        for a in self.apps:
            a.check_alive()
            for p in (a.server, a.loader):
                p.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        for a in self.apps:
            while True:
                st, ans, _ = http_call(a.port, "GET", "/v1/types")
                names = [t["name"] for t in (ans or {}).get("types", [])]
                if op["name"] in names:
                    break
                if time.time() > deadline:
                    raise Violation("%s: SIGHUP did not add type %s within 10 s: %s" %
                                    (a.name, op["name"], tail(a.log("server"))))
                time.sleep(0.1)

    def do_evolve(self, op):
        """Change a declared type: drain both queues under the old declaration, then restart
        both daemons of every appliance with the new one."""
        types = dict(self.types, **self.hup_types)
        types[op["type"]] = op["decl"]
        ok, why = self.check_config(types)
        if not ok:
            self.write_configs(dict(self.types, **self.hup_types))
            return
        self.write_configs(dict(self.types, **self.hup_types))
        self.env.pg_up()
        for a in self.apps:
            a.check_alive()
            a.kill("loader", signal.SIGTERM)
            self.drain(a)
            a.kill("server", signal.SIGTERM)
        self.types[op["type"]] = op["decl"]
        self.typemodels.pop(op["type"], None)
        for it in self.model.items.values():
            if it.tname == op["type"]:
                it.poolable = False     # its old bytes may not fit the new declaration
        self.write_configs(dict(self.types, **self.hup_types))
        for a in self.apps:
            a.start_server()
            a.start_loader()

    def drain(self, a):
        """datapipe-loader --once for appliance a; it must exit 0."""
        r = subprocess.run([self.env.bin("datapipe-loader"), "-c", a.cfg, "--once"],
                           capture_output=True, timeout=300)
        with open(a.log("drain"), "ab") as f:
            f.write(r.stdout + r.stderr)
        if r.returncode != 0:
            raise Violation("%s: datapipe-loader --once exited %d with a configuration "
                            "--check-config accepted: %s" % (a.name, r.returncode,
                                                             tail(a.log("drain"))))

    # -- the run --
    def setup(self):
        n = self.settings["appliances"]
        self.apps = [Appliance(self.env, i) for i in range(n)]
        self.types = self.choose_types()
        self.initial_types = json.loads(json.dumps(self.types))
        self.write_configs(self.types)
        for a in self.apps:
            a.start_server()
        for a in self.apps:
            a.start_loader()

    def run(self, n_ops, deadline):
        """Set up, run n_ops ops (or replay the given ones), drain and check."""
        self.setup()
        if self.replay_ops is not None:
            for op in self.replay_ops:
                self.execute(op)
        else:
            for _ in range(n_ops):
                if time.time() > deadline:
                    break
                self.execute(self.gen_op())
        self.finish()

    def finish(self):
        """Drain with the loader, then hold PostgreSQL and the counters to the model."""
        self.env.pg_up()
        for a in self.apps:
            a.check_alive()
            rc = a.kill("loader", signal.SIGTERM)
            if rc not in (None, 0, -signal.SIGTERM):
                raise Violation("%s: loader exited %s on SIGTERM: %s" %
                                (a.name, rc, tail(a.log("loader"))))
            if a.server is None or a.server.poll() is not None:
                a.start_server()
        for a in self.apps:
            self.drain(a)
        check_final(self)
        for a in self.apps:
            a.check_alive()
            sanitizer_reports(a)


def pct(s):
    return "".join(c if c.isalnum() or c in "/-_." else "%%%02X" % ord(c) for c in s)


def errors_for(ans, i):
    return [e.get("error") for e in ans.get("errors", []) if e.get("index") == i]


def expect(cond, desc, why):
    if not cond:
        raise Violation("%s: %s" % (desc, why))


def sanitizer_reports(app):
    for what in ("server", "loader", "drain"):
        try:
            with open(app.log(what), "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        for needle in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            if needle in text:
                raise Violation("%s: %s log has a sanitizer report (%s)" %
                                (app.name, what, needle))


# --- the final check ---------------------------------------------------------------------------

def table_rows(run, tname):
    """(id, marker, idempotency_key) of every row of a table the run sent to."""
    env = run.env
    col = run.tm(tname).marker_field
    return env.psql('SELECT id::text, "%s", coalesce(idempotency_key, \'\') FROM %s."%s"' %
                    (col, env.schema, tname))


def check_final(run):
    """Every acknowledged event once in PostgreSQL, nothing never sent, every key once per
    table, the conservation numbers equal to PostgreSQL's rows, the queues empty."""
    env = run.env
    m = run.model
    in_table = {}
    table_ids = {}
    key_holder = {}
    n_rows = 0
    tables = [t for t in run.known_types()]
    for tname in tables:
        keys = {}
        rows = table_rows(run, tname)
        n_rows += len(rows)
        for ev_id, marker, key in rows:
            if marker not in m.items:
                raise Violation("table %s holds a row never sent: id %s marker %r" %
                                (tname, ev_id, marker))
            in_table[marker] = in_table.get(marker, 0) + 1
            table_ids.setdefault(marker, set()).add(ev_id)
            if key:
                key_holder[(tname, key)] = marker
                keys[key] = keys.get(key, 0) + 1
                if keys[key] > 1:
                    raise Violation("table %s holds key %r twice" % (tname, key))
    for t in ("product", "data_sample"):
        n_rows += int(env.psql("SELECT count(*) FROM %s.%s" % (env.schema, t))[0][0])
    dl = {}
    dl_ids = set()
    dl_rows = env.psql("SELECT stage, coalesce(event_id::text, ''), encode(raw, 'escape'), "
                       "replace(error, E'\\n', ' ') FROM %s.dead_letter" % env.schema)
    for stage, ev_id, raw, error in dl_rows:
        found = MARKER_RE.findall(raw)
        marker = found[0] if found else None
        if marker not in m.items:
            raise Violation("dead_letter holds a row never sent (%s): %r" % (stage, raw[:120]))
        dl.setdefault(marker, {"ingest": 0, "load": 0})[stage] += 1
        dl[marker]["error"] = error
        if ev_id:
            dl_ids.add(ev_id)
    for marker, it in m.items.items():
        holder = None
        if it.key is not None:
            holder = key_holder.get((it.tname, it.key[1] if it.key[0] == "k" else
                                     "%s %s" % (it.key[1], it.key[2])))
        check_item(run, it, in_table.get(marker, 0), dl.get(marker, {"ingest": 0, "load": 0}),
                   table_ids.get(marker, set()), dl_ids, holder)
    check_conservation(run, n_rows, len(dl_rows))


def check_item(run, it, rows, dl, ids, dl_ids, holder):
    m = run.model
    acked = m.acked.get(it.marker, 0)
    maybe = m.maybe.get(it.marker, 0)
    dli = m.dl_ingest.get(it.marker, 0)
    where = "%s: acknowledged %d, unanswered %d, ingest-dead-lettered %d; in PostgreSQL: " \
            "%d rows, dead_letter ingest %d load %d" % (it.short(), acked, maybe, dli, rows,
                                                        dl["ingest"], dl["load"])
    if not it.valid:
        expect(rows == 0 and dl["load"] == 0, where, "an invalid event was loaded")
    if not (dli <= dl["ingest"] <= dli + maybe):
        raise Violation("%s: ingest dead letters not as answered" % where)
    if it.key is None:
        lo, hi = acked, acked + maybe
        if not (lo <= rows + dl["load"] <= hi):
            raise Violation("%s: %s" % (where, "acknowledged event lost" if rows + dl["load"]
                                        < lo else "event stored more often than sent"))
        expect(dl["load"] == 0 or not it.valid, where,
               "a valid unkeyed event dead-lettered at load (%s)" % dl.get("error"))
    else:
        stored = rows + dl["load"]
        if acked > 0 and stored == 0:
            raise Violation("%s: acknowledged keyed event lost (its key's row in %s holds %s)"
                            % (where, it.tname, holder and m.items[holder].short()))
        expect(rows <= 1, where, "a keyed event loaded twice")
        if dl["load"] > 0 and it.key not in m.conflicted:
            raise Violation("%s: dead-lettered at load though its key never had other bytes "
                            "(%s)" % (where, dl.get("error")))
        if acked == 0 and maybe == 0:
            expect(stored == 0, where, "stored though never acknowledged nor unanswered")
    for ev_id in m.ids.get(it.marker, []):
        if ev_id not in ids and ev_id not in dl_ids and not (it.key is not None and rows == 1):
            raise Violation("%s: answered id %s is neither in its table nor a dead letter" %
                            (where, ev_id))


def check_conservation(run, n_rows, n_dead):
    """accepted = loaded + dead_lettered + queued per appliance, queued 0 after the drain,
    loaded summed = rows in PostgreSQL + repeats the loaders skipped (by their key,
    datapipe_loader_duplicates_total), dead_lettered summed = dead_letter rows."""
    loaded = dead = skipped = 0
    for a in run.apps:
        st, _, raw = http_call(a.port, "GET", "/metrics")
        for line in raw.decode().splitlines():
            if line.startswith("datapipe_loader_duplicates_total{"):
                skipped += int(float(line.split()[-1]))
        st, ans, raw = http_call(a.port, "GET", "/v1/status")
        ev = (ans or {}).get("events")
        expect(ev is not None, a.name, "/v1/status has no events: %s" % raw[:200])
        expect(ev["accepted"] == ev["loaded"] + ev["dead_lettered"] + ev["queued"], a.name,
               "conservation: %s" % ev)
        expect(ev["queued"] == 0, a.name, "events left queued after the drain: %s" % ev)
        loaded += ev["loaded"]
        dead += ev["dead_lettered"]
    expect(loaded == n_rows + skipped, "conservation", "loaded %d but PostgreSQL holds %d "
           "rows and the loaders skipped %d repeats" % (loaded, n_rows, skipped))
    expect(dead == n_dead, "conservation", "dead_lettered %d but dead_letter holds %d rows" %
           (dead, n_dead))


# --- reproduction and shrinking ----------------------------------------------------------------

def op_text(op, full=False):
    kind = op["kind"]
    if kind in ("post", "ce"):
        items = op["items"]
        n = len(items) if full else 3
        what = "; ".join(i.short() for i in items[:n]) + \
            (" ... (%d events)" % len(items) if len(items) > n else "")
        via = op.get("entry", op.get("mode"))
        return "a%d %s %s %s%s%s" % (op["app"], kind, via, what or "(empty)",
                                     " +Idempotency-Key" if op.get("header_key") else "",
                                     " after %.1f s" % op["delay_s"] if op.get("delay_s")
                                     else "")
    if kind == "kill_during":
        return "a%d SIGKILL server during: %s" % (op["app"], op_text(op["op"], full))
    if kind == "fill":
        return "a%d fill the queue (up to %d times): %s" % (op["app"], op["times"],
                                                            op_text(op["op"], full))
    return "%s %s" % (kind, {k: v for k, v in op.items() if k != "kind"})


def attempt(args, seed, settings, types, ops, log):
    """Run ops on a fresh setup; the violation text, or None if everything held."""
    run = Run(args, seed, ops=ops, settings=settings, types=types, log=log)
    try:
        run.run(0, time.time() + 3600)
        return None
    except Violation as v:
        return str(v)
    finally:
        for a in run.apps:
            a.stop_all()
        run.env.cleanup(False)


SIGNATURE_WORDS = ["lost", "twice", "never sent", "dead-lettered at load", "conservation",
                   "exited", "duplicate", "want 202", "want 400", "409", "rejected",
                   "accepted", "--once", "sanitizer", "SIGHUP", "more often"]


def signature(violation):
    """The kind of a violation, so that shrinking keeps failing for the same reason."""
    return {w for w in SIGNATURE_WORDS if w in violation}


def shrink(args, seed, settings, types, ops, budget_s, violation):
    """Delta debugging over the op list, while a run still fails the same way, within
    budget_s."""
    kind = signature(violation)
    deadline = time.time() + budget_s
    quiet = (lambda *a: None)
    n = 2
    while len(ops) >= 2 and time.time() < deadline:
        chunk = max(1, len(ops) // n)
        reduced = False
        for start in range(0, len(ops), chunk):
            if time.time() > deadline:
                break
            cand = ops[:start] + ops[start + chunk:]
            got = attempt(args, seed, settings, types, cand, quiet)
            if got is not None and signature(got) == kind:
                ops = cand
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(ops), n * 2)
    return ops


def report_violation(args, run, v):
    print("VIOLATION seed=%d after %d ops: %s" % (run.seed, len(run.ops_done) + 1, v))
    ops = run.ops_done + ([run.current] if getattr(run, "current", None) else [])
    print("  config: settings=%s" % json.dumps(run.settings))
    print("  types: %s" % json.dumps(run.initial_types))
    print("  reproduce: %s --seed %d --runs 1 --ops %d%s" % (
        sys.argv[0], run.seed, len(ops), " --avoid " + ",".join(args.avoid) if args.avoid
        else ""))
    if args.shrink_s > 0 and ops:
        print("  shrinking %d ops (at most %d s) ..." % (len(ops), args.shrink_s))
        small = shrink(args, run.seed, run.settings, run.initial_types, ops, args.shrink_s,
                       str(v))
        again = attempt(args, run.seed, run.settings, run.initial_types, small,
                        lambda *a: None)
        print("  shrunk to %d ops%s:" % (len(small), "" if again else
                                         " (did not fail again: timing)"))
        for i, op in enumerate(small):
            print("    %2d. %s" % (i + 1, op_text(op)))
            inner = op.get("op", op)
            for it in inner.get("items", [])[:3]:
                print("          %s" % it.text[:300])
        if again:
            print("  which fails with: %s" % again)


# --- main ----------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=None, help="first run's seed (random if absent)")
    p.add_argument("--seconds", type=float, default=60, help="time budget for all runs")
    p.add_argument("--ops", type=int, default=60, help="ops per run")
    p.add_argument("--runs", type=int, default=0, help="at most this many runs (0: no limit)")
    p.add_argument("--bin", default=os.environ.get("DP_BIN", "bin"))
    p.add_argument("--shrink-s", type=int, default=90, help="time to shrink a violation")
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    p.add_argument("--avoid", default="", help="known findings the generator steers clear "
                   "of, comma-separated: " + ", ".join(AVOIDABLE) + "; open: those not "
                   "fixed yet (" + ", ".join(OPEN_FINDINGS) + ")")
    args = p.parse_args()
    args.avoid = [a for a in args.avoid.split(",") if a]
    if "open" in args.avoid:
        args.avoid = [a for a in args.avoid if a != "open"] + OPEN_FINDINGS
    for a in args.avoid:
        if a not in AVOIDABLE:
            p.error("--avoid: unknown %r (known: %s)" % (a, ", ".join(AVOIDABLE)))
    # SIGTERM as an exception, so that every run's daemons are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if "DP_PG_CONNINFO" not in os.environ:
        sys.exit("dpcheck: run through tests/pg run (DP_PG_CONNINFO)")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**9)
    print("dpcheck: seed %d, %g s, %d ops a run" % (seed, args.seconds, args.ops), flush=True)
    t_end = time.time() + args.seconds
    runs = ops = requests = faults = 0
    while (args.runs == 0 or runs < args.runs) and (runs == 0 or time.time() < t_end):
        run_seed = seed + runs
        run = Run(args, run_seed, log=lambda s: print(s, flush=True))
        t0 = time.time()
        try:
            run.run(args.ops, t_end)
        except Violation as v:
            for a in run.apps:
                a.stop_all()
            report_violation(args, run, v)
            run.env.cleanup(True)
            print("dpcheck: FAILED: run %d (seed %d), kept %s" % (runs, run_seed, run.env.dir))
            return 1
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            # The checker's own trouble (a binary missing, psql failing), not a violation.
            print("dpcheck: ERROR in run %d (seed %d): %r; kept %s" % (runs, run_seed, e,
                                                                   run.env.dir))
            return 2
        finally:
            for a in run.apps:
                a.stop_all()
        runs += 1
        ops += len(run.ops_done)
        requests += run.counts["requests"]
        faults += run.counts["faults"]
        kinds = {}
        for op in run.ops_done:
            kinds[op["kind"]] = kinds.get(op["kind"], 0) + 1
        print("run %d seed %d: %d ops, %d requests, %d faults, %d events, %d appliance(s), "
              "%d configs refused, %.1f s: ok (%s)" % (
                  runs - 1, run_seed, len(run.ops_done), run.counts["requests"],
                  run.counts["faults"], len(run.model.items), len(run.apps),
                  run.counts.get("refused_configs", 0), time.time() - t0,
                                   " ".join("%s=%d" % kv for kv in sorted(kinds.items()))),
              flush=True)
        run.env.cleanup(args.keep)
    print("dpcheck: %d runs, %d ops, %d requests, %d faults, 0 violations (seed %d)" %
          (runs, ops, requests, faults, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
