//! The Replaces header (RFC 3891 §6.1), and the small bounds-checked lexer every transfer
//! header here shares (the `wire` one is private to its module).

use super::error::ReferError;
use crate::wire::trim_lws;
use lex::{is_call_id, is_token, is_word_byte, Cursor};

/// The dialog a Replaces header names (RFC 3891 §6.1): `callid;to-tag=..;from-tag=..
/// [;early-only]`. The tags are as the sender of the Replaces sees the dialog: `to_tag` is the
/// tag of the party the INVITE with Replaces reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replaces<'a> {
    /// Call-ID, `word["@"word]`.
    pub call_id: &'a [u8],
    /// The `to-tag` parameter (a token).
    pub to_tag: &'a [u8],
    /// The `from-tag` parameter (a token).
    pub from_tag: &'a [u8],
    /// The `early-only` flag: replace the dialog only while it is early (RFC 3891 §3).
    pub early_only: bool,
}

const WHAT: &str = "Replaces";

/// Parses a Replaces header value (or the percent-decoded `Replaces` of a Refer-To URI).
///
/// `to-tag` and `from-tag` must appear exactly once, `early-only` at most once and without a
/// value; parameter names are case-insensitive; other parameters are checked for syntax and
/// ignored. LWS around `;` and `=` is allowed.
///
/// ```
/// use sipdialog::refer::parse_replaces;
///
/// let r = parse_replaces(b"98732@sip.example.com ; FROM-TAG=r33th4x0r;to-tag=ff87ff").unwrap();
/// assert_eq!(r.call_id, b"98732@sip.example.com");
/// assert_eq!((r.to_tag, r.from_tag, r.early_only), (&b"ff87ff"[..], &b"r33th4x0r"[..], false));
/// ```
pub fn parse_replaces(value: &[u8]) -> Result<Replaces<'_>, ReferError> {
    let malformed = ReferError::Malformed { what: WHAT };
    let mut c = Cursor::new(trim_lws(value));
    // `@` is not a word byte, so this stops at `;`, LWS or anything outside the grammar.
    let call_id = c.take_while(|b| is_word_byte(b) || b == b'@');
    if !is_call_id(call_id) {
        return Err(malformed);
    }
    let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
    while let Some((name, val)) = c.next_param().map_err(|()| malformed)? {
        let slot = if name.eq_ignore_ascii_case(b"to-tag") {
            (&mut to_tag, "to-tag")
        } else if name.eq_ignore_ascii_case(b"from-tag") {
            (&mut from_tag, "from-tag")
        } else if name.eq_ignore_ascii_case(b"early-only") {
            // A flag: a value would be a guess at meaning, and twice is as suspect as tags twice.
            if val.is_some() {
                return Err(malformed);
            }
            if early_only {
                return Err(ReferError::DuplicateParam {
                    param: "early-only",
                });
            }
            early_only = true;
            continue;
        } else {
            continue;
        };
        let (tag, param) = slot;
        if tag.is_some() {
            return Err(ReferError::DuplicateParam { param });
        }
        match val {
            Some(v) if is_token(v) => *tag = Some(v),
            _ => return Err(malformed),
        }
    }
    Ok(Replaces {
        call_id,
        to_tag: to_tag.ok_or(ReferError::MissingParam { param: "to-tag" })?,
        from_tag: from_tag.ok_or(ReferError::MissingParam { param: "from-tag" })?,
        early_only,
    })
}

/// `Ok` when `r` can be written: a valid Call-ID and token tags (so no CR, LF or NUL).
pub(super) fn check_replaces(r: &Replaces<'_>) -> Result<(), ReferError> {
    if !is_call_id(r.call_id) {
        return Err(ReferError::InvalidValue {
            what: "Replaces Call-ID",
        });
    }
    if !is_token(r.to_tag) || !is_token(r.from_tag) {
        return Err(ReferError::InvalidValue {
            what: "Replaces tag",
        });
    }
    Ok(())
}

/// Hands the header form of a checked `r` to `emit` piece by piece, so the Refer-To writer can
/// escape it on the way without a scratch buffer.
pub(super) fn emit_replaces(r: &Replaces<'_>, mut emit: impl FnMut(&[u8])) {
    emit(r.call_id);
    emit(b";to-tag=");
    emit(r.to_tag);
    emit(b";from-tag=");
    emit(r.from_tag);
    if r.early_only {
        emit(b";early-only");
    }
}

/// Appends the Replaces header value (unescaped, as in an INVITE's `Replaces:` header), e.g.
/// `98732@sip.example.com;to-tag=ff87ff;from-tag=r33th4x0r`. On error `out` is unchanged.
///
/// ```
/// use sipdialog::refer::{write_replaces, Replaces};
///
/// let r = Replaces { call_id: b"a@b", to_tag: b"1", from_tag: b"2", early_only: true };
/// let mut out = Vec::new();
/// write_replaces(&mut out, &r).unwrap();
/// assert_eq!(out, b"a@b;to-tag=1;from-tag=2;early-only");
/// ```
pub fn write_replaces(out: &mut Vec<u8>, r: &Replaces<'_>) -> Result<(), ReferError> {
    check_replaces(r)?;
    emit_replaces(r, |piece| out.extend_from_slice(piece));
    Ok(())
}

/// A bounds-checked reader and the RFC 3261 character classes, shared by the transfer
/// parsers. Every read goes through `get`, so no input can make it panic.
pub(super) mod lex {
    /// One `;name[=value]` parameter.
    pub(crate) type Param<'a> = (&'a [u8], Option<&'a [u8]>);

    /// Whether `b` is an RFC 3261 `token` character.
    pub(crate) fn is_token_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
    }

    /// Whether `value` is a non-empty token.
    pub(crate) fn is_token(value: &[u8]) -> bool {
        !value.is_empty() && value.iter().all(|&b| is_token_byte(b))
    }

    /// Whether `b` is an RFC 3261 `word` character (Call-ID).
    pub(crate) fn is_word_byte(b: u8) -> bool {
        is_token_byte(b)
            || matches!(
                b,
                b'(' | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            )
    }

    /// Whether `value` is `word ["@" word]` (RFC 3261 §25.1).
    pub(crate) fn is_call_id(value: &[u8]) -> bool {
        let word = |w: &[u8]| !w.is_empty() && w.iter().all(|&b| is_word_byte(b));
        let mut parts = value.splitn(2, |&b| b == b'@');
        let local = parts.next().unwrap_or_default();
        word(local) && parts.next().is_none_or(word)
    }

    /// The length of the LWS at the start of `bytes`: SP, HT and folds, as the `wire` scanner
    /// reads them (an LF inside a raw value only ever starts a fold; a bare CR is not white
    /// space, since other parsers would read it differently).
    fn lws_prefix(bytes: &[u8]) -> usize {
        let mut i = 0;
        loop {
            match bytes.get(i) {
                Some(b' ' | b'\t' | b'\n') => i += 1,
                Some(b'\r') if bytes.get(i + 1) == Some(&b'\n') => i += 2,
                _ => return i,
            }
        }
    }

    /// A read position in a value.
    pub(crate) struct Cursor<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> Cursor<'a> {
        pub(crate) fn new(buf: &'a [u8]) -> Cursor<'a> {
            Cursor { buf, pos: 0 }
        }

        pub(crate) fn peek(&self) -> Option<u8> {
            self.buf.get(self.pos).copied()
        }

        /// What is left to read.
        pub(crate) fn rest(&self) -> &'a [u8] {
            self.buf.get(self.pos..).unwrap_or_default()
        }

        /// Moves `n` bytes on (never past the end).
        pub(crate) fn advance(&mut self, n: usize) {
            self.pos = self.pos.saturating_add(n).min(self.buf.len());
        }

        pub(crate) fn skip_lws(&mut self) {
            self.advance(lws_prefix(self.rest()));
        }

        pub(crate) fn eat(&mut self, b: u8) -> bool {
            let hit = self.peek() == Some(b);
            if hit {
                self.advance(1);
            }
            hit
        }

        /// The longest run from here whose bytes satisfy `pred`, consumed.
        pub(crate) fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
            let rest = self.rest();
            let n = rest.iter().position(|&b| !pred(b)).unwrap_or(rest.len());
            self.advance(n);
            rest.get(..n).unwrap_or_default()
        }

        /// A quoted string, quotes included; `None` if unterminated or holding a CR or LF that
        /// is not part of a fold (RFC 3261 §25.1: qdtext and quoted-pair exclude them).
        pub(crate) fn take_quoted(&mut self) -> Option<&'a [u8]> {
            let start = self.pos;
            if !self.eat(b'"') {
                return None;
            }
            loop {
                match self.peek()? {
                    b'\\' => match self.buf.get(self.pos + 1)? {
                        b'\r' | b'\n' => return None,
                        _ => self.advance(2),
                    },
                    b'"' => {
                        self.advance(1);
                        return self.buf.get(start..self.pos);
                    }
                    b'\r' | b'\n' => match lws_prefix(self.rest()) {
                        0 => return None,
                        n => self.advance(n),
                    },
                    _ => self.advance(1),
                }
            }
        }

        /// The next `;name[=value]` parameter (value a token, a host or a quoted string,
        /// RFC 3261 `generic-param`), or `None` at the end. `Err` on anything else, a `,`
        /// included: none of the headers here is a list.
        pub(crate) fn next_param(&mut self) -> Result<Option<Param<'a>>, ()> {
            self.skip_lws();
            match self.peek() {
                None => return Ok(None),
                Some(b';') => self.advance(1),
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
                self.take_while(|b| is_token_byte(b) || matches!(b, b'[' | b']' | b':'))
            };
            if value.is_empty() {
                return Err(());
            }
            Ok(Some((name, Some(value))))
        }
    }

    /// A decimal number of 1 to 10 digits that fits `u32`.
    pub(crate) fn parse_u32(digits: &[u8]) -> Option<u32> {
        if digits.is_empty() || digits.len() > 10 {
            return None;
        }
        digits.iter().try_fold(0u32, |n, &b| {
            let d = char::from(b).to_digit(10)?;
            n.checked_mul(10)?.checked_add(d)
        })
    }

    /// Appends the decimal digits of `n` without allocating.
    pub(crate) fn put_u32(out: &mut Vec<u8>, n: u32) {
        let mut buf = [0u8; 10];
        let mut len = 0;
        let mut n = n;
        for slot in buf.iter_mut().rev() {
            // `n % 10` is below 10, so the cast cannot truncate.
            *slot = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(buf.get(buf.len() - len..).unwrap_or_default());
    }
}
