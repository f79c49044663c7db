//! The few header-value operations dialog creation needs beyond what the scanner extracts.

use memchr::{memchr, memrchr};

pub(crate) use crate::wire::trim_lws as trim;

/// The URI of a Contact (or Route) value: inside `<>` for a name-addr, up to the first `;`
/// for an addr-spec. `None` for `*` or a value with no URI.
///
/// ```
/// use sipdialog::dialog::contact_uri;
///
/// assert_eq!(contact_uri(b"\"B <x>\" <sip:b@192.0.2.4;transport=tcp>;expires=60"),
///            Some(&b"sip:b@192.0.2.4;transport=tcp"[..]));
/// assert_eq!(contact_uri(b"sip:b@192.0.2.4;expires=60"), Some(&b"sip:b@192.0.2.4"[..]));
/// assert_eq!(contact_uri(b"*"), None);
/// ```
pub fn contact_uri(value: &[u8]) -> Option<&[u8]> {
    let value = trim(value);
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in value.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => {
                let rest = value.get(i + 1..)?;
                let end = memchr(b'>', rest)?;
                let uri = trim(rest.get(..end)?);
                return (!uri.is_empty()).then_some(uri);
            }
            _ => {}
        }
    }
    let end = memchr(b';', value).unwrap_or(value.len());
    let uri = trim(value.get(..end)?);
    (!uri.is_empty() && uri != b"*" && !quoted).then_some(uri)
}

/// The `host[:port]` of a `sip:` or `sips:` URI (written bare or inside `<>`), empty for any
/// other scheme.
///
/// ```
/// use sipdialog::dialog::uri_hostport;
///
/// assert_eq!(uri_hostport(b"<sip:carol@192.0.2.7:5070;transport=udp>"), b"192.0.2.7:5070");
/// assert_eq!(uri_hostport(b"tel:+15551234"), b"");
/// ```
pub fn uri_hostport(uri: &[u8]) -> &[u8] {
    let uri = uri.strip_prefix(b"<").unwrap_or(uri);
    let scheme_end = match memchr(b':', uri) {
        Some(i)
            if uri[..i].eq_ignore_ascii_case(b"sip") || uri[..i].eq_ignore_ascii_case(b"sips") =>
        {
            i
        }
        _ => return b"",
    };
    let rest = &uri[scheme_end + 1..];
    // The host part ends at the first of ; ? > (parameters, headers, end of name-addr).
    let end = memchr::memchr3(b';', b'?', b'>', rest).unwrap_or(rest.len());
    let hostport = &rest[..end];
    match hostport.iter().rposition(|&b| b == b'@') {
        Some(at) => &hostport[at + 1..],
        None => hostport,
    }
}

/// The host of a `sip:` or `sips:` URI (brackets of an IPv6 reference kept), empty for any
/// other scheme.
///
/// ```
/// use sipdialog::dialog::uri_host;
///
/// assert_eq!(uri_host(b"sip:carol@192.0.2.7:5070;transport=udp"), b"192.0.2.7");
/// assert_eq!(uri_host(b"sips:[2001:db8::1]:5061"), b"[2001:db8::1]");
/// assert_eq!(uri_host(b"sip:gw.example.com?Replaces=x"), b"gw.example.com");
/// assert_eq!(uri_host(b"tel:+15551234"), b"");
/// ```
pub fn uri_host(uri: &[u8]) -> &[u8] {
    let hostport = uri_hostport(uri);
    let host_end = match memchr(b']', hostport) {
        Some(close) => close + 1,
        None => memchr(b':', hostport).unwrap_or(hostport.len()),
    };
    trim(&hostport[..host_end])
}

/// A From or To value with its `tag` parameter cut out, as the two pieces around it: what a
/// dialog keeps as the party's URI (the tag is kept apart).
///
/// ```
/// use sipdialog::dialog::without_tag;
///
/// let (a, b) = without_tag(b"\"A\" <sip:a@h>;tag=x1;foo=bar");
/// assert_eq!([a, b].concat(), b"\"A\" <sip:a@h>;foo=bar");
/// ```
pub fn without_tag(value: &[u8]) -> (&[u8], &[u8]) {
    let value = trim(value);
    // Parameters start after the `>` of a name-addr (a `;` inside the URI is no header param).
    let params_from = last_angle(value).map_or(0, |i| i + 1);
    let mut i = params_from;
    while let Some(off) = value.get(i..).and_then(|rest| memchr(b';', rest)) {
        let semi = i + off;
        let param_end = value
            .get(semi + 1..)
            .and_then(|rest| memchr(b';', rest))
            .map_or(value.len(), |e| semi + 1 + e);
        let param = trim(value.get(semi + 1..param_end).unwrap_or_default());
        let name_end = memchr(b'=', param).unwrap_or(param.len());
        if trim(param.get(..name_end).unwrap_or_default()).eq_ignore_ascii_case(b"tag") {
            let head = trim(value.get(..semi).unwrap_or_default());
            return (head, value.get(param_end..).unwrap_or_default());
        }
        i = param_end;
    }
    (value, &[])
}

/// The position of the `>` closing a name-addr, outside any quoted display name. Only the
/// bytes up to the last quote need the quote-aware walk: past it nothing is quoted (or, in an
/// unterminated string, everything is), so a reverse search finishes the job.
fn last_angle(value: &[u8]) -> Option<usize> {
    let (tail_from, found) = match memrchr(b'"', value) {
        None => (0, None),
        Some(last_quote) => match last_angle_walk(value.get(..=last_quote).unwrap_or_default()) {
            (true, found) => return found,
            (false, found) => (last_quote + 1, found),
        },
    };
    let tail = value.get(tail_from..).unwrap_or_default();
    memrchr(b'>', tail).map(|i| tail_from + i).or(found)
}

/// Walks `value` byte by byte: whether it ends inside a quoted string, and the last `>`
/// outside one.
fn last_angle_walk(value: &[u8]) -> (bool, Option<usize>) {
    let (mut quoted, mut escaped) = (false, false);
    let mut found = None;
    for (i, &b) in value.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => found = Some(i),
            _ => {}
        }
    }
    (quoted, found)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{last_angle, last_angle_walk};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// The reverse search past the last quote finds what a walk of the whole value finds.
        #[test]
        fn last_angle_agrees_with_the_walk(
            value in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(b'>'), Just(b'<'), Just(b'a')],
                0..24,
            )
        ) {
            prop_assert_eq!(last_angle(&value), last_angle_walk(&value).1);
        }
    }

    #[test]
    fn angles_inside_a_display_name_do_not_count() {
        assert_eq!(last_angle(b"\"a>b\" <sip:x>"), Some(12));
        assert_eq!(last_angle(b"\"a\\\">\" <sip:x"), None);
        assert_eq!(last_angle(b"\"open <sip:x>"), None);
        assert_eq!(last_angle(b"<sip:x>;p=\">\""), Some(6));
    }
}
