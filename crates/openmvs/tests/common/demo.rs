//! `openmvs demo` as a child process for the end-to-end tests: started on free ports, waited for
//! by its ready line (the guide it printed before it is kept), stopped with SIGTERM, killed when
//! dropped; and an HTTPS client that trusts the demo's CA, for the requests a test sends itself.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use super::free_port;

/// Seeding distributes 1,000 packs over HTTPS before the ready line; a debug build is slow.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// A running `openmvs demo`.
pub struct Demo {
    child: Child,
    /// What it printed up to its ready line: the guide.
    pub guide: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Demo {
    /// Starts `openmvs demo --data-dir DIR --port-base P` with `args` after them, without any
    /// `OPENMVS...` variable of the developer's environment, and waits for its ready line.
    pub fn start(dir: &Path, port_base: u16, args: &[&str]) -> Demo {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_openmvs"));
        cmd.args([
            "demo",
            "--data-dir",
            dir.to_str().expect("UTF-8 path"),
            "--port-base",
            &port_base.to_string(),
        ])
        .args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("OPENMVS") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("start openmvs demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut guide = String::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with("openmvs demo: ready") => return Demo { child, guide },
                Ok(line) => {
                    guide.push_str(&line);
                    guide.push('\n');
                }
                Err(e) => panic!("no ready line from openmvs demo: {e:?} (exit: {:?})", child.try_wait()),
            }
        }
    }

    /// Stops it with SIGTERM and insists that it exits with status 0.
    pub fn stop(mut self) {
        let status =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill -TERM");
        assert!(status.success());
        match self.child.wait_timeout(Duration::from_secs(30)).expect("wait for the demo") {
            Some(s) => assert!(s.success(), "the demo exited with {s}"),
            None => panic!("the demo did not exit within 30 s of SIGTERM"),
        }
    }
}

/// A port base whose next `markets` ports are free too (the first market is on P+1).
pub fn port_base(markets: u16) -> u16 {
    loop {
        let p = free_port();
        if p < 65000 && (1..=markets).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

/// A raw HTTPS client trusting the demo's CA (the file `ca`), for the requests whose wire a test
/// looks at itself.
pub fn https_client(ca: &str) -> reqwest::blocking::Client {
    let pem = std::fs::read(ca).expect("read the demo CA");
    reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA certificate"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}
