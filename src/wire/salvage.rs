//! What can still be read from a request the scanner refused, so that it can be answered.
//!
//! RFC 3261 §8.2.6 makes every response copy Via, From, To, Call-ID and CSeq. A request that
//! is malformed elsewhere (a negative Content-Length, `SIP/7.0`, a bad CSeq…) usually still
//! has them, and its sender retransmits for 32 s unless it gets its 400, 505 or 513. This is a
//! lenient walk over the header lines that never fails and does bounded work: it looks at no
//! more than [`MAX_SALVAGE_BYTES`] and keeps only what an answer copies.

use std::net::SocketAddr;

use super::header::{is_token_byte, HeaderName};
use super::value::{self, ViaValue};

/// The most bytes of a refused message looked at.
pub const MAX_SALVAGE_BYTES: usize = 16_384;
/// The most Via header fields copied into an answer.
const MAX_VIAS: usize = 8;
/// Longer header values are not copied (the answer stays no larger than the request).
const MAX_VALUE: usize = 1_024;

/// The parts of a refused request an answer copies: raw slices of the request, folds and all.
#[derive(Clone, Copy, Debug)]
pub struct Salvaged<'a> {
    method: &'a [u8],
    vias: [&'a [u8]; MAX_VIAS],
    via_count: usize,
    from: Option<&'a [u8]>,
    to: Option<&'a [u8]>,
    call_id: Option<&'a [u8]>,
    cseq: Option<&'a [u8]>,
}

impl<'a> Salvaged<'a> {
    /// Reads what it can of `bytes`. `None` unless the message starts like a request (a
    /// method token and a space) and has a top Via that parses: without one there is nowhere
    /// to send an answer.
    ///
    /// ```
    /// use sipdialog::wire::{MessageView, Salvaged};
    ///
    /// let bad = b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
    /// From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n";
    /// assert!(MessageView::parse(bad).is_err());
    /// let salvaged = Salvaged::scan(bad).unwrap();
    /// assert_eq!(salvaged.method(), b"OPTIONS");
    /// assert_eq!(salvaged.top_via().unwrap().0, &b"192.0.2.1"[..]);
    /// ```
    pub fn scan(bytes: &'a [u8]) -> Option<Salvaged<'a>> {
        let bytes = bytes.get(..MAX_SALVAGE_BYTES).unwrap_or(bytes);
        let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n')?;
        let mut lines = Lines {
            buf: bytes,
            pos: start,
        };
        let first = lines.next()?;
        let method_len = first.iter().position(|&b| b == b' ')?;
        let method = &first[..method_len];
        if method.is_empty()
            || !method.iter().all(|&b| is_token_byte(b))
            || method.starts_with(b"SIP/")
        {
            return None;
        }
        let mut found = Salvaged {
            method,
            vias: [&[]; MAX_VIAS],
            via_count: 0,
            from: None,
            to: None,
            call_id: None,
            cseq: None,
        };
        while let Some(line) = lines.next() {
            if line.is_empty() {
                break;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = value::trim_lws(&line[..colon]);
            // A folded value runs on over the continuation lines that follow.
            let mut value = &line[colon + 1..];
            while let Some(more) = lines.continuation() {
                let start = value.as_ptr() as usize - bytes.as_ptr() as usize;
                let end = more.as_ptr() as usize - bytes.as_ptr() as usize + more.len();
                value = &bytes[start..end];
            }
            if value.len() > MAX_VALUE {
                continue;
            }
            let slot = match HeaderName::classify(name) {
                HeaderName::Via => {
                    if found.via_count < MAX_VIAS {
                        found.vias[found.via_count] = value;
                        found.via_count += 1;
                    }
                    continue;
                }
                HeaderName::From => &mut found.from,
                HeaderName::To => &mut found.to,
                HeaderName::CallId => &mut found.call_id,
                HeaderName::CSeq => &mut found.cseq,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        found.top_via()?;
        Some(found)
    }

    /// The request method as written.
    pub fn method(&self) -> &'a [u8] {
        self.method
    }

    /// The top Via element: `(host, port)` of its sent-by.
    pub fn top_via(&self) -> Option<(&'a [u8], Option<u16>)> {
        let via = self.top_via_value()?;
        let view = super::Via {
            sent_by: via.sent_by,
            branch: via.branch,
            received: None,
            rport: None,
        };
        Some((view.host(), view.port()))
    }

    /// Where an answer goes (RFC 3261 §18.2.2, RFC 3581): back to `source` (its port when the
    /// Via asks for `rport`, else the sent-by port), or, with no source, to the sent-by when it
    /// is an IP literal. A `received` the sender wrote itself is ignored.
    pub fn response_destination(&self, source: Option<SocketAddr>) -> Option<SocketAddr> {
        let via = self.top_via_value()?;
        let port = super::Via {
            sent_by: via.sent_by,
            branch: None,
            received: None,
            rport: None,
        }
        .port()
        .unwrap_or(5060);
        match source {
            Some(source) if via.rport.is_some() => Some(source),
            Some(source) => Some(SocketAddr::new(source.ip(), port)),
            None => {
                let (host, _) = self.top_via()?;
                let ip = std::str::from_utf8(host).ok()?.parse().ok()?;
                Some(SocketAddr::new(ip, port))
            }
        }
    }

    pub(crate) fn top_via_value(&self) -> Option<ViaValue<'a>> {
        value::via(self.vias.first().filter(|_| self.via_count > 0)?).ok()
    }

    /// The Via header values, in order (at most eight).
    pub fn vias(&self) -> &[&'a [u8]] {
        &self.vias[..self.via_count]
    }

    /// From, To, Call-ID and CSeq as found (raw, possibly folded), each `None` when absent.
    pub fn identity(&self) -> [Option<&'a [u8]>; 4] {
        [self.from, self.to, self.call_id, self.cseq]
    }
}

/// Physical lines, LF-terminated (a CR before the LF dropped).
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.buf.get(self.pos..).filter(|r| !r.is_empty())?;
        let (line, used) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.pos += used;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// The next line when it continues the previous one (starts with SP or HT).
    fn continuation(&mut self) -> Option<&'a [u8]> {
        match self.buf.get(self.pos) {
            Some(b' ' | b'\t') => self.next(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_an_answer_copies() {
        let msg = b"\r\nINVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKx\r\n\
Via: SIP/2.0/UDP proxy.example\r\nf: <sip:x@y>\r\n ;tag=1\r\nTo: <sip:a@b>\r\n\
i: c1\r\nCSeq: -1 INVITE\r\nContent-Length: -3\r\n\r\nbody";
        let s = Salvaged::scan(msg).unwrap();
        assert_eq!(s.method(), b"INVITE");
        assert_eq!(s.vias().len(), 2);
        assert_eq!(s.top_via(), Some((&b"10.0.0.1"[..], Some(5062))));
        let [from, to, call_id, cseq] = s.identity();
        assert_eq!(from, Some(&b" <sip:x@y>\r\n ;tag=1"[..]));
        assert_eq!(to, Some(&b" <sip:a@b>"[..]));
        assert_eq!(call_id, Some(&b" c1"[..]));
        assert_eq!(cseq, Some(&b" -1 INVITE"[..]));
    }

    #[test]
    fn nothing_to_answer() {
        // A response, no start line, no Via, a Via that does not parse.
        for msg in [
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"[..],
            b"\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nVia: what\r\n\r\n",
            b"garbage",
            b"",
        ] {
            assert!(Salvaged::scan(msg).is_none(), "{msg:?}");
        }
    }

    #[test]
    fn bounded_work_on_huge_input() {
        let mut msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n".to_vec();
        for _ in 0..10_000 {
            msg.extend_from_slice(b"Via: SIP/2.0/UDP h2\r\n");
        }
        let s = Salvaged::scan(&msg).unwrap();
        assert_eq!(s.vias().len(), MAX_VIAS);
        let long = [
            b"OPTIONS x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=".to_vec(),
            vec![b'a'; 2000],
        ]
        .concat();
        assert!(
            Salvaged::scan(&long).is_none(),
            "an overlong top Via is not copied"
        );
    }
}
