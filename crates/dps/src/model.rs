//! The DPS JSON shapes, typed in `ironhub-wire` (re-exported here so the domain names them
//! as before).

pub use ironhub_wire::dps::*;
