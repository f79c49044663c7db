//! Bounds-checked readers for the header values the dialog layer needs: name-addr tags, CSeq,
//! Via, decimal numbers and comma-separated lists. No indexing that can panic: every read goes
//! through [`Cursor`], which answers `None` past the end.

use super::{swar, usual};

use super::header::{is_host_byte, is_param_value_byte, is_token_byte, is_word};

/// The length of the LWS at the start of a raw value: SP, HT and folds. Inside a value an LF
/// only ever starts a fold (the line splitter guarantees SP or HT after it); a CR is white
/// space only as the first half of CRLF, so a bare CR is not (other parsers would read it
/// differently, which is how smuggling starts).
pub(super) fn lws_prefix(bytes: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match bytes.get(i) {
            Some(b' ' | b'\t' | b'\n') => i += 1,
            Some(b'\r') if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            _ => return i,
        }
    }
}

/// The length of the LWS at the end of a raw value (see [`lws_prefix`]).
fn lws_suffix(bytes: &[u8]) -> usize {
    let mut end = bytes.len();
    loop {
        match bytes[..end] {
            [.., b'\r', b'\n'] => end -= 2,
            [.., b' ' | b'\t' | b'\n'] => end -= 1,
            _ => return bytes.len() - end,
        }
    }
}

/// `value` without leading and trailing LWS (folds included).
#[inline]
pub(crate) fn trim_lws(value: &[u8]) -> &[u8] {
    // The usual value: one SP after the colon, none at the end. Anything else (and any byte
    // that may start LWS, a CR included) takes the general path.
    let may_start_lws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let usual = match value {
        [b' ', second, ..] if !may_start_lws(second) => Some(&value[1..]),
        [first, ..] if !may_start_lws(first) => Some(value),
        _ => None,
    };
    match usual {
        Some(v) if !matches!(v.last(), Some(b' ' | b'\t' | b'\n')) => v,
        _ => {
            let start = lws_prefix(value);
            let end = value.len() - lws_suffix(&value[start..]);
            &value[start..end]
        }
    }
}

/// Whether a trimmed Call-ID is `word ["@" word]` (RFC 3261 §25.1).
pub(crate) fn is_call_id(value: &[u8]) -> bool {
    let (local, host) = match swar::find(b'@', value) {
        Some(at) => (&value[..at], Some(&value[at + 1..])),
        None => (value, None),
    };
    is_word(local) && host.is_none_or(is_word)
}

/// One `;name[=value]` parameter.
pub(crate) type Param<'a> = (&'a [u8], Option<&'a [u8]>);

/// A read position in a value.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Skips LWS; answers whether any was skipped.
    #[inline]
    pub(crate) fn skip_lws(&mut self) -> bool {
        let n = lws_prefix(self.buf.get(self.pos..).unwrap_or_default());
        self.pos += n;
        n > 0
    }

    #[inline]
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The longest run from here whose bytes satisfy `pred`, consumed.
    #[inline]
    pub(crate) fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest.iter().position(|&b| !pred(b)).unwrap_or(rest.len());
        self.pos += n;
        &rest[..n]
    }

    /// A quoted string, quotes included; `None` if it is not terminated or holds a CR or LF
    /// that is not part of a fold (RFC 3261 §25.1: qdtext and quoted-pair exclude them).
    pub(crate) fn take_quoted(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek()? {
                b'\\' if matches!(self.buf.get(self.pos + 1), Some(b'\r' | b'\n')) => return None,
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return self.buf.get(start..self.pos);
                }
                b'\r' | b'\n' => {
                    let fold = lws_prefix(&self.buf[self.pos..]);
                    if fold == 0 {
                        return None;
                    }
                    self.pos += fold;
                }
                _ => self.pos += 1,
            }
        }
    }

    /// Moves past the next `b`, refusing a bare CR on the way; `false` if there is no `b`.
    fn skip_past_checked(&mut self, b: u8) -> bool {
        loop {
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            match swar::find2(b, b'\r', rest) {
                Some(i) if rest[i] == b => {
                    self.pos += i + 1;
                    return true;
                }
                Some(i) if rest.get(i + 1) == Some(&b'\n') => self.pos += i + 2,
                _ => return false,
            }
        }
    }

    /// The next `;name[=value]` parameter, or `None` at the end of the value or at a `,` that
    /// starts the next list element. `Err` on anything else.
    pub(crate) fn next_param(&mut self) -> Result<Option<Param<'a>>, ()> {
        self.skip_lws();
        match self.peek() {
            None | Some(b',') => return Ok(None),
            Some(b';') => self.pos += 1,
            Some(_) => return Err(()),
        }
        self.skip_lws();
        let name = self.take_while(is_token_byte);
        if name.is_empty() {
            return Err(());
        }
        self.skip_lws();
        if !self.eat(b'=') {
            return Ok(Some((name, None)));
        }
        self.skip_lws();
        let value = if self.peek() == Some(b'"') {
            self.take_quoted().ok_or(())?
        } else {
            self.take_while(is_param_value_byte)
        };
        if value.is_empty() {
            return Err(());
        }
        Ok(Some((name, Some(value))))
    }
}

/// The `tag` parameter of a From or To value (`name-addr` or `addr-spec`, RFC 3261 §20.20).
///
/// `Ok(None)` when there is no tag; `Err` when the value does not parse, holds more than one
/// element, or has more than one (or an empty) tag.
pub(crate) fn tag_param(value: &[u8]) -> Result<Option<&[u8]>, ()> {
    match usual::tag_param(value) {
        Some(tag) => Ok(tag),
        None => careful_tag_param(value),
    }
}

/// [`tag_param`] by the grammar, for every shape.
pub(super) fn careful_tag_param(value: &[u8]) -> Result<Option<&[u8]>, ()> {
    let mut c = Cursor::new(value);
    c.skip_lws();
    match c.peek() {
        None => return Err(()),
        Some(b'"') => {
            c.take_quoted().ok_or(())?;
            c.skip_lws();
            if !c.eat(b'<') || !c.skip_past_checked(b'>') {
                return Err(());
            }
        }
        Some(_) => {
            let rest = &value[c.pos..];
            match swar::find3(b'<', b';', b'"', rest).map(|i| (i, rest[i])) {
                // A display name of tokens (or, liberally, other unquoted text) before `<`.
                Some((i, b'<')) => {
                    if has_bare_cr(&rest[..i]) {
                        return Err(());
                    }
                    c.pos += i + 1;
                    if !c.skip_past_checked(b'>') {
                        return Err(());
                    }
                }
                Some((_, b'"')) => return Err(()),
                // addr-spec: header parameters start at the first `;`, and a URI holding `,`
                // or `?` must have been written in `<>` (§20.10).
                found => {
                    let uri_end = found.map_or(rest.len(), |(i, _)| i);
                    let uri = &rest[..uri_end];
                    if swar::find2(b',', b'?', uri).is_some() || has_bare_cr(uri) {
                        return Err(());
                    }
                    if found.is_none() {
                        return Ok(None);
                    }
                    c.pos += uri_end;
                }
            }
        }
    }
    let mut tag = None;
    while let Some((name, val)) = c.next_param()? {
        if name.eq_ignore_ascii_case(b"tag") {
            // tag-param = "tag" EQUAL token: once, not quoted, not empty.
            match val {
                Some(v) if tag.is_none() && v.iter().all(|&b| is_token_byte(b)) => tag = Some(v),
                _ => return Err(()),
            }
        }
    }
    if c.at_end() {
        Ok(tag)
    } else {
        Err(())
    }
}

/// Whether a short stretch of a value holds a CR that does not start a CRLF.
fn has_bare_cr(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
}

/// A CSeq value: `(number, method)`. The number is checked against 2^31 by the caller.
pub(crate) enum CSeqValue<'a> {
    Ok(u64, &'a [u8]),
    OutOfRange,
    Malformed,
}

pub(crate) fn cseq(value: &[u8]) -> CSeqValue<'_> {
    match usual::cseq(value) {
        Some((number, method)) => CSeqValue::Ok(number, method),
        None => careful_cseq(value),
    }
}

/// [`cseq`] by the grammar, for every shape.
pub(super) fn careful_cseq(value: &[u8]) -> CSeqValue<'_> {
    let mut c = Cursor::new(value);
    c.skip_lws();
    let digits = c.take_while(|b| b.is_ascii_digit());
    let number = match decimal_digits(digits) {
        Some(n) => n,
        None if digits.is_empty() => return CSeqValue::Malformed,
        None => return CSeqValue::OutOfRange,
    };
    if !c.skip_lws() {
        return CSeqValue::Malformed;
    }
    let method = c.take_while(is_token_byte);
    c.skip_lws();
    if method.is_empty() || !c.at_end() {
        return CSeqValue::Malformed;
    }
    CSeqValue::Ok(number, method)
}

/// Decimal digits to a number; `None` if empty, not all digits, or over 18 significant digits.
pub(crate) fn decimal_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    // One pass: leading zeros are not significant, so they never count toward the 18.
    let (mut n, mut significant) = (0u64, 0usize);
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        significant += usize::from(significant > 0 || d != b'0');
        if significant > 18 {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Some(n)
}

/// A dotted-quad IPv4 address as the standard library reads one (four decimal octets up to
/// 255, no leading zeros), in one pass; `None` for anything else, which the caller hands to
/// the standard parser (IPv6 and errors). Where it answers, it answers as `Ipv4Addr`'s
/// `FromStr` does (tested).
pub(crate) fn ipv4(text: &[u8]) -> Option<std::net::Ipv4Addr> {
    if !(7..=15).contains(&text.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if text.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let (value, digits) = decimal_octet(text.get(at..)?)?;
        *octet = value;
        at += digits;
    }
    if at != text.len() {
        return None;
    }
    Some(std::net::Ipv4Addr::from(octets))
}

/// The decimal octet at the start of `text` and its length in digits: one to three digits,
/// no leading zero, at most 255.
#[inline(always)]
fn decimal_octet(text: &[u8]) -> Option<(u8, usize)> {
    let digit = |i: usize| {
        text.get(i)
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|&d| d < 10)
    };
    let first = digit(0)?;
    let Some(second) = digit(1) else {
        return Some((first, 1));
    };
    if first == 0 {
        return None;
    }
    let two = u16::from(first) * 10 + u16::from(second);
    match digit(2) {
        Some(third) => Some((u8::try_from(two * 10 + u16::from(third)).ok()?, 3)),
        None => Some((two as u8, 2)),
    }
}

/// An IP address as text: a dotted quad in one pass ([`ipv4`]), the standard parser (costlier)
/// for anything else.
pub(crate) fn ip_addr(text: &[u8]) -> Option<std::net::IpAddr> {
    match ipv4(text) {
        Some(v4) => Some(std::net::IpAddr::V4(v4)),
        None => std::str::from_utf8(text).ok()?.parse().ok(),
    }
}

/// A whole value that is one decimal number, LWS around it allowed.
pub(crate) fn decimal(value: &[u8]) -> Option<u64> {
    decimal_digits(trim_lws(value))
}

/// The top Via element: its sent-by and the parameters responses are routed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ViaValue<'a> {
    pub(crate) sent_by: &'a [u8],
    pub(crate) branch: Option<&'a [u8]>,
    /// `received` (RFC 3261 §18.2.1), as written.
    pub(crate) received: Option<&'a [u8]>,
    /// `rport` (RFC 3581): `Some(None)` when present without a value.
    pub(crate) rport: Option<Option<&'a [u8]>>,
    /// Where the element's last parameter ends, within the value.
    pub(crate) end: usize,
}

pub(crate) fn via(value: &[u8]) -> Result<ViaValue<'_>, ()> {
    match usual::via(value) {
        Some(via) => Ok(via),
        None => careful_via(value),
    }
}

/// [`via`] by the grammar, for every shape.
pub(super) fn careful_via(value: &[u8]) -> Result<ViaValue<'_>, ()> {
    let mut c = Cursor::new(value);
    // sent-protocol: name SLASH version SLASH transport, SLASH = SWS "/" SWS.
    for i in 0..3 {
        c.skip_lws();
        if c.take_while(is_token_byte).is_empty() {
            return Err(());
        }
        if i < 2 {
            c.skip_lws();
            if !c.eat(b'/') {
                return Err(());
            }
        }
    }
    if !c.skip_lws() {
        return Err(());
    }
    // sent-by: a host name or IPv4 address, or an IPv6 reference, then an optional port.
    let start = c.pos;
    let host = if c.eat(b'[') {
        let inner = c.take_while(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if inner.is_empty() || !c.eat(b']') {
            return Err(());
        }
        inner
    } else {
        c.take_while(is_host_byte)
    };
    if host.is_empty() {
        return Err(());
    }
    let mut end = c.pos;
    c.skip_lws();
    if c.eat(b':') {
        c.skip_lws();
        if c.take_while(|b| b.is_ascii_digit()).is_empty() {
            return Err(());
        }
        end = c.pos;
    }
    let sent_by = &value[start..end];
    let mut via = ViaValue {
        sent_by,
        branch: None,
        received: None,
        rport: None,
        end,
    };
    while let Some((name, val)) = c.next_param()? {
        via.end = c.pos;
        // Each of these at most once: a second one is a message built to confuse.
        let slot = if name.eq_ignore_ascii_case(b"branch") {
            // via-branch = "branch" EQUAL token.
            match val {
                Some(v) if via.branch.is_none() && v.iter().all(|&b| is_token_byte(b)) => {
                    via.branch = Some(v);
                    continue;
                }
                _ => return Err(()),
            }
        } else if name.eq_ignore_ascii_case(b"received") {
            &mut via.received
        } else if name.eq_ignore_ascii_case(b"rport") {
            if via.rport.is_some() {
                return Err(());
            }
            via.rport = Some(val);
            continue;
        } else {
            continue;
        };
        match val {
            Some(v) if slot.is_none() => *slot = Some(v),
            _ => return Err(()),
        }
    }
    Ok(via)
}

/// Splits a header value at the commas that separate list elements, ignoring commas inside
/// quoted strings and `<...>`; elements are LWS-trimmed and empty ones skipped.
#[derive(Clone, Debug)]
pub struct ValueList<'a> {
    rest: &'a [u8],
}

impl<'a> ValueList<'a> {
    /// The elements of one header value.
    pub fn new(value: &'a [u8]) -> ValueList<'a> {
        ValueList { rest: value }
    }
}

impl<'a> Iterator for ValueList<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            // A comma before any quote or `<` ends the element: nothing before it can hide
            // it. Otherwise the walk that tracks quotes and angle brackets decides.
            let split = match memchr::memchr3(b'"', b'<', b',', self.rest) {
                None => self.rest.len(),
                Some(i) if self.rest[i] == b',' => i,
                Some(_) => element_end(self.rest),
            };
            let element = trim_lws(&self.rest[..split]);
            self.rest = self.rest.get(split + 1..).unwrap_or(&[]);
            if !element.is_empty() {
                return Some(element);
            }
        }
    }
}

/// Where the first list element of `value` ends: its first comma outside quoted strings and
/// `<...>`, or the end.
fn element_end(value: &[u8]) -> usize {
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    for (i, &b) in value.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => return i,
            _ => {}
        }
    }
    value.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// The usual-shape shortcut of `trim_lws` trims as the general path does.
        #[test]
        fn trim_lws_trims_as_the_general_path_does(
            value in proptest::collection::vec(
                prop_oneof![Just(b' '), Just(b'\t'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..8),
        ) {
            let start = lws_prefix(&value);
            let end = value.len() - lws_suffix(&value[start..]);
            prop_assert_eq!(trim_lws(&value), &value[start..end]);
        }

        /// The comma search that skips the walk splits a list as the walk alone does.
        #[test]
        fn value_list_splits_as_the_walk_does(
            value in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(b'<'), Just(b'>'), Just(b','),
                    Just(b' '), Just(b'a')],
                0..24,
            )
        ) {
            let mut walked = Vec::new();
            let mut rest = &value[..];
            while !rest.is_empty() {
                let split = element_end(rest);
                let element = trim_lws(&rest[..split]);
                if !element.is_empty() {
                    walked.push(element);
                }
                rest = rest.get(split + 1..).unwrap_or(&[]);
            }
            prop_assert_eq!(ValueList::new(&value).collect::<Vec<_>>(), walked);
        }
    }

    proptest! {
        #[test]
        fn ipv4_reads_as_the_standard_parser_does(
            parts in proptest::collection::vec(
                prop_oneof![Just("0".to_string()), Just("00".to_string()), Just("255".to_string()),
                    Just("256".to_string()), Just("1a".to_string()), Just(String::new()),
                    (0u32..1000).prop_map(|n| n.to_string())],
                0..6),
        ) {
            let text = parts.join(".");
            let std = text.parse::<std::net::Ipv4Addr>().ok();
            match ipv4(text.as_bytes()) {
                Some(fast) => prop_assert_eq!(Some(fast), std, "{}", text),
                // Anything it leaves goes to the standard parser, which must refuse it too.
                None => prop_assert_eq!(None, std, "{}", text),
            }
        }
    }

    #[test]
    fn tags() {
        let ok: &[(&[u8], Option<&[u8]>)] = &[
            (b"<sip:a@b>;tag=1", Some(b"1")),
            (b"sip:a@b;TAG = x ;q=1", Some(b"x")),
            (b"\"A;b,c>\" <sip:a@b>;tag=2", Some(b"2")),
            (b"\"x\\\"\" <sip:a@b;tag=uri>", None),
            (b"\"folded\r\n name\" <sip:a@b>;tag=5", Some(b"5")),
            (b"sip:a@b", None),
            (b"Bell, Alexander <sip:a@b>;tag=43", Some(b"43")),
            (b"tok <sip:a@b>;p=\"q;tag=no\";tag=3", Some(b"3")),
            (b" sip:a@b\r\n ;\r\n tag\r\n =\r\n 9", Some(b"9")),
        ];
        for (v, want) in ok {
            assert_eq!(tag_param(v), Ok(*want), "{}", String::from_utf8_lossy(v));
        }
        let bad: &[&[u8]] = &[
            b"",
            b"\"open <sip:a@b>",
            b"<sip:a@b",
            b"<sip:a@b>;tag=1;tag=2",
            b"<sip:a@b>;tag=",
            b"<sip:a@b>;tag",
            b"<sip:a@b>, <sip:c@d>",
            b"<sip:a@b> junk",
            b"na\"me <sip:a@b>",
            b"<sip:a\r@b>;tag=1",
            b"\"x\ry\" <sip:a@b>;tag=1",
        ];
        for v in bad {
            assert_eq!(tag_param(v), Err(()), "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn cseq_values() {
        assert!(matches!(
            cseq(b" 0009\r\n  INVITE "),
            CSeqValue::Ok(9, b"INVITE")
        ));
        assert!(matches!(
            cseq(b"000000000000000000001 BYE"),
            CSeqValue::Ok(1, b"BYE")
        ));
        assert!(matches!(
            cseq(b"36893488147419103232 REGISTER"),
            CSeqValue::OutOfRange
        ));
        for bad in [
            &b"1INVITE"[..],
            b"INVITE",
            b"1",
            b"1 INVITE x",
            b"-1 INVITE",
        ] {
            assert!(matches!(cseq(bad), CSeqValue::Malformed));
        }
    }

    #[test]
    fn via_values() {
        let v = via(b" SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (v.sent_by, v.branch),
            (&b"192.0.2.2"[..], Some(&b"390skdjuw"[..]))
        );
        let v = via(b"SIP/2.0/TCP [::1]:5060 ; rport; branch = z9hG4bK1 , SIP/2.0/UDP x").unwrap();
        assert_eq!(
            (v.sent_by, v.branch),
            (&b"[::1]:5060"[..], Some(&b"z9hG4bK1"[..]))
        );
        let v = via(b"SIP/2.0/UDP iftgw.example.com").unwrap();
        assert_eq!((v.sent_by, v.branch), (&b"iftgw.example.com"[..], None));
        assert!(via(b"SIP/2.0 host").is_err());
        assert!(via(b"SIP/2.0/UDP host:").is_err());
    }

    #[test]
    fn lists_and_numbers() {
        let items: Vec<&[u8]> =
            ValueList::new(b"<sip:a;x=1,2>, \"b,\\\"c\" <sip:b>,, sip:c").collect();
        assert_eq!(
            items,
            [&b"<sip:a;x=1,2>"[..], b"\"b,\\\"c\" <sip:b>", b"sip:c"]
        );
        assert_eq!(decimal(b"  0068 "), Some(68));
        assert_eq!(decimal(b"-999"), None);
        assert_eq!(decimal(b"1 2"), None);
        assert_eq!(decimal(b"9999999999999999999"), None);
        assert_eq!(decimal(b"00000000000000000000000000001"), Some(1));
        assert_eq!(
            decimal(b"999999999999999999"),
            Some(999_999_999_999_999_999)
        );
    }
}
