//! Typed scanner errors, each mapped to the SIP status a UAS answers with.

use core::fmt;

use super::HeaderName;

/// Why a message was refused by the scanner.
///
/// Every variant maps to a SIP status code and reason phrase through [`WireError::status`]. A
/// request is answered with it (when enough of the message was read to answer at all); a
/// response is dropped, since nothing answers a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The buffer holds no message (empty, or only CRLF keepalives).
    Empty,
    /// The message is longer than the configured maximum.
    MessageTooLarge {
        /// The configured maximum, in bytes.
        max: usize,
    },
    /// A header line is longer than the configured maximum.
    LineTooLong {
        /// The configured maximum, in bytes.
        max: usize,
    },
    /// More header fields than the configured maximum.
    TooManyHeaders {
        /// The configured maximum.
        max: usize,
    },
    /// The request line or status line does not parse.
    MalformedStartLine,
    /// The SIP version is not `SIP/2.0`.
    VersionNotSupported,
    /// The status code is not three digits between 100 and 699.
    InvalidStatusCode,
    /// A header line has no `:` after a token name, or a continuation line comes first.
    MalformedHeaderLine,
    /// A header the dialog layer reads has a value that does not parse.
    MalformedHeader(HeaderName),
    /// A required header is absent.
    MissingHeader(HeaderName),
    /// A header that must appear once appears more than once.
    DuplicateHeader(HeaderName),
    /// The CSeq number is 2^31 or more.
    CSeqOutOfRange,
    /// The CSeq method differs from the request method, which is a known method.
    CSeqMethodMismatch,
    /// The CSeq method differs from the request method, which is not a method we know.
    UnknownMethodCSeqMismatch,
    /// Content-Length is not a non-negative decimal number.
    InvalidContentLength,
    /// Content-Length says the body is longer than what the message holds.
    ContentLengthExceedsMessage,
}

impl WireError {
    /// The status code and reason phrase to answer a request refused with this error.
    ///
    /// ```
    /// use sipdialog::wire::{MessageView, WireError};
    ///
    /// let err = MessageView::parse(b"OPTIONS sip:a@b SIP/3.0\r\n\r\n").unwrap_err();
    /// assert_eq!(err, WireError::VersionNotSupported);
    /// assert_eq!(err.status(), (505, "Version Not Supported"));
    /// ```
    pub const fn status(&self) -> (u16, &'static str) {
        match self {
            WireError::VersionNotSupported => (505, "Version Not Supported"),
            WireError::UnknownMethodCSeqMismatch => (501, "Not Implemented"),
            WireError::MessageTooLarge { .. }
            | WireError::LineTooLong { .. }
            | WireError::TooManyHeaders { .. } => (513, "Message Too Large"),
            _ => (400, "Bad Request"),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Empty => f.write_str("no message in the buffer"),
            WireError::MessageTooLarge { max } => write!(f, "message longer than {max} bytes"),
            WireError::LineTooLong { max } => write!(f, "header line longer than {max} bytes"),
            WireError::TooManyHeaders { max } => write!(f, "more than {max} header fields"),
            WireError::MalformedStartLine => f.write_str("malformed start line"),
            WireError::VersionNotSupported => f.write_str("SIP version is not SIP/2.0"),
            WireError::InvalidStatusCode => f.write_str("status code is not 100-699"),
            WireError::MalformedHeaderLine => f.write_str("malformed header line"),
            WireError::MalformedHeader(h) => write!(f, "malformed {} header", h.as_str()),
            WireError::MissingHeader(h) => write!(f, "missing {} header", h.as_str()),
            WireError::DuplicateHeader(h) => write!(f, "more than one {} header", h.as_str()),
            WireError::CSeqOutOfRange => f.write_str("CSeq number is 2^31 or more"),
            WireError::CSeqMethodMismatch | WireError::UnknownMethodCSeqMismatch => {
                f.write_str("CSeq method differs from the request method")
            }
            WireError::InvalidContentLength => f.write_str("invalid Content-Length"),
            WireError::ContentLengthExceedsMessage => {
                f.write_str("Content-Length exceeds the bytes received")
            }
        }
    }
}

impl std::error::Error for WireError {}
