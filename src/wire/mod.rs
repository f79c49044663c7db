//! Zero-copy scanning of one SIP message into a borrowed [`MessageView`].
//!
//! The scanner reads only what identifies a dialog and frames the message — start line,
//! Call-ID, From/To tags, CSeq, top Via, Max-Forwards, Content-Length, Contact — and keeps raw
//! slices of the headers the cold paths need (Record-Route, Route, Event, Refer-To, Replaces,
//! Referred-By, Subscription-State). It never allocates and never panics on any input; every
//! refusal is a [`WireError`] that maps to a SIP status.

mod block;
mod error;
mod header;
mod line_ends;
mod salvage;
mod start_line;
mod swar;
mod usual;
pub(crate) mod value;

use block::Raw;
pub use error::WireError;
pub(crate) use header::is_token;
pub use header::{HeaderIter, HeaderName, RawHeader};
pub use salvage::{Salvaged, MAX_SALVAGE_BYTES};
pub use start_line::{Method, StartLine};
pub use value::ValueList;

pub(crate) use value::trim_lws;

/// Bounds the scanner enforces, so a hostile message costs bounded work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanLimits {
    /// Largest message accepted, in bytes (default 65 535, the largest UDP payload).
    pub max_message: usize,
    /// Longest physical line, in bytes (default 8 192).
    pub max_line: usize,
    /// Most header fields (default 256).
    pub max_headers: usize,
}

impl ScanLimits {
    /// The default limits.
    pub const DEFAULT: ScanLimits = ScanLimits {
        max_message: 65_535,
        max_line: 8_192,
        max_headers: 256,
    };
}

impl Default for ScanLimits {
    fn default() -> ScanLimits {
        ScanLimits::DEFAULT
    }
}

/// The CSeq header: sequence number (below 2^31) and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number.
    pub number: u32,
    /// The method token as written.
    pub method: &'a [u8],
}

/// The top Via of a message: where to send responses, and the transaction branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// `host[:port]` as written.
    pub sent_by: &'a [u8],
    /// The `branch` parameter, if any.
    pub branch: Option<&'a [u8]>,
    /// The `received` parameter (RFC 3261 §18.2.1), as written.
    pub received: Option<&'a [u8]>,
    /// The `rport` parameter (RFC 3581): `Some(None)` when the sender asks for it (no value),
    /// `Some(Some(port))` once a server filled it in.
    pub rport: Option<Option<u16>>,
}

impl<'a> Via<'a> {
    /// The decoded form of a scanned Via element (`rport`'s value checked as a port).
    pub(crate) fn from_value(v: &value::ViaValue<'a>) -> Result<Via<'a>, WireError> {
        let malformed = WireError::MalformedHeader(HeaderName::Via);
        let rport = match v.rport {
            None => None,
            Some(None) => Some(None),
            Some(Some(port)) => Some(Some(
                value::decimal(port)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or(malformed)?,
            )),
        };
        Ok(Via {
            sent_by: v.sent_by,
            branch: v.branch,
            received: v.received,
            rport,
        })
    }

    /// The host of the sent-by, brackets of an IPv6 reference removed.
    pub fn host(&self) -> &'a [u8] {
        self.host_and_port().0
    }

    /// The port of the sent-by, if written.
    pub fn port(&self) -> Option<u16> {
        self.host_and_port().1
    }

    /// [`Via::host`] and [`Via::port`] from one backward walk: the last `]` ends an IPv6
    /// reference, and the port's colon is the last `:` after it.
    pub(crate) fn host_and_port(&self) -> (&'a [u8], Option<u16>) {
        let s = self.sent_by;
        let (host, port) = match s.iter().rposition(|&b| b == b':' || b == b']') {
            // An IPv6 reference with no port after it.
            Some(i) if s[i] == b']' => (&s[..i], None),
            Some(colon) => match s[..colon].iter().rposition(|&b| b == b']') {
                Some(close) => (&s[..close], Some(&s[colon + 1..])),
                None => (&s[..colon], Some(&s[colon + 1..])),
            },
            None => (s, None),
        };
        let host = host.strip_prefix(b"[").unwrap_or(host);
        let port = port.and_then(|p| value::decimal(p).and_then(|p| u16::try_from(p).ok()));
        (value::trim_lws(host), port)
    }

    /// Where a response to a request with this top Via goes over UDP (RFC 3261 §18.2.2, RFC
    /// 3581 §4): the `received` address, else the sent-by host when it is an IP literal; at
    /// the `rport` port, else the sent-by port, else 5060. `None` when the host is a name and
    /// nobody stamped `received` (this layer resolves no names). `maddr` is not honoured: it
    /// would let a request aim our responses at a third party.
    ///
    /// ```
    /// use sipdialog::wire::MessageView;
    ///
    /// let msg = b"SIP/2.0 200 OK\r\n\
    /// Via: SIP/2.0/UDP pc33.example.com:5062;branch=z9hG4bK1;received=192.0.2.7;rport=40000\r\n\
    /// From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n";
    /// let via = MessageView::parse(msg).unwrap().top_via().unwrap().unwrap();
    /// assert_eq!(via.response_destination(), "192.0.2.7:40000".parse().ok());
    /// ```
    pub fn response_destination(&self) -> Option<std::net::SocketAddr> {
        let (host, port) = self.host_and_port();
        let ip = value::ip_addr(self.received.unwrap_or(host))?;
        let port = match self.rport {
            Some(Some(port)) => port,
            _ => port.unwrap_or(5060),
        };
        Some(std::net::SocketAddr::new(ip, port))
    }
}

/// One SIP message, scanned: slices of the caller's buffer, nothing copied.
///
/// ```
/// use sipdialog::wire::{MessageView, Method};
///
/// let msg = b"BYE sip:bob@192.0.2.4 SIP/2.0\r\n\
/// Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
/// i: a84b4c76e66710@pc33.atlanta.com\r\n\
/// f: \"Alice; A>\" <sip:alice@atlanta.com>;TAG = 1928301774\r\n\
/// t: <sip:bob@biloxi.com>;tag=a6c85cf\r\n\
/// CSeq: 231 BYE\r\n\
/// Content-Length: 0\r\n\r\n";
/// let view = MessageView::parse(msg).unwrap();
/// assert_eq!(view.method(), Some(Method::Bye));
/// assert_eq!(view.call_id(), b"a84b4c76e66710@pc33.atlanta.com");
/// assert_eq!(view.from_tag(), Some(&b"1928301774"[..]));
/// assert_eq!(view.to_tag(), Some(&b"a6c85cf"[..]));
/// assert_eq!(view.cseq().number, 231);
/// assert_eq!(view.via_branch(), Some(&b"z9hG4bK776asdhds"[..]));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MessageView<'a> {
    /// From byte 0 (keepalive CRLFs included: the offsets below count from there) to the end
    /// of the body.
    message: &'a [u8],
    /// Where the start line begins.
    start: usize,
    start_line: StartLine<'a>,
    headers: (usize, usize),
    max_line: usize,
    call_id: &'a [u8],
    /// The From and To values as written (a response copies them).
    from: &'a [u8],
    to: &'a [u8],
    from_tag: Option<&'a [u8]>,
    to_tag: Option<&'a [u8]>,
    cseq: CSeq<'a>,
    /// The CSeq value as written, when scanned (a copy of an INVITE keeps it).
    cseq_value: Option<&'a [u8]>,
    via: Option<&'a [u8]>,
    max_forwards: Option<u32>,
    content_length: Option<u32>,
    body: (usize, usize),
    cold: ColdHeaders<'a>,
    routes: Routes,
    /// The top Via decoded, once someone asked for it to be kept
    /// ([`MessageView::with_decoded_via`]): every later [`MessageView::top_via`] reads it.
    decoded_via: Option<Via<'a>>,
    /// For a request stamped on receipt ([`crate::build::as_received`]): the port its
    /// answers go to, at the address it came from.
    reply_port: Option<u16>,
    /// A copy we wrote ourselves (`OwnRequest`) in canonical form: iterating its headers
    /// then reads its lines without a scan ([`canonical_lines`]).
    canonical: bool,
}

#[cfg(feature = "scan-counter")]
static SCANS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Messages scanned ([`MessageView::parse_with`] calls, failed ones included) since the
/// process started, with the `scan-counter` feature: what proves that a program scans each
/// received message once and nothing it sends.
#[cfg(feature = "scan-counter")]
pub fn scans() -> u64 {
    SCANS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Where each field of a request this crate wrote lies (see `MessageView::of_own_request`):
/// slices of `bytes`, which ends with the blank line (no body).
pub(crate) struct OwnRequest<'a> {
    pub bytes: &'a [u8],
    pub method: Method,
    pub method_token: &'a [u8],
    pub uri: &'a [u8],
    /// From the first header line to the end of the blank line.
    pub headers: (usize, usize),
    pub call_id: &'a [u8],
    pub from: &'a [u8],
    pub to: &'a [u8],
    pub from_tag: Option<&'a [u8]>,
    pub to_tag: Option<&'a [u8]>,
    pub cseq: CSeq<'a>,
    pub via: Option<&'a [u8]>,
    pub contact: Option<&'a [u8]>,
    pub record_route: Option<&'a [u8]>,
    pub route: Option<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
    /// Record-Route and Route, as tallied in the original.
    pub routes: (RouteTally, RouteTally),
    /// Via lines in `bytes`, if the writer counted them.
    pub via_lines: Option<u32>,
    /// Whether it is written in canonical form: one `Name: value` line per header, full
    /// names as [`HeaderName::as_str`] writes them, no CR or LF inside a value (a fold turned
    /// into spaces), so that its header walk need not scan ([`canonical_lines`]).
    pub canonical: bool,
}

/// The header lines of a header block written in canonical form (see `OwnRequest`): each line
/// found by its LF alone and named by its full name, with none of the scan's checks, which
/// the block passed when it was first scanned. Values start after the colon, as a scan gives
/// them.
fn canonical_lines(block: &[u8]) -> impl Iterator<Item = RawHeader<'_>> + '_ {
    let mut rest = block;
    std::iter::from_fn(move || {
        let nl = memchr::memchr(b'\n', rest)?;
        let line = rest.get(..nl)?.strip_suffix(b"\r").unwrap_or(&rest[..nl]);
        rest = &rest[nl + 1..];
        let colon = line.iter().position(|&b| b == b':')?;
        let name = &line[..colon];
        Some(RawHeader {
            name,
            kind: HeaderName::classify_canonical(name),
            value: &line[colon + 1..],
        })
    })
}

/// What the scan saw of one routing header (Record-Route or Route) across all its lines:
/// enough to tell that a message is within a route budget without walking its headers again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteTally {
    /// Header lines.
    pub lines: u32,
    /// Bytes of their values, as written (at least the bytes of the entries).
    pub bytes: u32,
    /// Commas in their values: with `lines`, an upper bound on the entries.
    pub commas: u32,
}

/// First values of the headers only the cold paths read (REFER, NOTIFY, routing), kept raw:
/// their accessors trim them, so a message nobody asks about pays nothing for them.
#[derive(Clone, Copy, Debug, Default)]
struct ColdHeaders<'a> {
    contact: Option<&'a [u8]>,
    record_route: Option<&'a [u8]>,
    route: Option<&'a [u8]>,
    event: Option<&'a [u8]>,
    refer_to: Option<&'a [u8]>,
    replaces: Option<&'a [u8]>,
    referred_by: Option<&'a [u8]>,
    subscription_state: Option<&'a [u8]>,
    content_type: Option<&'a [u8]>,
    timestamp: Option<&'a [u8]>,
}

/// The tallies of Record-Route and Route.
#[derive(Clone, Copy, Debug, Default)]
struct Routes {
    record_route: RouteTally,
    route: RouteTally,
    /// Via lines, when known (a scan counts them, as does the writer of a copy we keep).
    via_lines: Option<u32>,
}

fn required(value: Option<&[u8]>, name: HeaderName) -> Result<&[u8], WireError> {
    value.ok_or(WireError::MissingHeader(name))
}

fn tag(value: &[u8], name: HeaderName) -> Result<Option<&[u8]>, WireError> {
    value::tag_param(value).map_err(|()| WireError::MalformedHeader(name))
}

impl<'a> MessageView<'a> {
    /// Scans one message (a UDP datagram, or one message framed off a stream) with the
    /// default [`ScanLimits`].
    pub fn parse(bytes: &'a [u8]) -> Result<MessageView<'a>, WireError> {
        MessageView::parse_with(bytes, &ScanLimits::DEFAULT)
    }

    /// Scans one message with explicit limits.
    pub fn parse_with(bytes: &'a [u8], limits: &ScanLimits) -> Result<MessageView<'a>, WireError> {
        #[cfg(feature = "scan-counter")]
        SCANS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if bytes.len() > limits.max_message {
            return Err(WireError::MessageTooLarge {
                max: limits.max_message,
            });
        }
        // CRLFs before the start line are keepalives (RFC 3261 §7.5, RFC 5626 §3.5.1).
        let start = bytes
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .ok_or(WireError::Empty)?;
        let line_end = swar::find(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        let headers_start = (line_end + 1).min(bytes.len());
        let line = &bytes[start..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > limits.max_line {
            return Err(WireError::LineTooLong {
                max: limits.max_line,
            });
        }
        let start_line = start_line::parse(line)?;

        let mut raw = Raw::default();
        let body_start = block::scan(
            bytes,
            headers_start,
            limits.max_line,
            limits.max_headers,
            &mut raw,
        )?;

        let call_id = value::trim_lws(required(raw.call_id, HeaderName::CallId)?);
        let from = required(raw.from, HeaderName::From)?;
        let to = required(raw.to, HeaderName::To)?;
        let cseq = required(raw.cseq, HeaderName::CSeq)?;
        if !value::is_call_id(call_id) {
            return Err(WireError::MalformedHeader(HeaderName::CallId));
        }
        let from_tag = tag(from, HeaderName::From)?;
        let to_tag = tag(to, HeaderName::To)?;
        let cseq = match value::cseq(cseq) {
            value::CSeqValue::Ok(n, method) if n < 1 << 31 => CSeq {
                number: n as u32,
                method,
            },
            value::CSeqValue::Ok(..) | value::CSeqValue::OutOfRange => {
                return Err(WireError::CSeqOutOfRange)
            }
            value::CSeqValue::Malformed => {
                return Err(WireError::MalformedHeader(HeaderName::CSeq))
            }
        };
        if let StartLine::Request {
            method,
            method_token,
            ..
        } = start_line
        {
            if method_token != cseq.method {
                return Err(if method == Method::Extension {
                    WireError::UnknownMethodCSeqMismatch
                } else {
                    WireError::CSeqMethodMismatch
                });
            }
        }
        let max_forwards = match raw.max_forwards {
            Some(v) => Some(
                value::decimal(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(WireError::MalformedHeader(HeaderName::MaxForwards))?,
            ),
            None => None,
        };
        let content_length = match raw.content_length {
            Some(v) => Some(
                value::decimal(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(WireError::InvalidContentLength)?,
            ),
            None => None,
        };
        // Frame by Content-Length; octets after the body are ignored (RFC 3261 §18.3).
        let body_end = match content_length {
            Some(n) => body_start
                .checked_add(n as usize)
                .filter(|&end| end <= bytes.len())
                .ok_or(WireError::ContentLengthExceedsMessage)?,
            None => bytes.len(),
        };
        Ok(MessageView {
            message: &bytes[..body_end],
            start,
            start_line,
            headers: (headers_start, body_start),
            max_line: limits.max_line,
            call_id,
            from,
            to,
            from_tag,
            to_tag,
            cseq,
            cseq_value: raw.cseq,
            via: raw.via,
            max_forwards,
            content_length,
            body: (body_start, body_end),
            cold: raw.cold,
            routes: Routes {
                via_lines: Some(raw.via_lines),
                ..raw.routes
            },
            decoded_via: None,
            reply_port: None,
            canonical: false,
        })
    }

    /// A view of a request this crate wrote itself, from where it put each field: no scan.
    /// Everything not named is absent (no body, no Max-Forwards, no cold header but Contact,
    /// Record-Route, Route and Timestamp).
    pub(crate) fn of_own_request(known: OwnRequest<'a>) -> MessageView<'a> {
        let OwnRequest {
            bytes,
            method,
            method_token,
            uri,
            headers,
            call_id,
            from,
            to,
            from_tag,
            to_tag,
            cseq,
            via,
            contact,
            record_route,
            route,
            timestamp,
            routes,
            via_lines,
            canonical,
        } = known;
        MessageView {
            message: bytes,
            start: 0,
            start_line: StartLine::Request {
                method,
                method_token,
                uri,
            },
            headers,
            max_line: ScanLimits::DEFAULT.max_line,
            call_id,
            from,
            to,
            from_tag,
            to_tag,
            cseq,
            cseq_value: None,
            via,
            max_forwards: None,
            content_length: Some(0),
            body: (bytes.len(), bytes.len()),
            cold: ColdHeaders {
                contact,
                record_route,
                route,
                timestamp,
                ..ColdHeaders::default()
            },
            routes: Routes {
                record_route: routes.0,
                route: routes.1,
                via_lines,
            },
            decoded_via: None,
            reply_port: None,
            canonical,
        }
    }

    /// How many Via header lines the message has (`Some(0)` when none), or `None` when not
    /// counted: lets a walk for the Vias stop early.
    pub(crate) fn via_lines(&self) -> Option<u32> {
        self.routes.via_lines
    }

    /// The Record-Route and Route tallies, to carry into a copy of this message.
    pub(crate) fn route_tallies(&self) -> (RouteTally, RouteTally) {
        (self.routes.record_route, self.routes.route)
    }

    /// This view moved onto `bytes`: [`MessageView::as_bytes`] with the top Via value
    /// (`at..at + old_len` there) replaced by `new_len` bytes, everything else as it was.
    /// What a stamped copy of a request needs (`crate::build::stamp_received`) without a
    /// second scan; `None` when `bytes` is not such a copy.
    pub(crate) fn with_top_via_replaced<'b>(
        &self,
        bytes: &'b [u8],
        at: usize,
        old_len: usize,
        new_len: usize,
    ) -> Option<MessageView<'b>> {
        let old = self.as_bytes();
        let via = self.via?;
        let base = old.as_ptr() as usize;
        if bytes.len() + old_len != old.len() + new_len
            || via.as_ptr() as usize != base + at
            || via.len() != old_len
        {
            return None;
        }
        let shift = |o: usize| {
            if o >= at + old_len {
                o - old_len + new_len
            } else {
                o
            }
        };
        let map = |s: &'a [u8]| -> Option<&'b [u8]> {
            let o = (s.as_ptr() as usize).checked_sub(base)?;
            if o < at + old_len && o + s.len() > at {
                return None; // inside the replaced value: not a slice a view keeps
            }
            bytes.get(shift(o)..shift(o) + s.len())
        };
        let opt = |s: Option<&'a [u8]>| -> Option<Option<&'b [u8]>> {
            match s {
                Some(s) => map(s).map(Some),
                None => Some(None),
            }
        };
        let start_line = match self.start_line {
            StartLine::Request {
                method,
                method_token,
                uri,
            } => StartLine::Request {
                method,
                method_token: map(method_token)?,
                uri: map(uri)?,
            },
            StartLine::Response { code, reason } => StartLine::Response {
                code,
                reason: map(reason)?,
            },
        };
        let offset = |o: usize| o.checked_sub(self.start).map(shift);
        let c = &self.cold;
        Some(MessageView {
            message: bytes,
            start: 0,
            start_line,
            headers: (offset(self.headers.0)?, offset(self.headers.1)?),
            max_line: self.max_line,
            call_id: map(self.call_id)?,
            from: map(self.from)?,
            to: map(self.to)?,
            from_tag: opt(self.from_tag)?,
            to_tag: opt(self.to_tag)?,
            cseq: CSeq {
                number: self.cseq.number,
                method: map(self.cseq.method)?,
            },
            cseq_value: opt(self.cseq_value)?,
            via: bytes.get(at..at + new_len),
            max_forwards: self.max_forwards,
            content_length: self.content_length,
            body: (offset(self.body.0)?, offset(self.body.1)?),
            cold: ColdHeaders {
                contact: opt(c.contact)?,
                record_route: opt(c.record_route)?,
                route: opt(c.route)?,
                event: opt(c.event)?,
                refer_to: opt(c.refer_to)?,
                replaces: opt(c.replaces)?,
                referred_by: opt(c.referred_by)?,
                subscription_state: opt(c.subscription_state)?,
                content_type: opt(c.content_type)?,
                timestamp: opt(c.timestamp)?,
            },
            routes: self.routes,
            decoded_via: None,
            reply_port: None,
            canonical: false,
        })
    }

    /// The message bytes, from the start line to the end of the body (trailing octets cut).
    pub fn as_bytes(&self) -> &'a [u8] {
        &self.message[self.start..]
    }

    /// The start line.
    pub fn start_line(&self) -> StartLine<'a> {
        self.start_line
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start_line, StartLine::Request { .. })
    }

    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<Method> {
        match self.start_line {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI, or `None` for a response.
    pub fn request_uri(&self) -> Option<&'a [u8]> {
        match self.start_line {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, or `None` for a request.
    pub fn status_code(&self) -> Option<u16> {
        match self.start_line {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The Call-ID, LWS-trimmed.
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id
    }

    /// The From value as written (LWS around it included): what a response copies.
    pub(crate) fn raw_from(&self) -> &'a [u8] {
        self.from
    }

    /// The CSeq value as written, if this view was scanned (not of a copy we wrote).
    pub(crate) fn raw_cseq(&self) -> Option<&'a [u8]> {
        self.cseq_value
    }

    /// The To value as written (LWS around it included): what a response copies.
    pub(crate) fn raw_to(&self) -> &'a [u8] {
        self.to
    }

    /// The From tag, exactly as written.
    pub fn from_tag(&self) -> Option<&'a [u8]> {
        self.from_tag
    }

    /// The To tag, exactly as written.
    pub fn to_tag(&self) -> Option<&'a [u8]> {
        self.to_tag
    }

    /// The CSeq number and method.
    pub fn cseq(&self) -> CSeq<'a> {
        self.cseq
    }

    /// The top Via value, decoded on demand: the dialog layer does not need it to find a
    /// dialog, so scanning leaves it to the transaction layer that does. `Ok(None)` when the
    /// message has no Via; [`WireError::MalformedHeader`] when the top value does not parse.
    pub fn top_via(&self) -> Result<Option<Via<'a>>, WireError> {
        if let Some(via) = self.decoded_via {
            return Ok(Some(via));
        }
        let Some(raw) = self.via else {
            return Ok(None);
        };
        let malformed = WireError::MalformedHeader(HeaderName::Via);
        let v = value::via(raw).map_err(|()| malformed)?;
        Via::from_value(&v).map(Some)
    }

    /// Keeps `via` as this view's decoded top Via: for the one who decoded it already (the
    /// stamping of a received request).
    /// Where answers to this request go, received from `source`: for a request stamped on
    /// receipt, `source`'s address at the port its Via asked for (what
    /// [`Via::response_destination`] reads off the stamped Via, without reading it again);
    /// otherwise what the top Via says.
    pub(crate) fn reply_to(&self, source: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
        match self.reply_port {
            Some(port) => Some(std::net::SocketAddr::new(source.ip(), port)),
            None => self.top_via().ok().flatten()?.response_destination(),
        }
    }

    /// Records the port answers go to, once the top Via is stamped for the source.
    pub(crate) fn set_reply_port(&mut self, port: u16) {
        self.reply_port = Some(port);
    }

    pub(crate) fn set_via(&mut self, via: Via<'a>) {
        self.decoded_via = Some(via);
    }

    /// This view with its top Via decoded and kept, so that the layers it is handed to
    /// (transactions, dialogs, the answer's destination) do not each decode it again. A view
    /// whose top Via is absent or malformed is returned as it is.
    ///
    /// ```
    /// use sipdialog::wire::MessageView;
    ///
    /// let bye = b"BYE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\
    /// Call-ID: c1@h\r\nFrom: <sip:b@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCSeq: 2 BYE\r\n\r\n";
    /// let view = MessageView::parse(bye).unwrap().with_decoded_via();
    /// assert_eq!(view.via_branch(), Some(&b"z9hG4bK1"[..]));
    /// ```
    #[must_use]
    pub fn with_decoded_via(mut self) -> MessageView<'a> {
        self.decode_via();
        self
    }

    /// [`MessageView::with_decoded_via`] in place: a view is some 480 bytes, and every move
    /// of one on the receive path is a copy.
    pub(crate) fn decode_via(&mut self) {
        if self.decoded_via.is_none() {
            self.decoded_via = self.top_via().ok().flatten();
        }
    }

    /// The raw value of the first Via header (all its comma-joined elements).
    pub(crate) fn top_via_raw(&self) -> Option<&'a [u8]> {
        self.via
    }

    /// The `branch` parameter of the top Via; `None` when absent or when the Via is malformed
    /// (see [`MessageView::top_via`] for the error).
    pub fn via_branch(&self) -> Option<&'a [u8]> {
        self.top_via().ok().flatten()?.branch
    }

    /// The sent-by (`host[:port]`) of the top Via; `None` when absent or malformed.
    pub fn via_sent_by(&self) -> Option<&'a [u8]> {
        Some(self.top_via().ok().flatten()?.sent_by)
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards
    }

    /// Content-Length, if present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// The body, framed by Content-Length (or the rest of the datagram when it is absent).
    pub fn body(&self) -> &'a [u8] {
        &self.message[self.body.0..self.body.1]
    }

    /// The raw value of the first Contact header.
    pub fn contact(&self) -> Option<&'a [u8]> {
        self.cold.contact.map(value::trim_lws)
    }

    /// The raw value of the first Record-Route header; [`MessageView::values`] gives all.
    pub fn record_route(&self) -> Option<&'a [u8]> {
        self.cold.record_route.map(value::trim_lws)
    }

    /// What the scan saw of every Record-Route (or Route) line: lines, bytes, commas.
    pub fn route_tally(&self, header: HeaderName) -> RouteTally {
        match header {
            HeaderName::RecordRoute => self.routes.record_route,
            HeaderName::Route => self.routes.route,
            _ => RouteTally::default(),
        }
    }

    /// The raw value of the first Route header; [`MessageView::values`] gives all.
    pub fn route(&self) -> Option<&'a [u8]> {
        self.cold.route.map(value::trim_lws)
    }

    /// The raw value of the first Event header.
    pub fn event(&self) -> Option<&'a [u8]> {
        self.cold.event.map(value::trim_lws)
    }

    /// The raw value of the first Refer-To header.
    pub fn refer_to(&self) -> Option<&'a [u8]> {
        self.cold.refer_to.map(value::trim_lws)
    }

    /// The raw value of the first Replaces header.
    pub fn replaces(&self) -> Option<&'a [u8]> {
        self.cold.replaces.map(value::trim_lws)
    }

    /// The raw value of the first Referred-By header.
    pub fn referred_by(&self) -> Option<&'a [u8]> {
        self.cold.referred_by.map(value::trim_lws)
    }

    /// The value of the first Timestamp header, LWS-trimmed (what a 100 echoes).
    pub fn timestamp(&self) -> Option<&'a [u8]> {
        self.cold.timestamp.map(value::trim_lws)
    }

    /// The raw value of the first Subscription-State header.
    pub fn subscription_state(&self) -> Option<&'a [u8]> {
        self.cold.subscription_state.map(value::trim_lws)
    }

    /// The value of the first Content-Type header (LWS around it trimmed): what a relay
    /// copies with the body, found by the scan.
    pub fn content_type(&self) -> Option<&'a [u8]> {
        self.cold.content_type.map(value::trim_lws)
    }

    /// All header fields, in order, as raw name/value slices.
    pub fn headers(&self) -> impl Iterator<Item = RawHeader<'a>> + 'a {
        let block = &self.message[self.headers.0..self.headers.1];
        let canonical = self.canonical.then(|| canonical_lines(block));
        let scanned = (!self.canonical).then(|| {
            HeaderIter::new(
                &self.message[..self.headers.1],
                self.headers.0,
                self.max_line,
            )
            .map_while(Result::ok)
        });
        canonical
            .into_iter()
            .flatten()
            .chain(scanned.into_iter().flatten())
    }

    /// Every list element of every header named `name`, in order: the comma-joined and the
    /// repeated forms of a header give the same sequence.
    ///
    /// ```
    /// use sipdialog::wire::{HeaderName, MessageView};
    ///
    /// let msg = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
    /// Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nCall-ID: x\r\nFrom: <sip:a@b>;tag=1\r\n\
    /// To: <sip:c@d>;tag=2\r\nRecord-Route: <sip:p3;lr>\r\nCSeq: 1 INVITE\r\n\r\n";
    /// let view = MessageView::parse(msg).unwrap();
    /// let rr: Vec<&[u8]> = view.values(HeaderName::RecordRoute).collect();
    /// assert_eq!(rr, [&b"<sip:p1;lr>"[..], b"<sip:p2;lr>", b"<sip:p3;lr>"]);
    /// ```
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        // The scan tallied Record-Route and Route lines and kept the first: a message with
        // at most one such line needs no second walk of its headers.
        let (tally, first) = match name {
            HeaderName::RecordRoute => (Some(self.routes.record_route), self.cold.record_route),
            HeaderName::Route => (Some(self.routes.route), self.cold.route),
            _ => (None, None),
        };
        let known = tally.filter(|t| t.lines <= 1).map(|_| first);
        let walk = known.is_none().then(|| {
            self.headers()
                .filter(move |h| h.kind == name)
                .flat_map(|h| ValueList::new(h.value))
        });
        known
            .flatten()
            .into_iter()
            .flat_map(ValueList::new)
            .chain(walk.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests;
