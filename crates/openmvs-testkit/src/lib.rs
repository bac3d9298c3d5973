//! What the demo, the benchmark and the tests share to run OpenMVS systems in one process: a
//! fresh PostgreSQL schema per system, a national system served on a port it can stop and start
//! again, the links between national systems and a hub over mutual
//! TLS (as the demo wires them), and temporary directories. Production wiring (opening a node's
//! store, its keys, the runtime) is `openmvs-node`.

mod links;
mod national;
mod schema;
mod temp;

pub use links::{HubLinks, INTERMARKET_TIMEOUT, hub_link, hub_links};
pub use national::{Admission, LOCAL_GTIN, LocalNational};
pub use schema::{System, schema_storage};
pub use temp::TempDir;
