//! Resource quantities (CPU, memory, disk) and their parsing: the types of the placement rules
//! document, defined in `cluster_core::wire::resources` and re-exported here.

pub use cluster_core::wire::resources::{
    ResourceError, Resources, fmt_bytes, fmt_cpu, parse_cpu, parse_disk, parse_memory,
};
