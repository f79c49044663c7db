//! Header names (full and compact forms) and the iterator over raw header fields.

use super::line_ends::LineEnds;
use super::swar;
use super::WireError;

/// The header fields the scanner knows by name. Anything else is [`HeaderName::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderName {
    /// `Call-ID` / `i`
    CallId,
    /// `From` / `f`
    From,
    /// `To` / `t`
    To,
    /// `CSeq`
    CSeq,
    /// `Via` / `v`
    Via,
    /// `Max-Forwards`
    MaxForwards,
    /// `Content-Length` / `l`
    ContentLength,
    /// `Contact` / `m`
    Contact,
    /// `Record-Route`
    RecordRoute,
    /// `Route`
    Route,
    /// `Event` / `o`
    Event,
    /// `Refer-To` / `r`
    ReferTo,
    /// `Replaces`
    Replaces,
    /// `Referred-By` / `b`
    ReferredBy,
    /// `Subscription-State`
    SubscriptionState,
    /// `Content-Type` / `c`
    ContentType,
    /// `Supported` / `k`
    Supported,
    /// `Subject` / `s`
    Subject,
    /// `Content-Encoding` / `e`
    ContentEncoding,
    /// `Timestamp` (a 100 to a request echoes it, RFC 3261 §8.2.6.1)
    Timestamp,
    /// Any other header.
    Other,
}

impl HeaderName {
    /// The kind of a header written under its full name ([`HeaderName::as_str`]), as our
    /// own copies write them; any other name is classified as the scanner does.
    pub(crate) fn classify_canonical(name: &[u8]) -> HeaderName {
        // Told apart by length and one byte, then checked whole.
        let guess = match (name.len(), name.first(), name.get(1)) {
            (3, Some(b'V'), _) => HeaderName::Via,
            (4, Some(b'F'), _) => HeaderName::From,
            (2, Some(b'T'), _) => HeaderName::To,
            (7, Some(b'C'), Some(b'a')) => HeaderName::CallId,
            (7, Some(b'C'), _) => HeaderName::Contact,
            (4, Some(b'C'), _) => HeaderName::CSeq,
            (5, Some(b'R'), _) => HeaderName::Route,
            (12, Some(b'R'), _) => HeaderName::RecordRoute,
            (14, Some(b'C'), _) => HeaderName::ContentLength,
            _ => return HeaderName::classify(name),
        };
        match guess.as_str().as_bytes() == name {
            true => guess,
            false => HeaderName::classify(name),
        }
    }

    /// Classifies a header name: case-insensitive, full or compact form.
    pub fn classify(name: &[u8]) -> HeaderName {
        HeaderName::classify_inline(name)
    }

    /// [`HeaderName::classify`], inlined into the scan's loop.
    #[inline(always)]
    pub(crate) fn classify_inline(name: &[u8]) -> HeaderName {
        if let [c] = name {
            return match c.to_ascii_lowercase() {
                b'i' => HeaderName::CallId,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'v' => HeaderName::Via,
                b'm' => HeaderName::Contact,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'k' => HeaderName::Supported,
                b's' => HeaderName::Subject,
                b'r' => HeaderName::ReferTo,
                b'e' => HeaderName::ContentEncoding,
                b'o' => HeaderName::Event,
                b'b' => HeaderName::ReferredBy,
                _ => HeaderName::Other,
            };
        }
        // Length and first letter leave at most one candidate to compare.
        let first = name.first().map_or(0, u8::to_ascii_lowercase);
        let candidate = match (name.len(), first) {
            (2, b't') => HeaderName::To,
            (3, b'v') => HeaderName::Via,
            (4, b'f') => HeaderName::From,
            (4, b'c') => HeaderName::CSeq,
            (5, b'r') => HeaderName::Route,
            (5, b'e') => HeaderName::Event,
            (7, b'c') if name[1].eq_ignore_ascii_case(&b'a') => HeaderName::CallId,
            (7, b'c') => HeaderName::Contact,
            (7, b's') => HeaderName::Subject,
            (8, b'r') if name[2].eq_ignore_ascii_case(&b'f') => HeaderName::ReferTo,
            (8, b'r') => HeaderName::Replaces,
            (9, b's') => HeaderName::Supported,
            (9, b't') => HeaderName::Timestamp,
            (11, b'r') => HeaderName::ReferredBy,
            (12, b'm') => HeaderName::MaxForwards,
            (12, b'r') => HeaderName::RecordRoute,
            (12, b'c') => HeaderName::ContentType,
            (14, b'c') => HeaderName::ContentLength,
            (16, b'c') => HeaderName::ContentEncoding,
            (18, b's') => HeaderName::SubscriptionState,
            _ => return HeaderName::Other,
        };
        if eq_lowercase(name, candidate.lowercase()) {
            return candidate;
        }
        HeaderName::Other
    }

    /// The full name in lower case, for matching.
    const fn lowercase(self) -> &'static [u8] {
        match self {
            HeaderName::CallId => b"call-id",
            HeaderName::From => b"from",
            HeaderName::To => b"to",
            HeaderName::CSeq => b"cseq",
            HeaderName::Via => b"via",
            HeaderName::MaxForwards => b"max-forwards",
            HeaderName::ContentLength => b"content-length",
            HeaderName::Contact => b"contact",
            HeaderName::RecordRoute => b"record-route",
            HeaderName::Route => b"route",
            HeaderName::Event => b"event",
            HeaderName::ReferTo => b"refer-to",
            HeaderName::Replaces => b"replaces",
            HeaderName::ReferredBy => b"referred-by",
            HeaderName::SubscriptionState => b"subscription-state",
            HeaderName::ContentType => b"content-type",
            HeaderName::Supported => b"supported",
            HeaderName::Subject => b"subject",
            HeaderName::ContentEncoding => b"content-encoding",
            HeaderName::Timestamp => b"timestamp",
            HeaderName::Other => b"",
        }
    }

    /// The full name as RFC 3261 spells it (`"Other"` for unknown headers).
    pub const fn as_str(self) -> &'static str {
        match self {
            HeaderName::CallId => "Call-ID",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CSeq => "CSeq",
            HeaderName::Via => "Via",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::Contact => "Contact",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Route => "Route",
            HeaderName::Event => "Event",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::Replaces => "Replaces",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::SubscriptionState => "Subscription-State",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Supported => "Supported",
            HeaderName::Subject => "Subject",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::Timestamp => "Timestamp",
            HeaderName::Other => "Other",
        }
    }
}

/// Whether `name` equals `lower` (lower-case letters and '-' only) ignoring ASCII case.
///
/// Compares a word at a time, with overlapping loads for the tail: in `lower` a byte has bit
/// 0x40 set exactly when it is a letter, so `(w & 0x40..) >> 1` puts 0x20 under each letter,
/// and `x | that == w` holds for a letter in either case and, under '-', only for '-'.
#[inline(always)]
fn eq_lowercase(name: &[u8], lower: &[u8]) -> bool {
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    let same = |x: u64, w: u64| x | ((w & 0x4040_4040_4040_4040) >> 1) == w;
    let word8 = |s: &[u8], i: usize| {
        s.get(i..i + 8)
            .and_then(|c| c.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let word4 = |s: &[u8], i: usize| {
        s.get(i..i + 4)
            .and_then(|c| c.try_into().ok())
            .map_or(0, |c| u64::from(u32::from_le_bytes(c)))
    };
    match n {
        0..=3 => name
            .iter()
            .zip(lower)
            .all(|(&x, &w)| same(u64::from(x), u64::from(w))),
        4..=7 => {
            same(word4(name, 0), word4(lower, 0)) && same(word4(name, n - 4), word4(lower, n - 4))
        }
        _ => {
            let mut i = 0;
            while i + 8 < n {
                if !same(word8(name, i), word8(lower, i)) {
                    return false;
                }
                i += 8;
            }
            same(word8(name, n - 8), word8(lower, n - 8))
        }
    }
}

/// One header field as received: its name and its raw value, which may span folded lines
/// (the value then holds the CRLF and the leading white space of each continuation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawHeader<'a> {
    /// The name as written (compact or full, any case).
    pub name: &'a [u8],
    /// Which header it is.
    pub kind: HeaderName,
    /// The value, from after the colon to the end of its last line, CRLF excluded.
    pub value: &'a [u8],
}

/// Iterates over the header fields of a header block, unfolding continuation lines.
///
/// Lines end at LF (a preceding CR is dropped). The block ends at an empty line or at the end
/// of the buffer; its `body_start` then tells where the body begins.
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    buf: &'a [u8],
    pos: usize,
    max_line: usize,
    body_start: Option<usize>,
    line_ends: LineEnds,
}

impl<'a> HeaderIter<'a> {
    /// Iterates over the headers of `buf[start..]`, refusing physical lines over `max_line`.
    pub(crate) fn new(buf: &'a [u8], start: usize, max_line: usize) -> HeaderIter<'a> {
        HeaderIter {
            buf,
            pos: start,
            max_line,
            body_start: None,
            line_ends: LineEnds::new(),
        }
    }

    /// Where the body starts, once the iterator has returned `None`.
    #[cfg(test)]
    pub(crate) fn body_start(&self) -> Option<usize> {
        self.body_start
    }

    #[inline(always)]
    pub(crate) fn next_field(&mut self) -> Result<Option<RawHeader<'a>>, WireError> {
        if self.body_start.is_some() {
            return Ok(None);
        }
        let start = self.pos;
        if start >= self.buf.len() {
            // The headers run to the end of the buffer with no empty line.
            self.body_start = Some(self.buf.len());
            return Ok(None);
        }
        let (mut end, mut next) = self.line_ends.line(self.buf, start);
        if end - start > self.max_line {
            return Err(WireError::LineTooLong { max: self.max_line });
        }
        if start == end {
            self.body_start = Some(next);
            return Ok(None);
        }
        // Name, optional SP/HT, colon. A known name is validated by the comparison in
        // `classify`; only unknown names need their bytes checked against `token`.
        // Names are short: a word-at-a-time search finds the colon in a step or two.
        let colon = match swar::find(b':', &self.buf[start..end]) {
            Some(c) => start + c,
            None => return Err(WireError::MalformedHeaderLine),
        };
        let mut name = &self.buf[start..colon];
        while let [rest @ .., b' ' | b'\t'] = name {
            name = rest;
        }
        let kind = HeaderName::classify(name);
        if kind == HeaderName::Other && !is_token(name) {
            return Err(WireError::MalformedHeaderLine);
        }
        let value_start = colon + 1;
        // Continuation lines start with SP or HT and extend this field.
        while matches!(self.buf.get(next), Some(b' ' | b'\t')) {
            let (e, n) = self.line_ends.line(self.buf, next);
            if e - next > self.max_line {
                return Err(WireError::LineTooLong { max: self.max_line });
            }
            end = e;
            next = n;
        }
        self.pos = next;
        Ok(Some(RawHeader {
            name,
            kind,
            value: &self.buf[value_start..end.max(value_start)],
        }))
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Result<RawHeader<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_field() {
            Ok(Some(h)) => Some(Ok(h)),
            Ok(None) => None,
            Err(e) => {
                // Stop after an error: the rest of the block cannot be framed.
                self.body_start = Some(self.buf.len());
                Some(Err(e))
            }
        }
    }
}

/// Byte classes as bit sets, one table load per byte on the scanning path.
const TOKEN_BIT: u8 = 1;
/// `token` plus the `[`, `]` and `:` of an IPv6 reference in a parameter value.
const PARAM_VALUE_BIT: u8 = 2;
/// The `word` characters of a Call-ID (RFC 3261 §25.1).
const WORD_BIT: u8 = 4;
/// The letters, digits, `-` and `.` of a host name or IPv4 address.
const HOST_BIT: u8 = 8;

static CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let token = matches!(b as u8,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        let host = matches!(b as u8, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.');
        if token {
            table[b] = TOKEN_BIT | PARAM_VALUE_BIT | WORD_BIT | if host { HOST_BIT } else { 0 };
        } else if matches!(b as u8, b'[' | b']' | b':') {
            table[b] = PARAM_VALUE_BIT | WORD_BIT;
        } else if matches!(
            b as u8,
            b'(' | b')' | b'<' | b'>' | b'\\' | b'"' | b'/' | b'?' | b'{' | b'}'
        ) {
            table[b] = WORD_BIT;
        }
        b += 1;
    }
    table
};

/// Whether every byte of `bytes` is of `class` (one of the bits above): the table's bits
/// ANDed eight bytes at a time, with no branch per byte. The values checked this way (tags,
/// Call-IDs) are whole runs of 8–50 bytes that nearly always pass, so stopping at the first
/// bad byte would save nothing.
#[inline]
fn all_of_class(bytes: &[u8], class: u8) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    let mut acc = class;
    for c in &mut chunks {
        let bits = |i: usize| CLASSES[c[i] as usize];
        acc &= bits(0) & bits(1) & bits(2) & bits(3) & bits(4) & bits(5) & bits(6) & bits(7);
    }
    for &b in chunks.remainder() {
        acc &= CLASSES[b as usize];
    }
    acc != 0
}

/// The length of the run of `class` bytes `bytes` starts with: eight table loads ANDed per
/// step while the run goes on (one branch for eight bytes), then byte by byte in the step
/// that ends it. A Via's branch is a few dozen bytes: most of it goes eight at a time.
#[inline]
fn class_run(bytes: &[u8], class: u8) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut run = 0;
    for c in &mut chunks {
        let bits = |i: usize| CLASSES[c[i] as usize];
        let all = bits(0) & bits(1) & bits(2) & bits(3) & bits(4) & bits(5) & bits(6) & bits(7);
        if all & class == 0 {
            break;
        }
        run += 8;
    }
    run + bytes[run..]
        .iter()
        .position(|&b| CLASSES[b as usize] & class == 0)
        .unwrap_or(bytes.len() - run)
}

/// The length of the run of `token` characters `bytes` starts with.
#[inline]
pub(crate) fn token_run(bytes: &[u8]) -> usize {
    class_run(bytes, TOKEN_BIT)
}

/// The length of the run of host-name bytes ([`is_host_byte`]) `bytes` starts with.
#[inline]
pub(crate) fn host_run(bytes: &[u8]) -> usize {
    class_run(bytes, HOST_BIT)
}

/// Whether `bytes` is a non-empty run of `token` characters (a tag, a header name).
#[inline]
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && all_of_class(bytes, TOKEN_BIT)
}

/// Whether `bytes` is a non-empty run of `word` characters (either side of a Call-ID's `@`).
#[inline]
pub(crate) fn is_word(bytes: &[u8]) -> bool {
    !bytes.is_empty() && all_of_class(bytes, WORD_BIT)
}

/// Whether `b` is an RFC 3261 `token` character.
#[inline]
pub(crate) fn is_token_byte(b: u8) -> bool {
    CLASSES[b as usize] & TOKEN_BIT != 0
}

/// Whether `b` may appear in a host name or an IPv4 address (the sent-by of a Via).
#[inline]
pub(crate) fn is_host_byte(b: u8) -> bool {
    CLASSES[b as usize] & HOST_BIT != 0
}

/// Whether `b` is a `word` character (Call-ID).
#[cfg(test)]
pub(crate) fn is_word_byte(b: u8) -> bool {
    CLASSES[b as usize] & WORD_BIT != 0
}

/// Whether `b` may appear in an unquoted parameter value (`token` or an IPv6 reference).
#[inline]
pub(crate) fn is_param_value_byte(b: u8) -> bool {
    CLASSES[b as usize] & PARAM_VALUE_BIT != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The eight-at-a-time class check answers as a byte-by-byte one, whatever the
        /// length and wherever the odd byte is.
        #[test]
        fn class_runs_are_judged_as_byte_by_byte(hay in proptest::collection::vec(
            prop_oneof![any::<u8>(), b'0'..=b'9', b'a'..=b'z', b'A'..=b'Z', Just(b'-'), Just(b'@')], 0..40)) {
            prop_assert_eq!(is_token(&hay), !hay.is_empty() && hay.iter().all(|&b| is_token_byte(b)));
            prop_assert_eq!(is_word(&hay), !hay.is_empty() && hay.iter().all(|&b| is_word_byte(b)));
            // The runs against the grammar's own character lists, not the table.
            let token = |b: u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
            let host = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
            prop_assert_eq!(token_run(&hay), hay.iter().take_while(|&&b| token(b)).count());
            prop_assert_eq!(host_run(&hay), hay.iter().take_while(|&&b| host(b)).count());
        }
    }

    #[test]
    fn canonical_names_are_classified_as_the_scanner_does() {
        for name in [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Route",
            "Record-Route",
            "Content-Length",
            "Max-Forwards",
            "Subject",
            "X-Other",
        ] {
            let name = name.as_bytes();
            assert_eq!(
                HeaderName::classify_canonical(name),
                HeaderName::classify(name)
            );
        }
    }

    #[test]
    fn classify_full_compact_and_case() {
        assert_eq!(HeaderName::classify(b"cAlL-iD"), HeaderName::CallId);
        assert_eq!(HeaderName::classify(b"I"), HeaderName::CallId);
        assert_eq!(HeaderName::classify(b"o"), HeaderName::Event);
        assert_eq!(HeaderName::classify(b"b"), HeaderName::ReferredBy);
        assert_eq!(
            HeaderName::classify(b"SUBSCRIPTION-STATE"),
            HeaderName::SubscriptionState
        );
        assert_eq!(HeaderName::classify(b"tIMESTAMP"), HeaderName::Timestamp);
        assert_eq!(HeaderName::classify(b"Timestamps"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b"x"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b"Call\rID"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b"Call-\x09D"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b"Call\x0dID"), HeaderName::Other);
        assert_eq!(
            HeaderName::classify(b"CONTENT-LENGTH"),
            HeaderName::ContentLength
        );
        assert_eq!(HeaderName::classify(b"Content-Lengti"), HeaderName::Other);
        assert_eq!(
            HeaderName::classify(b"Subscription-StatE"),
            HeaderName::SubscriptionState
        );
        assert_eq!(
            HeaderName::classify(b"Subscription-State\x00"),
            HeaderName::Other
        );
        assert_eq!(HeaderName::classify(b"VIA"), HeaderName::Via);
        assert_eq!(HeaderName::classify(b"Vi\x01"), HeaderName::Other);
        // Every name in every case mix it can be written in.
        for h in [
            HeaderName::CallId,
            HeaderName::MaxForwards,
            HeaderName::ReferredBy,
        ] {
            let upper = h.as_str().to_ascii_uppercase();
            assert_eq!(HeaderName::classify(upper.as_bytes()), h);
            let mut broken = upper.into_bytes();
            let last = broken.len() - 1;
            broken[last] ^= 0x01;
            assert_eq!(HeaderName::classify(&broken), HeaderName::Other);
        }
    }

    #[test]
    fn folding_and_missing_blank_line() {
        let buf = b"A: 1\r\n  2\r\nB : x\nC:\r\n";
        let mut it = HeaderIter::new(buf, 0, 100);
        let a = it.next().unwrap().unwrap();
        assert_eq!((a.name, a.value), (&b"A"[..], &b" 1\r\n  2"[..]));
        let b = it.next().unwrap().unwrap();
        assert_eq!((b.name, b.value), (&b"B"[..], &b" x"[..]));
        let c = it.next().unwrap().unwrap();
        assert_eq!((c.name, c.value), (&b"C"[..], &b""[..]));
        assert!(it.next().is_none());
        assert_eq!(it.body_start(), Some(buf.len()));
    }

    #[test]
    fn bad_lines() {
        for bad in [&b" A: 1\r\n"[..], b"A 1\r\n", b": 1\r\n", b"A\r\n"] {
            let mut it = HeaderIter::new(bad, 0, 100);
            assert_eq!(it.next(), Some(Err(WireError::MalformedHeaderLine)));
            assert!(it.next().is_none());
        }
        let mut it = HeaderIter::new(b"A: 12345\r\n", 0, 5);
        assert_eq!(it.next(), Some(Err(WireError::LineTooLong { max: 5 })));
    }
}
