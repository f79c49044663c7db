//! A slow, plain reference extractor for the dialog identity of a SIP message.
//!
//! Written from RFC 3261 (§7, §20.10, §20.16, §20.20, §25.1), not from the library: it copies
//! every line into owned vectors, unfolds, splits, and walks values byte by byte. It is meant
//! to be obviously right, not fast, and it shares no code with `sipdialog::wire`.
//!
//! It has two verdicts:
//! - [`Problem`]: the bytes break a rule the RFC states for something the dialog layer reads
//!   (the identity is undefined or ambiguous). A scanner that accepts such a message is wrong.
//! - [`Leniency`]: the bytes break the RFC grammar, but only in a way RFC 4475 lets a parser
//!   tolerate without changing what it reads (extra spaces in the start line, an unquoted
//!   display name holding non-token characters, ...). The identity is still well defined, and
//!   the reference computes it.

/// A header field after unfolding: name as written (trimmed), value with the line breaks of
/// its continuation lines removed (the leading white space of each continuation kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name, as written, without surrounding white space.
    pub name: Vec<u8>,
    /// The unfolded value, from after the first `:` to the end of the field, untrimmed.
    pub value: Vec<u8>,
}

/// A message split into start line, header fields and body.
#[derive(Clone, Debug)]
pub struct Split {
    /// Offset of the first byte of the start line (after keepalive CR/LF bytes).
    pub start_offset: usize,
    /// The start line without its line end.
    pub start_line: Vec<u8>,
    /// The header fields, in order.
    pub fields: Vec<Field>,
    /// Offset of the first body byte (the end of the buffer when there is no empty line).
    pub body_offset: usize,
    /// Why the header block cannot be split into fields, if it cannot.
    pub broken: Option<Problem>,
}

/// A rule broken in a way that leaves the dialog identity undefined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Nothing but CR/LF bytes.
    Empty,
    /// A header line without a colon.
    LineWithoutColon,
    /// A continuation line with no field before it.
    ContinuationFirst,
    /// A header field name that is not a token.
    BadHeaderName,
    /// The start line is neither a request line nor a status line.
    BadStartLine,
    /// The version is not SIP/2.0.
    BadVersion,
    /// The status code is not three digits 1xx..6xx.
    BadStatusCode,
    /// A header the dialog layer reads is absent.
    Missing(Which),
    /// A header that must appear once appears more than once.
    Duplicate(Which),
    /// A header value the dialog layer reads does not parse.
    Malformed(Which),
    /// The CSeq number is 2^31 or more.
    CSeqTooLarge,
    /// The CSeq method differs from the request method.
    CSeqMethodMismatch,
    /// Content-Length asks for more bytes than the buffer holds after the header block.
    BodyTooShort,
}

/// The header fields the reference reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Which {
    /// Call-ID / i
    CallId,
    /// From / f
    From,
    /// To / t
    To,
    /// CSeq
    CSeq,
    /// Content-Length / l
    ContentLength,
    /// Max-Forwards
    MaxForwards,
    /// Via / v
    Via,
    /// Contact / m
    Contact,
    /// Record-Route
    RecordRoute,
    /// Route
    Route,
    /// Event / o
    Event,
    /// Refer-To / r
    ReferTo,
    /// Replaces
    Replaces,
    /// Referred-By / b
    ReferredBy,
    /// Subscription-State
    SubscriptionState,
    /// Timestamp
    Timestamp,
}

/// A grammar violation that RFC 4475 lets a parser tolerate; the identity is still defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leniency {
    /// The request line parts are separated by something other than exactly one SP
    /// (RFC 4475 §3.1.2.9, §3.1.2.10), or the Request-URI holds white space (§3.1.2.8).
    StartLineSpacing,
    /// The request line starts with SP (RFC 4475 tolerates extra SP only between and after
    /// the parts).
    StartLineLeadingSp,
    /// The request line uses HT to separate (or surround) its parts.
    StartLineTab,
    /// The status line has no SP after the status code (RFC 3261 §25.1 requires it).
    StatusLineNoReasonSp,
    /// An unquoted display name holds characters that are not token characters or LWS
    /// (RFC 4475 §3.1.2.15).
    DisplayNameNotToken,
    /// The Call-ID holds bytes that are not `word` characters (RFC 3261 §25.1).
    CallIdNotWord,
    /// The tag value is a quoted string rather than a token (tag-param = "tag" EQUAL token).
    QuotedTag,
    /// The tag value is not a token (holds `[`, `]` or `:`, allowed in generic-param values).
    TagNotToken,
    /// A bare CR (not followed by LF) in the Call-ID, From, To, CSeq, Content-Length or
    /// Max-Forwards value, read as white space. RFC 3261 allows CR only as part of CRLF.
    BareCr,
    /// An addr-spec (no `<>`) holds `?` or `,` in its URI (§20.10: such a URI must be
    /// written in name-addr form).
    AddrSpecNeedsBrackets,
}

/// What the reference reads from a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The request method token, or `None` for a response.
    pub method: Option<Vec<u8>>,
    /// The status code of a response.
    pub status: Option<u16>,
    /// Call-ID, LWS trimmed.
    pub call_id: Vec<u8>,
    /// The From tag, as written.
    pub from_tag: Option<Vec<u8>>,
    /// The To tag, as written.
    pub to_tag: Option<Vec<u8>>,
    /// CSeq number (below 2^31).
    pub cseq_number: u32,
    /// CSeq method token.
    pub cseq_method: Vec<u8>,
    /// Content-Length, if present.
    pub content_length: Option<u64>,
    /// The body, framed by Content-Length or running to the end of the buffer.
    pub body: (usize, usize),
    /// The grammar violations tolerated along the way.
    pub lenient: Vec<Leniency>,
}

const SP: u8 = b' ';
const HT: u8 = b'\t';

fn is_wsp(b: u8) -> bool {
    b == SP || b == HT
}

/// RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// RFC 3261 §25.1: word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" /
/// "~" / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}" )
fn is_word_char(b: u8) -> bool {
    is_token_char(b) || b"()<>:\\\"/[]?{}".contains(&b)
}

/// White space inside a header value once unfolded: SP and HT. A bare CR (one not followed by
/// LF) is allowed nowhere in a SIP header, but the reference reads it as white space too and
/// flags [`Leniency::BareCr`], so that the identity comparison goes on past such bytes.
pub fn is_value_ws(b: u8) -> bool {
    is_wsp(b) || b == b'\r'
}

/// `v` without leading and trailing value white space (SP, HT, bare CR).
pub fn trim_value(v: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = v.len();
    while a < b && is_value_ws(v[a]) {
        a += 1;
    }
    while b > a && is_value_ws(v[b - 1]) {
        b -= 1;
    }
    &v[a..b]
}

/// `v` without leading and trailing SP and HT: RFC 3261 white space once folds are unfolded
/// (a bare CR is not white space).
pub fn trim(v: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = v.len();
    while a < b && is_wsp(v[a]) {
        a += 1;
    }
    while b > a && is_wsp(v[b - 1]) {
        b -= 1;
    }
    &v[a..b]
}

fn lower(v: &[u8]) -> Vec<u8> {
    v.iter().map(|b| b.to_ascii_lowercase()).collect()
}

/// Reads one physical line starting at `pos`: its content (a CR right before the LF dropped)
/// and where the next line starts.
fn read_line(data: &[u8], pos: usize) -> (Vec<u8>, usize) {
    let mut end = pos;
    while end < data.len() && data[end] != b'\n' {
        end += 1;
    }
    let next = if end < data.len() { end + 1 } else { end };
    let mut content = data[pos..end].to_vec();
    if content.last() == Some(&b'\r') {
        content.pop();
    }
    (content, next)
}

/// Splits a message into start line, unfolded header fields and body offset.
pub fn split(data: &[u8]) -> Result<Split, Problem> {
    // CR and LF bytes before the start line are keepalives.
    let mut pos = 0;
    while pos < data.len() && (data[pos] == b'\r' || data[pos] == b'\n') {
        pos += 1;
    }
    if pos == data.len() {
        return Err(Problem::Empty);
    }
    let start_offset = pos;
    let (start_line, next) = read_line(data, pos);
    pos = next;
    let mut fields: Vec<Field> = Vec::new();
    let mut broken = None;
    let body_offset;
    loop {
        if pos >= data.len() {
            body_offset = data.len();
            break;
        }
        let (line, next) = read_line(data, pos);
        if line.is_empty() {
            body_offset = next;
            break;
        }
        if is_wsp(line[0]) {
            match fields.last_mut() {
                Some(last) => last.value.extend_from_slice(&line),
                None => {
                    broken.get_or_insert(Problem::ContinuationFirst);
                }
            }
        } else {
            match line.iter().position(|&b| b == b':') {
                Some(colon) => fields.push(Field {
                    name: trim(&line[..colon]).to_vec(),
                    value: line[colon + 1..].to_vec(),
                }),
                None => {
                    broken.get_or_insert(Problem::LineWithoutColon);
                }
            }
        }
        pos = next;
    }
    if broken.is_none()
        && fields
            .iter()
            .any(|f| f.name.is_empty() || !f.name.iter().all(|&b| is_token_char(b)))
    {
        broken = Some(Problem::BadHeaderName);
    }
    Ok(Split {
        start_offset,
        start_line,
        fields,
        body_offset,
        broken,
    })
}

/// Which known header a field name is (full or compact form, any case).
pub fn which(name: &[u8]) -> Option<Which> {
    let n = lower(name);
    let w = match &n[..] {
        b"call-id" | b"i" => Which::CallId,
        b"from" | b"f" => Which::From,
        b"to" | b"t" => Which::To,
        b"cseq" => Which::CSeq,
        b"content-length" | b"l" => Which::ContentLength,
        b"max-forwards" => Which::MaxForwards,
        b"via" | b"v" => Which::Via,
        b"contact" | b"m" => Which::Contact,
        b"record-route" => Which::RecordRoute,
        b"route" => Which::Route,
        b"event" | b"o" => Which::Event,
        b"refer-to" | b"r" => Which::ReferTo,
        b"replaces" => Which::Replaces,
        b"referred-by" | b"b" => Which::ReferredBy,
        b"subscription-state" => Which::SubscriptionState,
        b"timestamp" => Which::Timestamp,
        _ => return None,
    };
    Some(w)
}

/// All values of one header, unfolded, in order.
pub fn values_of(split: &Split, w: Which) -> Vec<&[u8]> {
    split
        .fields
        .iter()
        .filter(|f| which(&f.name) == Some(w))
        .map(|f| &f.value[..])
        .collect()
}

fn exactly_one(split: &Split, w: Which) -> Result<&[u8], Problem> {
    let v = values_of(split, w);
    match v.len() {
        0 => Err(Problem::Missing(w)),
        1 => Ok(v[0]),
        _ => Err(Problem::Duplicate(w)),
    }
}

/// A decimal number that may be too large for any integer type: `Err(())` if it is not all
/// digits, `Ok(None)` if it has more than 18 significant digits.
fn big_decimal(digits: &[u8]) -> Result<Option<u64>, ()> {
    if digits.is_empty() || !digits.iter().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    let mut i = 0;
    while i < digits.len() && digits[i] == b'0' {
        i += 1;
    }
    let significant = &digits[i..];
    if significant.len() > 18 {
        return Ok(None);
    }
    let mut n: u64 = 0;
    for &d in significant {
        n = n * 10 + u64::from(d - b'0');
    }
    Ok(Some(n))
}

/// A whole value that is one decimal number, white space around it allowed.
pub fn decimal_value(v: &[u8]) -> Result<Option<u64>, ()> {
    big_decimal(trim_value(v))
}

/// The start line: request method token, or status code.
fn start_line(
    line: &[u8],
    lenient: &mut Vec<Leniency>,
) -> Result<(Option<Vec<u8>>, Option<u16>), Problem> {
    let is_version = |v: &[u8]| v.len() == 7 && lower(v) == b"sip/2.0";
    let is_other_version = |v: &[u8]| {
        // SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
        if v.len() < 4 || lower(&v[..4]) != b"sip/" {
            return false;
        }
        let rest = &v[4..];
        match rest.iter().position(|&b| b == b'.') {
            Some(dot) => {
                let (a, b) = (&rest[..dot], &rest[dot + 1..]);
                !a.is_empty()
                    && !b.is_empty()
                    && a.iter().all(|c| c.is_ascii_digit())
                    && b.iter().all(|c| c.is_ascii_digit())
            }
            None => false,
        }
    };
    if line.len() >= 4 && lower(&line[..4]) == b"sip/" {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = line
            .iter()
            .position(|&b| b == SP)
            .ok_or(Problem::BadStartLine)?;
        let version = &line[..sp];
        if !is_version(version) {
            return Err(if is_other_version(version) {
                Problem::BadVersion
            } else {
                Problem::BadStartLine
            });
        }
        let rest = &line[sp + 1..];
        if rest.len() < 3 {
            return Err(Problem::BadStatusCode);
        }
        let code = &rest[..3];
        if !(b'1'..=b'6').contains(&code[0])
            || !code[1].is_ascii_digit()
            || !code[2].is_ascii_digit()
        {
            return Err(Problem::BadStatusCode);
        }
        match rest.get(3) {
            Some(&SP) => {}
            None => lenient.push(Leniency::StatusLineNoReasonSp),
            Some(_) => return Err(Problem::BadStatusCode),
        }
        let n = u16::from(code[0] - b'0') * 100
            + u16::from(code[1] - b'0') * 10
            + u16::from(code[2] - b'0');
        return Ok((None, Some(n)));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let strict: Vec<&[u8]> = line.split(|&b| b == SP).collect();
    let parts: Vec<&[u8]> =
        if strict.len() == 3 && strict.iter().all(|p| !p.is_empty() && !p.contains(&HT)) {
            strict
        } else {
            // Tolerated by RFC 4475 (§3.1.2.9, §3.1.2.10): runs of SP between and after the parts.
            let by_sp: Vec<&[u8]> = line.split(|&b| b == SP).filter(|p| !p.is_empty()).collect();
            if by_sp.len() == 3 && !line.contains(&HT) {
                lenient.push(if line[0] == SP {
                    Leniency::StartLineLeadingSp
                } else {
                    Leniency::StartLineSpacing
                });
                by_sp
            } else {
                // HT as a separator: no RFC tolerates it.
                let by_ws: Vec<&[u8]> = line
                    .split(|&b| is_wsp(b))
                    .filter(|p| !p.is_empty())
                    .collect();
                if by_ws.len() != 3 {
                    return Err(Problem::BadStartLine);
                }
                lenient.push(Leniency::StartLineTab);
                by_ws
            }
        };
    let method = parts[0];
    if !method.iter().all(|&b| is_token_char(b)) {
        return Err(Problem::BadStartLine);
    }
    if !is_version(parts[2]) {
        return Err(if is_other_version(parts[2]) {
            Problem::BadVersion
        } else {
            Problem::BadStartLine
        });
    }
    Ok((Some(method.to_vec()), None))
}

/// Reads a quoted string starting at `v[i] == '"'`; returns the index just past the closing
/// quote. quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F): a backslash escapes the next byte.
fn skip_quoted(v: &[u8], mut i: usize) -> Option<usize> {
    debug_assert_eq!(v[i], b'"');
    i += 1;
    loop {
        if i >= v.len() {
            return None;
        }
        match v[i] {
            b'\\' => {
                if i + 1 >= v.len() {
                    return None;
                }
                i += 2;
            }
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The `tag` parameter of an unfolded From/To value (RFC 3261 §20.20, §20.39, §25.1):
///
/// ```text
/// from-spec    = ( name-addr / addr-spec ) *( SEMI from-param )
/// name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
/// display-name = *(token LWS) / quoted-string
/// from-param   = tag-param / generic-param
/// tag-param    = "tag" EQUAL token
/// generic-param = token [ EQUAL gen-value ];  gen-value = token / host / quoted-string
/// ```
///
/// §20.10: without `<>`, URI parameters cannot be told from header parameters, so everything
/// after the first `;` is a header parameter.
pub fn tag(value: &[u8], lenient: &mut Vec<Leniency>) -> Result<Option<Vec<u8>>, ()> {
    let v = trim_value(value);
    if v.is_empty() {
        return Err(());
    }
    let mut i;
    if v[0] == b'"' {
        // Quoted display name: anything (escapes included) up to the closing quote.
        i = skip_quoted(v, 0).ok_or(())?;
        while i < v.len() && is_value_ws(v[i]) {
            i += 1;
        }
        if i >= v.len() || v[i] != b'<' {
            return Err(());
        }
        let close = v[i..].iter().position(|&b| b == b'>').ok_or(())?;
        i += close + 1;
    } else {
        // Either an unquoted display name followed by `<addr-spec>`, or a bare addr-spec
        // whose parameters start at the first `;`. Whichever of `<` and `;` comes first
        // decides. A `"` before either is neither form.
        let mut j = 0;
        loop {
            if j == v.len() {
                // A bare addr-spec with no parameters.
                if v.iter().any(|&b| b == b'?' || b == b',') {
                    lenient.push(Leniency::AddrSpecNeedsBrackets);
                }
                return Ok(None);
            }
            match v[j] {
                b'<' => {
                    let display = &v[..j];
                    if !display.iter().all(|&b| is_token_char(b) || is_value_ws(b)) {
                        lenient.push(Leniency::DisplayNameNotToken);
                    }
                    let close = v[j..].iter().position(|&b| b == b'>').ok_or(())?;
                    i = j + close + 1;
                    break;
                }
                b';' => {
                    if v[..j].iter().any(|&b| b == b'?' || b == b',') {
                        lenient.push(Leniency::AddrSpecNeedsBrackets);
                    }
                    i = j;
                    break;
                }
                b'"' => return Err(()),
                _ => j += 1,
            }
        }
    }
    // *( SEMI param ), SEMI = SWS ";" SWS, EQUAL = SWS "=" SWS.
    let mut found: Option<Vec<u8>> = None;
    loop {
        while i < v.len() && is_value_ws(v[i]) {
            i += 1;
        }
        if i == v.len() {
            break;
        }
        if v[i] != b';' {
            return Err(());
        }
        i += 1;
        while i < v.len() && is_value_ws(v[i]) {
            i += 1;
        }
        let name_start = i;
        while i < v.len() && is_token_char(v[i]) {
            i += 1;
        }
        let name = &v[name_start..i];
        if name.is_empty() {
            return Err(());
        }
        let mut k = i;
        while k < v.len() && is_value_ws(v[k]) {
            k += 1;
        }
        let mut value: Option<&[u8]> = None;
        if k < v.len() && v[k] == b'=' {
            k += 1;
            while k < v.len() && is_value_ws(v[k]) {
                k += 1;
            }
            let value_start = k;
            if k < v.len() && v[k] == b'"' {
                k = skip_quoted(v, k).ok_or(())?;
            } else {
                // token / host (host adds `[`, `]` and `:` for IPv6 references).
                while k < v.len() && (is_token_char(v[k]) || b"[]:".contains(&v[k])) {
                    k += 1;
                }
            }
            if k == value_start {
                return Err(());
            }
            value = Some(&v[value_start..k]);
            i = k;
        }
        if lower(name) == b"tag" {
            let t = value.ok_or(())?;
            if found.is_some() {
                // Two tags: the identity is ambiguous.
                return Err(());
            }
            if t[0] == b'"' {
                lenient.push(Leniency::QuotedTag);
            } else if !t.iter().all(|&b| is_token_char(b)) {
                lenient.push(Leniency::TagNotToken);
            }
            found = Some(t.to_vec());
        }
    }
    Ok(found)
}

/// CSeq = 1*DIGIT LWS Method. `Err(Some(Problem))` says which way it is wrong.
pub fn cseq(value: &[u8]) -> Result<(u32, Vec<u8>), Problem> {
    let v = trim_value(value);
    let mut i = 0;
    while i < v.len() && v[i].is_ascii_digit() {
        i += 1;
    }
    let digits = &v[..i];
    if digits.is_empty() {
        return Err(Problem::Malformed(Which::CSeq));
    }
    let ws = i;
    while i < v.len() && is_value_ws(v[i]) {
        i += 1;
    }
    if i == ws {
        return Err(Problem::Malformed(Which::CSeq));
    }
    let method = &v[i..];
    if method.is_empty() || !method.iter().all(|&b| is_token_char(b)) {
        return Err(Problem::Malformed(Which::CSeq));
    }
    match big_decimal(digits) {
        Ok(Some(n)) if n < 1 << 31 => Ok((n as u32, method.to_vec())),
        _ => Err(Problem::CSeqTooLarge),
    }
}

/// Extracts the identity, or says why there is none.
pub fn extract(data: &[u8]) -> Result<(Split, Identity), Problem> {
    let split = split(data)?;
    let mut lenient = Vec::new();
    let (method, status) = start_line(&split.start_line, &mut lenient)?;
    if let Some(p) = split.broken {
        return Err(p);
    }
    let call_id_raw = exactly_one(&split, Which::CallId)?;
    let from = exactly_one(&split, Which::From)?;
    let to = exactly_one(&split, Which::To)?;
    let cseq_raw = exactly_one(&split, Which::CSeq)?;
    let cl_values = values_of(&split, Which::ContentLength);
    let mf_values = values_of(&split, Which::MaxForwards);
    if [call_id_raw, from, to, cseq_raw]
        .iter()
        .chain(cl_values.iter())
        .chain(mf_values.iter())
        .any(|v| v.contains(&b'\r'))
    {
        lenient.push(Leniency::BareCr);
    }
    let call_id = trim_value(call_id_raw);
    if call_id.is_empty() || call_id.iter().any(|&b| is_value_ws(b)) {
        return Err(Problem::Malformed(Which::CallId));
    }
    // callid = word [ "@" word ]
    let words: Vec<&[u8]> = call_id.split(|&b| b == b'@').collect();
    if words.len() > 2
        || words
            .iter()
            .any(|w| w.is_empty() || !w.iter().all(|&b| is_word_char(b)))
    {
        lenient.push(Leniency::CallIdNotWord);
    }
    let from_tag = tag(from, &mut lenient).map_err(|()| Problem::Malformed(Which::From))?;
    let to_tag = tag(to, &mut lenient).map_err(|()| Problem::Malformed(Which::To))?;
    let (cseq_number, cseq_method) = cseq(cseq_raw)?;
    if let Some(m) = &method {
        if *m != cseq_method {
            return Err(Problem::CSeqMethodMismatch);
        }
    }
    // Max-Forwards = 1*DIGIT, once at most (the library keeps it as a u32).
    match values_of(&split, Which::MaxForwards)[..] {
        [] => {}
        [one] => match decimal_value(one) {
            Ok(Some(n)) if n <= u64::from(u32::MAX) => {}
            _ => return Err(Problem::Malformed(Which::MaxForwards)),
        },
        _ => return Err(Problem::Duplicate(Which::MaxForwards)),
    }
    let content_length = match values_of(&split, Which::ContentLength)[..] {
        [] => None,
        [one] => match decimal_value(one) {
            Ok(Some(n)) => Some(n),
            _ => return Err(Problem::Malformed(Which::ContentLength)),
        },
        _ => return Err(Problem::Duplicate(Which::ContentLength)),
    };
    let body = match content_length {
        Some(n) => {
            let available = (data.len() - split.body_offset) as u64;
            if n > available {
                return Err(Problem::BodyTooShort);
            }
            (split.body_offset, split.body_offset + n as usize)
        }
        None => (split.body_offset, data.len()),
    };
    let identity = Identity {
        method,
        status,
        call_id: call_id.to_vec(),
        from_tag,
        to_tag,
        cseq_number,
        cseq_method,
        content_length,
        body,
        lenient,
    };
    Ok((split, identity))
}

/// The top Via element as the reference reads it (RFC 3261 §20.42, §25.1):
///
/// ```text
/// via-parm      = sent-protocol LWS sent-by *( SEMI via-params )
/// sent-protocol = protocol-name SLASH protocol-version SLASH transport   (all tokens)
/// sent-by       = host [ COLON port ]          COLON = SWS ":" SWS, port = 1*DIGIT
/// via-branch    = "branch" EQUAL token
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopVia {
    /// `host [COLON port]` as written (unfolded).
    pub sent_by: Vec<u8>,
    /// The branch parameter.
    pub branch: Option<Vec<u8>>,
}

/// Grammar violations in the top Via that a scanner may accept or refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViaLeniency {
    /// No LWS between the transport and the sent-by (`SIP/2.0/UDP[::1]`).
    NoLwsBeforeSentBy,
    /// The host holds token characters that no hostname has (`_`, `!`, `~`, ...), or an IPv6
    /// reference holds something other than hex digits, `:` and `.`.
    HostChars,
    /// `branch` appears more than once (§7.3.1: a parameter name must not repeat); the first
    /// one counts.
    DuplicateBranch,
    /// The branch value is a quoted string.
    QuotedBranch,
    /// The branch value holds `[`, `]` or `:`.
    BranchNotToken,
    /// A bare CR (not part of CRLF) in the element, read here as white space; RFC 3261 allows
    /// CR only as part of CRLF.
    BareCr,
    /// `received` or `rport` appears more than once (§7.3.1).
    RepeatedParam,
    /// `received` without a value (§20.42: `"received" EQUAL (IPv4address / IPv6address)`).
    ReceivedWithoutValue,
    /// An `rport` value that is not a port (RFC 3581: `1*DIGIT`, a UDP port).
    RportNotPort,
}

/// The first element of the first Via header: `None` when there is no Via, `Err` when it does
/// not parse.
pub fn top_via(split: &Split, lenient: &mut Vec<ViaLeniency>) -> Option<Result<TopVia, ()>> {
    let first = *values_of(split, Which::Via).first()?;
    // The first element ends at the first comma outside a quoted string.
    let mut end = first.len();
    let mut i = 0;
    while i < first.len() {
        match first[i] {
            b'"' => match skip_quoted(first, i) {
                Some(after) => i = after,
                None => return Some(Err(())),
            },
            b',' => {
                end = i;
                break;
            }
            _ => i += 1,
        }
    }
    // The value is unfolded, so any CR left in it is bare.
    if first[..end].contains(&b'\r') {
        lenient.push(ViaLeniency::BareCr);
    }
    Some(via_element(trim_value(&first[..end]), lenient))
}

fn via_element(e: &[u8], lenient: &mut Vec<ViaLeniency>) -> Result<TopVia, ()> {
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        let start = *i;
        while *i < e.len() && is_value_ws(e[*i]) {
            *i += 1;
        }
        *i > start
    };
    for part in 0..3 {
        skip_ws(&mut i);
        let start = i;
        while i < e.len() && is_token_char(e[i]) {
            i += 1;
        }
        if i == start {
            return Err(());
        }
        let ws = skip_ws(&mut i);
        if part < 2 {
            if i >= e.len() || e[i] != b'/' {
                return Err(());
            }
            i += 1;
        } else if !ws {
            lenient.push(ViaLeniency::NoLwsBeforeSentBy);
        }
    }
    let host_start = i;
    if i < e.len() && e[i] == b'[' {
        let close = e[i..].iter().position(|&b| b == b']').ok_or(())?;
        let inside = &e[i + 1..i + close];
        if !inside
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            lenient.push(ViaLeniency::HostChars);
        }
        i += close + 1;
    } else {
        while i < e.len() && is_token_char(e[i]) {
            if !(e[i].is_ascii_alphanumeric() || e[i] == b'-' || e[i] == b'.') {
                lenient.push(ViaLeniency::HostChars);
            }
            i += 1;
        }
        if i == host_start {
            return Err(());
        }
    }
    let mut sent_by_end = i;
    let mut k = i;
    skip_ws(&mut k);
    if k < e.len() && e[k] == b':' {
        k += 1;
        skip_ws(&mut k);
        let port_start = k;
        while k < e.len() && e[k].is_ascii_digit() {
            k += 1;
        }
        if k == port_start {
            return Err(());
        }
        sent_by_end = k;
        i = k;
    }
    let sent_by = e[host_start..sent_by_end].to_vec();
    let mut branch: Option<Vec<u8>> = None;
    let (mut received_seen, mut rport_seen) = (false, false);
    loop {
        skip_ws(&mut i);
        if i == e.len() {
            break;
        }
        if e[i] != b';' {
            return Err(());
        }
        i += 1;
        skip_ws(&mut i);
        let name_start = i;
        while i < e.len() && is_token_char(e[i]) {
            i += 1;
        }
        let name = &e[name_start..i];
        if name.is_empty() {
            return Err(());
        }
        let mut k = i;
        skip_ws(&mut k);
        let mut value: Option<&[u8]> = None;
        if k < e.len() && e[k] == b'=' {
            k += 1;
            skip_ws(&mut k);
            let value_start = k;
            if k < e.len() && e[k] == b'"' {
                k = skip_quoted(e, k).ok_or(())?;
            } else {
                while k < e.len() && (is_token_char(e[k]) || b"[]:".contains(&e[k])) {
                    k += 1;
                }
            }
            if k == value_start {
                return Err(());
            }
            value = Some(&e[value_start..k]);
            i = k;
        }
        let lname = lower(name);
        if lname == b"received" || lname == b"rport" {
            let seen = if lname == b"received" {
                &mut received_seen
            } else {
                &mut rport_seen
            };
            if std::mem::replace(seen, true) {
                lenient.push(ViaLeniency::RepeatedParam);
            }
            match value {
                None if lname == b"received" => lenient.push(ViaLeniency::ReceivedWithoutValue),
                Some(v) if lname == b"rport" => {
                    let digits = v.iter().all(u8::is_ascii_digit);
                    let significant = v.iter().skip_while(|&&d| d == b'0').count();
                    let port = std::str::from_utf8(v)
                        .ok()
                        .and_then(|t| t.parse::<u64>().ok());
                    if !digits || significant > 5 || port.is_none_or(|p| p > 65_535) {
                        lenient.push(ViaLeniency::RportNotPort);
                    }
                }
                _ => {}
            }
        }
        if lname == b"branch" {
            if branch.is_some() {
                lenient.push(ViaLeniency::DuplicateBranch);
                continue;
            }
            let b = value.ok_or(())?;
            if b[0] == b'"' {
                lenient.push(ViaLeniency::QuotedBranch);
            } else if !b.iter().all(|&c| is_token_char(c)) {
                lenient.push(ViaLeniency::BranchNotToken);
            }
            branch = Some(b.to_vec());
        }
    }
    Ok(TopVia { sent_by, branch })
}

/// Undoes folding in a raw value as the library returns it (a slice of the buffer that may
/// span lines): every LF goes, with the one CR right before it.
pub fn unfold_raw(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            if i > 0 && raw[i - 1] == b'\r' {
                out.pop();
            }
        } else {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_by_hand() {
        let mut l = Vec::new();
        let ok: &[(&[u8], Option<&[u8]>)] = &[
            (b"<sip:a@b>;tag=1", Some(b"1")),
            (b"sip:a@b;TAG = x ;q=1", Some(b"x")),
            (b"\"A;b,c>\" <sip:a@b>;tag=2", Some(b"2")),
            (b"\"x\\\"\" <sip:a@b;tag=uri>", None),
            (b"sip:a@b", None),
            (b"Bell, Alexander <sip:a@b>;tag=43", Some(b"43")),
            (b"tok <sip:a@b>;p=\"q;tag=no\";tag=3", Some(b"3")),
            (b"  sip:a@b    ;   tag   =  9", Some(b"9")),
            (b"<sip:a@b;tag=u>;x;tag=h", Some(b"h")),
        ];
        for (v, want) in ok {
            assert_eq!(
                tag(v, &mut l),
                Ok(want.map(|w| w.to_vec())),
                "{}",
                String::from_utf8_lossy(v)
            );
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
        ];
        for v in bad {
            assert_eq!(tag(v, &mut l), Err(()), "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn cseq_by_hand() {
        assert_eq!(cseq(b" 0009   INVITE "), Ok((9, b"INVITE".to_vec())));
        assert_eq!(cseq(b"2147483647 A"), Ok((2147483647, b"A".to_vec())));
        assert_eq!(cseq(b"2147483648 A"), Err(Problem::CSeqTooLarge));
        assert_eq!(
            cseq(b"36893488147419103232 REGISTER"),
            Err(Problem::CSeqTooLarge)
        );
        assert!(cseq(b"1INVITE").is_err());
        assert!(cseq(b"1 INVITE x").is_err());
    }

    #[test]
    fn via_by_hand() {
        let via = |v: &[u8]| {
            let mut l = Vec::new();
            let r = via_element(trim_value(v), &mut l);
            r.map(|t| (t.sent_by, t.branch, l))
        };
        assert_eq!(
            via(b" SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw"),
            Ok((b"192.0.2.2".to_vec(), Some(b"390skdjuw".to_vec()), vec![]))
        );
        assert_eq!(
            via(b"SIP/2.0/TCP [::1] : 5060 ; rport; branch = z9hG4bK1"),
            Ok((b"[::1] : 5060".to_vec(), Some(b"z9hG4bK1".to_vec()), vec![]))
        );
        assert_eq!(
            via(b"SIP/2.0/UDP h;branch=a;BRANCH=b"),
            Ok((
                b"h".to_vec(),
                Some(b"a".to_vec()),
                vec![ViaLeniency::DuplicateBranch]
            ))
        );
        for bad in [
            &b"SIP/2.0 host"[..],
            b"SIP/2.0/UDP host:",
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP h;;",
            b"SIP/2.0/UDP h;branch",
        ] {
            assert_eq!(via(bad), Err(()), "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn unfold() {
        let (s, id) = extract(b"\r\nOPTIONS sip:x SIP/2.0\r\nCall-ID:\r\n  abc \r\nf: <sip:a>\r\n ;tag\r\n\t= 1\r\nt: sip:b\r\nCSeq: 1\r\n OPTIONS\r\n\r\nbody").unwrap();
        assert_eq!(s.start_offset, 2);
        assert_eq!(id.call_id, b"abc");
        assert_eq!(id.from_tag.as_deref(), Some(&b"1"[..]));
        assert_eq!(id.to_tag, None);
        assert_eq!(id.cseq_number, 1);
        assert_eq!(&b"\r\nOPTIONS sip:x SIP/2.0\r\nCall-ID:\r\n  abc \r\nf: <sip:a>\r\n ;tag\r\n\t= 1\r\nt: sip:b\r\nCSeq: 1\r\n OPTIONS\r\n\r\nbody"[id.body.0..id.body.1], b"body");
        assert_eq!(unfold_raw(b" a\r\n b\n c\r\r\n d"), b" a b c\r d");
    }

    /// The reference reproduces every identity in the RFC 4475 manifest, and rejects the rows
    /// whose verdict is a rejection.
    #[test]
    fn rfc4475_manifest() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rfc4475");
        let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
        let mut lines = manifest.lines();
        let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let mut checked = 0;
        for line in lines.filter(|l| !l.is_empty()) {
            let cells: Vec<&str> = line.split('\t').collect();
            let file = cells[col("file")];
            let verdict = cells[col("dialog_verdict")];
            let data = std::fs::read(dir.join(file)).unwrap();
            let result = extract(&data);
            println!(
                "{file}\t{verdict}\t{:?}",
                result.as_ref().map(|(_, id)| &id.lenient).map_err(|p| *p)
            );
            let text = |b: Option<&[u8]>| {
                b.map_or("-".to_string(), |b| String::from_utf8_lossy(b).into_owned())
            };
            match result {
                Ok((_, id)) => {
                    assert!(
                        !verdict.starts_with("reject"),
                        "{file}: reference accepts a {verdict} row"
                    );
                    let first = match (&id.method, id.status) {
                        (Some(m), _) => text(Some(m)),
                        (None, Some(s)) => s.to_string(),
                        _ => unreachable!(),
                    };
                    let got = [
                        first,
                        text(Some(&id.call_id)),
                        text(id.from_tag.as_deref()),
                        text(id.to_tag.as_deref()),
                        id.cseq_number.to_string(),
                        text(Some(&id.cseq_method)),
                    ];
                    let want = [
                        "method_or_status",
                        "call_id",
                        "from_tag",
                        "to_tag",
                        "cseq_num",
                        "cseq_method",
                    ]
                    .map(|c| cells[col(c)].to_string());
                    assert_eq!(got, want, "{file}");
                    if verdict == "accept" {
                        // `accept` rows are valid: nothing needs tolerating.
                        assert!(id.lenient.is_empty(), "{file}: {:?}", id.lenient);
                    }
                }
                Err(p) => assert!(
                    verdict.starts_with("reject") || verdict == "either",
                    "{file}: reference rejects ({p:?}) an accept row"
                ),
            }
            checked += 1;
        }
        assert_eq!(checked, 49);
    }
}
