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
