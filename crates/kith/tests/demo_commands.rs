//! Every command `kith demo` prints runs as printed, from the directory the demo was started
//! in, in another shell (no exported variables beyond those the demo itself prints), against
//! the demo's database and its server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The demo's output (stdout), once its server listens.
fn start_demo(directory: &Path, port: u16) -> (std::process::Child, String) {
    let stdout_file = directory.join("demo-output.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--patients", "30"])
        .current_dir(directory)
        .env_remove("KITH_DATABASE_URL")
        .env_remove("KITH_DATA_DIR")
        .env_remove("KITH_SECRET_KEY")
        .env_remove("KITH_OUTBOX_DIR")
        .env_remove("KITH_LOG")
        .stdout(std::fs::File::create(&stdout_file).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kith demo starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.contains("kith: listening on http://") {
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return (child, std::fs::read_to_string(&stdout_file).unwrap());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the demo did not start listening; last line: {line}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The shell commands in the demo's output: its indented lines that start with a command.
fn printed_commands(output: &str, kith: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .map(str::trim)
        .filter(|line| {
            line.starts_with(&format!("{kith} ")) || line.starts_with("curl ") || line.starts_with("export ")
        })
        .map(|line| line.split("        #").next().unwrap().trim_end().to_owned())
        .collect()
}

#[test]
fn every_command_the_demo_prints_runs_as_printed() {
    let directory = std::env::temp_dir().join(format!("kith-demo-commands-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    // A database the demo did not make is never replaced.
    std::fs::create_dir_all(directory.join("kith-data")).unwrap();
    std::fs::write(directory.join("kith-data/kith.db"), "someone's data").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["demo", "--no-serve", "--patients", "5"])
        .current_dir(&directory)
        .env_remove("KITH_DATABASE_URL")
        .env_remove("KITH_DATA_DIR")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("was not made by kith demo"), "{refused:?}");
    assert_eq!(std::fs::read_to_string(directory.join("kith-data/kith.db")).unwrap(), "someone's data");
    std::fs::remove_file(directory.join("kith-data/kith.db")).unwrap();

    let port = free_port();
    let (mut server, output) = start_demo(&directory, port);
    let kith = env!("CARGO_BIN_EXE_kith");
    let commands = printed_commands(&output, kith);
    let count = |prefix: &str| commands.iter().filter(|command| command.starts_with(prefix)).count();
    // What the guide promises: letters, two reads, break glass, the audit trail, a token and
    // three FHIR requests (if a line stops being printed, this says so).
    assert_eq!(count(&format!("{kith} letters export")), 1, "{output}");
    assert_eq!(count(&format!("{kith} record read")), 2, "{output}");
    assert_eq!(count(&format!("{kith} break-glass open")), 1, "{output}");
    assert_eq!(count(&format!("{kith} audit")), 2, "{output}");
    assert_eq!(count("export "), 1, "{output}");
    assert_eq!(count("curl "), 3, "{output}");

    // Each runs in a fresh shell with only what the lines printed before it exported.
    let mut exports = String::new();
    for command in &commands {
        if command.starts_with("export ") {
            exports.push_str(command);
            exports.push('\n');
            continue;
        }
        let result = Command::new("bash")
            .args(["-c", &format!("set -euo pipefail\n{exports}{command}")])
            .current_dir(&directory)
            .env_remove("KITH_DATABASE_URL")
            .env_remove("KITH_DATA_DIR")
            .env_remove("KITH_SECRET_KEY")
            .env_remove("KITH_TOKEN")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&result.stdout);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(result.status.success(), "{command}\nstdout: {stdout}\nstderr: {stderr}");
        if command.starts_with("curl ") {
            let expected = if command.contains("/metadata") { "\"CapabilityStatement\"" } else { "\"searchset\"" };
            assert!(stdout.contains(expected), "{command}: {stdout}");
            if !command.contains("/metadata") {
                assert!(stdout.contains("\"total\"") && !stdout.contains("\"total\":0"), "{command}: {stdout}");
            }
        } else if command.contains(" record read ") {
            assert!(stdout.contains("seen on the basis of:"), "{command}: {stdout}");
        } else if command.contains(" audit verify") {
            assert!(stdout.contains("intact"), "{command}: {stdout}");
        } else if command.contains(" letters export") {
            let pdf = std::fs::read(directory.join("kith-data/letters.pdf")).unwrap();
            assert!(pdf.starts_with(b"%PDF"), "{command}");
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();

    // A second demo replaces its own database (and letters) without being asked.
    let (mut again, _) = start_demo(&directory, free_port());
    assert!(!directory.join("kith-data/letters.pdf").exists());
    again.kill().unwrap();
    again.wait().unwrap();
    std::fs::remove_dir_all(&directory).unwrap();
}
