//! The `message/sipfrag` body (RFC 3420) of a REFER's NOTIFY (RFC 3515 §2.4.5): the status
//! line of the response the transfer target got to its INVITE, optionally with headers.

use super::error::ReferError;

const MALFORMED: ReferError = ReferError::Malformed {
    what: "message/sipfrag",
};

/// Whether `b` may stand in a Reason-Phrase: anything but control characters, HT excepted
/// (RFC 3261 §25.1; UTF-8 is not validated, it is not ours to display).
fn is_reason_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// The status code of a sipfrag body whose first line is a SIP status line,
/// `SIP/2.0 SP 3DIGIT SP Reason-Phrase CRLF` (100..=699). The line may end the body without
/// CRLF, and the reason phrase with its SP may be missing; what follows the line (headers, a
/// body) is not read.
///
/// ```
/// use sipdialog::refer::parse_sipfrag_status;
///
/// assert_eq!(parse_sipfrag_status(b"SIP/2.0 180 Ringing\r\n"), Ok(180));
/// assert!(parse_sipfrag_status(b"SIP/2.0 99 Too Low\r\n").is_err());
/// ```
pub fn parse_sipfrag_status(body: &[u8]) -> Result<u16, ReferError> {
    let (version, rest) = body.split_at_checked(7).ok_or(MALFORMED)?;
    // "SIP" is a case-insensitive ABNF literal; only 2.0 has this grammar.
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(MALFORMED);
    }
    let (code, tail) = match rest {
        [b' ', a, b, c, tail @ ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            let digit = |d: &u8| u16::from(d - b'0');
            (digit(a) * 100 + digit(b) * 10 + digit(c), tail)
        }
        _ => return Err(MALFORMED),
    };
    if !(100..=699).contains(&code) {
        return Err(MALFORMED);
    }
    let end = match tail {
        [b' ', reason @ ..] => {
            let n = reason
                .iter()
                .position(|&b| !is_reason_byte(b))
                .unwrap_or(reason.len());
            reason.get(n..).unwrap_or_default()
        }
        _ => tail,
    };
    // The line ends the body, or ends at CRLF (a bare LF tolerated); a bare CR or a control
    // character is not a line end other parsers agree on.
    match end {
        [] | [b'\r', b'\n', ..] | [b'\n', ..] => Ok(code),
        _ => Err(MALFORMED),
    }
}

/// Appends a sipfrag body holding only a status line, `SIP/2.0 <code> <reason>\r\n`, as a
/// NOTIFY reporting a transfer's progress carries it (Content-Type `message/sipfrag`). The
/// status must be 100..=699 and the reason free of control characters (HT allowed). On error
/// `out` is unchanged.
///
/// ```
/// use sipdialog::refer::write_sipfrag;
///
/// let mut out = Vec::new();
/// write_sipfrag(&mut out, 200, "OK").unwrap();
/// assert_eq!(out, b"SIP/2.0 200 OK\r\n");
/// ```
pub fn write_sipfrag(out: &mut Vec<u8>, status: u16, reason: &str) -> Result<(), ReferError> {
    if !(100..=699).contains(&status) {
        return Err(ReferError::InvalidValue { what: "status" });
    }
    if !reason.bytes().all(is_reason_byte) {
        return Err(ReferError::InvalidValue {
            what: "Reason-Phrase",
        });
    }
    out.extend_from_slice(b"SIP/2.0 ");
    // Three digits: 100..=699 was checked.
    for div in [100, 10, 1] {
        // The digit is below 10, so the cast cannot truncate.
        out.push(b'0' + (status / div % 10) as u8);
    }
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(())
}
