//! Per-source and global limits, the source map's cap and expiry, message checks.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::wire::MessageView;

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n))
}

#[test]
fn new_dialogs_are_rate_limited_per_source_and_globally() {
    let security = Security::new(Policy {
        new_dialogs_per_second_per_source: 10,
        new_dialog_burst_per_source: 2,
        new_dialogs_per_second: 100,
        new_dialog_burst: 3,
        ..Policy::default()
    });
    assert_eq!(
        security.admit_new_dialog(&security.load(), Some(ip(1)), 0),
        Ok(())
    );
    assert_eq!(
        security.admit_new_dialog(&security.load(), Some(ip(1)), 0),
        Ok(())
    );
    assert_eq!(
        security.admit_new_dialog(&security.load(), Some(ip(1)), 0),
        Err(SecurityError::SourceRateLimited)
    );
    // Another source has its own bucket, but the global one holds three at once.
    assert_eq!(
        security.admit_new_dialog(&security.load(), Some(ip(2)), 0),
        Ok(())
    );
    assert_eq!(
        security.admit_new_dialog(&security.load(), Some(ip(3)), 0),
        Err(SecurityError::RateLimited)
    );
    assert_eq!(
        security.admit_new_dialog(&security.load(), None, 10),
        Ok(()),
        "refilled"
    );
}

#[test]
fn trusted_sources_skip_the_per_source_limits() {
    let security = Security::new(Policy {
        new_dialogs_per_second_per_source: 1,
        new_dialog_burst_per_source: 1,
        max_dialogs_per_source: 1,
        trusted_sources: vec!["10.0.0.0/8".parse().unwrap()],
        ..Policy::default()
    });
    for _ in 0..100 {
        assert_eq!(
            security.admit_new_dialog(&security.load(), Some(ip(7)), 0),
            Ok(())
        );
        assert_eq!(security.charge(&security.load(), Some(ip(7)), 0), Ok(None));
    }
    assert_eq!(security.sources(), 0, "no entry for a trusted source");
}

#[test]
fn concurrent_dialogs_per_source() {
    let security = Security::new(Policy {
        max_dialogs_per_source: 2,
        ..Policy::default()
    });
    let a = security
        .charge(&security.load(), Some(ip(1)), 0)
        .unwrap()
        .unwrap();
    let b = security
        .charge(&security.load(), Some(ip(1)), 0)
        .unwrap()
        .unwrap();
    assert_eq!(
        security.charge(&security.load(), Some(ip(1)), 0),
        Err(SecurityError::SourceFull { max: 2 })
    );
    assert!(security
        .charge(&security.load(), Some(ip(2)), 0)
        .unwrap()
        .is_some());
    security.release(a);
    assert!(security
        .charge(&security.load(), Some(ip(1)), 0)
        .unwrap()
        .is_some());
    security.release(b);
    assert_eq!(
        security.charge(&security.load(), None, 0),
        Ok(None),
        "unknown source: nothing counted"
    );
}

#[test]
fn a_million_spoofed_sources_stay_within_the_cap_and_expire() {
    let cap = 1_000;
    let security = Security::new(Policy {
        max_sources: cap,
        source_idle_ms: 5_000,
        new_dialogs_per_second_per_source: 1,
        new_dialog_burst_per_source: 1,
        ..Policy::default()
    });
    let mut admitted = 0u32;
    for n in 0..1_000_000u32 {
        // One packet each, spread over ten seconds.
        let now = u64::from(n / 100);
        if security
            .admit_new_dialog(&security.load(), Some(ip(n)), now)
            .is_ok()
        {
            admitted += 1;
        }
        assert!(security.sources() <= cap as usize);
    }
    assert_eq!(security.sources(), cap as usize);
    // Sources beyond the cap share the overflow bucket: 1 a second, not one each.
    assert!(admitted < 2 * cap + 20, "admitted {admitted}");
    // Idle entries go once the idle time has passed.
    security.sweep(30_000);
    assert_eq!(security.sources(), 0);
}

#[test]
fn an_entry_holding_dialogs_is_never_swept() {
    let security = Security::new(Policy {
        source_idle_ms: 10,
        ..Policy::default()
    });
    let held = security
        .charge(&security.load(), Some(ip(1)), 0)
        .unwrap()
        .unwrap();
    security.charge(&security.load(), Some(ip(2)), 0).unwrap();
    security.sweep(1_000);
    assert_eq!(security.sources(), 2, "both hold a dialog");
    security.release(held);
    security.sweep(5_000);
    assert_eq!(security.sources(), 1);
}

#[test]
fn sources_beyond_the_cap_are_charged_to_the_overflow_entry() {
    let security = Security::new(Policy {
        max_sources: 1,
        max_dialogs_per_source: 3,
        ..Policy::default()
    });
    let own = security
        .charge(&security.load(), Some(ip(1)), 0)
        .unwrap()
        .unwrap();
    let shared: Vec<Charge> = (2..5)
        .map(|n| {
            security
                .charge(&security.load(), Some(ip(n)), 0)
                .unwrap()
                .unwrap()
        })
        .collect();
    assert!(shared.iter().all(|c| *c == Charge::Overflow));
    assert!(
        security.charge(&security.load(), Some(ip(9)), 0).is_err(),
        "the overflow entry is full too"
    );
    assert_eq!(own, Charge::Source(SourceKey::of(ip(1))));
    for c in shared {
        security.release(c);
    }
    assert!(security.charge(&security.load(), Some(ip(9)), 0).is_ok());
}

#[test]
fn ipv6_sources_count_per_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(SourceKey::of(a), SourceKey::of(b));
    assert_ne!(SourceKey::of(a), SourceKey::of(c));
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    assert_eq!(
        SourceKey::of(mapped),
        SourceKey::of("192.0.2.1".parse().unwrap())
    );
}

#[test]
fn error_answers_are_rate_limited_per_source() {
    let security = Security::new(Policy {
        error_answers_per_second_per_source: 2,
        error_answer_burst_per_source: 2,
        ..Policy::default()
    });
    let answered = (0..100)
        .filter(|_| security.may_answer_error(&security.load(), Some(ip(1)), 0))
        .count();
    assert_eq!(answered, 2);
    assert!(security.may_answer_error(&security.load(), Some(ip(2)), 0));
    assert!(security.may_answer_error(&security.load(), Some(ip(1)), 500));
}

fn message(extra: &str, body: &str) -> Vec<u8> {
    format!(
        "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n{extra}\
From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn message_checks() {
    let security = Security::new(Policy {
        max_body_bytes: 8,
        max_route_entries: 2,
        max_route_bytes: 40,
        ..Policy::default()
    });
    let check = |bytes: &[u8]| {
        security.check_message(&security.load(), &MessageView::parse(bytes).unwrap())
    };
    assert_eq!(check(&message("", "12345678")), Ok(()));
    assert_eq!(
        check(&message("", "123456789")),
        Err(SecurityError::BodyTooLarge { max: 8 })
    );
    assert_eq!(
        check(&message("Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\n", "")),
        Ok(())
    );
    assert_eq!(
        check(&message(
            "Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>,<sip:p3;lr>\r\n",
            ""
        )),
        Err(SecurityError::TooManyRoutes {
            header: HeaderName::RecordRoute,
            max: 2
        })
    );
    let long = format!("Route: <sip:{}.example;lr>\r\n", "x".repeat(40));
    assert_eq!(
        check(&message(&long, "")),
        Err(SecurityError::RoutesTooLarge {
            header: HeaderName::Route,
            max: 40
        })
    );
}

#[test]
fn statuses() {
    use SecurityError::*;
    for (e, status) in [
        (BodyTooLarge { max: 1 }, 413),
        (
            TooManyRoutes {
                header: HeaderName::Route,
                max: 1,
            },
            513,
        ),
        (
            RoutesTooLarge {
                header: HeaderName::Route,
                max: 1,
            },
            513,
        ),
        (SourceRateLimited, 503),
        (RateLimited, 503),
        (SourceFull { max: 1 }, 503),
        (TooManyDialogs { max: 1 }, 503),
        (TooManyEarlyDialogs { max: 1 }, 503),
        (TooManyInvites, 503),
        (TransferTargetNotAllowed, 403),
    ] {
        assert_eq!(e.status().0, status, "{e}");
    }
}
