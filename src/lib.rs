#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod b2bua;
pub mod build;
pub mod dialog;
pub mod id;
pub mod manager;
pub mod metrics;
mod prf;
pub mod refer;
mod scratch;
pub mod security;
pub mod stack;
pub mod state;
mod sync;
pub mod table;
mod timer;
pub mod txn;
mod wheel;
pub mod wire;
