"""Kith's web application in real headless Chromium (driven by Playwright).

Run by crates/kith/tests/browser.rs, which starts a real SMTP server (smtp_sink.py), a
`kith serve` delivering mail to it, and the accounts named below. Each scenario prints one
line; any failure raises and exits non-zero with the page's text.

Accessibility: every page a scenario visits is checked with axe-core (vendored in
vendor/axe-core, nothing is downloaded) at a desktop and a phone width, and any serious or
critical WCAG 2.0/2.1/2.2 A or AA violation fails the run. When you add a page or a state of
one (an error, a notice), check it once it has loaded:

    visit_and_check(page, args.base_url + "/some/page", "some page")  # go there and check
    check_accessibility(page, "some page (error)")                    # the page as it is now

Names are what the output and a failure show; each distinct name counts once in the final
"ok: accessibility checked on N pages" line, and browser.rs requires at least as many pages
as are checked today. self_test_accessibility() proves the check finds violations at all.

    python3 browser_test.py --base-url http://127.0.0.1:PORT --mail-dir DIR \
        --professional EMAIL --password PASSWORD
"""

import argparse
import base64
import email
import email.policy
import hashlib
import hmac
import pathlib
import re
import struct
import sys
import tempfile
import time

from playwright.sync_api import expect, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


AXE_SOURCE = (pathlib.Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js").read_text()
# WCAG 2.0, 2.1 and 2.2, levels A and AA (axe-core's tags for its rules).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
FAILING_IMPACTS = {"serious", "critical"}
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 740}}
# The names of the pages checked, in order (a name checked twice is listed twice).
ACCESSIBILITY_CHECKED = []


def axe_violations(page):
    """axe-core's violations on the page as it is now (rule id, impact, help, node targets)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        # Evaluated through the DevTools protocol, not added as a <script>: Kith's
        # Content-Security-Policy (script-src 'none') rightly blocks an injected script tag.
        page.evaluate(AXE_SOURCE)
    return page.evaluate(
        """tags => axe.run(document, {runOnly: {type: 'tag', values: tags}}).then(results =>
            results.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                targets: v.nodes.map(node => node.target.map(String).join(' >> ')),
                summaries: v.nodes.map(node => node.failureSummary || ''),
            })))""",
        AXE_TAGS,
    )


# Kith's own check beside axe's rules, WCAG 1.4.10 (Reflow, AA): at 320 CSS pixels wide (a
# phone's 375 here) a page must not scroll sideways. A wide table scrolls in its own region.
SIDEWAYS = """() => {
    const width = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth <= width) return [];
    const sticksOut = element => element.getBoundingClientRect().right > width + 0.5;
    // Clipped by a scrolling ancestor (roughly: an absolutely positioned element may escape it).
    const clipped = element => {
        if (['absolute', 'fixed'].includes(getComputedStyle(element).position)) return false;
        for (let up = element.parentElement; up && up !== document.body; up = up.parentElement) {
            if (getComputedStyle(up).overflowX !== 'visible') return true;
        }
        return false;
    };
    const outside = [...document.body.querySelectorAll('*')].filter(element =>
        sticksOut(element) && !clipped(element)
        && (!sticksOut(element.parentElement) || clipped(element.parentElement)));
    const names = outside.map(element => element.tagName.toLowerCase()
        + (element.id ? '#' + element.id : '')
        + [...element.classList].map(name => '.' + name).join(''));
    return names.length ? names : ['(no one element found)'];
}"""


def reflow_violation(page):
    """The page's sideways scrolling as an axe-like violation, or None."""
    outside = page.evaluate(SIDEWAYS)
    if not outside:
        return None
    return {
        "id": "reflow (Kith's check, WCAG 1.4.10)",
        "impact": "serious",
        "help": "The page must not scroll sideways: these elements stick out of the viewport",
        "helpUrl": "https://www.w3.org/WAI/WCAG22/Understanding/reflow.html",
        "targets": outside,
        "summaries": [""] * len(outside),
    }


def describe_violation(width, violation):
    lines = [f"  [{width}] {violation['id']} ({violation['impact']}): {violation['help']} <{violation['helpUrl']}>"]
    for target, summary in zip(violation["targets"], violation["summaries"]):
        lines.append(f"      {target}")
        lines.extend(f"        {line}" for line in summary.splitlines() if line.strip())
    return "\n".join(lines)


def check_accessibility(page, name):
    """Runs axe-core on the page as it is now, at a desktop and then a phone width, and raises
    an AssertionError listing every serious or critical violation (rule id, impact, help and
    the failing elements), sideways scrolling included (reflow_violation). The viewport is
    restored afterwards. Records and prints `name`."""
    original = page.viewport_size
    failures = []
    try:
        for width, size in VIEWPORTS.items():
            page.set_viewport_size(size)
            for violation in axe_violations(page) + [reflow_violation(page)]:
                if not violation:
                    continue
                if violation["impact"] in FAILING_IMPACTS:
                    failures.append(describe_violation(width, violation))
                else:  # minor or moderate: shown, not failed
                    print(f"a11y note on {name}:\n{describe_violation(width, violation)}")
    finally:
        if original:
            page.set_viewport_size(original)
    if failures:
        raise AssertionError(
            f"accessibility violations on {name} ({page.url}):\n" + "\n".join(failures)
        )
    ACCESSIBILITY_CHECKED.append(name)
    print(f"a11y ok: {name} ({', '.join(VIEWPORTS)})")


def visit_and_check(page, url, name):
    """Goes to `url` and checks the page it shows (see check_accessibility)."""
    page.goto(url)
    check_accessibility(page, name)


def failed_check(page, name):
    """check_accessibility's report on a page that must fail it."""
    try:
        check_accessibility(page, name)
    except AssertionError as error:
        assert name not in ACCESSIBILITY_CHECKED, f"{name} counted as checked"
        return str(error)
    raise AssertionError(f"the accessibility check passed {name}")


def self_test_accessibility(context, base_url):
    """The check must fail on pages with known violations: a no-op check would not. One is
    written here; the other is Kith's sign-in page, under its Content-Security-Policy, with
    its email label taken away."""
    page = context.new_page()
    try:
        page.set_content(
            "<html><body><img src='data:,'><input type='text'>"
            "<p style='color:#bbb;background:#fff'>pale text</p>"
            "<div style='width:600px'>wider than a phone</div></body></html>"
        )
        report = failed_check(page, "a deliberately broken page")
        for rule in ["image-alt", "label", "color-contrast", "html-has-lang", "reflow"]:
            assert rule in report, f"the accessibility check did not report {rule}: {report}"
        assert "[desktop] image-alt (critical)" in report and "[phone] image-alt (critical)" in report, report
        assert "[desktop] reflow" not in report and "[phone] reflow" in report, report

        page.goto(base_url + "/sign-in")
        page.locator("label[for=email]").evaluate("label => label.remove()")
        report = failed_check(page, "sign-in without its email label")
        assert "label (critical)" in report and "#email" in report, report
    finally:
        page.close()
    print("ok: the accessibility check reports violations on broken pages")


def wait_for_mail(mail_dir: pathlib.Path, recipient: str, seen: set, timeout: float = 30.0):
    """The first message to `recipient` not seen before, as an email.message.EmailMessage."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(mail_dir.glob("*.eml")):
            if path in seen:
                continue
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if recipient.lower() in str(message["To"]).lower():
                seen.add(path)
                return message
        time.sleep(0.1)
    raise AssertionError(f"no email reached {recipient} within {timeout} s")


def totp(key_base32: str, step_offset: int = 0) -> str:
    """RFC 6238 (SHA-1, 30 s, 6 digits), as an authenticator app computes it."""
    key = base64.b32decode(key_base32.replace(" ", "") + "=" * (-len(key_base32.replace(" ", "")) % 8))
    step = int(time.time()) // 30 + step_offset
    digest = hmac.new(key, struct.pack(">q", step), hashlib.sha1).digest()
    offset = digest[19] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def sign_in(page, base_url, who, password):
    page.goto(base_url + "/")
    page.get_by_role("link", name="Sign in").first.click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email address").fill(who)
    page.get_by_label("Password").fill(password)
    # Keyboard use: Enter in the password field submits the form.
    page.get_by_label("Password").press("Enter")


def scenario_sign_in_and_out(page, args):
    visit_and_check(page, args.base_url + "/", "landing")
    visit_and_check(page, args.base_url + "/sign-in", "sign-in")
    # A wrong password: the error summary, focusable and announced.
    sign_in(page, args.base_url, args.professional, "not the right password")
    expect(page.get_by_role("alert")).to_contain_text("The email address or password is not right")
    expect(page.get_by_label("Email address")).to_have_value(args.professional)
    check_accessibility(page, "sign-in (error)")

    sign_in(page, args.base_url, args.professional, args.password)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello,")
    expect(page.get_by_label("Acting for")).to_be_visible()
    expect(page.locator("#team-switcher option")).to_contain_text(["Mental Health (coordinator)"])
    check_accessibility(page, "home (professional)")
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    session = cookies["kith_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax", session

    # The team switcher works without JavaScript: a plain form post.
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_text("You are acting for")).to_contain_text("Mental Health")
    check_accessibility(page, "home (team switched)")

    # The coordinator's pages from the navigation: the team's members and the password.
    page.get_by_role("link", name="Team members").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Mental Health: members")
    check_accessibility(page, "team members")
    page.get_by_role("link", name="Password", exact=True).click()
    expect(page.get_by_role("heading", name="Change your password")).to_be_visible()
    check_accessibility(page, "change password")
    page.get_by_label("Current password").fill("not the right password")
    page.get_by_role("button", name="Change my password").click()
    expect(page.get_by_role("alert")).to_be_visible()
    check_accessibility(page, "change password (error)")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You have signed out.")
    check_accessibility(page, "signed out")
    page.goto(args.base_url + "/")
    expect(page.get_by_role("link", name="Sign in").first).to_be_visible()
    assert "kith_session" not in {cookie["name"] for cookie in page.context.cookies()}
    print("ok: sign-in and sign-out")


def scenario_two_factor(page, args):
    who = args.second_professional
    sign_in(page, args.base_url, who, args.password)
    page.get_by_role("link", name="Two-step verification").click()
    qr = page.get_by_role("img", name="QR code for your authenticator app")
    expect(qr).to_be_visible()
    assert page.evaluate("img => img.naturalWidth > 0", qr.element_handle()), "the QR code renders"
    key = page.locator("#totp-key").inner_text()
    check_accessibility(page, "two-step verification set-up")
    page.get_by_label("Code from the app").fill(totp(key))
    page.get_by_role("button", name="Turn on two-step verification").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = page.get_by_role("list", name="Recovery codes").locator("code").all_inner_texts()
    assert len(codes) == 10, codes
    check_accessibility(page, "two-step verification recovery codes")
    page.get_by_role("button", name="Sign out").click()

    # Signing in now takes the password and then a code; the next step's code is accepted
    # (one step of drift) and is not the one used to enrol.
    sign_in(page, args.base_url, who, args.password)
    expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
    check_accessibility(page, "sign-in second step")
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    check_accessibility(page, "sign-in second step (error)")
    page.get_by_label("Code").fill(totp(key, step_offset=1))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello,")
    page.get_by_role("button", name="Sign out").click()

    # A recovery code instead of the app.
    sign_in(page, args.base_url, who, args.password)
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello,")
    page.get_by_role("button", name="Sign out").click()
    print("ok: two-step verification enrolment and sign-in")


def scenario_password_reset_by_email(page, args, seen):
    page.goto(args.base_url + "/sign-in")
    page.get_by_role("link", name="Forgotten your password?").click()
    expect(page.get_by_role("heading", name="Reset your password")).to_be_visible()
    check_accessibility(page, "password reset request")
    page.get_by_label("Email address").fill(args.professional)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("status")).to_contain_text("If an account uses that email address")
    check_accessibility(page, "password reset request (sent)")

    message = wait_for_mail(pathlib.Path(args.mail_dir), args.professional, seen)
    body = message.get_body(preferencelist=("plain",)).get_content()
    links = re.findall(re.escape(args.base_url) + r"/password-reset/[0-9a-f]{64}", body)
    assert links, f"no reset link in the email: {body!r}"

    new_password = "a brand new browser password"
    page.goto(links[0])
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    check_accessibility(page, "password reset form")
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("New password again").fill("a different password altogether")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("alert")).to_be_visible()
    check_accessibility(page, "password reset form (error)")
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("New password again").fill(new_password)
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password has been changed")
    check_accessibility(page, "password reset done")

    # The link works once.
    page.goto(links[0])
    expect(page.get_by_role("alert")).to_contain_text("This link has expired or has already been used")
    check_accessibility(page, "password reset link used")

    sign_in(page, args.base_url, args.professional, args.password)
    expect(page.get_by_role("alert")).to_contain_text("not right")
    sign_in(page, args.base_url, args.professional, new_password)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello,")
    args.password = new_password  # later scenarios sign in with the new one
    page.get_by_role("button", name="Sign out").click()
    print("ok: password reset by email")


def scenario_patient_registers(page, args, seen):
    """A patient invited by email registers with the emailed codes and their date of birth,
    walks through their teams, takes one label away from one team, and lands at home."""
    message = wait_for_mail(pathlib.Path(args.mail_dir), args.patient, seen)
    assert "birth" not in str(message["Subject"]).lower()
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert args.patient_birth_date not in body, "the date of birth is never sent"
    links = re.findall(re.escape(args.base_url) + r"/register\?code=[A-Z0-9]{16}", body)
    assert links, f"no registration link in the invitation: {body!r}"
    page.goto(links[0])
    expect(page.get_by_label("Invitation code")).not_to_have_value("")
    check_accessibility(page, "registration (codes and date of birth)")
    year, month, day = args.patient_birth_date.split("-")
    page.get_by_label("Day").fill(day)
    page.get_by_label("Month").fill(month)
    page.get_by_label("Year").fill(year)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello,")
    expect(page.get_by_label("Email address")).to_have_value(args.patient)
    check_accessibility(page, "registration (email and password)")
    password = "the patient's own long password"
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(password)
    page.get_by_role("button", name="Register").click()

    # The walkthrough: the welcome, then who sees what (the sharing page itself), then the end.
    expect(page.get_by_role("heading", name="Welcome to Kith")).to_be_visible()
    check_accessibility(page, "walkthrough welcome")
    page.get_by_role("link", name="Continue").click()
    expect(page.get_by_role("heading", name="Who sees what")).to_be_visible()
    expect(page.get_by_text("Step 2 of 3")).to_be_visible()
    check_accessibility(page, "walkthrough: who sees what")
    team = page.get_by_role("region", name=re.compile("Mental Health"))
    expect(team.get_by_label("mental health")).to_be_checked()
    team.get_by_label("mental health").uncheck()
    team.get_by_role("button", name=re.compile("Save")).click()
    expect(page.get_by_role("status")).to_contain_text("Your choice is saved")
    page.get_by_role("link", name="Continue").click()
    expect(page.get_by_role("heading", name="You're all set")).to_be_visible()
    check_accessibility(page, "walkthrough finished")
    page.get_by_role("button", name="Go to my home page").click()
    expect(page.get_by_role("heading", name="Who can see your record")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("Mental Health"))
    expect(row).to_contain_text("general health")
    expect(row).not_to_contain_text("mental health")
    check_accessibility(page, "home (patient)")
    page.get_by_role("button", name="Sign out").click()
    print("ok: a patient registers from an emailed invitation and walks through their teams")


def scenario_csv_upload(page, args, seen):
    """A coordinator uploads professionals from a CSV with one bad row: a preview, then the
    report; a new professional activates their account from the emailed link."""
    sign_in(page, args.base_url, args.professional, args.password)
    page.get_by_role("link", name="Add professionals").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Add professionals to Mental Health")
    check_accessibility(page, "CSV upload")
    csv = (
        "email,given name,family name,job title,professional registration number,role\r\n"
        "csv.one@example.org,Csv,One,Staff nurse,NMC 12A3456B,professional\r\n"
        "not-an-email,Bad,Row,Nurse,,professional\r\n"
        "csv.two@example.org,Csv,Two,Consultant,GMC 1234567,coordinator\r\n"
    )
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "staff.csv", "mimeType": "text/csv", "buffer": csv.encode()}]
    )
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Would invite 2, would add to team 0, already in team 0, already invited 0, errors 1"
    )
    bad = page.get_by_role("row", name=re.compile("not-an-email"))
    expect(bad).to_contain_text("3")
    expect(bad).to_contain_text("error")
    check_accessibility(page, "CSV upload preview")
    page.get_by_role("button", name="Add these professionals").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Invited 2, added to team 0, already in team 0, already invited 0, errors 1"
    )
    expect(page.get_by_role("row", name=re.compile("csv.one@example.org"))).to_contain_text("invited")
    check_accessibility(page, "CSV upload report")
    page.get_by_role("button", name="Sign out").click()

    message = wait_for_mail(pathlib.Path(args.mail_dir), "csv.one@example.org", seen)
    body = message.get_body(preferencelist=("plain",)).get_content()
    links = re.findall(re.escape(args.base_url) + r"/activate/[0-9a-f]{64}", body)
    assert links, f"no activation link: {body!r}"
    page.goto(links[0])
    expect(page.get_by_role("heading", name="Set your password")).to_be_visible()
    check_accessibility(page, "account activation")
    password = "csv one's own long password"
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(password)
    page.get_by_role("button", name="Set my password").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello, Csv One")
    # Activating accepted the invitation the link carried: a member of the team now.
    expect(page.get_by_role("row", name=re.compile("Mental Health"))).to_contain_text("professional")
    page.get_by_role("button", name="Sign out").click()
    print("ok: a coordinator uploads a CSV with one bad row and sees the report")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--mail-dir", required=True)
    parser.add_argument("--professional", required=True)
    parser.add_argument("--second-professional", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--patient", required=True)
    parser.add_argument("--patient-birth-date", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    seen = set()
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        console_errors = []
        page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
        try:
            self_test_accessibility(context, args.base_url)
            scenario_sign_in_and_out(page, args)
            context.clear_cookies()
            scenario_two_factor(page, args)
            context.clear_cookies()
            scenario_password_reset_by_email(page, args, seen)
            context.clear_cookies()
            scenario_patient_registers(page, args, seen)
            context.clear_cookies()
            scenario_csv_upload(page, args, seen)
        except Exception:
            print("page at failure:", page.url, file=sys.stderr)
            print(page.inner_text("body")[:2000], file=sys.stderr)
            raise
        finally:
            context.close()
        # A CSP violation (an inline script or style) shows up as a console error.
        assert not console_errors, f"console errors: {console_errors}"
    pages = len(set(ACCESSIBILITY_CHECKED))
    print(f"ok: accessibility checked on {pages} pages at desktop and phone widths")
    print("all browser scenarios passed")


if __name__ == "__main__":
    main()
