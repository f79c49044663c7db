//! A dialog's route set as the request builder reads it: a list the caller holds, or the
//! packed form a [`crate::dialog::DialogInfo`] keeps in the one allocation of its data.

use core::fmt;

/// The route set of a dialog, in the order our requests visit it; each entry a name-addr as
/// in Record-Route, e.g. `<sip:p1.example.com;lr>`. Copy, borrowed, never allocating.
///
/// ```
/// use sipdialog::build::RouteSet;
///
/// let entries: Vec<Box<[u8]>> = vec![b"<sip:p1;lr>".to_vec().into(), b"<sip:p2;lr>".to_vec().into()];
/// let routes = RouteSet::from(&entries[..]);
/// assert_eq!(routes.first(), Some(&b"<sip:p1;lr>"[..]));
/// assert_eq!(routes.iter().count(), 2);
/// assert!(RouteSet::default().is_empty());
/// ```
#[derive(Clone, Copy)]
pub struct RouteSet<'a>(Repr<'a>);

#[derive(Clone, Copy)]
enum Repr<'a> {
    Boxed(&'a [Box<[u8]>]),
    Slices(&'a [&'a [u8]]),
    /// Each entry its length (four bytes, little-endian), then its bytes: see [`pack`].
    Packed(&'a [u8]),
}

/// Bytes [`pack`] puts before each entry.
const LEN_BYTES: usize = 4;

/// Appends `entries` to `out` in the packed form [`RouteSet::packed`] reads.
pub(crate) fn pack<'e>(entries: impl IntoIterator<Item = &'e [u8]>, out: &mut Vec<u8>) {
    for entry in entries {
        // An entry is part of a message, far below 4 GiB.
        let len = u32::try_from(entry.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&entry[..len as usize]);
    }
}

/// Bytes [`pack`] writes for `routes`.
pub(crate) fn packed_len(routes: RouteSet<'_>) -> usize {
    routes.iter().map(|r| LEN_BYTES + r.len()).sum()
}

impl<'a> RouteSet<'a> {
    /// The route set [`pack`] wrote into `bytes`.
    pub(crate) fn packed(bytes: &'a [u8]) -> RouteSet<'a> {
        RouteSet(Repr::Packed(bytes))
    }

    /// The entries in order.
    pub fn iter(&self) -> Routes<'a> {
        Routes {
            set: *self,
            next: 0,
        }
    }

    /// The first entry: the next hop of a request.
    pub fn first(&self) -> Option<&'a [u8]> {
        self.iter().next()
    }

    /// Whether the set has no entry.
    pub fn is_empty(&self) -> bool {
        self.first().is_none()
    }
}

impl Default for RouteSet<'_> {
    /// No entry.
    fn default() -> Self {
        RouteSet(Repr::Slices(&[]))
    }
}

impl<'a> From<&'a [Box<[u8]>]> for RouteSet<'a> {
    fn from(entries: &'a [Box<[u8]>]) -> RouteSet<'a> {
        RouteSet(Repr::Boxed(entries))
    }
}

impl<'a> From<&'a [&'a [u8]]> for RouteSet<'a> {
    fn from(entries: &'a [&'a [u8]]) -> RouteSet<'a> {
        RouteSet(Repr::Slices(entries))
    }
}

impl<'a> IntoIterator for RouteSet<'a> {
    type Item = &'a [u8];
    type IntoIter = Routes<'a>;

    fn into_iter(self) -> Routes<'a> {
        self.iter()
    }
}

impl PartialEq for RouteSet<'_> {
    /// Same entries in the same order, whatever form each set has.
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for RouteSet<'_> {}

impl fmt::Debug for RouteSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

/// The entries of a [`RouteSet`], in order.
#[derive(Clone, Debug)]
pub struct Routes<'a> {
    set: RouteSet<'a>,
    /// The next entry's index (a list) or byte offset (packed).
    next: usize,
}

impl<'a> Iterator for Routes<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let entry = match self.set.0 {
            Repr::Boxed(list) => list.get(self.next).map(|e| &e[..]),
            Repr::Slices(list) => list.get(self.next).copied(),
            Repr::Packed(bytes) => {
                let len = bytes.get(self.next..self.next + LEN_BYTES)?;
                let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let start = self.next + LEN_BYTES;
                let entry = bytes.get(start..start + len)?;
                self.next = start + len;
                return Some(entry);
            }
        };
        self.next += 1;
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `pack` writes reads back entry for entry, empty entries and an empty set included.
    #[test]
    fn a_packed_set_reads_back_what_was_packed() {
        use proptest::prelude::*;
        let sets = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6);
        proptest!(|(entries in sets)| {
            let mut bytes = vec![7u8; 3];
            pack(entries.iter().map(|e| &e[..]), &mut bytes);
            let packed = RouteSet::packed(&bytes[3..]);
            let slices: Vec<&[u8]> = entries.iter().map(|e| &e[..]).collect();
            prop_assert_eq!(packed.iter().collect::<Vec<_>>(), slices.clone());
            prop_assert_eq!(packed, RouteSet::from(&slices[..]));
            prop_assert_eq!(packed.is_empty(), entries.is_empty());
        });
    }
}
