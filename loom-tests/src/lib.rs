//! Loom models of the atomic protocols of `sipdialog`; see `tests/`.
