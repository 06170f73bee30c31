//! `make bench-turn`: cinder-turn and coturn side by side under the same
//! `turnutils_uclient` load, over UDP and over TCP, relaying to `turnutils_peer` on
//! loopback. For each: messages sent and echoed, loss, round-trip time, relayed packets per
//! second, the server's CPU seconds (utime + stime from /proc/PID/stat) and CPU per relayed
//! packet, and its peak memory (VmHWM from /proc/PID/status); then our/coturn ratios
//! against the goals (zero loss, CPU per packet at most coturn's, memory well below).
//!
//! Each configuration runs TURN_BENCH_ROUNDS times (3), interleaved, and the round with the
//! median CPU per packet is shown, which keeps a busy machine's noise out of the ratios.
//! `cinder-turn-2t` is ours with two runtime threads, for comparison.
//!
//! Every packet goes to 127.0.0.1 only. Knobs: TURN_BENCH_CLIENTS (20),
//! TURN_BENCH_MESSAGES per client (5000), TURN_BENCH_INTERVAL_MS (1), TURN_BENCH_SIZE (170).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "bench secret";
const REALM: &str = "cinder.bench";
const OURS: &str = env!("CARGO_BIN_EXE_cinder-turn");

fn knob(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    // A port free for both UDP and TCP.
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    /// `cinder-turn` as shipped (one runtime thread).
    Cinder,
    /// `cinder-turn --threads 2`.
    Cinder2,
    Coturn,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Cinder => "cinder-turn",
            Which::Cinder2 => "cinder-turn-2t",
            Which::Coturn => "coturn",
        }
    }
}

/// A process killed (SIGTERM, then SIGKILL) when dropped.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// utime + stime, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Peak resident memory, in KiB.
    fn peak_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(which: Which, port: u16, relay_ports: (u16, u16)) -> Proc {
    let child = match which {
        Which::Cinder | Which::Cinder2 => Command::new(OURS)
            .args(["--udp", &format!("127.0.0.1:{port}")])
            .args(["--tcp", &format!("127.0.0.1:{port}")])
            .args([
                "--relay-ip",
                "127.0.0.1",
                "--realm",
                REALM,
                "--allow-loopback",
            ])
            .args(["--ports", &format!("{}-{}", relay_ports.0, relay_ports.1)])
            .args(["--user-quota", "1000", "--stats-interval", "0"])
            .args(["--threads", if which == Which::Cinder2 { "2" } else { "1" }])
            .env("CINDER_TURN_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        Which::Coturn => Command::new("turnserver")
            .args(["-n", "--use-auth-secret"])
            .arg(format!("--static-auth-secret={SECRET}"))
            .arg(format!("--realm={REALM}"))
            .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .args([
                "--allow-loopback-peers",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
            ])
            .args(["-p", &port.to_string()])
            .args(["--min-port", &relay_ports.0.to_string()])
            .args(["--max-port", &relay_ports.1.to_string()])
            .arg(format!("--pidfile=/tmp/cinder-bench-coturn-{port}.pid"))
            .args(["--log-file=/dev/null", "--no-stdout-log", "--simple-log"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver runs (install the coturn package)"),
    };
    let proc = Proc(child);
    // Ready when its TCP listener answers.
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            std::thread::sleep(Duration::from_millis(100));
            return proc;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} did not start", which.name());
}

struct Row {
    load: &'static str,
    server: Which,
    sent: u64,
    received: u64,
    lost: u64,
    rtt_ms: f64,
    wall: Duration,
    cpu_s: f64,
    peak_kib: u64,
}

impl Row {
    /// Packets the server relayed: each message goes to the peer and is echoed back.
    fn relayed(&self) -> u64 {
        self.sent + self.received
    }

    fn us_per_packet(&self) -> f64 {
        self.cpu_s * 1e6 / self.relayed().max(1) as f64
    }
}

fn number_after(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().rev().find(|l| l.contains(key))?;
    let rest = &line[line.find(key)? + key.len()..];
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?
        .parse()
        .ok()
}

fn run(load: &'static str, flags: &[&str], which: Which) -> Row {
    let clients = knob("TURN_BENCH_CLIENTS", 20);
    let messages = knob("TURN_BENCH_MESSAGES", 5000);
    let interval = knob("TURN_BENCH_INTERVAL_MS", 1);
    let size = knob("TURN_BENCH_SIZE", 170);
    let port = free_port();
    let base = 40000 + (port % 20) * 1000;
    let server = start_server(which, port, (base, base + 999));
    let peer_port = free_port();
    let _peer = Proc(
        Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer runs"),
    );
    std::thread::sleep(Duration::from_millis(100));
    let cpu0 = server.cpu_ticks();
    let t0 = Instant::now();
    let out = Command::new("turnutils_uclient")
        .args(flags)
        .args(["-c", "-e", "127.0.0.1", "-r", &peer_port.to_string()])
        .args(["-p", &port.to_string(), "-W", SECRET, "-u", "bench"])
        .args(["-m", &clients.to_string(), "-n", &messages.to_string()])
        .args(["-l", &size.to_string(), "-z", &interval.to_string()])
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .expect("turnutils_uclient runs");
    let wall = t0.elapsed();
    let ticks = server.cpu_ticks() - cpu0;
    let peak_kib = server.peak_kib();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    let row = Row {
        load,
        server: which,
        sent: number_after(&text, "tot_send_msgs=").unwrap_or(0.0) as u64,
        received: number_after(&text, "tot_recv_msgs=").unwrap_or(0.0) as u64,
        lost: number_after(&text, "Total lost packets ").unwrap_or(f64::NAN) as u64,
        rtt_ms: number_after(&text, "Average round trip delay ").unwrap_or(f64::NAN),
        wall,
        cpu_s: ticks as f64 / hz,
        peak_kib,
    };
    if row.sent == 0 {
        eprintln!("{} {load}: uclient said:\n{text}", which.name());
    }
    row
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not used.
    let clients = knob("TURN_BENCH_CLIENTS", 20);
    let messages = knob("TURN_BENCH_MESSAGES", 5000);
    let interval = knob("TURN_BENCH_INTERVAL_MS", 1);
    println!(
        "TURN relay: {clients} clients x {messages} messages of {} bytes, one every {interval} ms each, echoed by turnutils_peer",
        knob("TURN_BENCH_SIZE", 170)
    );
    let loads: [(&str, &[&str]); 2] = [("UDP", &[]), ("TCP", &["-t"])];
    let servers = [Which::Coturn, Which::Cinder, Which::Cinder2];
    let rounds = knob("TURN_BENCH_ROUNDS", 3).max(1);
    let mut all: Vec<Vec<Row>> = (0..loads.len() * servers.len())
        .map(|_| Vec::new())
        .collect();
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        for (l, (load, flags)) in loads.iter().enumerate() {
            for (s, which) in servers.iter().enumerate() {
                all[l * servers.len() + s].push(run(load, flags, *which));
            }
        }
    }
    let rows: Vec<Row> = all
        .into_iter()
        .map(|mut runs| {
            runs.sort_by(|a, b| a.us_per_packet().total_cmp(&b.us_per_packet()));
            runs.swap_remove(runs.len() / 2)
        })
        .collect();
    println!();
    println!(
        "{:<5} {:<15} {:>9} {:>9} {:>6} {:>10} {:>8} {:>7} {:>8} {:>9}",
        "load",
        "server",
        "sent",
        "echoed",
        "lost",
        "relayed/s",
        "RTT ms",
        "CPU s",
        "µs/pkt",
        "peak MiB"
    );
    for r in &rows {
        println!(
            "{:<5} {:<15} {:>9} {:>9} {:>6} {:>10.0} {:>8.3} {:>7.2} {:>8.2} {:>9.1}",
            r.load,
            r.server.name(),
            r.sent,
            r.received,
            r.lost,
            r.relayed() as f64 / r.wall.as_secs_f64(),
            r.rtt_ms,
            r.cpu_s,
            r.us_per_packet(),
            r.peak_kib as f64 / 1024.0
        );
    }
    println!();
    for (load, _) in loads {
        let find = |w: Which| {
            rows.iter()
                .find(|r| r.load == load && r.server == w)
                .unwrap()
        };
        let (ours, theirs) = (find(Which::Cinder), find(Which::Coturn));
        let cpu = ours.us_per_packet() / theirs.us_per_packet();
        let mem = ours.peak_kib as f64 / theirs.peak_kib as f64;
        let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
        println!(
            "{load}: loss {} (goal 0: {}); CPU per packet ours/coturn {cpu:.2} (goal <= 1: {}); peak memory ours/coturn {mem:.2} (goal well below 1: {})",
            ours.lost,
            verdict(ours.lost == 0 && ours.received == ours.sent && ours.sent > 0),
            verdict(cpu <= 1.0),
            verdict(mem <= 0.5),
        );
    }
}
