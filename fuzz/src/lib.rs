//! Support code for the sipdialog fuzz targets.
//!
//! - [`reference`]: a slow, independent extractor of the dialog identity, the oracle of the
//!   `wire_parse` target.
//! - [`model`]: the operations of the `table_ops` target and the raw messages it builds.
//! - `manager_ops` (in `fuzz_targets/`) builds its own messages from small pools.

// The reference answers `Err(())` where only "does not parse" matters.
#![allow(clippy::result_unit_err)]

pub mod model;
pub mod reference;
