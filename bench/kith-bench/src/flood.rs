//! `kith-bench sign-in-flood`: while many clients, each from its own loopback address, send
//! wrong passwords for unknown accounts as fast as they can (each costs the server an
//! Argon2id hash), how fast do other pages answer? Starts a real `kith serve` on a fresh
//! SQLite database and measures, before and during the flood, a signed-in person's home
//! page and the sign-in form, one request at a time every 20 ms.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::Failure;

pub const USAGE: &str = "\
usage: kith-bench sign-in-flood --kith PATH [--attackers 200] [--seconds 10]

Starts PATH (a kith binary) serving a fresh SQLite database, then measures the home page of
a signed-in person and the sign-in form (one request every 20 ms) for the same time without
and with a flood: --attackers clients, each from its own loopback address (127.1.x.y), each
posting wrong passwords for unknown addresses back to back.";

const PASSWORD: &str = "the observer's long password";

struct Options {
    kith: String,
    attackers: usize,
    seconds: u64,
}

fn options(args: &[String]) -> Result<Options, Failure> {
    let mut options = Options { kith: String::new(), attackers: 200, seconds: 10 };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().ok_or_else(|| Failure::Usage(format!("{arg} needs a value")));
        match arg.as_str() {
            "--kith" => options.kith = value()?,
            "--attackers" => {
                options.attackers = value()?.parse().map_err(|_| Failure::Usage("--attackers: a number".into()))?
            }
            "--seconds" => {
                options.seconds = value()?.parse().map_err(|_| Failure::Usage("--seconds: a number".into()))?
            }
            other => return Err(Failure::Usage(format!("unknown option {other}"))),
        }
    }
    if options.kith.is_empty() {
        return Err(Failure::Usage("--kith PATH is required".into()));
    }
    if !(1..=60_000).contains(&options.attackers) {
        return Err(Failure::Usage("--attackers: 1 to 60000".into()));
    }
    Ok(options)
}

/// Kills the server when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kith(
    options: &Options,
    database: &str,
    outbox: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<(), Failure> {
    let mut child = try_to!(
        "running kith",
        Command::new(&options.kith)
            .args(args)
            .env("KITH_DATABASE_URL", database)
            .env("KITH_OUTBOX_DIR", outbox)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
    );
    if let Some(input) = stdin {
        try_to!("writing to kith", child.stdin.take().expect("piped").write_all(input.as_bytes()));
    }
    drop(child.stdin.take());
    let output = try_to!("running kith", child.wait_with_output());
    if !output.status.success() {
        return Err(Failure::Run(format!("kith {args:?}: {}", String::from_utf8_lossy(&output.stderr))));
    }
    Ok(())
}

/// One HTTP/1.1 exchange from `source` (a connection per request): status, Set-Cookie
/// values, body.
async fn request(
    server: SocketAddr,
    source: Option<IpAddr>,
    text: String,
) -> std::io::Result<(u16, Vec<String>, String)> {
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let mut stream = socket.connect(server).await?;
    stream.write_all(text.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let cookies = head
        .lines()
        .filter_map(|line| line.strip_prefix("set-cookie: ").or_else(|| line.strip_prefix("Set-Cookie: ")))
        .map(|cookie| cookie.split(';').next().unwrap_or_default().to_owned())
        .collect();
    Ok((status, cookies, body.to_owned()))
}

fn get(server: SocketAddr, path: &str, cookie: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n")
}

fn post(server: SocketAddr, path: &str, cookie: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {server}\r\nOrigin: http://{server}\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn csrf_of(body: &str) -> String {
    body.split("name=\"csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default().to_owned()
}

/// Signs in as the observer; the session cookie.
async fn sign_in(server: SocketAddr) -> Result<String, Failure> {
    let (_, cookies, body) =
        try_to!("opening the sign-in form", request(server, None, get(server, "/sign-in", "")).await);
    let form = cookies.into_iter().find(|cookie| cookie.starts_with("kith_form=")).unwrap_or_default();
    let body = format!("csrf={}&email=observer%40example.org&password={}", csrf_of(&body), PASSWORD.replace(' ', "+"));
    let (status, cookies, _) =
        try_to!("signing in", request(server, None, post(server, "/sign-in", &form, &body)).await);
    cookies
        .into_iter()
        .find(|cookie| cookie.starts_with("kith_session="))
        .ok_or_else(|| Failure::Run(format!("the observer could not sign in (status {status})")))
}

#[derive(Default)]
struct Latencies {
    home: Vec<Duration>,
    form: Vec<Duration>,
    failures: usize,
}

/// Requests the home page and the sign-in form alternately every 20 ms for `length`.
async fn observe(server: SocketAddr, session: &str, length: Duration) -> Latencies {
    let mut latencies = Latencies::default();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut home = true;
    while started.elapsed() < length {
        tick.tick().await;
        let (path, cookie) = if home { ("/", session) } else { ("/sign-in", "") };
        let sent = Instant::now();
        let answer = request(server, None, get(server, path, cookie)).await;
        let took = sent.elapsed();
        match answer {
            Ok((200, _, body)) if !home || body.contains("Sign out") => {
                if home {
                    latencies.home.push(took)
                } else {
                    latencies.form.push(took)
                }
            }
            _ => latencies.failures += 1,
        }
        home = !home;
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn report(phase: &str, page: &str, times: &mut [Duration]) {
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {phase:<8} {page:<18} {:>6} requests   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
        times.len(),
        ms(percentile(times, 0.50)),
        ms(percentile(times, 0.99)),
        ms(times.last().copied().unwrap_or_default())
    );
}

pub fn run(args: &[String]) -> Result<(), Failure> {
    let options = options(args)?;
    let directory = try_to!("creating a temporary directory", tempfile::tempdir());
    let database = format!("sqlite://{}", directory.path().join("flood.db").display());
    let outbox = directory.path().join("outbox");
    kith(&options, &database, &outbox, &["org", "create", "--name", "Flood Hospital", "--code", "FLD"], None)?;
    kith(
        &options,
        &database,
        &outbox,
        &["team", "create", "--org", "FLD", "--name", "Ward", "--alias", "ward", "--labels", "general"],
        None,
    )?;
    kith(
        &options,
        &database,
        &outbox,
        &[
            "professional",
            "add",
            "--org",
            "FLD",
            "--team",
            "ward",
            "--email",
            "observer@example.org",
            "--name",
            "Observer",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    )?;
    let mut child = try_to!(
        "starting kith serve",
        Command::new(&options.kith)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-outbox-worker"])
            .env("KITH_DATABASE_URL", &database)
            .env("KITH_SECRET_KEY", "5a".repeat(32))
            .env("KITH_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
    );
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let server = Server(child);
    let mut line = String::new();
    let address = loop {
        line.clear();
        if try_to!("reading kith serve's output", stderr.read_line(&mut line)) == 0 {
            return Err(Failure::Run("kith serve stopped before listening".into()));
        }
        if let Some(address) = line.trim().strip_prefix("kith: listening on http://") {
            break try_to!("reading the address", address.parse::<SocketAddr>());
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));

    let runtime = try_to!("starting tokio", tokio::runtime::Builder::new_multi_thread().enable_all().build());
    let length = Duration::from_secs(options.seconds);
    runtime.block_on(async {
        let session = sign_in(address).await?;
        let mut before = observe(address, &session, length).await;

        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default()); // refused, throttled, busy, other
        let mut attackers = Vec::new();
        for index in 0..options.attackers {
            let source = IpAddr::V4(Ipv4Addr::new(127, 1, (index / 250) as u8, (index % 250 + 2) as u8));
            let (stop, counts) = (stop.clone(), counts.clone());
            attackers.push(tokio::spawn(async move {
                let mut attempt = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    attempt += 1;
                    let Ok((_, cookies, body)) = request(address, Some(source), get(address, "/sign-in", "")).await
                    else {
                        counts[3].fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let form = cookies.into_iter().find(|cookie| cookie.starts_with("kith_form=")).unwrap_or_default();
                    let body = format!(
                        "csrf={}&email=attacker{index}-{attempt}%40example.org&password=wrong+password+{attempt}",
                        csrf_of(&body)
                    );
                    let slot = match request(address, Some(source), post(address, "/sign-in", &form, &body)).await {
                        Ok((200, _, _)) => 0,
                        Ok((429, _, _)) => 1,
                        Ok((503, _, _)) => 2,
                        _ => 3,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let flood_started = Instant::now();
        let mut during = observe(address, &session, length).await;
        let flood_took = flood_started.elapsed();
        stop.store(true, Ordering::Relaxed);
        for attacker in attackers {
            let _ = attacker.await;
        }
        let [refused, throttled, busy, other] = [0, 1, 2, 3].map(|slot| counts[slot].load(Ordering::Relaxed));
        println!(
            "flood: {} attackers (one loopback address each) for {:.1} s: {} wrong-password attempts refused after \
             hashing ({:.0}/s), {} throttled per address (429), {} turned away busy (503), {} failed",
            options.attackers,
            flood_took.as_secs_f64(),
            refused,
            refused as f64 / flood_took.as_secs_f64(),
            throttled,
            busy,
            other
        );
        println!("other pages, one request every 20 ms ({} s each phase):", options.seconds);
        report("before", "home (signed in)", &mut before.home);
        report("before", "sign-in form", &mut before.form);
        report("during", "home (signed in)", &mut during.home);
        report("during", "sign-in form", &mut during.form);
        if before.failures + during.failures > 0 {
            println!("  observer requests that failed: {} before, {} during", before.failures, during.failures);
        }
        let mut all_during: Vec<Duration> = during.home.iter().chain(&during.form).copied().collect();
        all_during.sort_unstable();
        let p99 = percentile(&all_during, 0.99);
        println!(
            "goal: other pages p99 <= 50 ms during the flood: {:.2} ms, {}",
            p99.as_secs_f64() * 1000.0,
            if p99 <= Duration::from_millis(50) && during.failures == 0 { "met" } else { "NOT met" }
        );
        Ok::<(), Failure>(())
    })?;
    drop(server);
    Ok(())
}
