//! One pass over a header block: line ends (with folds), colons and header names, each
//! field's raw value recorded where the scan keeps it.
//!
//! [`super::HeaderIter`] walks a block the same way for anyone who iterates over headers; the
//! scan has its own loop because it runs on every received message, and handing each field
//! back through the iterator's `Result<Option<_>>` and re-dispatching it cost about 20
//! instructions a line more (callgrind, `scan/bye`). The two agree on every block: same fields,
//! same errors in the same order (tested below; the `wire_parse` fuzz target checks the scan
//! as a whole against an independent extractor).

use super::header::{is_token, HeaderName};
use super::line_ends::LineEnds;
use super::{swar, ColdHeaders, RouteTally, Routes, WireError};

/// Raw values gathered in one pass over the header block, parsed afterwards.
#[derive(Default)]
pub(super) struct Raw<'a> {
    pub(super) call_id: Option<&'a [u8]>,
    pub(super) from: Option<&'a [u8]>,
    pub(super) to: Option<&'a [u8]>,
    pub(super) cseq: Option<&'a [u8]>,
    pub(super) via: Option<&'a [u8]>,
    pub(super) max_forwards: Option<&'a [u8]>,
    pub(super) content_length: Option<&'a [u8]>,
    pub(super) cold: ColdHeaders<'a>,
    pub(super) routes: Routes,
    pub(super) via_lines: u32,
}

/// Keeps the first value of a header that may appear once.
#[inline(always)]
fn once<'a>(
    slot: &mut Option<&'a [u8]>,
    value: &'a [u8],
    kind: HeaderName,
) -> Result<(), WireError> {
    match slot {
        Some(_) => Err(WireError::DuplicateHeader(kind)),
        None => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// Keeps the first value of a header that may repeat.
#[inline(always)]
fn first<'a>(slot: &mut Option<&'a [u8]>, value: &'a [u8]) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

impl<'a> Raw<'a> {
    /// Records one field.
    #[inline(always)]
    fn record(&mut self, kind: HeaderName, value: &'a [u8]) -> Result<(), WireError> {
        match kind {
            HeaderName::CallId => once(&mut self.call_id, value, kind)?,
            HeaderName::From => once(&mut self.from, value, kind)?,
            HeaderName::To => once(&mut self.to, value, kind)?,
            HeaderName::CSeq => once(&mut self.cseq, value, kind)?,
            HeaderName::MaxForwards => once(&mut self.max_forwards, value, kind)?,
            HeaderName::ContentLength => once(&mut self.content_length, value, kind)?,
            HeaderName::Via => {
                self.via_lines += 1;
                first(&mut self.via, value);
            }
            HeaderName::Contact => first(&mut self.cold.contact, value),
            HeaderName::RecordRoute => {
                self.routes.record_route.add(value);
                first(&mut self.cold.record_route, value);
            }
            HeaderName::Route => {
                self.routes.route.add(value);
                first(&mut self.cold.route, value);
            }
            HeaderName::Event => first(&mut self.cold.event, value),
            HeaderName::ReferTo => first(&mut self.cold.refer_to, value),
            HeaderName::Replaces => first(&mut self.cold.replaces, value),
            HeaderName::ReferredBy => first(&mut self.cold.referred_by, value),
            HeaderName::SubscriptionState => first(&mut self.cold.subscription_state, value),
            HeaderName::Timestamp => first(&mut self.cold.timestamp, value),
            HeaderName::ContentType => first(&mut self.cold.content_type, value),
            _ => {}
        }
        Ok(())
    }
}

impl RouteTally {
    #[inline]
    fn add(&mut self, value: &[u8]) {
        self.lines += 1;
        self.bytes = self.bytes.saturating_add(value.len() as u32);
        // Route values are short: a plain count beats setting up a vector search.
        self.commas += value.iter().filter(|&&b| b == b',').count() as u32;
    }
}

/// The colon that ends a header name in `line`. Names are short: the first word nearly
/// always holds it.
#[inline(always)]
fn colon(line: &[u8]) -> Option<usize> {
    swar::find(b':', line)
}

/// Scans the header block of `buf` from `start` into `raw`; answers where the body starts
/// (the end of `buf` when no empty line ends the block). Refuses a physical line over
/// `max_line` bytes and more than `max_headers` fields.
#[inline(never)]
pub(super) fn scan<'a>(
    buf: &'a [u8],
    start: usize,
    max_line: usize,
    max_headers: usize,
    raw: &mut Raw<'a>,
) -> Result<usize, WireError> {
    let mut ends = LineEnds::new();
    let mut pos = start;
    let mut count = 0usize;
    loop {
        if pos >= buf.len() {
            return Ok(buf.len());
        }
        let (mut end, mut next) = ends.line(buf, pos);
        if end - pos > max_line {
            return Err(WireError::LineTooLong { max: max_line });
        }
        if end == pos {
            return Ok(next);
        }
        let line = &buf[pos..end];
        let colon = colon(line).ok_or(WireError::MalformedHeaderLine)?;
        // The name checks of `HeaderIter::next_field`, written out: a shared helper returning
        // `Result<(name, kind)>` cost 112 instructions more on the BYE (callgrind, `scan/bye`).
        let mut name = &line[..colon];
        while let [rest @ .., b' ' | b'\t'] = name {
            name = rest;
        }
        let kind = HeaderName::classify_inline(name);
        if kind == HeaderName::Other && !is_token(name) {
            return Err(WireError::MalformedHeaderLine);
        }
        let value_start = pos + colon + 1;
        // Continuation lines start with SP or HT and extend this field.
        while let Some(b' ' | b'\t') = buf.get(next) {
            let (e, n) = ends.line(buf, next);
            if e - next > max_line {
                return Err(WireError::LineTooLong { max: max_line });
            }
            end = e;
            next = n;
        }
        count += 1;
        if count > max_headers {
            return Err(WireError::TooManyHeaders { max: max_headers });
        }
        raw.record(kind, &buf[value_start..end.max(value_start)])?;
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::HeaderIter;
    use proptest::prelude::*;

    /// What the iterator makes of a block: its fields and where the body starts, or its first
    /// error.
    type Fields = Vec<(HeaderName, Vec<u8>)>;

    fn by_iterator(buf: &[u8], max_line: usize) -> Result<(Fields, usize), WireError> {
        let mut iter = HeaderIter::new(buf, 0, max_line);
        let mut fields = Vec::new();
        while let Some(h) = iter.next_field()? {
            fields.push((h.kind, h.value.to_vec()));
        }
        Ok((fields, iter.body_start().unwrap_or(buf.len())))
    }

    fn line() -> impl Strategy<Value = Vec<u8>> {
        let name = prop_oneof![
            Just(&b"Via"[..]),
            Just(&b"v"[..]),
            Just(&b"Route"[..]),
            Just(&b"Record-Route"[..]),
            Just(&b"Contact"[..]),
            Just(&b"X-Any"[..]),
            Just(&b"Bad Name"[..]),
            Just(&b""[..]),
            Just(&b"Event"[..]),
            Just(&b"Content-Type"[..]),
        ];
        let sep = prop_oneof![
            Just(&b": "[..]),
            Just(&b" :"[..]),
            Just(&b"\t: "[..]),
            Just(&b""[..])
        ];
        // Drawn as indexes into the alphabet: a union of seven `Just`s per byte made this
        // test take 46 s in a debug build (and time out under the coverage run's tracer).
        const ALPHABET: [u8; 7] = [b'a', b',', b' ', b'\t', b'\r', b'\n', b':'];
        let value = proptest::collection::vec(0..ALPHABET.len(), 0..90)
            .prop_map(|picks| picks.into_iter().map(|i| ALPHABET[i]).collect::<Vec<u8>>());
        let end = prop_oneof![
            Just(&b"\r\n"[..]),
            Just(&b"\n"[..]),
            Just(&b"\r\n "[..]),
            Just(&b""[..])
        ];
        (name, sep, value, end).prop_map(|(n, s, v, e)| [n, s, &v, e].concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// The scan keeps what the iterator finds (the first value of each kept header, all
        /// Via and route lines counted) and fails where it fails, with the same error.
        #[test]
        fn the_scan_agrees_with_the_iterator(
            lines in proptest::collection::vec(line(), 0..14),
            blank in any::<bool>(),
            max_line in prop_oneof![4usize..40, Just(8192)],
        ) {
            let mut buf = lines.concat();
            if blank {
                buf.extend_from_slice(b"\r\n\r\nbody");
            }
            let mut raw = Raw::default();
            let scanned = scan(&buf, 0, max_line, 12, &mut raw);
            match by_iterator(&buf, max_line) {
                Err(e) => prop_assert_eq!(scanned.err(), Some(e)),
                Ok((fields, body)) if fields.len() > 12 => {
                    prop_assert_eq!(scanned.err(), Some(WireError::TooManyHeaders { max: 12 }));
                    prop_assert!(body <= buf.len());
                }
                Ok((fields, body)) => {
                    prop_assert_eq!(scanned, Ok(body));
                    let firsts = |kind: HeaderName| fields.iter().find(|f| f.0 == kind).map(|f| f.1.clone());
                    let count = |kind: HeaderName| fields.iter().filter(|f| f.0 == kind).count() as u32;
                    prop_assert_eq!(raw.via.map(<[u8]>::to_vec), firsts(HeaderName::Via));
                    prop_assert_eq!(raw.via_lines, count(HeaderName::Via));
                    prop_assert_eq!(raw.cold.contact.map(<[u8]>::to_vec), firsts(HeaderName::Contact));
                    prop_assert_eq!(raw.cold.event.map(<[u8]>::to_vec), firsts(HeaderName::Event));
                    prop_assert_eq!(raw.cold.route.map(<[u8]>::to_vec), firsts(HeaderName::Route));
                    prop_assert_eq!(raw.routes.route.lines, count(HeaderName::Route));
                    prop_assert_eq!(raw.routes.record_route.lines, count(HeaderName::RecordRoute));
                    let commas: usize = fields
                        .iter()
                        .filter(|f| f.0 == HeaderName::RecordRoute)
                        .map(|f| f.1.iter().filter(|&&b| b == b',').count())
                        .sum();
                    prop_assert_eq!(raw.routes.record_route.commas as usize, commas);
                }
            }
        }
    }

    #[test]
    fn a_repeated_unique_header_is_refused() {
        let buf = b"Call-ID: a\r\ni: b\r\n\r\n";
        let err = scan(buf, 0, 100, 10, &mut Raw::default()).err();
        assert_eq!(err, Some(WireError::DuplicateHeader(HeaderName::CallId)));
    }
}
