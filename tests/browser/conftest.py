"""Fixtures of the console's browser tests.

The tests run against the real local stack (`local-stack up` against the
moto emulator that `infra/with-emulator.sh` starts), with real loopback
receivers, in the distribution's headless Chromium driven by Playwright.
Every test signs in as a company of its own, so tests never see each
other's subscriptions.
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fake_oidc import FakeOidc
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
LOCAL_STACK = ROOT / "target" / "debug" / "local-stack"
SCREENSHOTS = ROOT / "target" / "console-screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Chromium as root in a container, without the services a closed network
# refuses (see the README's "Browser tests").
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Output:
    """The lines a process prints, as they come (also written to `log`)."""

    def __init__(self, stream, log):
        self.lines = []
        self.ended = False
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, args=(stream, log), daemon=True)
        self.reader.start()

    def _read(self, stream, log):
        for line in stream:
            log.write(line)
            log.flush()
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_for(self, pattern, start=0, timeout=60):
        """The first match of `pattern` in a line from line `start` on;
        None when the output ends first or after `timeout` seconds."""
        found = []

        def seen():
            for line in self.lines[start:]:
                m = re.search(pattern, line)
                if m:
                    found.append(m)
                    return True
            return self.ended

        with self.changed:
            self.changed.wait_for(seen, timeout=timeout)
        return found[0] if found else None


class Stack:
    """The local stack under test: its API base URL and helpers."""

    def __init__(self, name, base, log, proc, output):
        self.name = name
        self.base = base
        self.log = log
        self.proc = proc
        self.output = output

    def token(self, company):
        return subprocess.run(
            [str(LOCAL_STACK), "token", company], check=True, capture_output=True, text=True
        ).stdout.strip()

    def console_url(self, company):
        """A new one-time sign-in link as `company`: asked for on the local
        stack's standard input (a line naming the company), as a developer
        asks `make run` for one."""
        with self.output.changed:
            start = len(self.output.lines)
        self.proc.stdin.write(company + "\n")
        self.proc.stdin.flush()
        m = self.output.wait_for(rf"console link for {re.escape(company)} .*: (http\S+#dev-code=\S+)", start)
        if not m:
            pytest.fail(f"local-stack printed no sign-in link for {company}; see {self.log}")
        return m.group(1)

    def simulate(self, company, jobs):
        """Writes `jobs` simulated jobs of `company` to the jobs table."""
        env = dict(os.environ, SIMULATE_PAUSE_MS="20", LOCAL_STACK_NAME=self.name)
        subprocess.run(
            [str(LOCAL_STACK), "simulate", company, str(jobs)],
            check=True,
            capture_output=True,
            env=env,
        )

    def publish(self, company, *event_types):
        """Publishes one sample CloudEvent of each type for `company` to the
        stack's ingress queue, as a platform service would; returns them as
        printed."""
        env = dict(os.environ, LOCAL_STACK_NAME=self.name)
        return subprocess.run(
            [str(LOCAL_STACK), "publish", company, *event_types],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout


from contextlib import contextmanager


@contextmanager
def local_stack(name, **settings):
    """`local-stack up` on free loopback ports with `settings` as extra
    environment, until the block ends; its log is target/<name>.log."""
    if "AWS_ENDPOINT_URL" not in os.environ:
        pytest.fail("run under infra/with-emulator.sh (make browser-test)")
    if not LOCAL_STACK.exists():
        pytest.fail(f"{LOCAL_STACK} is missing: cargo build -p local-stack")
    api_port, receiver_port = free_port(), free_port()
    log_path = ROOT / "target" / f"{name}.log"
    log = open(log_path, "w")
    env = dict(
        os.environ,
        LOCAL_DEMO="0",
        LOCAL_STACK_NAME=name,
        LOCAL_API_ADDR=f"127.0.0.1:{api_port}",
        LOCAL_RECEIVER_ADDR=f"127.0.0.1:{receiver_port}",
        **settings,
    )
    proc = subprocess.Popen(
        [str(LOCAL_STACK), "up"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    output = Output(proc.stdout, log)
    try:
        if not output.wait_for(r"^Serving\.", timeout=180):
            pytest.fail(f"local-stack did not start; see {log_path}")
        yield Stack(name, f"http://127.0.0.1:{api_port}", log_path, proc, output)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.stdin.close()
        output.reader.join(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def stack():
    with local_stack(
        "browser-test-stack",
        LOCAL_SCHEDULE_INTERVAL_SECONDS="2",
        # The breaker opens after three failures in a row, so the parked
        # events test is quick.
        LOCAL_STACK_PARAMETERS="BreakerFailures=3",
    ) as s:
        yield s


OIDC_CLIENT_ID = "webhooks-console-test"


@pytest.fixture(scope="session")
def oidc_stack():
    """A second stack (API only) whose console signs in with a fake OpenID
    provider on loopback HTTPS: the template's JwtIssuer and
    ConsoleOidcClientId point at it. Yields (stack, provider, company)."""
    company = "oidc-" + uuid.uuid4().hex[:10]
    token = subprocess.run(
        [str(LOCAL_STACK), "token", company], check=True, capture_output=True, text=True
    ).stdout.strip()
    provider = FakeOidc(OIDC_CLIENT_ID, token)
    try:
        with local_stack(
            "browser-test-oidc-stack",
            LOCAL_RUNNERS="0",
            LOCAL_STACK_PARAMETERS=f"JwtIssuer={provider.issuer}/,ConsoleOidcClientId={OIDC_CLIENT_ID}",
        ) as s:
            yield s, provider, company
    finally:
        provider.close()


class Receiver:
    """A webhook receiver on loopback that records what it gets and answers
    with `status` and `body`."""

    def __init__(self):
        self.requests = []
        self.status = 204
        self.body = b""
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver.changed:
                    status, reply = receiver.status, receiver.body
                    receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "status": status})
                    receiver.changed.notify_all()
                self.send_response(status)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout=60):
        """Waits until `predicate(requests)` holds; returns the requests."""
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self.requests), timeout=timeout):
                pytest.fail(f"the receiver did not get what was expected in {timeout} s")
            return list(self.requests)

    def events(self):
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Console:
    """A browser page on the console, signed in as a company of its own,
    that records every dialog and page error."""

    def __init__(self, page, stack, company):
        self.page = page
        self.stack = stack
        self.company = company
        self.dialogs = []
        self.errors = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.accept_confirms = True

    def _dialog(self, dialog):
        self.dialogs.append((dialog.type, dialog.message))
        if dialog.type == "confirm" and self.accept_confirms:
            dialog.accept()
        else:
            dialog.dismiss()

    def open(self, route="#/"):
        response = self.page.goto(self.stack.console_url(self.company))
        self.page.wait_for_selector("main h1")
        if route != "#/":
            self.page.evaluate("route => { location.hash = route; }", route)
            self.page.wait_for_selector("main h1")
        return response

    def screenshot(self, name):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def create(self, url, description=None, states=()):
        """Creates an endpoint through the form; returns its id."""
        self.page.click("#new-endpoint")
        self.page.fill("#url", url)
        if description:
            self.page.fill("#description", description)
        for state in states:
            self.page.check(f"#states-{state}")
        self.page.click("#endpoint-form button[type=submit]")
        self.page.wait_for_selector("#secret-panel")
        return re.search(r"#/webhooks/([^/?]+)", self.page.url).group(1)

    def refresh_until(self, condition, timeout=60):
        """Clicks the deliveries' Refresh until `condition` (a JavaScript
        expression) holds in the page."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            expect(self.page.locator("#deliveries [aria-busy]")).to_have_count(0)
            if self.page.evaluate(condition):
                return
            self.page.wait_for_timeout(500)
            self.page.click("#refresh-deliveries")
        pytest.fail(f"not within {timeout} s: {condition}")


@pytest.fixture
def console(browser, stack):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900},
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = context.new_page()
    c = Console(page, stack, "browser-" + uuid.uuid4().hex[:10])
    yield c
    assert c.errors == [], f"errors in the page: {c.errors}"
    context.close()
