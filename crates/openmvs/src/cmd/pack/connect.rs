//! Where a pack command connects: each setting from the first of a flag, the environment and a
//! profile of the profile file, and an error naming what to set when none has it.
//!
//! ```toml
//! # profiles.toml: one table per profile
//! [de-pharmacy]
//! url = "https://127.0.0.1:8401"
//! client_id = "cl_..."
//! client_secret = "..."            # or client_secret_env = "VARIABLE" naming where it is
//! ca_cert = "ca/ca.pem"            # relative to this file; required for https://
//! timeout = 30                     # seconds one attempt of a request may take
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::cli::ConnectionArgs;

/// The profile to use when `--profile` is not given.
pub const ENV_PROFILE: &str = "OPENMVS_PROFILE";
/// The profile file when `--profiles` is not given.
pub const ENV_PROFILES: &str = "OPENMVS_PROFILES";
/// The national system's URL.
pub const ENV_URL: &str = "OPENMVS_URL";
/// The client id.
pub const ENV_CLIENT_ID: &str = "OPENMVS_CLIENT_ID";
/// The client's secret.
pub const ENV_CLIENT_SECRET: &str = "OPENMVS_CLIENT_SECRET";
/// The CA certificate file.
pub const ENV_CA_CERT: &str = "OPENMVS_CA_CERT";
/// The timeout of one attempt, in seconds.
pub const ENV_TIMEOUT: &str = "OPENMVS_TIMEOUT";

/// One attempt of a request may take this long unless a setting says otherwise: the client's own
/// default, long enough for an inter-market request on a slow line.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One profile of a profile file: a table `[NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The national system, e.g. `https://127.0.0.1:8401`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Or the environment variable that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// The CA certificate(s) to trust, PEM; a relative path is relative to the profile file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// Seconds one attempt of a request may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// Where to connect, every piece found, each with where it came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The national system's base URL.
    pub url: String,
    /// The client id.
    pub client_id: String,
    /// The client's secret.
    pub client_secret: String,
    /// Where the id and the secret came from, e.g. `OPENMVS_CLIENT_SECRET`.
    pub credentials_from: String,
    /// The CA certificate file, resolved against where it was named.
    pub ca_cert: Option<PathBuf>,
    /// Where the CA certificate was named.
    pub ca_cert_from: String,
    /// How long one attempt may take.
    pub timeout: Duration,
}

/// The profile named by the flags or the environment, read from its file: its name, the file and
/// the profile; `None` when no profile is named.
fn named_profile(
    flags: &ConnectionArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<(String, PathBuf, Profile)>> {
    let Some(name) = flags.profile.clone().or_else(|| env(ENV_PROFILE)) else { return Ok(None) };
    let file = match (&flags.profiles, env(ENV_PROFILES)) {
        (Some(f), _) => f.clone(),
        (None, Some(f)) => PathBuf::from(f),
        (None, None) => default_profiles_file(env).ok_or_else(|| {
            anyhow!(
                "profile '{name}': no profile file: give --profiles FILE or set {ENV_PROFILES} \
                 (no home directory to look in)"
            )
        })?,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        anyhow!(
            "profile '{name}': reading the profile file {}: {e} (give another with --profiles FILE or {ENV_PROFILES})",
            file.display()
        )
    })?;
    let mut all = parse_profiles(&text).with_context(|| format!("the profile file {}", file.display()))?;
    let Some(profile) = all.remove(&name) else {
        let names: Vec<&str> = all.keys().map(String::as_str).collect();
        bail!(
            "no profile '{name}' in {}; it has: {}",
            file.display(),
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        );
    };
    Ok(Some((name, file, profile)))
}

/// The profiles of a profile file, by name.
pub fn parse_profiles(text: &str) -> anyhow::Result<BTreeMap<String, Profile>> {
    Ok(toml::from_str(text)?)
}

/// A profile file holding `profiles` in this order, with a first line saying what it is.
pub fn render_profiles(header: &str, profiles: &[(String, Profile)]) -> anyhow::Result<String> {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&format!("# {line}\n"));
    }
    for (name, profile) in profiles {
        // A name that is not a bare key is quoted as TOML quotes strings.
        let key = if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            name.clone()
        } else {
            toml::Value::String(name.clone()).to_string()
        };
        out.push_str(&format!("\n[{key}]\n{}", toml::to_string(profile)?));
    }
    Ok(out)
}

/// The profile file in the platform's configuration directory: `$XDG_CONFIG_HOME/openmvs` or
/// `~/.config/openmvs` on Linux and other Unix systems, `~/Library/Application Support/openmvs` on
/// macOS, `%APPDATA%\openmvs` on Windows.
pub fn default_profiles_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let dir = if cfg!(windows) {
        PathBuf::from(env("APPDATA")?)
    } else if cfg!(target_os = "macos") {
        PathBuf::from(env("HOME")?).join("Library").join("Application Support")
    } else {
        // The XDG rule: a relative XDG_CONFIG_HOME is ignored.
        match env("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
            Some(d) => d,
            None => PathBuf::from(env("HOME")?).join(".config"),
        }
    };
    Some(dir.join("openmvs").join("profiles.toml"))
}

/// Every setting from the first of the flags, the environment (`env` looks a variable up; an
/// empty one counts as unset) and the named profile.
pub fn resolve(flags: &ConnectionArgs, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let named = named_profile(flags, &env)?;
    let profile = named.as_ref().map(|(_, _, p)| p);
    // "the profile 'x' (key)" for messages, and what to do when a piece is missing.
    let in_profile = |key: &str| match &named {
        Some((name, file, _)) => format!("profile '{name}' ({key} in {})", file.display()),
        None => format!("a profile's {key}"),
    };
    let missing = |what: &str, flag: Option<&str>, var: &str, key: &str| {
        let place = match &named {
            Some((name, file, _)) => format!("add {key} to profile '{name}' in {}", file.display()),
            None => format!("name a profile (--profile NAME or {ENV_PROFILE}) that has {key}"),
        };
        match flag {
            Some(flag) => anyhow!("no {what}: give {flag}, set {var}, or {place}"),
            None => anyhow!("no {what}: set {var}, or {place}"),
        }
    };
    let profile_source =
        named.as_ref().map(|(name, file, _)| format!("profile '{name}' in {}", file.display()));
    let profile_source = profile_source.unwrap_or_default();
    let pick = |flag: Option<String>, flag_name: &str, var: &str, from_profile: Option<String>| {
        if let Some(v) = flag {
            Some((v, flag_name.to_owned()))
        } else if let Some(v) = env(var) {
            Some((v, var.to_owned()))
        } else {
            from_profile.map(|v| (v, profile_source.clone()))
        }
    };

    let (url, _) = pick(flags.url.clone(), "--url", ENV_URL, profile.and_then(|p| p.url.clone()))
        .ok_or_else(|| missing("national system to connect to", Some("--url URL"), ENV_URL, "url"))?;
    let (client_id, id_from) = pick(
        flags.client_id.clone(),
        "--client-id",
        ENV_CLIENT_ID,
        profile.and_then(|p| p.client_id.clone()),
    )
    .ok_or_else(|| missing("client id", Some("--client-id ID"), ENV_CLIENT_ID, "client_id"))?;
    let (client_secret, secret_from) = match env(ENV_CLIENT_SECRET) {
        Some(s) => (s, ENV_CLIENT_SECRET.to_owned()),
        None => match profile.map(|p| (&p.client_secret, &p.client_secret_env)) {
            Some((Some(_), Some(_))) => {
                bail!("{}: give client_secret or client_secret_env, not both", in_profile("client_secret"))
            }
            Some((Some(s), None)) => (s.clone(), profile_source.clone()),
            Some((None, Some(var))) => {
                let s = env(var).ok_or_else(|| {
                    anyhow!("{}: the variable {var} is not set", in_profile("client_secret_env"))
                })?;
                (s, format!("{var}, named by {}", in_profile("client_secret_env")))
            }
            _ => {
                return Err(missing(
                    "client secret (never a flag)",
                    None,
                    ENV_CLIENT_SECRET,
                    "client_secret or client_secret_env",
                ));
            }
        },
    };
    let credentials_from = if id_from == secret_from {
        id_from
    } else {
        format!("id from {id_from}, secret from {secret_from}")
    };

    // A path from a flag or the environment is relative to where the command runs; one from a
    // profile is relative to the profile file, so that a file and its certificate move together.
    let from_profile = named.as_ref().and_then(|(_, file, p)| {
        p.ca_cert.as_ref().map(|c| file.parent().map_or_else(|| c.clone(), |dir| dir.join(c)))
    });
    let ca = match (&flags.ca_cert, env(ENV_CA_CERT)) {
        (Some(f), _) => Some((f.clone(), "--ca-cert".to_owned())),
        (None, Some(f)) => Some((PathBuf::from(f), ENV_CA_CERT.to_owned())),
        (None, None) => from_profile.map(|f| (f, profile_source.clone())),
    };
    if ca.is_none() && url.to_ascii_lowercase().starts_with("https://") {
        let e = missing(
            &format!("CA certificate to trust for {url}"),
            Some("--ca-cert FILE"),
            ENV_CA_CERT,
            "ca_cert",
        );
        bail!(
            "{e} (the demo's is ca/ca.pem in its data directory; /etc/ssl/certs/ca-certificates.crt \
             trusts publicly issued certificates)"
        );
    }
    let (ca_cert, ca_cert_from) = match ca {
        Some((f, from)) => (Some(f), from),
        None => (None, String::new()),
    };

    let timeout = match (flags.timeout, env(ENV_TIMEOUT)) {
        (Some(t), _) => Some((t, "--timeout".to_owned())),
        (None, Some(t)) => Some((
            t.parse().map_err(|_| anyhow!("{ENV_TIMEOUT}: '{t}' is not a whole number of seconds"))?,
            ENV_TIMEOUT.to_owned(),
        )),
        (None, None) => profile.and_then(|p| p.timeout).map(|t| (t, format!("timeout of {profile_source}"))),
    };
    let timeout = match timeout {
        Some((0, from)) => bail!("{from}: the timeout must be at least 1 second"),
        Some((t, _)) => Duration::from_secs(t),
        None => DEFAULT_TIMEOUT,
    };
    Ok(Settings { url, client_id, client_secret, credentials_from, ca_cert, ca_cert_from, timeout })
}

/// The CA certificates `settings` names, read.
pub fn read_ca(settings: &Settings) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(path) = &settings.ca_cert else { return Ok(None) };
    std::fs::read(path).map(Some).map_err(|e| {
        anyhow!("reading the CA certificate {} (from {}): {e}", path.display(), settings.ca_cert_from)
    })
}

/// The profiles `openmvs demo` writes next to demo.json: `<market>-<role>` for the first client of
/// each role, `-2`, `-3`... for the next (`de-pharmacy`, `de-pharmacy-2`, `de-nmvo`).
pub fn demo_profiles(doc: &serde_json::Value) -> Vec<(String, Profile)> {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let ca_cert = text(&doc["ca_cert"]).map(PathBuf::from);
    let mut out = Vec::new();
    let Some(markets) = doc["markets"].as_object() else { return out };
    for (market, m) in markets {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for c in m["clients"].as_array().into_iter().flatten() {
            let role = c["role"].as_str().unwrap_or("client").to_ascii_lowercase();
            let n = seen.entry(role.clone()).or_default();
            *n += 1;
            let base = format!("{}-{role}", market.to_ascii_lowercase());
            let name = if *n == 1 { base } else { format!("{base}-{n}") };
            out.push((
                name,
                Profile {
                    url: text(&m["url"]),
                    client_id: text(&c["client_id"]),
                    client_secret: text(&c["client_secret"]),
                    client_secret_env: None,
                    ca_cert: ca_cert.clone(),
                    timeout: None,
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmvs_testkit::TempDir;
    use std::collections::HashMap;
    use std::path::Path;

    fn p(path: &str) -> &Path {
        Path::new(path)
    }

    const FILE: &str = r#"
[de-pharmacy]
url = "https://profile.example:8401"
client_id = "cl_profile"
client_secret = "profile-secret"
ca_cert = "ca/ca.pem"
timeout = 7

[from-env]
url = "http://127.0.0.1:8401"
client_id = "cl_env"
client_secret_env = "MY_SECRET"

[both]
url = "http://127.0.0.1:8401"
client_id = "cl_both"
client_secret = "a"
client_secret_env = "MY_SECRET"

[bare]
"#;

    struct World {
        dir: TempDir,
        env: HashMap<String, String>,
    }

    impl World {
        fn new() -> World {
            let dir = TempDir::new("profiles");
            std::fs::write(dir.path().join("profiles.toml"), FILE).unwrap();
            let mut env = HashMap::new();
            env.insert(ENV_PROFILES.to_owned(), dir.path().join("profiles.toml").display().to_string());
            World { dir, env }
        }

        fn set(mut self, k: &str, v: &str) -> World {
            self.env.insert(k.to_owned(), v.to_owned());
            self
        }

        fn resolve(&self, flags: &ConnectionArgs) -> anyhow::Result<Settings> {
            resolve(flags, &|k| self.env.get(k).cloned())
        }

        fn error(&self, flags: &ConnectionArgs) -> String {
            format!("{:#}", self.resolve(flags).expect_err("an error"))
        }
    }

    fn profile(name: &str) -> ConnectionArgs {
        ConnectionArgs { profile: Some(name.into()), ..ConnectionArgs::default() }
    }

    #[test]
    fn a_profile_gives_every_setting_and_its_ca_cert_is_relative_to_its_file() {
        let w = World::new();
        let s = w.resolve(&profile("de-pharmacy")).unwrap();
        assert_eq!(
            (s.url.as_str(), s.client_id.as_str(), s.client_secret.as_str(), s.timeout),
            ("https://profile.example:8401", "cl_profile", "profile-secret", Duration::from_secs(7))
        );
        assert_eq!(s.ca_cert.as_deref(), Some(w.dir.path().join("ca/ca.pem").as_path()));
        let file = w.dir.path().join("profiles.toml");
        assert_eq!(s.credentials_from, format!("profile 'de-pharmacy' in {}", file.display()));
        assert_eq!(s.ca_cert_from, s.credentials_from);
    }

    #[test]
    fn the_environment_overrides_the_profile_and_flags_override_the_environment() {
        let w = World::new()
            .set(ENV_URL, "http://env.example:1")
            .set(ENV_CLIENT_ID, "cl_env")
            .set(ENV_CLIENT_SECRET, "env-secret")
            .set(ENV_CA_CERT, "env-ca.pem")
            .set(ENV_TIMEOUT, "9")
            .set(ENV_PROFILE, "de-pharmacy");
        let s = w.resolve(&ConnectionArgs::default()).unwrap();
        assert_eq!(
            (s.url.as_str(), s.client_id.as_str(), s.client_secret.as_str(), s.timeout),
            ("http://env.example:1", "cl_env", "env-secret", Duration::from_secs(9))
        );
        assert_eq!((s.ca_cert.as_deref(), s.ca_cert_from.as_str()), (Some(p("env-ca.pem")), ENV_CA_CERT));
        assert_eq!(s.credentials_from, "id from OPENMVS_CLIENT_ID, secret from OPENMVS_CLIENT_SECRET");

        let flags = ConnectionArgs {
            url: Some("http://flag.example:2".into()),
            client_id: Some("cl_flag".into()),
            ca_cert: Some("flag-ca.pem".into()),
            timeout: Some(11),
            ..ConnectionArgs::default()
        };
        let s = w.resolve(&flags).unwrap();
        assert_eq!(
            (s.url.as_str(), s.client_id.as_str(), s.client_secret.as_str(), s.timeout),
            ("http://flag.example:2", "cl_flag", "env-secret", Duration::from_secs(11))
        );
        assert_eq!(s.ca_cert.as_deref(), Some(p("flag-ca.pem")));
        assert_eq!(s.credentials_from, "id from --client-id, secret from OPENMVS_CLIENT_SECRET");
    }

    #[test]
    fn the_profile_flag_overrides_the_profile_variable_and_the_profiles_flag_the_file_variable() {
        let other = TempDir::new("other-profiles");
        std::fs::write(
            other.path().join("p.toml"),
            "[x]\nurl = \"http://other:1\"\nclient_id = \"o\"\nclient_secret = \"s\"\n",
        )
        .unwrap();
        let w = World::new().set(ENV_PROFILE, "de-pharmacy");
        let flags = ConnectionArgs {
            profile: Some("x".into()),
            profiles: Some(other.path().join("p.toml")),
            ..ConnectionArgs::default()
        };
        assert_eq!(w.resolve(&flags).unwrap().url, "http://other:1");
        let e = w.resolve(&profile("from-env")).expect_err("MY_SECRET is not set");
        assert!(e.to_string().contains("MY_SECRET"), "{e}");
    }

    #[test]
    fn a_secret_comes_from_the_variable_a_profile_names() {
        let w = World::new().set("MY_SECRET", "from-my-secret");
        let s = w.resolve(&profile("from-env")).unwrap();
        assert_eq!(s.client_secret, "from-my-secret");
        assert!(
            s.credentials_from.contains("MY_SECRET, named by profile 'from-env'"),
            "{}",
            s.credentials_from
        );
        assert_eq!((s.ca_cert, s.timeout), (None, DEFAULT_TIMEOUT), "plain http needs no CA");
    }

    #[test]
    fn each_missing_or_contradictory_piece_is_named_with_where_to_set_it() {
        let w = World::new();
        let check = |flags: &ConnectionArgs, w: &World, wanted: &[&str]| {
            let e = w.error(flags);
            for part in wanted {
                assert!(e.contains(part), "{part:?} is not in: {e}");
            }
        };
        check(
            &ConnectionArgs::default(),
            &w,
            &["no national system to connect to", "--url URL", ENV_URL, "--profile NAME", ENV_PROFILE],
        );
        check(&profile("bare"), &w, &["no national system", "add url to profile 'bare' in", "profiles.toml"]);
        let with_url = ConnectionArgs { url: Some("http://h:1".into()), ..profile("bare") };
        check(
            &with_url,
            &w,
            &["no client id", "--client-id ID", ENV_CLIENT_ID, "add client_id to profile 'bare'"],
        );
        let with_id = ConnectionArgs { client_id: Some("c".into()), ..with_url };
        check(
            &with_id,
            &w,
            &["no client secret (never a flag)", ENV_CLIENT_SECRET, "client_secret or client_secret_env"],
        );
        check(&profile("from-env"), &w, &["client_secret_env", "the variable MY_SECRET is not set"]);
        check(&profile("both"), &w, &["not both"]);
        let https = ConnectionArgs { url: Some("https://h:1".into()), ..with_id };
        check(
            &https,
            &w.set(ENV_CLIENT_SECRET, "s"),
            &["no CA certificate to trust for https://h:1", "--ca-cert FILE", ENV_CA_CERT, "ca_cert"],
        );
        let w = World::new();
        check(
            &profile("nobody"),
            &w,
            &["no profile 'nobody' in", "it has: bare, both, de-pharmacy, from-env"],
        );
        let zero = ConnectionArgs { timeout: Some(0), ..profile("de-pharmacy") };
        check(&zero, &w, &["--timeout: the timeout must be at least 1 second"]);
        check(
            &profile("de-pharmacy"),
            &w.set(ENV_TIMEOUT, "soon"),
            &["OPENMVS_TIMEOUT: 'soon' is not a whole number"],
        );
        let w = World::new().set(ENV_PROFILES, "/nonexistent/profiles.toml");
        check(
            &profile("de-pharmacy"),
            &w,
            &["reading the profile file /nonexistent/profiles.toml", "--profiles FILE"],
        );
    }

    #[test]
    fn an_unknown_key_in_a_profile_is_refused_by_name() {
        let e = parse_profiles("[a]\nurl = \"http://h\"\nclient_secert = \"x\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("client_secert"), "{e:#}");
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let w = World::new().set(ENV_URL, "");
        assert_eq!(w.resolve(&profile("de-pharmacy")).unwrap().url, "https://profile.example:8401");
    }

    #[test]
    fn the_default_profile_file_is_in_the_platform_configuration_directory() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        if cfg!(all(unix, not(target_os = "macos"))) {
            let home = env(&[("HOME", "/home/ana")]);
            assert_eq!(
                default_profiles_file(&home),
                Some(PathBuf::from("/home/ana/.config/openmvs/profiles.toml"))
            );
            let xdg = env(&[("HOME", "/home/ana"), ("XDG_CONFIG_HOME", "/cfg")]);
            assert_eq!(default_profiles_file(&xdg), Some(PathBuf::from("/cfg/openmvs/profiles.toml")));
            let relative = env(&[("HOME", "/home/ana"), ("XDG_CONFIG_HOME", "cfg")]);
            assert_eq!(
                default_profiles_file(&relative),
                Some(PathBuf::from("/home/ana/.config/openmvs/profiles.toml"))
            );
            assert_eq!(default_profiles_file(&env(&[])), None);
        }
    }

    #[test]
    fn the_demo_profiles_read_back_as_written() {
        let doc = serde_json::json!({
            "ca_cert": "/demo/ca/ca.pem",
            "markets": {"DE": {"url": "https://127.0.0.1:8401", "clients": [
                {"client_id": "a", "client_secret": "sa", "role": "PHARMACY"},
                {"client_id": "b", "client_secret": "sb", "role": "PHARMACY"},
                {"client_id": "c", "client_secret": "sc", "role": "NMVO"},
            ]}},
        });
        let profiles = demo_profiles(&doc);
        let names: Vec<&str> = profiles.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["de-pharmacy", "de-pharmacy-2", "de-nmvo"]);
        let text = render_profiles("written by a test\nsecond line", &profiles).unwrap();
        assert!(text.starts_with("# written by a test\n# second line\n"), "{text}");
        let back = parse_profiles(&text).unwrap();
        assert_eq!(back.len(), 3);
        for (name, p) in &profiles {
            assert_eq!(back.get(name), Some(p), "{text}");
        }
        assert_eq!(back["de-pharmacy-2"].client_secret.as_deref(), Some("sb"));
        assert_eq!(back["de-nmvo"].ca_cert.as_deref(), Some(p("/demo/ca/ca.pem")));
    }
}
