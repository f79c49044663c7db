//! Real peers on loopback for the endpoint tests: the `sipdialog` binary, SIPp and Kamailio,
//! started here, stopped by PID, every wait bounded in time.

#![allow(dead_code)]

pub mod udp;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The SIPp scenarios in `tests/sipp/`.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(format!("{name}.xml"))
}

/// The `-key` arguments `refer.xml` needs: where the REFER points, and how many milliseconds
/// the caller waits before answering NOTIFY 100.
pub fn refer_keys<'a>(target: &'a str, notify_answer_ms: &'a str) -> [&'a str; 6] {
    [
        "-key",
        "refer_target",
        target,
        "-key",
        "notify_answer_ms",
        notify_answer_ms,
    ]
}

/// A scratch folder for one test's logs.
pub fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Fails the test with a clear message when a peer program is not installed.
pub fn require(program: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is not installed: `.ci/test` installs SIPp and Kamailio (apt-get install sip-tester kamailio)"
    );
}

/// Waits for `child` at most `limit`; kills it past that.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A running `sipdialog` endpoint.
pub struct Endpoint {
    child: Option<Child>,
    /// Its SIP address.
    pub sip: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
}

impl Endpoint {
    /// Starts `sipdialog <args>` listening on `sip` with metrics on `metrics`, and waits
    /// until `/metrics` answers.
    pub fn start(dir: &Path, args: &[&str], sip: SocketAddr, metrics: SocketAddr) -> Endpoint {
        let log = dir.join("sipdialog.log");
        let child = Command::new(env!("CARGO_BIN_EXE_sipdialog"))
            .args(args)
            .arg("--listen")
            .arg(sip.to_string())
            .arg("--metrics")
            .arg(metrics.to_string())
            .arg("--log")
            .arg("info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start sipdialog");
        let endpoint = Endpoint {
            child: Some(child),
            sip,
            metrics,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while endpoint.scrape().is_none() {
            assert!(Instant::now() < deadline, "sipdialog did not come up");
            sleep(Duration::from_millis(50));
        }
        endpoint
    }

    /// The `/metrics` text, if the endpoint answers.
    pub fn scrape(&self) -> Option<String> {
        http_get(self.metrics, "/metrics")
    }

    /// The sum over every label set of the metric `name` (a counter's `_total` or a gauge).
    pub fn metric(&self, name: &str) -> u64 {
        let text = self.scrape().expect("metrics endpoint");
        metric_sum(&text, name)
    }

    /// Waits (at most `limit`) until no dialog is active; returns the last count seen.
    pub fn wait_idle(&self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let active = self.metric("sipdialog_dialogs_active");
            if active == 0 || Instant::now() >= deadline {
                return active;
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits for the drain; the exit status.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        wait_bounded(&mut child, Duration::from_secs(60)).expect("sipdialog did not exit")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The endpoint's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET with `Connection: close`; the response (head and body) read until
/// the server closes or goes quiet for a second, `None` unless it is a 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16384];
    while let Ok(n @ 1..) = stream.read(&mut chunk) {
        bytes.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status_ok = text.split_whitespace().nth(1) == Some("200");
    status_ok.then_some(text)
}

/// Sums the samples of `name` in OpenMetrics text (the lines `name{...} v` and `name v`).
pub fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .sum()
}

/// One SIPp run's outcome.
#[derive(Debug)]
pub struct SippRun {
    /// SIPp's exit status: 0 when every call succeeded.
    pub status: Option<ExitStatus>,
    /// Successful and failed calls, from its final statistics.
    pub successful: u64,
    /// Failed calls.
    pub failed: u64,
    /// Its error log, if any.
    pub errors: String,
}

/// SIPp options for one run.
pub struct Sipp<'a> {
    /// Scenario file, or a built-in (`uas`, `uac`) with `-sn`.
    pub scenario: &'a str,
    /// Where to send (`None` for a uas).
    pub target: Option<SocketAddr>,
    /// SIPp's own SIP port.
    pub port: u16,
    /// Calls to make (`-m`).
    pub calls: u64,
    /// Calls per second (`-r`).
    pub rate: u64,
    /// Further options.
    pub extra: &'a [&'a str],
}

impl Sipp<'_> {
    fn command(&self, dir: &Path) -> Command {
        let mut cmd = Command::new("sipp");
        if let Some(target) = self.target {
            cmd.arg(target.to_string());
        }
        if self.scenario.ends_with(".xml") {
            cmd.arg("-sf").arg(self.scenario);
        } else {
            cmd.arg("-sn").arg(self.scenario);
        }
        let port = self.port.to_string();
        // SIPp binds four media ports (audio and video RTP/RTCP) from -mp: ten apart per
        // SIP port keeps parallel runs apart.
        let media = (30_000 + u32::from(self.port % 3_000) * 10).to_string();
        cmd.args(["-i", "127.0.0.1", "-p", &port, "-mp", &media])
            .args(["-m", &self.calls.to_string()])
            .args(["-r", &self.rate.to_string()])
            .args(["-nostdin", "-trace_err", "-trace_stat", "-fd", "1"])
            .args(["-buff_size", "4194304"])
            .args(self.extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Runs SIPp to the end (at most `limit`).
    pub fn run(&self, dir: &Path, limit: Duration) -> SippRun {
        let mut child = self.command(dir).spawn().expect("start sipp");
        let status = wait_bounded(&mut child, limit);
        read_run(dir, status)
    }

    /// Starts SIPp in the background (a callee for other tests to call), writing its logs
    /// to `dir`.
    pub fn spawn(&self, dir: &Path) -> Background {
        std::fs::create_dir_all(dir).expect("sipp folder");
        Background {
            child: Some(self.command(dir).spawn().expect("start sipp")),
            dir: dir.to_path_buf(),
        }
    }
}

/// A SIPp left running; stopped when dropped.
pub struct Background {
    child: Option<Child>,
    dir: PathBuf,
}

impl Background {
    /// Waits for it to end (at most `limit`) and reads its outcome.
    pub fn wait(mut self, limit: Duration) -> SippRun {
        let status = self
            .child
            .take()
            .and_then(|mut child| wait_bounded(&mut child, limit));
        read_run(&self.dir, status)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            if wait_bounded(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
            }
        }
    }
}

/// Reads SIPp's statistics file (the last line's SuccessfulCall/FailedCall cumulative
/// columns) and error log from `dir`.
fn read_run(dir: &Path, status: Option<ExitStatus>) -> SippRun {
    let mut run = SippRun {
        status,
        successful: 0,
        failed: 0,
        errors: String::new(),
    };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if name.ends_with("_errors.log") {
            run.errors.push_str(&text);
        } else if name.ends_with(".csv") {
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
            let Some(last) = lines.rfind(|l| !l.trim().is_empty()) else {
                continue;
            };
            let row: Vec<&str> = last.split(';').collect();
            let column = |name: &str| {
                header
                    .iter()
                    .position(|h| *h == name)
                    .and_then(|i| row.get(i))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            run.successful = column("SuccessfulCall(C)");
            run.failed = column("FailedCall(C)");
        }
    }
    run
}

/// A running Kamailio: the dialog-stateful, record-routing proxy of `tests/kamailio/proxy.cfg`.
pub struct Kamailio {
    child: Option<Child>,
    /// Its SIP address.
    pub sip: SocketAddr,
    http: SocketAddr,
    log: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio on `sip`, forwarding new calls to `uas`, with its Prometheus stats on
    /// `http`; waits until they answer. `shm_mb` is its shared memory.
    pub fn start(
        dir: &Path,
        sip: SocketAddr,
        uas: SocketAddr,
        http: SocketAddr,
        shm_mb: u32,
    ) -> Kamailio {
        require("kamailio");
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio/proxy.cfg");
        let cfg = std::fs::read_to_string(template)
            .expect("proxy.cfg")
            .replace("SIP_PORT", &sip.port().to_string())
            .replace("UAS_PORT", &uas.port().to_string())
            .replace("HTTP_PORT", &http.port().to_string())
            .replace("RUNDIR", dir.to_str().expect("utf-8 path"));
        let cfg_path = dir.join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).expect("write kamailio.cfg");
        let log = dir.join("kamailio.log");
        // -x fm: Debian's default allocator is a debug build; see tests/kamailio/proxy.cfg.
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg_path)
            .args([
                "-DD",
                "-E",
                "-x",
                "fm",
                "-m",
                &shm_mb.to_string(),
                "-M",
                "32",
                "-n",
                "2",
            ])
            .arg("-Y")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start kamailio");
        let kamailio = Kamailio {
            child: Some(child),
            sip,
            http,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while kamailio.scrape().is_none() {
            assert!(
                Instant::now() < deadline,
                "kamailio did not come up:\n{}",
                std::fs::read_to_string(&kamailio.log).unwrap_or_default()
            );
            sleep(Duration::from_millis(100));
        }
        kamailio
    }

    fn scrape(&self) -> Option<String> {
        http_get(self.http, "/metrics").filter(|text| text.contains("kamailio_"))
    }

    /// A Kamailio statistic (its Prometheus lines end in a timestamp, dropped here).
    pub fn stat(&self, name: &str) -> u64 {
        let text = self.scrape().expect("kamailio metrics");
        text.lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next()? == name).then(|| parts.next()?.parse::<f64>().ok())?
            })
            .map(|v| v as u64)
            .sum()
    }

    /// The main PID: stopping it stops its children.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            if wait_bounded(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
            }
        }
    }
}
