//! Standard output goes through `openmvs_node::out` (`outln!` ends quietly when the reader has
//! gone away); re-exported here so that every command writes `use crate::out::outln`.

pub use openmvs_node::out::try_line;
pub(crate) use openmvs_node::outln;
