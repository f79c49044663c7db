#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod build;
pub mod id;
pub mod state;
mod sync;
pub mod table;
pub mod wire;
