use super::*;

#[test]
fn contact_uri_forms() {
    assert_eq!(contact_uri(b" <sip:a@h;lr> "), Some(&b"sip:a@h;lr"[..]));
    assert_eq!(contact_uri(b"\"x<y\" <sip:a@h>"), Some(&b"sip:a@h"[..]));
    assert_eq!(contact_uri(b"sip:a@h"), Some(&b"sip:a@h"[..]));
    assert_eq!(contact_uri(b""), None);
    assert_eq!(contact_uri(b"<sip:a@h"), None);
    assert_eq!(contact_uri(b"\"open"), None);
}

#[test]
fn without_tag_keeps_other_params_and_uri_params() {
    let cases: [(&[u8], &[u8]); 5] = [
        (b"<sip:a@h;tag=no>;tag=yes", b"<sip:a@h;tag=no>"),
        (b"sip:a@h ; TAG = x ;p=1", b"sip:a@h;p=1"),
        (b"\"A;tag=1\" <sip:a@h>", b"\"A;tag=1\" <sip:a@h>"),
        (b"<sip:a@h>;x=1;tag=t", b"<sip:a@h>;x=1"),
        (b"<sip:a@h>", b"<sip:a@h>"),
    ];
    for (value, expected) in cases {
        let (a, b) = without_tag(value);
        assert_eq!(
            [a, b].concat(),
            expected,
            "{}",
            String::from_utf8_lossy(value)
        );
    }
}
