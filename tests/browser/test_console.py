"""The console in a real headless Chromium against the local stack.

Each test signs in with a one-time link the local stack prints when asked
(a line on its standard input), as `make run`'s console link does, and
works through the console the way a customer would: forms, buttons, the
clipboard.
"""

import datetime
import json
import re
import uuid

from playwright.sync_api import expect
from standardwebhooks import Webhook

XSS = '<img src=x onerror="window.__xss=1;alert(1)"><script>window.__xss=2;alert(2)</script>'


def no_busy_loaders(page, scope="main"):
    expect(page.locator(f"{scope} [aria-busy]")).to_have_count(0)


def test_sign_in_keeps_the_token_out_of_the_url_and_storage_and_sends_a_strict_csp(console, stack):
    page = console.page
    response = page.goto(f"{stack.base}/console")
    csp = response.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ):
        assert directive in csp, csp
    assert "unsafe-inline" not in csp and "http" not in csp.replace("https", ""), csp
    assert response.headers["x-content-type-options"] == "nosniff"
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#sign-out")).to_be_hidden()
    console.screenshot("sign-in")

    console.open()
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    assert "dev-code" not in page.url, "the one-time code is cleared from the address"
    assert page.evaluate("sessionStorage.length") == 1
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    expect(page.locator(".empty")).to_contain_text("No endpoints yet")
    expect(page.locator("#who")).to_have_text(f"dev-user@{console.company}")

    page.click("#sign-out")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#sign-out")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_link_never_switches_a_signed_in_console_to_another_company(console, stack):
    page = console.page
    console.open()
    me = f"dev-user@{console.company}"
    mine = page.evaluate("sessionStorage.getItem('webhooks-console.token')")
    other = "other-" + uuid.uuid4().hex[:10]
    foreign = f"{stack.base}/console#token={stack.token(other)}"

    def still_me():
        expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
        expect(page.locator("#who")).to_have_text(me)
        assert page.evaluate("sessionStorage.getItem('webhooks-console.token')") == mine
        assert "token" not in page.url and "dev-code" not in page.url

    # A link with another company's token, followed in the running console
    # (only the fragment changes) and as a fresh load of the tab: the token
    # is dropped from the address and never used.
    page.goto(foreign)
    page.wait_for_function("!location.hash.includes('token=')")
    still_me()
    page.goto("about:blank")
    page.goto(foreign)
    page.wait_for_selector("main h1")
    still_me()

    # A valid one-time link of another company asks first; declined, the
    # console stays signed in as it was.
    console.accept_confirms = False
    page.goto(stack.console_url(other))
    expect(page.locator("#toast")).to_have_text(f"Still signed in as {me}.")
    still_me()
    kind, message = console.dialogs[-1]
    assert kind == "confirm" and f"dev-user@{other}" in message and me in message, message

    # Accepted, it switches.
    console.accept_confirms = True
    page.goto(stack.console_url(other))
    expect(page.locator("#who")).to_have_text(f"dev-user@{other}")
    assert len(console.dialogs) == 2


def test_a_sign_in_link_works_once(console, stack, browser):
    page = console.page
    link = stack.console_url(console.company)
    page.goto(link)
    expect(page.locator("#who")).to_have_text(f"dev-user@{console.company}")

    # The same link again, in a tab of its own: refused.
    context = browser.new_context()
    replay = context.new_page()
    replay.goto(link)
    expect(replay.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(replay.locator("[role=alert]")).to_contain_text("works once")
    assert replay.evaluate("sessionStorage.length") == 0
    assert "dev-code" not in replay.url
    context.close()


def test_api_errors_show_next_to_the_field_they_name(console):
    page = console.page
    console.open()
    page.click("#new-endpoint")
    page.fill("#url", "ftp://example.com/hooks")
    page.click("#endpoint-form button[type=submit]")
    expect(page.locator("#url-error")).to_contain_text("https")
    expect(page.locator("#url")).to_be_focused()
    page.fill("#url", "https://example.com/hooks")
    page.fill("#job_ids", "\n".join(["ok-1", "x" * 300]))
    page.click("#endpoint-form button[type=submit]")
    expect(page.locator("#job_ids-error")).not_to_be_empty()
    expect(page.locator("#url-error")).to_be_empty()
    console.screenshot("form-errors")


def test_create_then_simulated_jobs_fill_the_delivery_log_and_the_chart(console, stack, receiver):
    page = console.page
    console.open()
    page.click("#new-endpoint")
    # The pickers come from /event-types and /job-types.
    expect(page.locator("#states input[type=checkbox]")).to_have_count(6)
    expect(page.locator("#job_types input[type=checkbox]")).not_to_have_count(0)
    page.fill("#url", receiver.url)
    page.fill("#description", "Finished and failed jobs")
    page.check("#states-completed")
    page.check("#states-failed")
    console.screenshot("create")
    page.click("#endpoint-form button[type=submit]")

    # The secret is shown once, in Standard Webhooks form, and copies.
    secret = page.locator("#secret-value").input_value()
    assert secret.startswith("whsec_")
    page.click("#copy-secret")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    expect(page.locator("#secret-snippet-code")).to_contain_text(secret)
    page.click("#close-secret")
    expect(page.locator("#secret-panel")).to_have_count(0)
    assert secret not in page.content(), "no secret left on the page"

    stack.simulate(console.company, 4)
    wanted = receiver.wait_for(
        lambda reqs: any(json.loads(r["body"])["type"] in ("job.completed", "job.failed") for r in reqs)
    )
    verifier = Webhook(secret)
    for r in wanted:
        verifier.verify(r["body"], r["headers"])
    assert {e["type"] for e in receiver.events()} <= {"job.completed", "job.failed"}, "filters hold"

    count = len(receiver.requests)
    console.refresh_until(f"document.querySelectorAll('#delivery-log tbody tr').length >= {count}")
    chart = page.locator("#chart")
    assert int(chart.get_attribute("data-delivered")) >= count
    expect(page.locator("#chart-caption")).to_contain_text("delivered")
    row = page.locator("#delivery-log tbody tr").first
    expect(row).to_contain_text("delivered")
    expect(row).to_contain_text("204")
    expect(row.locator(".abs")).to_contain_text("UTC")
    console.screenshot("endpoint")

    # The list shows it with its badges; the status filter narrows it.
    page.click("a[data-nav=endpoints]")
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    expect(page.locator("[data-status=active]")).to_be_visible()
    expect(page.locator("[data-health=closed]")).to_have_text("healthy")
    console.screenshot("endpoints")
    page.select_option("#status-filter", "archived")
    expect(page.locator(".empty")).to_be_visible()


def test_an_events_endpoint_with_headers_and_ed25519_gets_only_its_platform_events(console, stack, receiver):
    page = console.page
    console.open()
    page.click("#new-endpoint")
    # The kind switches the filters: platform event types come from the catalogue.
    expect(page.locator("#jobs-filters")).to_be_visible()
    expect(page.locator("#events-filters")).to_be_hidden()
    page.check("#kind-events")
    expect(page.locator("#jobs-filters")).to_be_hidden()
    expect(page.locator("#events-filters")).to_be_visible()
    expect(page.locator('[id="event_types-engine.*"]')).to_be_visible()
    expect(page.locator('[id="event_types-app.installed"]')).to_be_visible()
    expect(page.locator('[id="event_types-job.completed"]')).to_have_count(0)
    expect(page.locator("#subject_types input[type=checkbox]")).to_have_count(25)
    page.fill("#url", receiver.url)

    # Nothing ticked: the API's 400 shows next to the event types.
    page.click("#endpoint-form button[type=submit]")
    expect(page.locator("#event_types-error")).to_contain_text("event types")

    page.check('[id="event_types-engine.aggregate_batch_started"]')
    page.check('[id="event_types-app.*"]')
    page.select_option("#signature_schemes", "v1 v1a")
    page.click("#add-header")
    page.locator("#header-row-0 .header-name").fill("Content-Type")
    page.locator("#header-row-0 .header-value").fill("text/plain")
    page.click("#endpoint-form button[type=submit]")
    expect(page.locator("#headers-error")).to_contain_text("content-type")
    page.locator("#header-row-0 .header-name").fill("X-Api-Key")
    page.locator("#header-row-0 .header-value").fill("key-b7e2c9d4")
    console.screenshot("create-events")
    page.click("#endpoint-form button[type=submit]")

    # The public key shows beside the secret, once created.
    public_key = page.locator("#public-key-value").input_value()
    assert public_key.startswith("whpk_")
    secret = page.locator("#secret-value").input_value()
    page.click("#close-secret")
    expect(page.locator("#endpoint-kind")).to_have_text("Platform events")
    expect(page.locator("#endpoint-event-types")).to_have_text("app.*, engine.aggregate_batch_started")
    expect(page.locator("#endpoint-schemes")).to_have_text("v1, v1a")
    expect(page.locator("#endpoint-public-key")).to_have_text(public_key)
    expect(page.locator("#endpoint-headers")).to_contain_text("x-api-key")
    assert "key-b7e2c9d4" not in page.content(), "header values are never shown"

    # The engine publishes two events, the apps service one: the receiver
    # gets the two of the types it subscribed to.
    stack.publish(console.company, "engine.aggregate_batch_started", "engine.slow_query_event")
    published = stack.publish(console.company, "app.installed")
    assert "published app.installed" in published
    got = receiver.wait_for(lambda reqs: len(reqs) >= 2)
    types = sorted(json.loads(r["body"])["type"] for r in got)
    assert types == ["app.installed", "engine.aggregate_batch_started"], types
    request = next(r for r in got if json.loads(r["body"])["type"] == "engine.aggregate_batch_started")
    assert request["headers"]["x-api-key"] == "key-b7e2c9d4"
    Webhook(secret).verify(request["body"], request["headers"])
    signatures = request["headers"]["webhook-signature"].split()
    assert any(s.startswith("v1a,") for s in signatures), signatures
    # v1a verifies with the public key alone, by an independent Ed25519
    # implementation.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    import base64

    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    signed = f'{request["headers"]["webhook-id"]}.{request["headers"]["webhook-timestamp"]}.'.encode() + request["body"]
    v1a = [base64.b64decode(s.split(",", 1)[1]) for s in signatures if s.startswith("v1a,")]
    key.verify(v1a[0], signed)

    # Editing keeps the kind fixed and the stored header masked.
    page.click("#edit")
    expect(page.locator("#kind-events")).to_be_disabled()
    expect(page.locator("#kind-events")).to_be_checked()
    expect(page.locator('[id="event_types-app.*"]')).to_be_checked()
    expect(page.locator("#header-row-0 .header-name")).to_have_value("x-api-key")
    expect(page.locator("#header-row-0 .header-value")).to_have_value("")
    page.locator("#header-row-0 .remove-header").click()
    # An app filter makes it an app webhook: only that app's events (the
    # sample app event's app is app_7c41f2).
    page.fill("#app_ids", "app_7c41f2")
    page.click("#endpoint-form button[type=submit]")
    expect(page.locator("#endpoint-kind")).to_have_text("Platform events")
    expect(page.locator("#endpoint-app-ids")).to_have_text("app_7c41f2")
    expect(page.locator("#endpoint-headers")).to_have_count(0)
    # (What an app webhook receives is the ingress tests' subject: matching
    # reads a company's subscriptions once per cache period, so a change
    # reaches ingest within seconds, not at once.)


def test_rotate_copy_test_event_and_archive(console, receiver):
    page = console.page
    console.open()
    console.create(receiver.url, "rotation")
    first = page.locator("#secret-value").input_value()
    page.click("#close-secret")

    page.click("#rotate")
    expect(page.locator("#secret-heading")).to_have_text("Secret rotated")
    rotated = page.locator("#secret-value").input_value()
    assert rotated.startswith("whsec_") and rotated != first
    page.click("#copy-secret")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == rotated
    page.click("#close-secret")
    assert rotated not in page.content()

    page.click("#send-test")
    expect(page.locator("#toast")).to_contain_text("Test event queued")
    request = next(
        r for r in receiver.wait_for(lambda reqs: len(reqs) >= 1)
        if json.loads(r["body"])["type"] == "webhook.test"
    )
    event = Webhook(copied).verify(request["body"], request["headers"])
    assert event["type"] == "webhook.test"
    # Both secrets sign during the grace period.
    Webhook(first).verify(request["body"], request["headers"])
    console.refresh_until("!!document.querySelector('#delivery-log tbody tr')")
    expect(page.locator("#delivery-log tbody tr").first).to_contain_text("webhook.test")

    page.click("#archive")
    expect(page.locator("[data-status=archived]")).to_be_visible()
    expect(page.locator("#send-test")).to_have_count(0)
    assert [t for t, _ in console.dialogs] == ["confirm", "confirm"]


def test_customer_text_renders_inert(console, stack, receiver):
    page = console.page
    receiver.status = 200
    receiver.body = XSS.encode()
    console.open()
    console.create(receiver.url, XSS)
    page.click("#close-secret")
    page.click("#send-test")
    receiver.wait_for(lambda reqs: len(reqs) >= 1)
    console.refresh_until("!!document.querySelector('#delivery-log .excerpt')")
    expect(page.locator("#endpoint-description")).to_have_text(XSS)
    expect(page.locator("#delivery-log .excerpt").first).to_have_text(XSS)
    page.click("a[data-nav=endpoints]")
    expect(page.locator("table.list .desc")).to_have_text(XSS)
    assert page.evaluate("window.__xss") is None, "no script ran"
    assert page.locator("main img, main script").count() == 0, "no element was made from the text"
    assert console.dialogs == [], "no dialog opened"
    console.screenshot("xss-probe")


def test_parked_events_show_and_recover(console, stack, receiver):
    page = console.page
    receiver.status = 503
    console.open()
    sub_id = console.create(receiver.url, "down for a while")
    page.click("#close-secret")
    stack.simulate(console.company, 3)
    # Three failures in a row open the breaker; later events are parked.
    # Events whose retries ran out before it opened are listed as failed
    # first: wait until the breaker shows open too.
    open_badge = page.locator("[data-health=open], [data-health=half_open]")
    shown = False
    for _ in range(60):
        page.reload()
        page.wait_for_selector("#failed")
        no_busy_loaders(page, "#failed")
        if page.locator("#failed-events tbody tr").count() > 0 and open_badge.count() > 0:
            shown = True
            break
        page.wait_for_timeout(1000)
    assert shown, "kept events and the open breaker appear in the console"
    expect(open_badge).to_be_visible()
    expect(page.locator("#failed-events .badge").first).to_have_text(re.compile("parked|failed"))
    console.screenshot("parked")

    # The window defaults to the whole retention (the stack's
    # ParkedRetentionDays, 30) and says what it selects on.
    since = datetime.datetime.fromisoformat(page.locator("#recover-since").input_value())
    until = datetime.datetime.fromisoformat(page.locator("#recover-until").input_value())
    assert until - since == datetime.timedelta(days=30)
    assert until > datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None), "it ends after now (UTC)"
    hint = page.locator("#recover-window-hint")
    expect(hint).to_contain_text("by when they happened")
    expect(hint).to_contain_text("the last 30 days.")

    # Recover with the defaults while the breaker is still open: the listed
    # events go back on the delivery queue (the toast counts them), and once
    # the endpoint answers again every one of them arrives, with its
    # webhook-id.
    kept = page.locator("#failed-events tbody tr").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert kept and all(kept)
    page.click("#recover-form button[type=submit]")
    expect(page.locator("#toast")).to_have_text(re.compile(r"^[1-9]\d* event\(s\) queued for delivery again\.$"))
    receiver.status = 204
    receiver.wait_for(
        lambda reqs: set(kept) <= {r["headers"].get("webhook-id") for r in reqs if r["status"] == 204},
        timeout=120,
    )
    assert sub_id


def test_catalogue_shows_schemas_examples_and_snippets(console):
    page = console.page
    console.open("#/events")
    events = page.locator("details.event")
    expect(events).to_have_count(28)
    groups = page.locator("section.event-group")
    expect(groups).to_have_count(5)
    assert [groups.nth(i).get_attribute("data-group") for i in range(5)] == ["job", "webhook", "app", "engine", "subject"]
    expect(page.locator("#group-engine details.event")).to_have_count(7)
    expect(page.locator("#group-job h2")).to_contain_text("Job state changes")
    expect(page.locator(".badge.deprecated")).to_have_count(0)
    installed = page.locator("#event-app-installed")
    installed.locator("summary").click()
    expect(installed.locator(".requires")).to_contain_text("app_id")
    failed = page.locator("#event-job-failed")
    failed.locator("summary").click()
    expect(failed.locator("pre").first).to_contain_text('"type": "job.failed"')
    expect(failed.locator("pre").nth(1)).to_contain_text("https://json-schema.org/draft/2020-12/schema")
    for lang, text in [("Python", "standardwebhooks"), ("Node", "new Webhook"), ("Go", "NewWebhook"), ("Rust", "Webhook::new")]:
        page.click(f".snippets button[data-lang={lang}]")
        expect(page.locator("#catalogue-snippet-code")).to_contain_text(text)
        expect(page.locator("#catalogue-snippet-code")).to_contain_text("whsec_...")
    console.screenshot("catalogue")


def test_usable_at_375_pixels_and_by_keyboard(console, receiver):
    page = console.page
    page.set_viewport_size({"width": 375, "height": 812})
    console.open()
    console.create(receiver.url, "a phone-sized check")
    page.click("#close-secret")
    page.click("a[data-nav=endpoints]")
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "no sideways scrolling"
    console.screenshot("endpoints-375px")

    # The form by keyboard: every field has a label and takes focus in order.
    page.goto(page.url.split("#")[0] + "#/new")
    page.wait_for_selector("#url:focus")
    for field in ["url", "description", "job_ids"]:
        assert page.locator(f"label[for={field}]").count() == 1
    page.keyboard.type("https://example.com/by-keyboard")
    page.keyboard.press("Tab")
    expect(page.locator("#description")).to_be_focused()
    page.keyboard.type("typed")
    page.keyboard.press("Tab")
    expect(page.locator("#kind-jobs")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    expect(page.locator("#states input").first).to_be_checked()
    page.locator("#endpoint-form button[type=submit]").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#secret-panel")).to_be_visible()
    expect(page.locator("#endpoint-url")).to_have_text("https://example.com/by-keyboard")


def test_oidc_sign_in_with_pkce(browser, oidc_stack):
    stack, provider, company = oidc_stack
    # The provider's certificate is self-signed: this context trusts it.
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(f"{stack.base}/console")
    assert f"connect-src 'self' {provider.issuer};" in response.headers["content-security-policy"]
    page.click("#oidc-sign-in")
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    assert "code=" not in page.url and "state=" not in page.url
    [asked] = provider.authorizations
    assert asked["redirect_uri"] == f"{stack.base}/console"
    assert asked["response_type"] == "code" and asked["scope"] == "openid"
    assert len(provider.exchanges) == 1, "the code was exchanged with its PKCE verifier"
    assert page.evaluate("sessionStorage.getItem('webhooks-console.token')") == provider.id_token
    expect(page.locator("#who")).to_have_text(f"dev-user@{company}")
    assert errors == []
    context.close()


def test_the_oidc_console_takes_no_token_or_code_from_its_address(browser, oidc_stack):
    stack, provider, company = oidc_stack
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    errors = []
    posts = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    # Like the deployed stack (it has an OpenID client): a token in the
    # address does not sign in, and nothing offers to paste one.
    page.goto(f"{stack.base}/console#token={stack.token(company)}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("[role=alert]")).to_contain_text("takes no token from its address")
    expect(page.locator("#oidc-sign-in")).to_be_visible()
    expect(page.locator("#token-input")).to_have_count(0)
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.length") == 0
    # Nor does a one-time code: nothing is exchanged.
    page.goto(f"{stack.base}/console#dev-code=a-code-from-elsewhere")
    page.wait_for_function("!location.hash.includes('dev-code')")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert posts == []
    assert errors == []
    context.close()


# ---- Body formats -----------------------------------------------------------


def preview_settled(page):
    """Waits until the form's live preview has rendered its latest request."""
    expect(page.locator("#format-preview")).to_have_attribute("data-state", re.compile("ok|error"))
    expect(page.locator("#format-preview[aria-busy]")).to_have_count(0)


def test_a_slack_endpoint_previews_block_kit_and_is_sent_in_it(console, receiver):
    page = console.page
    console.open()
    page.click("#new-endpoint")
    page.fill("#url", receiver.url)
    # Standard by default: the preview is the catalogue's job.failed payload.
    expect(page.locator("#format-type")).to_have_value("standard")
    expect(page.locator("#preview-event-type")).to_have_value("job.failed")
    expect(page.locator("#preview-body")).to_contain_text('"type": "job.failed"')
    expect(page.locator("#format-pagerduty")).to_be_hidden()
    expect(page.locator("#format-template")).to_be_hidden()

    # Slack: the preview is a chat message, not the payload.
    page.select_option("#format-type", "slack")
    preview_settled(page)
    expect(page.locator("#preview-body")).to_contain_text('"text": ')
    expect(page.locator("#preview-body")).not_to_contain_text('"type": "job.failed"')
    expect(page.locator("#preview-error")).to_be_hidden()
    # Another event type re-renders it.
    failed = page.locator("#preview-body").text_content()
    page.select_option("#preview-event-type", "job.completed")
    preview_settled(page)
    expect(page.locator("#preview-body")).not_to_have_text(failed)
    expect(page.locator("#preview-body")).to_contain_text('"text": ')
    page.select_option("#preview-event-type", "job.failed")
    console.screenshot("format-slack")
    page.click("#endpoint-form button[type=submit]")
    page.wait_for_selector("#secret-panel")
    secret = page.locator("#secret-value").input_value()
    page.click("#close-secret")
    expect(page.locator("#endpoint-format-type")).to_have_text("Slack (Block Kit message)")

    # Editing shows the stored format, previewed as Block Kit.
    page.click("#edit")
    expect(page.locator("#format-type")).to_have_value("slack")
    preview_settled(page)
    expect(page.locator("#preview-body")).to_contain_text('"blocks"')
    expect(page.locator("#preview-body")).to_contain_text('"text"')

    # A delivery is the Block Kit message, signed as it is sent.
    page.click("#endpoint-form a.button.secondary")
    page.click("#send-test")
    request = receiver.wait_for(lambda reqs: len(reqs) >= 1)[0]
    body = Webhook(secret).verify(request["body"], request["headers"])
    assert "blocks" in body and "text" in body, body


def test_a_failing_template_shows_its_error_and_is_refused(console, receiver):
    page = console.page
    console.open()
    page.click("#new-endpoint")
    page.fill("#url", receiver.url)
    page.select_option("#format-type", "template")
    template = page.locator("#format-template")
    expect(template).to_be_visible()
    # A starter template to edit.
    expect(template).to_have_value(re.compile(r"\{\{ type\|tojson \}\}"))

    template.fill('{"text": {{ type|no_such_filter }}}')
    preview_settled(page)
    expect(page.locator("#format-preview")).to_have_attribute("data-state", "error")
    expect(page.locator("#preview-error")).to_be_visible()
    expect(page.locator("#preview-error")).to_contain_text("template")
    expect(page.locator("#preview-body")).to_be_hidden()
    console.screenshot("format-template-error")

    # Saving is refused; the API's error shows next to the template.
    page.click("#endpoint-form button[type=submit]")
    expect(page.locator("#format-template-error")).to_contain_text("template")
    expect(template).to_be_focused()
    expect(page.locator("#secret-panel")).to_have_count(0)
    assert page.url.endswith("#/new")
    page.click("a[data-nav=endpoints]")
    expect(page.locator(".empty")).to_contain_text("No endpoints yet")


def test_a_template_endpoint_saves_and_shows_its_template_inert(console, receiver):
    page = console.page
    console.open()
    page.click("#new-endpoint")
    page.fill("#url", receiver.url)
    page.select_option("#format-type", "template")
    source = (
        "{% set note = '" + XSS + "' %}{\n"
        '  "text": {{ ("Job " ~ type)|tojson }},\n'
        '  "note": {{ note|tojson }},\n'
        '  "data": {{ data|tojson }}\n'
        "}"
    )
    page.fill("#format-template", source)
    preview_settled(page)
    expect(page.locator("#preview-error")).to_be_hidden()
    expect(page.locator("#preview-body")).to_contain_text('"text": "Job job.failed"')
    expect(page.locator("#preview-body")).to_contain_text("<script>window.__xss=2")
    page.click("#endpoint-form button[type=submit]")
    page.wait_for_selector("#secret-panel")
    page.click("#close-secret")
    expect(page.locator("#endpoint-format-type")).to_have_text("Template (your own JSON)")
    expect(page.locator("#endpoint-template")).to_have_text(source)
    assert page.evaluate("window.__xss") is None, "no script ran"
    assert page.locator("main img, main script").count() == 0, "no element was made from the text"

    page.click("#edit")
    expect(page.locator("#format-type")).to_have_value("template")
    expect(page.locator("#format-template")).to_have_value(source)
    preview_settled(page)
    expect(page.locator("#preview-body")).to_contain_text('"text": "Job job.failed"')
    assert page.evaluate("window.__xss") is None
    assert console.dialogs == [], "no dialog opened"


def test_a_pagerduty_endpoint_needs_a_routing_key_and_never_shows_it(console, receiver):
    page = console.page
    console.open()
    page.click("#new-endpoint")
    page.fill("#url", receiver.url)
    page.select_option("#format-type", "pagerduty")
    key = page.locator("#format-routing_key")
    expect(key).to_be_visible()
    expect(key).to_have_attribute("type", "password")
    expect(key).to_have_value("")
    expect(page.locator("#format-severity")).to_have_value("")
    preview_settled(page)
    expect(page.locator("#preview-body")).to_contain_text('"event_action"')
    expect(page.locator("#preview-body")).to_contain_text('"routing_key": "********"')
    page.select_option("#format-severity", "critical")

    # No routing key: the API's 400 shows next to it.
    page.click("#endpoint-form button[type=submit]")
    expect(page.locator("#format-routing_key-error")).to_contain_text("routing_key")
    expect(key).to_be_focused()

    routing_key = "pd" + uuid.uuid4().hex
    key.fill(routing_key)
    page.click("#endpoint-form button[type=submit]")
    page.wait_for_selector("#secret-panel")
    page.click("#close-secret")
    expect(page.locator("#endpoint-format-type")).to_have_text("PagerDuty (Events API v2 event)")
    expect(page.locator("#endpoint-routing-key")).to_have_text("********")
    expect(page.locator("#endpoint-severity")).to_have_text("Severity: critical")
    assert routing_key not in page.content(), "the routing key is never shown"

    # Editing never shows the key; left empty, the stored one is kept.
    page.click("#edit")
    expect(page.locator("#format-type")).to_have_value("pagerduty")
    expect(key).to_have_value("")
    expect(page.locator("#format-severity")).to_have_value("critical")
    page.select_option("#format-severity", "")
    page.click("#endpoint-form button[type=submit]")
    expect(page.locator("#endpoint-severity")).to_have_text("Severity: per event type")
    expect(page.locator("#endpoint-routing-key")).to_have_text("********")
    page.click("#send-test")
    request = receiver.wait_for(lambda reqs: len(reqs) >= 1)[0]
    assert json.loads(request["body"])["routing_key"] == routing_key

    # Back to the standard payload.
    page.click("#edit")
    page.select_option("#format-type", "standard")
    expect(page.locator("#format-pagerduty")).to_be_hidden()
    page.click("#endpoint-form button[type=submit]")
    expect(page.locator("#endpoint-format-type")).to_have_text("Standard payload (signed JSON)")
    expect(page.locator("#endpoint-routing-key")).to_have_count(0)


def test_the_catalogue_renders_job_failed_for_pagerduty(console):
    page = console.page
    console.open("#/events")
    failed = page.locator("#event-job-failed")
    failed.locator("summary").click()
    example = page.locator("#event-job-failed-example")
    expect(example).to_contain_text('"type": "job.failed"')
    expect(failed.locator("button[data-format=standard]")).to_have_attribute("aria-selected", "true")

    failed.locator("button[data-format=pagerduty]").click()
    expect(failed.locator("button[data-format=pagerduty]")).to_have_attribute("aria-selected", "true")
    expect(example).to_have_attribute("data-format", "pagerduty")
    expect(example).to_contain_text('"event_action"')
    expect(example).to_contain_text('"dedup_key"')
    expect(example).to_contain_text('"routing_key": "********"')
    expect(example).not_to_contain_text('"type": "job.failed"')
    console.screenshot("catalogue-pagerduty")

    failed.locator("button[data-format=standard]").click()
    expect(example).to_contain_text('"type": "job.failed"')


def test_the_catalogue_renders_slack_and_teams(console):
    page = console.page
    console.open("#/events")
    installed = page.locator("#event-app-installed")
    installed.locator("summary").click()
    example = page.locator("#event-app-installed-example")
    installed.locator("button[data-format=slack]").click()
    expect(example).to_have_attribute("data-format", "slack")
    expect(example).to_contain_text('"blocks"')
    body = json.loads(example.text_content())
    assert body["blocks"] and body["text"], body

    installed.locator("button[data-format=teams]").click()
    expect(example).to_have_attribute("data-format", "teams")
    body = json.loads(example.text_content())
    assert body["attachments"][0]["content"]["type"] == "AdaptiveCard", body
