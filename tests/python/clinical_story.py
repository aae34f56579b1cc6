"""The clinical workspace's story in real headless Chromium (driven by Playwright).

Run by crates/kith/tests/browser_clinical.rs, which feeds the patient over MLLP and starts
`kith serve` with a real SMTP server. Each step prints one line; a failure raises with the
page's text.
"""

import argparse
import csv
import io
import pathlib
import re
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from browser_test import ACCESSIBILITY_CHECKED, CHROMIUM_ARGS, check_accessibility, sign_in, wait_for_mail  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

NHS = "9434765870"
BIRTH = ("11", "2", "1980")
REASON = "Collapsed in the waiting room, needs her history urgently"
NO_MATCH = "No patient in your organisation matches that identifier and date of birth"

PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)

TITLES = {
    "general": "Full blood count",
    "sexual_health": "Chlamydia screen",
    "mental_health": "Depression questionnaire",
    "social_care": "Care needs assessment",
}


def entry(page, title):
    return page.get_by_role("heading", level=3, name=title)


def find(page, identifier, day, action="add", reason="", check=None):
    page.get_by_role("link", name="Find a patient", exact=True).first.click()
    if check:
        check_accessibility(page, check)
    page.get_by_label("NHS number or hospital number").fill(identifier)
    page.get_by_label("Day").fill(day)
    page.get_by_label("Month").fill(BIRTH[1])
    page.get_by_label("Year").fill(BIRTH[2])
    if action == "emergency":
        page.get_by_label("Emergency access (break the glass)").check()
        page.get_by_label("Why do you need emergency access?").fill(reason)
    else:
        page.get_by_label("Add the patient to my team").check()
        page.get_by_label("A referral to my team").check()
    page.get_by_role("button", name="Continue").click()


def sign_out(page):
    page.get_by_role("button", name="Sign out").click()


def story(page, context, args, seen):
    # A professional of Mental Health: a wrong date of birth and an unknown number.
    sign_in(page, args.base_url, args.professional, args.password)
    check_accessibility(page, "professional home")
    find(page, NHS, "12", check="find a patient")
    check_accessibility(page, "find a patient: no match")
    wrong_birth = page.get_by_role("alert").inner_text()
    find(page, "9434765889", BIRTH[0])
    unknown = page.get_by_role("alert").inner_text()
    assert NO_MATCH in wrong_birth, wrong_birth
    assert wrong_birth == unknown, (wrong_birth, unknown)
    print("ok: a wrong date of birth and an unknown number get the same answer")

    find(page, NHS, BIRTH[0])
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    expect(page.get_by_role("status")).to_contain_text("The patient is now in your team")
    expect(entry(page, TITLES["general"])).to_be_visible()
    expect(entry(page, TITLES["mental_health"])).to_be_visible()
    expect(entry(page, TITLES["sexual_health"])).to_have_count(0)
    expect(entry(page, TITLES["social_care"])).to_have_count(0)
    expect(page.get_by_text("Some entries are hidden by the patient's choice.")).to_be_visible()
    check_accessibility(page, "a patient's record (professional)")
    # A result shows its value, unit, range and flag.
    expect(page.get_by_role("row", name=re.compile("Haemoglobin"))).to_contain_text("101 g/L")
    # The corrected result shows its first version on request (no script needed).
    page.get_by_text(re.compile("Earlier versions \\(1\\)")).click()
    expect(page.get_by_text("Haemoglobin: 98 g/L")).to_be_visible()
    print("ok: the professional adds the patient and sees only the consented labels")

    page.get_by_label("Title of the entry").fill("Clinic review")
    page.get_by_label("The note").fill("Seen in clinic; mood improving.")
    page.get_by_role("button", name="Add the entry").click()
    expect(page.get_by_role("status")).to_contain_text("The entry has been added")
    expect(entry(page, "Clinic review")).to_be_visible()
    print("ok: the professional writes a note")

    # A PDF upload: the type is judged by content; a text file named .pdf is refused.
    page.get_by_label("Title of the document").fill("Clinic letter")
    page.get_by_label("File to upload").set_input_files(
        files=[{"name": "letter.pdf", "mimeType": "application/pdf", "buffer": b"not really a pdf"}]
    )
    page.get_by_role("button", name="Upload the document").click()
    expect(page.get_by_role("alert")).to_contain_text("The file is not a PDF, PNG or JPEG image")
    check_accessibility(page, "a patient's record: upload refused")
    page.get_by_label("Title of the document").fill("Clinic letter")
    page.get_by_label("File to upload").set_input_files(
        files=[{"name": "clinic letter.pdf", "mimeType": "application/pdf", "buffer": PDF}]
    )
    page.get_by_role("button", name="Upload the document").click()
    expect(page.get_by_role("status")).to_contain_text("The document has been added")
    expect(entry(page, "Clinic letter")).to_be_visible()
    print("ok: the professional uploads a PDF")
    record_url = page.url.split("?")[0]
    page.goto(record_url + "/discharge")
    check_accessibility(page, "discharge confirmation")
    page.get_by_role("link", name="Patients", exact=True).first.click()
    check_accessibility(page, "the team's patients")
    page.get_by_label("Search this team's patients").fill("lovelace")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name=re.compile("LOVELACE"))).to_be_visible()
    check_accessibility(page, "the team's patients: a search")
    sign_out(page)
    context.clear_cookies()

    # The patient registers from the emailed invitation and sees everything.
    message = wait_for_mail(pathlib.Path(args.mail_dir), args.patient, seen)
    body = message.get_body(preferencelist=("plain",)).get_content()
    links = re.findall(re.escape(args.base_url) + r"/register\?code=[A-Z0-9]{16}", body)
    assert links, f"no registration link in the invitation: {body!r}"
    page.goto(links[0])
    page.get_by_label("Day").fill(BIRTH[0])
    page.get_by_label("Month").fill(BIRTH[1])
    page.get_by_label("Year").fill(BIRTH[2])
    page.get_by_role("button", name="Continue").click()
    password = "ada's own long password"
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(password)
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", name="Welcome to Kith")).to_be_visible()
    page.get_by_role("link", name="Continue").click()
    expect(page.get_by_role("heading", name="Who sees what")).to_be_visible()
    page.get_by_role("link", name="Continue").click()
    page.get_by_role("button", name="Go to my home page").click()
    check_accessibility(page, "patient home")
    page.get_by_role("link", name="My record").first.click()
    check_accessibility(page, "the patient's record")
    for title in list(TITLES.values()) + ["Clinic review", "Clinic letter"]:
        expect(entry(page, title)).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Open the document")).first.click()
    assert pathlib.Path(download.value.path()).read_bytes() == PDF
    print("ok: the patient registers and sees everything")

    page.get_by_role("link", name="Notifications").first.click()
    check_accessibility(page, "notification settings")
    page.get_by_role("link", name="Sharing").first.click()
    check_accessibility(page, "sharing")
    team = page.get_by_role("region", name=re.compile("Mental Health"))
    team.get_by_label("mental health").uncheck()
    team.get_by_role("button", name=re.compile("Save")).click()
    expect(page.get_by_role("status")).to_contain_text("Your choice is saved")
    check_accessibility(page, "sharing: saved")
    sign_out(page)
    context.clear_cookies()

    sign_in(page, args.base_url, args.professional, args.password)
    check_accessibility(page, "professional home: since the last visit")
    page.get_by_role("link", name="Patients", exact=True).first.click()
    page.get_by_role("link", name=re.compile("LOVELACE")).click()
    expect(entry(page, TITLES["general"])).to_be_visible()
    expect(entry(page, TITLES["mental_health"])).to_have_count(0)
    print("ok: the patient takes mental health away and the team loses it at once")
    sign_out(page)
    context.clear_cookies()

    # A professional of the Emergency Department breaks the glass.
    sign_in(page, args.base_url, args.emergency, args.password)
    find(page, NHS, BIRTH[0], action="emergency", reason="")
    expect(page.get_by_role("alert")).to_contain_text("Say why you need emergency access")
    check_accessibility(page, "find a patient: emergency access without a reason")
    find(page, NHS, BIRTH[0], action="emergency", reason=REASON)
    expect(page.get_by_role("region", name="Emergency access")).to_contain_text("Emergency access is on")
    for title in TITLES.values():
        expect(entry(page, title)).to_be_visible()
    check_accessibility(page, "a record under emergency access, with the banner")
    page.get_by_role("link", name="Patients", exact=True).first.click()
    expect(page.get_by_role("region", name="Emergency access")).to_be_visible()
    print("ok: another team breaks the glass, with the banner")
    sign_out(page)
    context.clear_cookies()

    # The patient sees it in the access log, with the reason, and downloads the log.
    sign_in(page, args.base_url, args.patient, password)
    expect(page.get_by_role("heading", name=re.compile("Since your last visit"))).to_be_visible()
    check_accessibility(page, "patient home: since the last visit")
    page.get_by_role("link", name="Who has looked").first.click()
    check_accessibility(page, "the access log")
    row = page.get_by_role("row", name=re.compile("opened emergency access")).first
    expect(row).to_contain_text("Emergency access:")
    expect(row).to_contain_text(REASON)
    expect(row).to_contain_text("Emergency Department")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download")).click()
    content = pathlib.Path(download.value.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(content)))
    assert any(r["emergency access"] == "yes" and r["reason given"] == REASON for r in rows), content
    print("ok: the patient sees the emergency access and its reason, and downloads the log")
    sign_out(page)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--mail-dir", required=True)
    parser.add_argument("--professional", required=True)
    parser.add_argument("--emergency", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--patient", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    seen = set()
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS, accept_downloads=True
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        console_errors = []
        page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
        try:
            story(page, context, args, seen)
        except Exception:
            print("page at failure:", page.url, file=sys.stderr)
            print(page.inner_text("body")[:3000], file=sys.stderr)
            raise
        finally:
            context.close()
        assert not console_errors, f"console errors: {console_errors}"
    print(f"ok: accessibility checked on {len(ACCESSIBILITY_CHECKED)} pages at desktop and phone widths")
    print("the clinical story passed")


if __name__ == "__main__":
    main()
