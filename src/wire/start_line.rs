//! Request line and status line (RFC 3261 §7.1, §7.2).

use super::header::is_token_byte;
use super::WireError;

/// The SIP methods this crate knows; anything else is [`Method::Extension`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261)
    Cancel,
    /// OPTIONS (RFC 3261)
    Options,
    /// REGISTER (RFC 3261)
    Register,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// PUBLISH (RFC 3903)
    Publish,
    /// INFO (RFC 6086)
    Info,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// UPDATE (RFC 3311)
    Update,
    /// A method token this crate does not know.
    Extension,
}

impl Method {
    /// Classifies a method token. Methods are case-sensitive (RFC 3261 §7.1).
    pub fn from_bytes(token: &[u8]) -> Method {
        match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            _ => Method::Extension,
        }
    }

    /// The method token, or `None` for [`Method::Extension`] (whose token is in the message).
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Extension => return None,
        })
    }
}

/// The first line of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP/2.0`
    Request {
        /// The method as classified.
        method: Method,
        /// The method token as written.
        method_token: &'a [u8],
        /// The Request-URI, unparsed.
        uri: &'a [u8],
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`
    Response {
        /// The status code, 100–699.
        code: u16,
        /// The reason phrase as written (may be empty, may hold UTF-8).
        reason: &'a [u8],
    },
}

/// Checks a SIP-Version token: `Ok` for SIP/2.0 (case-insensitive), 505 for another
/// well-formed version (`SIP/` 1*DIGIT "." 1*DIGIT), 400 for anything else.
fn version(token: &[u8]) -> Result<(), WireError> {
    if token.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
    let well_formed = match token.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case(b"SIP/") => {
            let number = &token[4..];
            super::swar::find(b'.', number)
                .is_some_and(|dot| digits(&number[..dot]) && digits(&number[dot + 1..]))
        }
        _ => false,
    };
    Err(if well_formed {
        WireError::VersionNotSupported
    } else {
        WireError::MalformedStartLine
    })
}

/// Parses the start line (without its CRLF).
///
/// Liberal about the spacing RFC 4475 calls acceptable to ignore (runs of SP between the parts,
/// trailing SP), strict about the rest: exactly three parts, a token method, SIP/2.0.
pub(crate) fn parse(line: &[u8]) -> Result<StartLine<'_>, WireError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return parse_status(line);
    }
    // Runs of SP between the parts and trailing SP are tolerated; a fourth part is not.
    if line.first() == Some(&b' ') {
        return Err(WireError::MalformedStartLine);
    }
    let line = trim_sp(line);
    let (Some(first), Some(last)) = (super::swar::find(b' ', line), memchr::memrchr(b' ', line))
    else {
        return Err(WireError::MalformedStartLine);
    };
    let (method_token, uri, ver) = (
        &line[..first],
        trim_sp(&line[first..last]),
        &line[last + 1..],
    );
    if uri.is_empty() || super::swar::find2(b' ', b'\t', uri).is_some() {
        return Err(WireError::MalformedStartLine);
    }
    if method_token.is_empty() || !method_token.iter().all(|&b| is_token_byte(b)) {
        return Err(WireError::MalformedStartLine);
    }
    version(ver)?;
    Ok(StartLine::Request {
        method: Method::from_bytes(method_token),
        method_token,
        uri,
    })
}

fn trim_sp(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn parse_status(line: &[u8]) -> Result<StartLine<'_>, WireError> {
    let (ver, rest) = match super::swar::find(b' ', line) {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => return Err(WireError::MalformedStartLine),
    };
    version(ver)?;
    // The SP after the code is required, even before an empty reason phrase.
    let (code, reason) = match super::swar::find(b' ', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => return Err(WireError::MalformedStartLine),
    };
    match code {
        [a @ b'1'..=b'6', b @ b'0'..=b'9', c @ b'0'..=b'9'] => Ok(StartLine::Response {
            code: u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'),
            reason,
        }),
        _ => Err(WireError::InvalidStatusCode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let StartLine::Request { method, uri, .. } = parse(b"INVITE  sip:a@b  SIP/2.0  ").unwrap()
        else {
            panic!("not a request")
        };
        assert_eq!((method, uri), (Method::Invite, &b"sip:a@b"[..]));
        assert_eq!(
            parse(b"INVITE sip:a@b; lr SIP/2.0"),
            Err(WireError::MalformedStartLine)
        );
        assert_eq!(
            parse(b"OPTIONS sip:a@b SIP/7.0"),
            Err(WireError::VersionNotSupported)
        );
        assert_eq!(
            parse(b"OPTIONS sip:a@b HTTP/1.1"),
            Err(WireError::MalformedStartLine)
        );
        assert_eq!(
            parse(b"OPTIONS sip:a@b SIP/2"),
            Err(WireError::MalformedStartLine)
        );
        assert_eq!(
            parse(b"OPT\"IONS sip:a@b SIP/2.0"),
            Err(WireError::MalformedStartLine)
        );
        assert_eq!(parse(b""), Err(WireError::MalformedStartLine));
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse(b"SIP/2.0 100 "),
            Ok(StartLine::Response {
                code: 100,
                reason: b""
            })
        );
        assert_eq!(
            parse(b"sip/2.0 699 x y"),
            Ok(StartLine::Response {
                code: 699,
                reason: b"x y"
            })
        );
        for bad in [
            &b"SIP/2.0 4294967301 x"[..],
            b"SIP/2.0 700 x",
            b"SIP/2.0 099 x",
            b"SIP/2.0 20 x",
        ] {
            assert_eq!(parse(bad), Err(WireError::InvalidStatusCode));
        }
        assert_eq!(
            parse(b"SIP/2.1 200 OK"),
            Err(WireError::VersionNotSupported)
        );
        assert_eq!(parse(b"SIP/2.0"), Err(WireError::MalformedStartLine));
    }
}
