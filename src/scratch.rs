//! A per-thread staging buffer for data written once and then copied into a shared allocation
//! of exact size (an INVITE record's copy, a dialog's cold data): written into a `Vec` that
//! keeps its capacity between uses, so the staging costs no allocation of its own.

use std::cell::Cell;

/// Capacity kept between uses; a buffer grown past it (an attacker-sized message) is freed.
const KEPT_CAPACITY: usize = 4096;

thread_local! {
    static BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `write` with this thread's empty staging buffer. Reentrant: a nested call gets a
/// fresh buffer (and allocates) instead of sharing one.
pub(crate) fn with_buffer<R>(write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buffer = BUFFER.take();
    buffer.clear();
    let out = write(&mut buffer);
    if buffer.capacity() <= KEPT_CAPACITY {
        BUFFER.set(buffer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_comes_back_empty_and_keeps_only_a_bounded_capacity() {
        with_buffer(|b| b.extend_from_slice(b"abc"));
        with_buffer(|b| {
            assert!(b.is_empty());
            assert!(b.capacity() >= 3, "the capacity is kept between uses");
            b.resize(KEPT_CAPACITY + 1, 0);
        });
        with_buffer(|b| assert!(b.capacity() < KEPT_CAPACITY, "an oversized buffer is freed"));
    }

    #[test]
    fn a_nested_use_gets_its_own_buffer() {
        with_buffer(|outer| {
            outer.push(1);
            with_buffer(|inner| {
                assert!(inner.is_empty());
                inner.push(2);
            });
            assert_eq!(outer.as_slice(), [1]);
        });
    }
}
