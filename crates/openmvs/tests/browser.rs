//! The web console and the status pages in a real browser: `browser/console.mjs` drives headless
//! Chromium through `playwright-core` against a running `openmvs demo --fake-clock` (sign-in per
//! role, an alert from report to closure by the NMVO and the OBP, an audit export, an incident
//! opened by slow answers, axe-core on every page).
//!
//! It needs Node.js, Chromium (`CHROMIUM`, default `/usr/bin/chromium`) and `npm ci` in
//! `browser/`. Without them it says so and passes, unless `OPENMVS_BROWSER_TESTS=1` (what
//! `.ci/run` sets after installing them), which makes their absence a failure.
//! `OPENMVS_SCREENSHOTS=DIR` keeps a screenshot of every page checked.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TempDir;
use common::demo::{Demo, port_base};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Why the browser suite cannot run here, if it cannot.
fn missing() -> Option<String> {
    let node = Command::new("node").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !node {
        return Some("node is not installed".into());
    }
    if !Path::new(&chromium()).exists() {
        return Some(format!("no Chromium at {} (apt-get install chromium)", chromium()));
    }
    if !repo().join("browser/node_modules/playwright-core").exists() {
        return Some("browser/node_modules is missing (cd browser && npm ci)".into());
    }
    None
}

#[test]
fn the_console_works_in_a_real_browser_for_every_role_and_every_page_is_accessible() {
    if let Some(why) = missing() {
        assert!(std::env::var("OPENMVS_BROWSER_TESTS").is_err(), "OPENMVS_BROWSER_TESTS is set but {why}");
        eprintln!("skipping the browser suite: {why}");
        return;
    }
    let dir = TempDir::new("browser-demo");
    let demo = Demo::start(dir.path(), port_base(2), &["--markets", "DE,FR", "--fake-clock"]);
    let mut cmd = Command::new("node");
    cmd.current_dir(repo().join("browser"))
        .arg("console.mjs")
        .arg(dir.path().join("demo.json"))
        .env("CHROMIUM", chromium());
    if let Ok(shots) = std::env::var("OPENMVS_SCREENSHOTS") {
        cmd.args(["--screenshots", &shots]);
    }
    let out = cmd.output().expect("node runs");
    let said = String::from_utf8_lossy(&out.stdout);
    println!("{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the browser suite failed:\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("browser: every check passed"), "{said}");
    demo.stop();
}
