//! Expand and contract: which builds run on which schema, and which migrations may be applied
//! while nodes serve, so that builds N and N+1 run side by side through a rolling upgrade.
//!
//! Every migration declares the oldest build it leaves working ([`Compat`]): an *expand*
//! migration (a table, a nullable column or one with a default, an index) leaves the build before
//! it working, so it is applied first, while the old nodes serve, and the nodes are then upgraded
//! one by one; a *contract* migration (a column dropped or renamed, a constraint the old build's
//! writes break) needs every node on a build that no longer uses what it removes, so it is applied
//! only once they all are. The database records each applied migration's oldest build, and:
//!
//! - a node opens a schema newer than its build only if every migration above its build leaves
//!   its build working ([`may_open`]);
//! - `openmvs migrate` applies a migration only if every node that wrote a heartbeat in the last
//!   [`LIVE_WINDOW_MS`] runs a build it leaves working, and otherwise refuses and says which node
//!   and why ([`may_apply`]).
//!
//! Migrations from before these declarations (up to each engine's baseline) count as needing
//! their own build: the strict rule that held when they were written.

/// What one migration leaves working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compat {
    /// The migration.
    pub version: i64,
    /// The oldest build (named by the newest schema version it knows) that still runs correctly
    /// once the migration is applied: below `version` for an expand, `version` (or above the
    /// build before) for a contract.
    pub runs_builds_from: i64,
    /// What it changes, for the refusal's message.
    pub what: &'static str,
}

/// A node is live if its heartbeat is younger than this.
pub const LIVE_WINDOW_MS: i64 = 30_000;

/// A node that wrote a heartbeat recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    /// Its id.
    pub node_id: String,
    /// The newest schema version its build knows; `None` for a build from before heartbeats
    /// said so (such a node runs on the schema it found, which its build knew exactly).
    pub build: Option<i64>,
    /// How long ago it wrote its heartbeat.
    pub age_ms: i64,
}

/// The oldest build migration `version` leaves working: as declared, or its own version.
pub fn runs_builds_from(compat: &[Compat], version: i64) -> i64 {
    compat.iter().find(|c| c.version == version).map_or(version, |c| c.runs_builds_from)
}

/// Whether migrations `pending` may be applied to a schema at `current` while `live` serve.
///
/// # Errors
///
/// Why not: the first node a migration would break, its build, and what to do.
pub fn may_apply(current: i64, pending: &[i64], compat: &[Compat], live: &[LiveNode]) -> Result<(), String> {
    for &v in pending {
        let needs = runs_builds_from(compat, v);
        for n in live {
            // A node of a build from before heartbeats said so runs the schema it found.
            let build = n.build.unwrap_or(current);
            if build < needs {
                let what = compat.iter().find(|c| c.version == v).map_or("", |c| c.what);
                let what = if what.is_empty() { String::new() } else { format!(" ({what})") };
                return Err(format!(
                    "migration {v}{what} would break node {} (heartbeat {} ms ago), whose build knows schema \
                     {build}: it needs builds of schema {needs} or later. Upgrade every node to such a build, \
                     then migrate again",
                    n.node_id, n.age_ms
                ));
            }
        }
    }
    Ok(())
}

/// Whether a build knowing schema `build` may run on a schema at `current`, whose migrations
/// above `build` leave builds from `floor` on working (`floor` is the highest of their oldest
/// builds).
///
/// # Errors
///
/// Why not, and what to do.
pub fn may_open(build: i64, current: i64, floor: i64) -> Result<(), String> {
    if current < build {
        return Err(format!(
            "the schema has version {current}, this build needs {build}: run `openmvs migrate`"
        ));
    }
    if current > build && floor > build {
        return Err(format!(
            "the schema has version {current}, which needs builds of schema {floor} or later; this build knows \
             schema {build}: upgrade openmvs"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPAT: &[Compat] = &[
        Compat { version: 5, runs_builds_from: 4, what: "adds a column" },
        Compat { version: 6, runs_builds_from: 6, what: "drops packs.old" },
    ];

    fn node(id: &str, build: Option<i64>) -> LiveNode {
        LiveNode { node_id: id.into(), build, age_ms: 1_000 }
    }

    #[test]
    fn an_expand_is_applied_under_the_build_before_and_a_contract_waits_for_every_node() {
        // Expand 5 while nodes of build 4 serve (one from before heartbeats said their build).
        assert_eq!(may_apply(4, &[5], COMPAT, &[node("a", Some(4)), node("b", None)]), Ok(()));
        // Contract 6 while a node of build 5 still serves: refused, naming it.
        let e = may_apply(5, &[6], COMPAT, &[node("a", Some(6)), node("b", Some(5))]).unwrap_err();
        assert!(
            e.contains("migration 6 (drops packs.old) would break node b") && e.contains("schema 6"),
            "{e}"
        );
        // Once every node runs build 6.
        assert_eq!(may_apply(5, &[6], COMPAT, &[node("a", Some(6)), node("b", Some(6))]), Ok(()));
        // No node serving: anything goes.
        assert_eq!(may_apply(4, &[5, 6], COMPAT, &[]), Ok(()));
        // Undeclared migrations need their own build.
        assert!(may_apply(6, &[7], COMPAT, &[node("a", Some(6))]).is_err());
    }

    #[test]
    fn a_build_runs_on_a_newer_schema_only_if_what_is_above_it_leaves_it_working() {
        assert_eq!(may_open(5, 5, 0), Ok(()));
        assert!(may_open(5, 4, 0).unwrap_err().contains("openmvs migrate"));
        assert_eq!(may_open(4, 5, 4), Ok(()));
        assert!(may_open(5, 6, 6).unwrap_err().contains("upgrade openmvs"));
    }
}
