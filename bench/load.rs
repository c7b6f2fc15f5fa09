//! Loopback load benchmark of the control plane: `bench/run` (or
//! `cargo bench --bench load -- [--quick] [--server NAME=PATH]... [--out DIR]`).
//!
//! Each `carillon serve` under test runs as its own process (release build, request logging
//! off, a fresh data directory), so its CPU time (`/proc/<pid>/stat`) and peak RSS (`VmHWM`) are
//! its own. Requests are real SigV4 signatures (the `aws-sigv4` crate, as the SDKs sign),
//! made before the timed window: replayed as they are for reads (a signature stays valid for 15
//! minutes, longer than a run), one unique request each for writes. Several `--server`s (e.g.
//! builds of two commits) are measured one after the other in the same run, against the same
//! baselines:
//! - nginx (Debian's `nginx-light`) serving a static file of exactly the size of the
//!   ListAttendees body, loaded by the same generator;
//! - the server's own unauthenticated `GET /healthz` (the HTTP floor);
//! - raw durable SQLite inserts (WAL, synchronous=FULL, one transaction per row) in the same
//!   file system as the data directories (the storage floor).
//!
//! Closed loop: `CONNECTIONS` keep-alive connections, each sending its next request when the
//! last is answered, for a fixed time or until its bounded supply of unique requests is spent.
//! Open loop: a fixed arrival rate (half the closed-loop peak) spread over the connections,
//! latency counted from each request's scheduled time (no coordinated omission).
//!
//! Everything targets 127.0.0.1, is bounded in count and time, and stops by itself. Timings are
//! reported, never asserted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

#[path = "proc.rs"]
mod proc;
#[path = "scale_out.rs"]
mod scale_out;
use proc::{cpu_seconds, status_bytes};

const ACCESS_KEY_ID: &str = "AKIDCARILLONBENCH";
const SECRET: &str = "carillon-bench-secret";
const CONNECTIONS: usize = 16;
const PAGE: usize = 100;

struct Settings {
    quick: bool,
    /// Length of each timed measurement.
    run_for: Duration,
    /// Unique CreateAttendee requests signed per closed-loop run.
    creates: usize,
    /// BatchCreateAttendee requests (100 attendees each) per run.
    batches: usize,
    /// CreateMeeting requests per run.
    meetings: usize,
    /// Meetings × 250 attendees of the large store.
    large_meetings: usize,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Settings {
                quick,
                run_for: Duration::from_millis(1500),
                creates: 40_000,
                batches: 200,
                meetings: 600,
                large_meetings: 200,
            }
        } else {
            Settings {
                quick,
                run_for: Duration::from_secs(5),
                creates: 120_000,
                batches: 1_500,
                meetings: 2_500,
                large_meetings: 4_000,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// A complete HTTP/1.1 request, signed with the `aws-sigv4` crate at `time`.
fn signed(addr: SocketAddr, method: &str, path: &str, body: &[u8], time: SystemTime) -> Vec<u8> {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let mut headers = vec![("host".to_string(), addr.to_string())];
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let identity = Credentials::new(ACCESS_KEY_ID, SECRET, None, None, "bench").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("chime")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let signable = SignableRequest::new(
        method,
        format!("http://{addr}{path}"),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(instructions.headers())
    {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Signs many requests on all cores, before any timed window.
fn sign_all(addr: SocketAddr, specs: Vec<(&'static str, String, Vec<u8>)>) -> Vec<Vec<u8>> {
    in_turn(|| sign_all_now(addr, specs))
}

fn sign_all_now(addr: SocketAddr, specs: Vec<(&'static str, String, Vec<u8>)>) -> Vec<Vec<u8>> {
    let now = SystemTime::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = specs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(m, p, b)| signed(addr, m, p, b, now))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signer"))
            .collect()
    })
}

fn plain_get(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Taking turns

/// Servers under test are benchmarked by one thread each, taking turns: every step that loads
/// the machine (signing, a load run, a setup call) runs alone, and the turn passes to the next
/// server after each step. As all run the same steps, every measurement of one server sits next
/// to the same measurement of the others, so a noisy neighbour on a shared machine skews them
/// alike.
struct Turns {
    state: std::sync::Mutex<(usize, Vec<bool>)>,
    changed: std::sync::Condvar,
}

static TURNS: std::sync::OnceLock<Turns> = std::sync::OnceLock::new();

thread_local! {
    /// The index and name of the server this thread benchmarks.
    static WHO: std::cell::RefCell<Option<(usize, String)>> = const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// Connections of this thread's next load runs (`CONNECTIONS` unless changed).
    static CONNS: std::cell::Cell<usize> = const { std::cell::Cell::new(CONNECTIONS) };
}

/// Runs `f` with its load runs on `n` connections.
fn with_connections<R>(n: usize, f: impl FnOnce() -> R) -> R {
    let before = CONNS.with(|c| c.replace(n));
    let result = f();
    CONNS.with(|c| c.set(before));
    result
}

fn who() -> Option<(usize, String)> {
    WHO.with(|w| w.borrow().clone())
}

impl Turns {
    fn advance(state: &mut (usize, Vec<bool>)) {
        let n = state.1.len();
        for step in 1..=n {
            let next = (state.0 + step) % n;
            if !state.1[next] {
                state.0 = next;
                return;
            }
        }
    }
}

/// Runs `f` in this thread's turn (at once outside the per-server threads).
fn in_turn<R>(f: impl FnOnce() -> R) -> R {
    let (Some(turns), Some((me, _))) = (TURNS.get(), who()) else {
        return f();
    };
    let mut state = turns.state.lock().expect("turns");
    while state.0 != me {
        state = turns.changed.wait(state).expect("turns");
    }
    drop(state);
    let result = f();
    let mut state = turns.state.lock().expect("turns");
    Turns::advance(&mut state);
    turns.changed.notify_all();
    result
}

/// Marks a server's thread finished (also when it panics), so the others no longer wait for it.
struct Finished;

impl Drop for Finished {
    fn drop(&mut self) {
        if let (Some(turns), Some((me, _))) = (TURNS.get(), who()) {
            let mut state = turns.state.lock().unwrap_or_else(|e| e.into_inner());
            state.1[me] = true;
            if state.0 == me {
                Turns::advance(&mut state);
            }
            turns.changed.notify_all();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The load engine

struct Conn {
    addr: SocketAddr,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            addr,
            stream,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Sends one request and reads its response: the status and the body.
    fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, &[u8])> {
        self.stream.write_all(request)?;
        let mut filled = 0;
        loop {
            if filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.stream.read(&mut self.buf[filled..])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
            let Some(head_end) = find(&self.buf[..filled], b"\r\n\r\n") else {
                continue;
            };
            let head = std::str::from_utf8(&self.buf[..head_end]).unwrap_or("");
            let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            let end = head_end + 4 + length;
            if self.buf.len() < end {
                self.buf.resize(end, 0);
            }
            while filled < end {
                let n = self.stream.read(&mut self.buf[filled..end])?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                filled += n;
            }
            return Ok((status, &self.buf[head_end + 4..end]));
        }
    }

    fn reconnect(&mut self) {
        *self = Conn::open(self.addr);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What requests a run sends.
#[derive(Clone)]
enum Supply {
    /// The same request again and again.
    Replay(Arc<Vec<u8>>),
    /// Each request once, in order; the run ends when they are spent.
    Once(Arc<Vec<Vec<u8>>>, Arc<AtomicUsize>),
}

impl Supply {
    fn once(requests: Vec<Vec<u8>>) -> Supply {
        Supply::Once(Arc::new(requests), Arc::new(AtomicUsize::new(0)))
    }

    fn next(&self) -> Option<(usize, &[u8])> {
        match self {
            Supply::Replay(r) => Some((0, r)),
            Supply::Once(all, next) => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                all.get(i).map(|r| (i, r.as_slice()))
            }
        }
    }
}

#[derive(Default)]
struct Outcome {
    latencies_us: Vec<u32>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// Bodies of the answered requests, by request index, when asked for.
    captured: Vec<(usize, Vec<u8>)>,
    /// CPU seconds over the run: the whole machine busy, and this load generator's own.
    machine_cpu: f64,
    generator_cpu: f64,
}

impl Outcome {
    fn merge(parts: Vec<Outcome>, elapsed: Duration) -> Outcome {
        let mut all = Outcome {
            elapsed,
            ..Outcome::default()
        };
        for p in parts {
            all.latencies_us.extend(p.latencies_us);
            all.errors += p.errors;
            all.first_error = all.first_error.or(p.first_error);
            all.captured.extend(p.captured);
        }
        all
    }
}

/// Runs `supply` over `CONNECTIONS` connections for `run_for` (or until spent): closed loop when
/// `rate` is None, else open loop at `rate` requests per second.
fn load(
    addr: SocketAddr,
    supply: &Supply,
    run_for: Duration,
    rate: Option<f64>,
    expect: u16,
    capture: bool,
) -> Outcome {
    in_turn(|| load_now(&[(addr, supply.clone())], run_for, rate, expect, capture))
}

/// The load run itself: connection i sends `targets[i mod n]`'s requests to its address (one
/// target for one server; several to spread the load over nodes, as a round-robin balancer).
fn load_now(
    targets: &[(SocketAddr, Supply)],
    run_for: Duration,
    rate: Option<f64>,
    expect: u16,
    capture: bool,
) -> Outcome {
    let connections = CONNS.with(|c| c.get());
    let (machine_before, generator_before) = (machine_busy_seconds(), own_cpu_seconds());
    let started = Instant::now();
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                let (addr, supply) = targets[c % targets.len()].clone();
                scope.spawn(move || {
                    let mut conn = Conn::open(addr);
                    let mut out = Outcome::default();
                    let mut k = 0u64;
                    loop {
                        // Open loop: this connection's k-th arrival.
                        let scheduled = match rate {
                            None => Instant::now(),
                            Some(rate) => {
                                let at = started
                                    + Duration::from_secs_f64(
                                        (k as f64 * connections as f64 + c as f64) / rate,
                                    );
                                k += 1;
                                let now = Instant::now();
                                if at > now {
                                    std::thread::sleep(at - now);
                                }
                                at
                            }
                        };
                        if started.elapsed() >= run_for {
                            break;
                        }
                        let Some((index, request)) = supply.next() else {
                            break;
                        };
                        match conn.exchange(request) {
                            Ok((status, body)) => {
                                out.latencies_us
                                    .push(scheduled.elapsed().as_micros().min(u32::MAX as u128)
                                        as u32);
                                if status != expect {
                                    out.errors += 1;
                                    out.first_error.get_or_insert_with(|| {
                                        format!("{status}: {}", String::from_utf8_lossy(body))
                                    });
                                } else if capture {
                                    out.captured.push((index, body.to_vec()));
                                }
                            }
                            Err(e) => {
                                out.errors += 1;
                                out.first_error.get_or_insert_with(|| e.to_string());
                                conn.reconnect();
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("load thread"))
            .collect::<Vec<_>>()
    });
    let mut outcome = Outcome::merge(parts, started.elapsed());
    outcome.machine_cpu = machine_busy_seconds() - machine_before;
    outcome.generator_cpu = own_cpu_seconds() - generator_before;
    outcome
}

// ---------------------------------------------------------------------------------------------
// Processes

/// CPU seconds (user + system) of this process alone: the load generator's own cost, which on
/// a machine of few cores competes with the server it loads.
fn own_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<u64> = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(2)
                .map_while(|f| f.parse().ok())
                .collect();
            Some(fields.iter().sum::<u64>() as f64 / 100.0) // USER_HZ
        })
        .unwrap_or(0.0)
}

/// Seconds of CPU the whole machine spent busy (every core, every process and the kernel's
/// interrupt work; not idle, not waiting for I/O), from /proc/stat. Divided by a run's length it
/// says how many of the machine's cores were in use: a row whose figure is near the core count
/// was bounded by the CPU, whoever used it.
fn machine_busy_seconds() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().find(|l| l.starts_with("cpu "))?;
            let ticks: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .map_while(|f| f.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            let busy: u64 = ticks
                .iter()
                .take(8)
                .enumerate()
                .filter(|(i, _)| *i != 3 && *i != 4)
                .map(|(_, t)| t)
                .sum();
            Some(busy as f64 / 100.0) // USER_HZ
        })
        .unwrap_or(0.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn wait_until_up(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        if let Ok(mut conn) = TcpStream::connect(addr).map(|stream| Conn {
            addr,
            stream,
            buf: vec![0; 4096],
        }) && conn.exchange(&plain_get(addr, "/healthz")).is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the child when dropped, so no run leaves a server behind: SIGTERM first (nginx's
/// master then stops its workers, which a SIGKILL would orphan), SIGKILL after 5 seconds.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `carillon serve` on a free port, with `env` added to the benchmark's settings.
fn start_carillon(binary: &Path, data_dir: &Path, env: &[(&str, String)]) -> (Guard, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut child = Command::new(binary)
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .env("CARILLON_LISTEN", addr.to_string())
        .env("CARILLON_DATA_DIR", data_dir)
        .env("CARILLON_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("CARILLON_SECRET_ACCESS_KEY", SECRET)
        .env("CARILLON_ACCOUNT_ID", "111122223333")
        .env("CARILLON_MAX_ATTENDEES", "10000")
        .env("CARILLON_DEMO", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    wait_until_up(addr, &mut child, "carillon");
    (Guard(child), addr)
}

/// nginx serving `dir/www/page.json` from a config of its own in `dir`.
fn start_nginx(nginx: &Path, dir: &Path) -> (Guard, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let d = dir.display();
    let config = format!(
        "user root;\nworker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000000;\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  default_type application/json;\n\
         server {{ listen {addr}; root {d}/www; }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), config).expect("nginx.conf");
    let mut child = Command::new(nginx)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", nginx.display()));
    // nginx has no /healthz: wait for the port, then for the file.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nginx exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Guard(child), addr)
}

// ---------------------------------------------------------------------------------------------
// Measurements

#[derive(Clone)]
struct Row {
    name: String,
    requests: usize,
    errors: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    /// Server CPU over the run, in cores (1.0 = one core busy).
    cpu_cores: f64,
    /// Server CPU per request, in microseconds.
    cpu_us_per_request: f64,
    /// The load generator's CPU and the whole machine's busy CPU over the run, in cores.
    generator_cpu_cores: f64,
    machine_cpu_cores: f64,
    /// The offered rate of an open-loop run.
    offered: Option<f64>,
}

impl Row {
    fn json(&self) -> Value {
        json!({
            "name": self.name, "requests": self.requests, "errors": self.errors,
            "per_second": round(self.per_second, 1), "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3), "p999_ms": round(self.p999_ms, 3),
            "server_cpu_cores": round(self.cpu_cores, 2),
            "server_cpu_us_per_request": round(self.cpu_us_per_request, 1),
            "generator_cpu_cores": round(self.generator_cpu_cores, 2),
            "machine_cpu_cores": round(self.machine_cpu_cores, 2),
            "offered_per_second": self.offered.map(|r| round(r, 0)),
        })
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn measure(
    name: &str,
    pid: u32,
    addr: SocketAddr,
    supply: &Supply,
    run_for: Duration,
    rate: Option<f64>,
    expect: u16,
) -> (Row, Outcome) {
    let cpu_before = cpu_seconds(pid);
    let mut out = load(addr, supply, run_for, rate, expect, false);
    let cpu = cpu_seconds(pid) - cpu_before;
    let row = summarize(name, &mut out, cpu, rate);
    print_row(&row);
    (row, out)
}

fn summarize(name: &str, out: &mut Outcome, cpu: f64, rate: Option<f64>) -> Row {
    out.latencies_us.sort_unstable();
    let pick = |q: f64| {
        let l = &out.latencies_us;
        l.get(((l.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1e3
    };
    let requests = out.latencies_us.len();
    if let Some(e) = &out.first_error {
        eprintln!(
            "  !! {name}: {} errors; first: {}",
            out.errors,
            e.chars().take(300).collect::<String>()
        );
    }
    Row {
        name: name.to_string(),
        requests,
        errors: out.errors,
        per_second: requests as f64 / out.elapsed.as_secs_f64(),
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        p999_ms: pick(0.999),
        cpu_cores: cpu / out.elapsed.as_secs_f64(),
        cpu_us_per_request: if requests > 0 {
            cpu * 1e6 / requests as f64
        } else {
            0.0
        },
        generator_cpu_cores: out.generator_cpu / out.elapsed.as_secs_f64(),
        machine_cpu_cores: out.machine_cpu / out.elapsed.as_secs_f64(),
        offered: rate,
    }
}

/// A heading, printed once for all servers.
fn section(text: &str) {
    if who().is_none_or(|(i, _)| i == 0) {
        println!("  -- {text}");
    }
}

fn print_row(r: &Row) {
    println!(
        "  {:<10} {:<44} {:>9.0} req/s  p50 {:>6.2}  p99 {:>6.2}  p99.9 {:>6.2} ms  cpu {:>4.2} cores {:>6.1} us/req  generator {:>4.2}  machine {:>4.2} cores{}",
        who().map_or_else(|| "baseline".to_string(), |(_, name)| name),
        r.name,
        r.per_second,
        r.p50_ms,
        r.p99_ms,
        r.p999_ms,
        r.cpu_cores,
        r.cpu_us_per_request,
        r.generator_cpu_cores,
        r.machine_cpu_cores,
        if r.errors > 0 {
            format!("  ERRORS {}", r.errors)
        } else {
            String::new()
        }
    );
}

/// Finds every `"<key>":"<value>"` in a JSON body.
fn string_values(body: &[u8], key: &str) -> Vec<String> {
    let needle = format!("\"{key}\":\"");
    let text = String::from_utf8_lossy(body);
    text.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = text.get(i + needle.len()..)?;
            rest.split_once('"').map(|(v, _)| v.to_string())
        })
        .collect()
}

/// One signed request, sent at once (setup, not timed).
fn call(addr: SocketAddr, method: &'static str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    in_turn(|| call_now(addr, method, path, body))
}

fn call_now(addr: SocketAddr, method: &'static str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let request = signed(addr, method, path, body, SystemTime::now());
    let mut conn = Conn::open(addr);
    let (status, body) = conn.exchange(&request).expect("setup request");
    (status, body.to_vec())
}

fn create_meeting_spec(tag: &str, i: usize) -> (&'static str, String, Vec<u8>) {
    (
        "POST",
        "/meetings".to_string(),
        json!({
            "ClientRequestToken": format!("{tag}-{i}-{}", std::process::id()),
            "MediaRegion": "us-east-1",
            "ExternalMeetingId": format!("{tag}-{i}"),
        })
        .to_string()
        .into_bytes(),
    )
}

fn batch_spec(meeting: &str, tag: &str, n: usize) -> (&'static str, String, Vec<u8>) {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({ "ExternalUserId": format!("{tag}-{i}") }))
        .collect();
    (
        "POST",
        format!("/meetings/{meeting}/attendees?operation=batch-create"),
        json!({ "Attendees": items }).to_string().into_bytes(),
    )
}

/// Creates meetings with a closed-loop CreateMeeting run and returns the run and their ids.
fn create_meetings(
    name: &str,
    pid: u32,
    addr: SocketAddr,
    tag: &str,
    count: usize,
) -> (Row, Vec<String>) {
    let specs = (0..count).map(|i| create_meeting_spec(tag, i)).collect();
    let supply = Supply::once(sign_all(addr, specs));
    let cpu_before = cpu_seconds(pid);
    let mut out = load(addr, &supply, Duration::from_secs(600), None, 200, true);
    let cpu = cpu_seconds(pid) - cpu_before;
    let row = summarize(name, &mut out, cpu, None);
    print_row(&row);
    let ids = out
        .captured
        .iter()
        .filter_map(|(_, body)| string_values(body, "MeetingId").into_iter().next())
        .collect();
    (row, ids)
}

/// Fills meetings with BatchCreateAttendee (100 a call); returns the run and (meeting,
/// attendee) pairs created.
fn fill_meetings(
    name: &str,
    pid: u32,
    addr: SocketAddr,
    meetings: &[String],
    per_meeting: usize,
    run_for: Duration,
) -> (Row, Vec<(String, String)>) {
    let mut specs = Vec::new();
    let mut owners = Vec::new();
    for m in meetings {
        for start in (0..per_meeting).step_by(PAGE) {
            specs.push(batch_spec(
                m,
                &format!("u{start}"),
                PAGE.min(per_meeting - start),
            ));
            owners.push(m.clone());
        }
    }
    let supply = Supply::once(sign_all(addr, specs));
    let cpu_before = cpu_seconds(pid);
    let mut out = load(addr, &supply, run_for, None, 200, true);
    let cpu = cpu_seconds(pid) - cpu_before;
    let row = summarize(name, &mut out, cpu, None);
    print_row(&row);
    let mut created = Vec::new();
    for (index, body) in &out.captured {
        if let Some(m) = owners.get(*index) {
            for a in string_values(body, "AttendeeId") {
                created.push((m.clone(), a));
            }
        }
    }
    (row, created)
}

/// Serial durable inserts into a fresh SQLite file: one transaction per row, fsync on commit.
fn sqlite_insert_floor(dir: &Path, run_for: Duration) -> Row {
    let conn = rusqlite::Connection::open(dir.join("floor.db")).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT NOT NULL)")
        .expect("table");
    let started = Instant::now();
    let mut out = Outcome::default();
    let mut i = 0u64;
    while started.elapsed() < run_for {
        let t = Instant::now();
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            rusqlite::params![uuid::Uuid::new_v4().to_string(), i],
        )
        .expect("insert");
        out.latencies_us.push(t.elapsed().as_micros() as u32);
        i += 1;
    }
    out.elapsed = started.elapsed();
    let row = summarize(
        "raw durable SQLite insert (storage floor)",
        &mut out,
        0.0,
        None,
    );
    print_row(&row);
    row
}

struct ServerResult {
    name: String,
    rows: Vec<Row>,
    facts: serde_json::Map<String, Value>,
}

impl ServerResult {
    fn get(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }
}

const HEALTHZ: &str = "GET /healthz (HTTP floor)";
const GET: &str = "GetAttendee";
const LIST: &str = "ListAttendees 100 of 250";
const LIST_FIRST: &str = "ListAttendees 10k meeting, first page";
const LIST_LAST: &str = "ListAttendees 10k meeting, last page";
const CREATE: &str = "CreateAttendee";
const CREATE_WIDE_CONNECTIONS: usize = 64;
const CREATE_WIDE: &str = "CreateAttendee, 64 connections";
const BATCH: &str = "BatchCreateAttendee (100)";
const CREATE_MEETING: &str = "CreateMeeting";
const DELETE: &str = "DeleteAttendee";
const LIST_HALF: &str = "ListAttendees 100 of 250 @ half peak (open loop)";
const GET_HALF: &str = "GetAttendee @ half peak (open loop)";
const CREATE_HALF: &str = "CreateAttendee @ half peak (open loop)";
const CREATE_SWEEP: &str = "CreateAttendee @ half peak while the store's meetings end";
const LIST_LARGE: &str = "ListAttendees 100 of 250, large store";
const GET_LARGE: &str = "GetAttendee, large store";

/// Moves the server's manual clock forward; returns the meetings that ended.
fn advance_clock(addr: SocketAddr, seconds: u64) -> usize {
    let body = json!({ "advance_seconds": seconds }).to_string();
    let (status, answer) = call_now(addr, "POST", "/_carillon/clock", body.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    serde_json::from_slice::<Value>(&answer)
        .ok()
        .and_then(|v| v["ended_meetings"].as_array().map(Vec::len))
        .unwrap_or(0)
}

struct Sweep {
    ended: usize,
    seconds: f64,
}

/// An open-loop run of `supply` while the clock moves two more minutes, ending every meeting
/// created before the last advance (the clock call answers once all have ended).
fn measure_during_sweep(
    name: &str,
    pid: u32,
    addr: SocketAddr,
    supply: &Supply,
    run_for: Duration,
    rate: f64,
) -> (Row, Sweep) {
    in_turn(|| {
        let cpu_before = cpu_seconds(pid);
        let sweep = std::thread::spawn(move || {
            let started = Instant::now();
            (advance_clock(addr, 120), started.elapsed().as_secs_f64())
        });
        let mut out = load_now(&[(addr, supply.clone())], run_for, Some(rate), 200, false);
        let cpu = cpu_seconds(pid) - cpu_before;
        let (ended, seconds) = sweep.join().expect("clock advance");
        let row = summarize(name, &mut out, cpu, Some(rate));
        print_row(&row);
        (row, Sweep { ended, seconds })
    })
}

fn bench_server(
    name: &str,
    binary: &Path,
    work: &Path,
    s: &Settings,
    nginx_size: &std::sync::Mutex<Option<usize>>,
) -> ServerResult {
    println!("\n== {name} ({})", binary.display());
    let data_dir = work.join(format!("data-{name}"));
    std::fs::create_dir_all(&data_dir).expect("data dir");
    // A manual clock: no meeting idles out in the middle of a measurement, and the last one
    // ends them all at a moment of its choosing. That clock call answers once every meeting has
    // ended, which for the full run's store takes longer than the default 30 s request timeout.
    let (guard, addr) = start_carillon(
        binary,
        &data_dir,
        &[
            ("CARILLON_CLOCK", "manual".into()),
            ("CARILLON_REQUEST_TIMEOUT", "600".into()),
        ],
    );
    let pid = guard.0.id();
    let mut rows = Vec::new();
    let mut facts = serde_json::Map::new();
    let run_for = s.run_for;

    // Setup: a 250-attendee meeting, a 10,000-attendee one.
    let (status, body) = call(
        addr,
        "POST",
        "/meetings",
        &create_meeting_spec("small", 0).2,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let small = string_values(&body, "MeetingId").remove(0);
    let (status, body) = call(
        addr,
        "POST",
        "/meetings",
        &create_meeting_spec("large", 0).2,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let large = string_values(&body, "MeetingId").remove(0);
    let (_, made) = fill_meetings(
        "(setup) fill 250",
        pid,
        addr,
        std::slice::from_ref(&small),
        250,
        Duration::from_secs(60),
    );
    let small_attendee = made.first().expect("attendee").1.clone();
    fill_meetings(
        "(setup) fill 10,000",
        pid,
        addr,
        std::slice::from_ref(&large),
        10_000,
        Duration::from_secs(120),
    );

    let list_path = format!("/meetings/{small}/attendees?max-results={PAGE}");
    let (status, page) = call(addr, "GET", &list_path, b"");
    assert_eq!(status, 200);
    facts.insert("list_body_bytes".into(), json!(page.len()));
    nginx_size.lock().expect("size").get_or_insert(page.len());
    // The last page of the 10k meeting: follow NextToken.
    let mut token: Option<String> = None;
    let mut last_path = String::new();
    for _ in 0..(10_000 / PAGE) {
        let path = match &token {
            None => format!("/meetings/{large}/attendees?max-results={PAGE}"),
            Some(t) => format!(
                "/meetings/{large}/attendees?max-results={PAGE}&next-token={}",
                percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC)
            ),
        };
        let (status, body) = call(addr, "GET", &path, b"");
        assert_eq!(status, 200);
        last_path = path;
        match string_values(&body, "NextToken").into_iter().next() {
            Some(t) => token = Some(t),
            None => break,
        }
    }

    section(&format!(
        "reads (closed loop, {CONNECTIONS} connections, {run_for:?} each)"
    ));
    let replay = |method: &'static str, path: &str| {
        Supply::Replay(Arc::new(signed(addr, method, path, b"", SystemTime::now())))
    };
    let healthz = Supply::Replay(Arc::new(plain_get(addr, "/healthz")));
    rows.push(measure(HEALTHZ, pid, addr, &healthz, run_for, None, 200).0);
    let get = replay(
        "GET",
        &format!("/meetings/{small}/attendees/{small_attendee}"),
    );
    rows.push(measure(GET, pid, addr, &get, run_for, None, 200).0);
    let list = replay("GET", &list_path);
    rows.push(measure(LIST, pid, addr, &list, run_for, None, 200).0);
    let first = replay(
        "GET",
        &format!("/meetings/{large}/attendees?max-results={PAGE}"),
    );
    rows.push(measure(LIST_FIRST, pid, addr, &first, run_for, None, 200).0);
    let last = replay("GET", &last_path);
    rows.push(measure(LIST_LAST, pid, addr, &last, run_for, None, 200).0);

    section("writes (closed loop, unique signed requests, each acknowledged once durable)");
    let (row, meetings) = create_meetings(CREATE_MEETING, pid, addr, "m", s.meetings);
    rows.push(row);
    // CreateAttendee spreads over meetings of at most 250; BatchCreate gets two calls a meeting.
    let (for_batch, for_create) = meetings.split_at(s.batches.div_ceil(2).min(meetings.len()));
    let create_specs = |n: usize, tag: &str, meetings: &[String]| -> Vec<_> {
        (0..n)
            .filter_map(|i| {
                let m = meetings.get(i % meetings.len().max(1))?;
                Some((
                    "POST",
                    format!("/meetings/{m}/attendees"),
                    json!({ "ExternalUserId": format!("{tag}-{i}") })
                        .to_string()
                        .into_bytes(),
                ))
            })
            .collect()
    };
    let half = for_create.len() / 2;
    let (create_meetings_peak, create_meetings_half) = for_create.split_at(half);
    let creates = Supply::once(sign_all(
        addr,
        create_specs(s.creates.min(half * 250), "c", create_meetings_peak),
    ));
    let (create_row, _) = measure(CREATE, pid, addr, &creates, run_for, None, 200);
    rows.push(create_row.clone());
    // A durable write is answered after an fsync, so 16 connections cap the rate at 16 per
    // fsync; more callers show what group commit does with them.
    rows.push(
        with_connections(CREATE_WIDE_CONNECTIONS, || {
            measure(CREATE_WIDE, pid, addr, &creates, run_for, None, 200)
        })
        .0,
    );
    let (batch_row, deletable) = fill_meetings(BATCH, pid, addr, for_batch, 200, run_for);
    rows.push(batch_row);
    let deletes = Supply::once(sign_all(
        addr,
        deletable
            .iter()
            .map(|(m, a)| ("DELETE", format!("/meetings/{m}/attendees/{a}"), Vec::new()))
            .collect(),
    ));
    rows.push(measure(DELETE, pid, addr, &deletes, run_for, None, 204).0);

    section("latency at half of the peak rate (open loop)");
    let peak = |n: &str| {
        rows.iter()
            .find(|r| r.name == n)
            .map_or(1000.0, |r| r.per_second)
    };
    let (list_peak, get_peak) = (peak(LIST), peak(GET));
    rows.push(
        measure(
            LIST_HALF,
            pid,
            addr,
            &list,
            run_for,
            Some(list_peak / 2.0),
            200,
        )
        .0,
    );
    rows.push(
        measure(
            GET_HALF,
            pid,
            addr,
            &get,
            run_for,
            Some(get_peak / 2.0),
            200,
        )
        .0,
    );
    let half_rate = create_row.per_second / 2.0;
    let n =
        ((half_rate * run_for.as_secs_f64() * 1.1) as usize).min(create_meetings_half.len() * 250);
    let creates_half = Supply::once(sign_all(addr, create_specs(n, "h", create_meetings_half)));
    rows.push(
        measure(
            CREATE_HALF,
            pid,
            addr,
            &creates_half,
            run_for,
            Some(half_rate),
            200,
        )
        .0,
    );

    section(&format!(
        "large store: {} meetings x 250 attendees",
        s.large_meetings
    ));
    let rss_before = status_bytes(pid, "VmRSS");
    let (_, big) = create_meetings(
        "(setup) create meetings",
        pid,
        addr,
        "big",
        s.large_meetings,
    );
    let fill_for = Duration::from_secs(if s.quick { 60 } else { 600 });
    fill_meetings("(setup) fill meetings", pid, addr, &big, 250, fill_for);
    let attendees: i64 = {
        let conn = rusqlite::Connection::open_with_flags(
            data_dir.join("carillon.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open db");
        conn.query_row("SELECT COUNT(*) FROM attendees", [], |r| r.get(0))
            .expect("count")
    };
    rows.push(measure(LIST_LARGE, pid, addr, &list, run_for, None, 200).0);
    rows.push(measure(GET_LARGE, pid, addr, &get, run_for, None, 200).0);
    let (rss, peak_rss, bytes) = (
        status_bytes(pid, "VmRSS"),
        status_bytes(pid, "VmHWM"),
        dir_bytes(&data_dir),
    );
    println!(
        "  {name:<10} {attendees} attendees stored: RSS {:.1} MiB (before the large store {:.1} MiB), peak RSS {:.1} MiB, \
         data directory {:.1} MiB = {:.0} bytes/attendee",
        rss as f64 / 1048576.0,
        rss_before as f64 / 1048576.0,
        peak_rss as f64 / 1048576.0,
        bytes as f64 / 1048576.0,
        bytes as f64 / attendees.max(1) as f64
    );
    // Every meeting so far (the large store's and the writes') idles out at once, as meetings a
    // test suite or a load test created together do, while CreateAttendee goes on at half of
    // its peak in meetings created later.
    section("every meeting so far idles out at once");
    advance_clock(addr, 240);
    let (_, staying) =
        create_meetings("(setup) meetings that stay", pid, addr, "stay", n / 250 + 1);
    let creates_sweep = Supply::once(sign_all(addr, create_specs(n, "s", &staying)));
    let (row, sweep) =
        measure_during_sweep(CREATE_SWEEP, pid, addr, &creates_sweep, run_for, half_rate);
    rows.push(row);
    println!(
        "  {name:<10} the sweep ended {} meetings in {:.1} s",
        sweep.ended, sweep.seconds
    );
    facts.insert("sweep_ended_meetings".into(), json!(sweep.ended));
    facts.insert("sweep_seconds".into(), json!(round(sweep.seconds, 2)));
    facts.insert("attendees_stored".into(), json!(attendees));
    facts.insert("rss_bytes".into(), json!(rss));
    facts.insert("peak_rss_bytes".into(), json!(peak_rss));
    facts.insert(
        "rss_bytes_per_attendee".into(),
        json!(round(rss as f64 / attendees.max(1) as f64, 1)),
    );
    facts.insert("data_dir_bytes".into(), json!(bytes));
    facts.insert(
        "data_dir_bytes_per_attendee".into(),
        json!(round(bytes as f64 / attendees.max(1) as f64, 1)),
    );
    drop(guard);
    ServerResult {
        name: name.to_string(),
        rows,
        facts,
    }
}

fn main() {
    let mut quick = false;
    let mut servers: Vec<(String, PathBuf)> = Vec::new();
    let mut out_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/results"));
    let mut nginx = PathBuf::from("/usr/sbin/nginx");
    // The scale-out comparison runs when a PostgreSQL database is given (`--postgres`), alone
    // with `--scale-out`.
    let (mut scale_out_only, mut postgres, mut bus) = (false, None::<String>, None::<String>);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--server" => {
                let v = args.next().expect("--server NAME=PATH");
                let (n, p) = v.split_once('=').expect("--server NAME=PATH");
                servers.push((n.to_string(), PathBuf::from(p)));
            }
            "--out" => out_dir = PathBuf::from(args.next().expect("--out DIR")),
            "--nginx" => nginx = PathBuf::from(args.next().expect("--nginx PATH")),
            "--scale-out" => scale_out_only = true,
            "--postgres" => postgres = Some(args.next().expect("--postgres URL")),
            "--bus" => bus = Some(args.next().expect("--bus URL")),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    if servers.is_empty() {
        servers.push((
            "carillon".into(),
            PathBuf::from(env!("CARGO_BIN_EXE_carillon")),
        ));
    }
    let s = Settings::new(quick);
    let scale_out = |work: &Path| match &postgres {
        Some(url) => scale_out::run(&servers[0].1, work, &s, url, bus.as_deref(), &out_dir),
        None => eprintln!("no --postgres URL: the scale-out comparison is not run"),
    };
    // Data directories go under the target directory, on disk rather than a tmpfs: fsync must
    // cost what it costs.
    let work = tempfile::Builder::new()
        .prefix("carillon-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("work dir");
    println!(
        "carillon load benchmark{}: {CONNECTIONS} connections, {:?} per measurement, loopback, {} cores",
        if quick { " (--quick)" } else { "" },
        s.run_for,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    if scale_out_only {
        scale_out(work.path());
        return;
    }
    let _ = TURNS.set(Turns {
        state: std::sync::Mutex::new((0, vec![false; servers.len()])),
        changed: std::sync::Condvar::new(),
    });
    let nginx_size = std::sync::Mutex::new(None);
    let results: Vec<ServerResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .enumerate()
            .map(|(i, (name, binary))| {
                let (work, s, nginx_size) = (work.path(), &s, &nginx_size);
                scope.spawn(move || {
                    WHO.with(|w| *w.borrow_mut() = Some((i, name.clone())));
                    let _finished = Finished;
                    bench_server(name, binary, work, s, nginx_size)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("server benchmark"))
            .collect()
    });
    let nginx_size = nginx_size.into_inner().expect("size");

    println!("\n== baselines");
    let mut baselines = Vec::new();
    let size = nginx_size.unwrap_or(0);
    if nginx.exists() {
        let dir = work.path().join("nginx");
        std::fs::create_dir_all(dir.join("www")).expect("www");
        std::fs::write(dir.join("www/page.json"), vec![b'x'; size]).expect("file");
        let (guard, addr) = start_nginx(&nginx, &dir);
        let supply = Supply::Replay(Arc::new(plain_get(addr, "/page.json")));
        let name = format!("nginx static file of {size} bytes");
        let (mut row, _) = measure(&name, guard.0.id(), addr, &supply, s.run_for, None, 200);
        row.name = "nginx static".into();
        baselines.push(row);
        drop(guard);
    } else {
        eprintln!(
            "  nginx not found at {}: no nginx baseline",
            nginx.display()
        );
    }
    baselines.push(sqlite_insert_floor(work.path(), s.run_for));

    report(&s, &results, &baselines, size, &out_dir);
    scale_out(work.path());
}

fn report(s: &Settings, results: &[ServerResult], baselines: &[Row], size: usize, out_dir: &Path) {
    let nginx = baselines.iter().find(|r| r.name == "nginx static");
    let floor = baselines.iter().find(|r| r.name.starts_with("raw durable"));
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let stamp = carillon::auth::sigv4::format_amz_date(unix);
    let date = format!(
        "{}-{}-{}",
        stamp.get(0..4).unwrap_or(""),
        stamp.get(4..6).unwrap_or(""),
        stamp.get(6..8).unwrap_or("")
    );
    let mut md = String::new();
    md.push_str(&format!(
        "# Carillon load benchmark, {stamp}{}\n\n\
         Loopback, {CONNECTIONS} keep-alive connections, {:?} per measurement, {} cores, release build, \
         request logging off, SigV4-signed requests (aws-sigv4). Reproduce: `bench/run{}`.\n\n\
         The load generator runs on the same cores: \"generator CPU\" is its own, \"machine CPU \
         busy\" the whole machine's (every process and the kernel); a row whose machine figure is \
         near the core count was bounded by the CPU, not by the server alone.\n\n",
        if s.quick { " (--quick)" } else { "" },
        s.run_for,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if s.quick { " --quick" } else { "" },
    ));
    md.push_str("## Baselines\n\n| baseline | req/s | p50 ms | p99 ms | p99.9 ms | CPU cores |\n|---|---:|---:|---:|---:|---:|\n");
    for b in baselines {
        md.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            if b.name == "nginx static" {
                format!("nginx static file of {size} bytes (= ListAttendees body)")
            } else {
                b.name.clone()
            },
            b.per_second,
            b.p50_ms,
            b.p99_ms,
            b.p999_ms,
            b.cpu_cores
        ));
    }
    for r in results {
        let healthz = r.get(HEALTHZ);
        md.push_str(&format!(
            "\n## {}\n\n| operation | req/s | p50 ms | p99 ms | p99.9 ms | server CPU cores | CPU us/req | generator CPU cores | machine CPU busy, cores | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
            r.name
        ));
        for row in &r.rows {
            let ratio = match row.name.as_str() {
                LIST | LIST_FIRST | LIST_LAST | LIST_LARGE => nginx
                    .map(|n| format!("{:.3}x nginx static", row.per_second / n.per_second))
                    .unwrap_or_default(),
                GET | GET_LARGE => healthz
                    .map(|h| format!("{:.3}x /healthz", row.per_second / h.per_second))
                    .unwrap_or_default(),
                CREATE | CREATE_WIDE => floor
                    .map(|f| format!("{:.2}x raw SQLite insert", row.per_second / f.per_second))
                    .unwrap_or_default(),
                LIST_HALF | GET_HALF | CREATE_HALF | CREATE_SWEEP => {
                    format!("offered {:.0}/s", row.offered.unwrap_or(0.0))
                }
                _ => String::new(),
            };
            let errors = if row.errors > 0 {
                format!(" ({} errors)", row.errors)
            } else {
                String::new()
            };
            md.push_str(&format!(
                "| {}{errors} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {ratio} |\n",
                row.name,
                row.per_second,
                row.p50_ms,
                row.p99_ms,
                row.p999_ms,
                row.cpu_cores,
                row.cpu_us_per_request,
                row.generator_cpu_cores,
                row.machine_cpu_cores
            ));
        }
        let f = |k: &str| r.facts.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        md.push_str(&format!(
            "\nLarge store: {} attendees; RSS {:.1} MiB ({:.0} bytes/attendee), peak RSS {:.1} MiB; \
             data directory {:.1} MiB ({:.0} bytes/attendee).\n",
            f("attendees_stored"),
            f("rss_bytes") / 1048576.0,
            f("rss_bytes_per_attendee"),
            f("peak_rss_bytes") / 1048576.0,
            f("data_dir_bytes") / 1048576.0,
            f("data_dir_bytes_per_attendee"),
        ));
        md.push_str(&format!(
            "Then every meeting idled out at once: the sweep ended {} meetings in {:.1} s \
             (the row \"{CREATE_SWEEP}\" ran meanwhile).\n",
            f("sweep_ended_meetings"),
            f("sweep_seconds"),
        ));
    }
    if results.len() > 1 {
        md.push_str("\n## Change against the first server (req/s)\n\n| operation |");
        for r in results.iter().skip(1) {
            md.push_str(&format!(" {} |", r.name));
        }
        md.push_str("\n|---|");
        for _ in results.iter().skip(1) {
            md.push_str("---:|");
        }
        md.push('\n');
        for row in &results[0].rows {
            md.push_str(&format!("| {} |", row.name));
            for r in results.iter().skip(1) {
                let cell = r
                    .get(&row.name)
                    .map(|o| {
                        if row.offered.is_some() {
                            format!(" p99 {:.2} → {:.2} ms |", row.p99_ms, o.p99_ms)
                        } else {
                            format!(" {:+.0}% |", (o.per_second / row.per_second - 1.0) * 100.0)
                        }
                    })
                    .unwrap_or_else(|| " |".into());
                md.push_str(&cell);
            }
            md.push('\n');
        }
    }
    println!("\n{md}");
    let doc = json!({
        "stamp": stamp,
        "quick": s.quick,
        "connections": CONNECTIONS,
        "seconds_per_measurement": s.run_for.as_secs_f64(),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "list_body_bytes": size,
        "baselines": baselines.iter().map(Row::json).collect::<Vec<_>>(),
        "servers": results.iter().map(|r| json!({
            "name": r.name,
            "rows": r.rows.iter().map(Row::json).collect::<Vec<_>>(),
            "facts": r.facts,
        })).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(out_dir).expect("results dir");
    let base = out_dir.join(format!("{date}{}", if s.quick { "-quick" } else { "" }));
    std::fs::write(base.with_extension("md"), &md).expect("write md");
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&doc).expect("json"),
    )
    .expect("write json");
    println!("written: {} and .json", base.with_extension("md").display());
}
