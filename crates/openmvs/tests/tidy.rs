//! The house checks its own rules: what ARCHITECTURE.md states about the code's shape, tested
//! on the source tree itself, so that the document and the code cannot drift apart unnoticed.

use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace root")
}

/// Every `.rs` file below `dir`, build output left out.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_rust_file_opens_with_a_module_comment_saying_what_it_is() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("fuzz"), &mut files);
    assert!(files.len() > 100, "only {} files found below {}", files.len(), root.display());
    let bare: Vec<String> = files
        .iter()
        .filter(|f| !read(f).starts_with("//!"))
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(bare.is_empty(), "files without a `//!` comment at the top: {bare:?}");
}

/// The names under `[section]` of a Cargo manifest, up to the next section.
fn section_keys(manifest: &str, section: &str) -> Vec<String> {
    let header = format!("[{section}]");
    manifest
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        // `name = ...`, `name.workspace = true`
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.split('.').next().unwrap_or("").trim().to_owned()))
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .collect()
}

#[test]
fn the_core_depends_on_thiserror_alone() {
    let manifest = read(&root().join("crates/openmvs-core/Cargo.toml"));
    assert_eq!(
        section_keys(&manifest, "dependencies"),
        ["thiserror"],
        "the core does no IO: ARCHITECTURE.md"
    );
    assert!(
        !manifest.contains("[target."),
        "the core has no platform-specific dependencies: ARCHITECTURE.md"
    );
}

#[test]
fn the_client_depends_on_the_wire_and_no_server_crate() {
    let manifest = read(&root().join("crates/openmvs-client/Cargo.toml"));
    let deps = section_keys(&manifest, "dependencies");
    let openmvs: Vec<&String> = deps.iter().filter(|d| d.starts_with("openmvs")).collect();
    assert_eq!(openmvs, ["openmvs-wire"], "the client's shapes are the wire's: ARCHITECTURE.md");
    let servers = ["axum", "hyper", "hyper-util", "tower", "tokio-rustls"];
    let wrong: Vec<&String> = deps.iter().filter(|d| servers.contains(&d.as_str())).collect();
    assert!(wrong.is_empty(), "the client is a client only: ARCHITECTURE.md, {wrong:?}");
}

#[test]
fn every_crate_has_its_section_in_the_architecture_map() {
    let root = root();
    let map = read(&root.join("ARCHITECTURE.md"));
    let mut missing = Vec::new();
    for e in std::fs::read_dir(root.join("crates")).expect("crates/").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().join("Cargo.toml").exists() && !map.contains(&format!("### `crates/{name}`")) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "crates without a section in ARCHITECTURE.md: {missing:?}");
}

#[test]
fn no_crate_allows_unsafe_code() {
    let root = root();
    let workspace = read(&root.join("Cargo.toml"));
    assert!(workspace.contains("unsafe_code = \"forbid\""), "the workspace forbids unsafe code");
    for e in std::fs::read_dir(root.join("crates")).expect("crates/").flatten() {
        let manifest = e.path().join("Cargo.toml");
        if manifest.exists() {
            let text = read(&manifest);
            assert!(
                text.contains("[lints]") && text.contains("workspace = true"),
                "{} does not take the workspace's lints",
                manifest.display()
            );
        }
    }
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    // Spelt in pieces, so that this file does not name what it looks for.
    let patterns = [concat!("allow(", "unsafe_code)"), concat!("unsafe", " {"), concat!("unsafe", " fn ")];
    let allowing: Vec<String> = files
        .iter()
        .filter(|f| {
            let t = read(f);
            patterns.iter().any(|p| t.contains(p))
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(allowing.is_empty(), "unsafe code in {allowing:?}");
}

/// A source file below `crates/`, as the rules about time and tests see it.
struct Source {
    /// Relative to the workspace root, with `/` separators.
    path: String,
    /// Its lines, numbered from 1, comment lines left out, each with whether it is test code:
    /// a whole file below `tests/` or named in [`TEST_SUPPORT`], or the rest of a file from its
    /// first `#[cfg(test)]` on (the house keeps a file's tests at its end).
    lines: Vec<(usize, String, bool)>,
}

/// Source files that are test code although they live below `src/`: the conformance suites,
/// compiled only for the engines' tests (feature `conformance`).
const TEST_SUPPORT: &[&str] =
    &["crates/openmvs-store/src/conformance.rs", "crates/openmvs-store/src/conformance_hub.rs"];

fn sources() -> Vec<Source> {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    files.sort();
    files
        .iter()
        .map(|f| {
            let path = f.strip_prefix(&root).unwrap_or(f).to_string_lossy().replace('\\', "/");
            let mut test = path.contains("/tests/") || TEST_SUPPORT.contains(&path.as_str());
            let lines = read(f)
                .lines()
                .enumerate()
                .filter_map(|(i, l)| {
                    test |= l.contains("#[cfg(test)]");
                    let t = l.trim_start();
                    (!t.starts_with("//")).then(|| (i + 1, l.to_owned(), test))
                })
                .collect();
            Source { path, lines }
        })
        .collect()
}

/// `place` is a file, or a folder when it ends with `/`.
fn is_in(path: &str, place: &str) -> bool {
    if place.ends_with('/') { path.starts_with(place) } else { path == place }
}

/// Where the wall clock may be read: the system clock, which the binary hands to everything else
/// as an `Arc<dyn Clock>` (ARCHITECTURE.md, "Time").
const WALL_CLOCK_READERS: &[&str] = &["crates/openmvs-national/src/clock.rs"];

/// Where the system clock may be made: the binaries and the node wiring they share, which choose
/// the clock of everything they run.
const SYSTEM_CLOCK_MAKERS: &[&str] = &[
    "crates/openmvs/src/",
    "crates/openmvs-bench/src/",
    "crates/openmvs-node/src/",
    "crates/openmvs-national/src/clock.rs",
];

/// Where the monotonic clock may be read, to measure a duration or keep a deadline, and why.
const MONOTONIC_CLOCK_READERS: &[(&str, &str)] = &[
    (
        "crates/openmvs-http/src/",
        "server timeouts, draining, latency, rate limits, login throttling, load shedding",
    ),
    ("crates/openmvs-national/src/bulk.rs", "the bulk worker's retry delays"),
    ("crates/openmvs-store/src/commit.rs", "the store writer's retry after a failed signing"),
    ("crates/openmvs/src/cmd/demo.rs", "the demo's bound on its seed distribution"),
    ("crates/openmvs/src/cmd/admin.rs", "the rate `admin seed` reports"),
    ("crates/openmvs/src/cmd/backup.rs", "the time `admin backup` and `admin restore` report"),
    ("crates/openmvs/src/cmd/sim.rs", "the rate of schedules `openmvs sim --count` reports"),
    ("crates/openmvs-bench/src/", "the benchmark and the engines' baselines"),
    (
        "crates/openmvs-client/src/time.rs",
        "the client's token renewal, retry backoff and poll deadlines, behind its `Timer`",
    ),
    ("crates/openmvs-core/benches/", "benchmark"),
    ("crates/openmvs-auth/examples/", "benchmark"),
];

#[test]
fn the_clock_is_read_only_where_the_architecture_says() {
    // Spelt in pieces, so that this file does not name what it looks for.
    let wall = [
        concat!("SystemTime", "::now"),
        concat!("Utc", "::now"),
        concat!("Local", "::now"),
        concat!("chrono", "::Local"),
        concat!("OffsetDateTime", "::now"),
    ];
    let monotonic = concat!("Instant", "::now");
    let system_clock = concat!("System", "Clock");
    let mut wrong = Vec::new();
    for s in sources() {
        for (n, line, test) in &s.lines {
            if *test {
                continue;
            }
            if let Some(p) = wall.iter().find(|p| line.contains(**p))
                && !WALL_CLOCK_READERS.iter().any(|place| is_in(&s.path, place))
            {
                wrong.push(format!("{}:{n}: {p} (the wall clock is read by the system clock alone)", s.path));
            }
            if line.contains(system_clock) && !SYSTEM_CLOCK_MAKERS.iter().any(|place| is_in(&s.path, place)) {
                wrong.push(format!(
                    "{}:{n}: {system_clock} outside the binary (take an `Arc<dyn Clock>`)",
                    s.path
                ));
            }
            if line.contains(monotonic)
                && !MONOTONIC_CLOCK_READERS.iter().any(|(place, _)| is_in(&s.path, place))
            {
                wrong.push(format!("{}:{n}: {monotonic} outside the places that measure durations", s.path));
            }
        }
    }
    assert!(wrong.is_empty(), "clock reads outside ARCHITECTURE.md's list (\"Time\"):\n{}", wrong.join("\n"));
    let map = read(&root().join("ARCHITECTURE.md"));
    for place in WALL_CLOCK_READERS {
        assert!(map.contains(place), "ARCHITECTURE.md names {place}, the one reader of the wall clock");
    }
}

/// The name of the function a line `fn name...` opens, if it opens one.
fn fn_name(line: &str) -> Option<&str> {
    let at = line.find("fn ").filter(|&i| i == 0 || line[..i].ends_with(' '))?;
    let rest = &line[at + 3..];
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// The test code that may wait for real time to pass, each place (file, function) with why: what
/// it waits for has no signal a test could wait on, or is itself a stretch of real time.
const SLEEPS_ALLOWED: &[(&str, &str, &str)] = &[
    (
        "crates/openmvs/tests/rolling_upgrade/main.rs",
        "balance",
        "a client honours Retry-After, as a real one would (in the load's `send!`)",
    ),
    (
        "crates/openmvs/tests/common/mod.rs",
        "eventually",
        "the one poll of the end-to-end tests, for what another process does without saying so: \
         failed accepts after the first, the demo's relays",
    ),
    (
        "crates/openmvs/tests/common/mod.rs",
        "send_response",
        "a client honours Retry-After, as a real one would",
    ),
    (
        "crates/openmvs-http/tests/support/retry.rs",
        "send",
        "a client honours Retry-After, as a real one would",
    ),
    ("crates/openmvs-http/tests/abuse/main.rs", "login", "a client honours Retry-After, as a real one would"),
    (
        "crates/openmvs-client/src/time.rs",
        "a_manual_timer_records_each_sleep_and_moves_by_it",
        "the client's manual timer: a sleep that returns at once, which the test checks",
    ),
    (
        "crates/openmvs-client/tests/client/world.rs",
        "sleep",
        "the client's manual timer, whose sleeps return at once after a relay or bulk round",
    ),
    (
        "crates/openmvs-http/tests/national_api/signing_keys.rs",
        "sleep",
        "the client's timer on the fake clock, whose sleeps are recorded and return at once",
    ),
    (
        "crates/openmvs-http/tests/abuse/main.rs",
        "a_429_keeps_the_connection_and_the_next_request_on_it_succeeds",
        "a client honours Retry-After on one kept connection: the rate limiter refills on the real clock",
    ),
];

#[test]
fn tests_do_not_sleep_but_wait_for_events() {
    // Spelt in pieces, so that this file does not name what it looks for.
    let sleeps = [concat!("sle", "ep("), concat!("sle", "ep_until"), concat!("::sle", "ep")];
    let mut wrong = Vec::new();
    let mut used = vec![false; SLEEPS_ALLOWED.len()];
    for s in sources() {
        let in_benches = s.path.contains("/benches/");
        let mut function = "";
        for (n, line, test) in &s.lines {
            if let Some(name) = fn_name(line) {
                function = name;
            }
            if !(*test || in_benches) || !sleeps.iter().any(|p| line.contains(p)) {
                continue;
            }
            match SLEEPS_ALLOWED.iter().position(|(f, name, _)| *f == s.path && *name == function) {
                Some(i) => used[i] = true,
                None => wrong.push(format!("{}:{n}: in `{function}`: {}", s.path, line.trim())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "tests wait for an event (a worker stepped, a fake clock moved, a line printed, a child's \
         exit, `common::eventually` for another process), not for time to pass:\n{}",
        wrong.join("\n")
    );
    let stale: Vec<_> = SLEEPS_ALLOWED.iter().zip(used).filter(|(_, u)| !u).map(|(a, _)| a).collect();
    assert!(stale.is_empty(), "allowed to sleep, but no longer does (drop it from the list): {stale:?}");
}

/// Why a national request names its shape in the service: it reaches the service unvalidated.
const REQUEST: &str = "a request, validated by the service so that a refusal names the field and is audited with \
                       the body as received";

/// The shapes of `openmvs_wire::{api, obp, admin}` the services may name, each place (file, shape)
/// with why. Everything a service answers or keeps is a domain value: the handler makes its shape
/// with a `From` impl, and what a service keeps goes through `openmvs_wire::kept`
/// (ARCHITECTURE.md, `crates/openmvs-wire`). The hub protocol (`openmvs_wire::hub`) is the
/// exception and is not checked here.
const WIRE_SHAPES_IN_SERVICES: &[(&str, &str, &str)] = &[
    ("crates/openmvs-national/src/request.rs", "PackRequest", REQUEST),
    ("crates/openmvs-national/src/packs.rs", "PackRequest", REQUEST),
    ("crates/openmvs-national/src/bulk.rs", "BulkRequest", REQUEST),
    (
        "crates/openmvs-national/src/bulk.rs",
        "BulkRow",
        "a row of a bulk request, validated by the service and kept with the job as submitted",
    ),
    ("crates/openmvs-national/src/alerts.rs", "AlertStatusRequest", REQUEST),
    ("crates/openmvs-national/src/alerts.rs", "AlertCommentRequest", REQUEST),
];

/// The services whose answers are domain values.
const SERVICES: &[&str] = &["crates/openmvs-national/src/", "crates/openmvs-hub/src/"];

/// The shapes of `openmvs_wire::{api, obp, admin}` that `code` names, or why a mention names
/// none the check can tell (a module imported whole, a glob, a group under the crate's root).
fn wire_shapes_named(code: &str) -> Vec<Result<String, String>> {
    let root = concat!("openmvs_wire", "::");
    let mut out = Vec::new();
    for (at, _) in code.match_indices(root) {
        let rest = &code[at + root.len()..];
        let Some((module, tail)) = ["api", "obp", "admin"]
            .iter()
            .find_map(|m| rest.strip_prefix(m).map(|t| (*m, t)))
            .filter(|(_, t)| !t.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
        else {
            if rest.starts_with('{') || rest.starts_with('*') {
                out.push(Err(format!("`{root}{}`: name the shapes under their module", &rest[..1])));
            }
            continue;
        };
        let Some(tail) = tail.strip_prefix("::") else {
            out.push(Err(format!("`{root}{module}` imported whole: name the shapes")));
            continue;
        };
        let names: Vec<&str> = match tail.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())].split(',').collect(),
            None => {
                let end =
                    tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '*')).unwrap_or(tail.len());
                vec![&tail[..end]]
            }
        };
        for name in
            names.iter().map(|n| n.split(" as ").next().unwrap_or("").trim()).filter(|n| !n.is_empty())
        {
            match name {
                "*" | "self" => out.push(Err(format!("`{root}{module}::{name}`: name the shapes"))),
                _ => out.push(Ok(name.to_owned())),
            }
        }
    }
    out
}

#[test]
fn services_answer_with_domain_values_and_name_only_the_requests_they_validate() {
    let mut wrong = Vec::new();
    let mut used = vec![false; WIRE_SHAPES_IN_SERVICES.len()];
    let mut looked = 0;
    for s in sources().into_iter().filter(|s| SERVICES.iter().any(|place| is_in(&s.path, place))) {
        looked += 1;
        let code: String =
            s.lines.iter().filter(|(_, _, test)| !test).map(|(_, l, _)| format!("{l}\n")).collect();
        for named in wire_shapes_named(&code) {
            match named {
                Err(why) => wrong.push(format!("{}: {why}", s.path)),
                Ok(shape) => {
                    match WIRE_SHAPES_IN_SERVICES.iter().position(|(f, n, _)| *f == s.path && *n == shape) {
                        Some(i) => used[i] = true,
                        None => wrong.push(format!("{}: {shape}", s.path)),
                    }
                }
            }
        }
    }
    assert!(looked > 20, "only {looked} service files found");
    assert!(
        wrong.is_empty(),
        "a service answers with a domain value of openmvs-core, which the handler makes into its shape \
         (a `From` impl of openmvs-wire), and keeps answers through `openmvs_wire::kept`; it names no \
         other shape:\n{}",
        wrong.join("\n")
    );
    let stale: Vec<_> =
        WIRE_SHAPES_IN_SERVICES.iter().zip(used).filter(|(_, u)| !u).map(|(a, _)| a).collect();
    assert!(
        stale.is_empty(),
        "allowed to name a shape, but no longer does (drop it from the list): {stale:?}"
    );
}

#[test]
fn the_wire_shape_check_reads_every_way_of_naming_a_shape() {
    let named = |code: &str| wire_shapes_named(code);
    let ok = |v: &[&str]| v.iter().map(|s| Ok((*s).to_owned())).collect::<Vec<Result<String, String>>>();
    assert_eq!(named("use openmvs_wire::api::{AlertList, AlertView as V};"), ok(&["AlertList", "AlertView"]));
    assert_eq!(
        named("use openmvs_wire::obp::{\n    PackQueryBody,\n    UploadStatusBody,\n};"),
        ok(&["PackQueryBody", "UploadStatusBody"])
    );
    assert_eq!(named("let x = openmvs_wire::admin::ClientState::from(&c);"), ok(&["ClientState"]));
    assert_eq!(
        named("use openmvs_wire::hub::Message; use openmvs_wire::kept; use openmvs_wire::apiary::X;"),
        ok(&[])
    );
    for whole in [
        "use openmvs_wire::api;",
        "use openmvs_wire::obp::*;",
        "use openmvs_wire::{api::X, hub};",
        "use openmvs_wire::api::{self, X};",
    ] {
        assert!(named(whole).iter().any(Result::is_err), "{whole}");
    }
}
