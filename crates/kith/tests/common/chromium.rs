//! What the Chromium suites share: the tools they need, the repository's root, a real SMTP
//! server, and children killed when a test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Debian's Chromium, which Playwright drives.
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

/// Chromium, Playwright and aiosmtpd (and `python_modules`, e.g. `hl7`), or what is missing.
pub fn browser_tools_present(python_modules: &[&str]) -> Result<(), String> {
    if !Path::new(CHROMIUM).exists() {
        return Err(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    let imports = ["playwright.sync_api", "aiosmtpd"].iter().chain(python_modules).copied().collect::<Vec<_>>();
    let python = Command::new("python3").args(["-c", &format!("import {}", imports.join(", "))]).output();
    match python {
        Ok(output) if output.status.success() => Ok(()),
        _ => Err(format!("the Python packages {} are missing (tests/python/requirements.txt)", imports.join(", "))),
    }
}

pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Kills a child process when dropped, so that a failing assertion leaves nothing running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real SMTP server (`tests/python/smtp_sink.py`, aiosmtpd) storing each message it
/// receives as a .eml file in `mail`; and its port.
pub fn start_smtp_sink(mail: &Path) -> (Running, u16) {
    let mut sink = Command::new("python3")
        .arg(repository_root().join("tests/python/smtp_sink.py"))
        .arg(mail)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the SMTP sink starts");
    let mut first_line = String::new();
    BufReader::new(sink.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
    let port = first_line.trim().parse().unwrap_or_else(|_| panic!("smtp_sink printed {first_line:?}"));
    (Running(sink), port)
}

/// `kith serve` on loopback with `extra` options, mailing through the SMTP server on
/// `smtp_port`; every scenario signs in from 127.0.0.1, so the per-address allowance is
/// larger than the default 10. The server, where it listens, and its base URL.
pub fn serve_with_mail(kith: &super::Kith<'_>, smtp_port: u16, extra: &[&str]) -> (Running, super::Listening, String) {
    let args = [&["serve", "--listen", "127.0.0.1:0", "--sign-in-burst", "100"][..], extra].concat();
    let mut serve = kith.command(&args);
    serve
        .env("KITH_SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}"))
        .env("KITH_MAIL_FROM", "Kith <kith@example.org>");
    let (server, listening) = super::start_server(&mut serve);
    let base_url = format!("http://{}", listening.http);
    (Running(server), listening, base_url)
}

/// Runs a Playwright script of `tests/python` against `base_url` with the mail folder and
/// `args`; its output, once it has succeeded.
pub fn run_browser_script(script: &str, base_url: &str, mail: &Path, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg(repository_root().join("tests/python").join(script))
        .args(["--base-url", base_url, "--mail-dir"])
        .arg(mail)
        .args(args)
        .args(["--chromium", CHROMIUM])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{script} failed");
    stdout
}
