//! The INVITE timers around the 2xx: a late copy of an answered INVITE is a retransmission,
//! not a new call (RFC 6026 §7.1), and a lost ACK makes the UAS hang up after 64×T1
//! (RFC 3261 §13.3.1.4). Fork expiry after the first 2xx is in `flow_forking.rs`.

mod flows;

use flows::{deliver_msg, deliver_one, establish, hang_up, invite, no_parts, Ua, ATAG, CALL, T64};
use sipdialog::manager::Verdict;

/// RFC 6026 §7.1 (updating RFC 3261 §17.2.1): after a 2xx the INVITE server transaction stays
/// in "Accepted" for 64×T1 and absorbs retransmissions of the INVITE. A late copy of the
/// INVITE (UDP reorders; the UAC retransmits until it hears a response) is not a new call.
#[test]
fn invite_retransmission_after_2xx_is_not_a_new_call() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, inv_at_bob) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let late = deliver_msg(&inv_at_bob, &[], &mut bob, 100);
    assert_eq!(
        late.verdict,
        Some(Verdict::Retransmission),
        "a copy of the answered INVITE was taken for a new call"
    );
    assert_eq!(bob.mgr.len(), 1);
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 200);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// §13.3.1.4: no ACK for the 2xx within 64×T1: the UAS ends the dialog with BYE, which the
/// caller (who did get the 200) accepts.
#[test]
fn lost_ack_the_uas_hangs_up_after_64_t1() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let inv = invite(CALL, ATAG, None);
    alice.mgr.on_sent(&inv, 0).unwrap();
    deliver_msg(&inv, &[], &mut bob, 0);
    let b_d = bob
        .mgr
        .respond(&inv, 200, &no_parts(), 10, &mut bob.out)
        .unwrap()
        .unwrap();
    let Some(Verdict::Confirmed { dialog: a_d, .. }) =
        deliver_one(&mut bob, &[], &mut alice, 10).verdict
    else {
        panic!("200")
    };
    alice.mgr.ack(a_d, 1, &mut alice.out).unwrap();
    alice.out.clear(); // lost
    assert!(bob.run_timers(10 + T64 - 1).is_empty());
    let expired = bob.run_timers(10 + T64);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].dialog, Some(b_d));
    assert_eq!(
        deliver_one(&mut bob, &[], &mut alice, 10 + T64).verdict,
        Some(Verdict::Bye { dialog: a_d })
    );
    // Bob's dialog left the table when it expired; the 200 to his BYE is a stray.
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 10 + T64 + 1).verdict,
        Some(Verdict::Stray)
    );
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}
