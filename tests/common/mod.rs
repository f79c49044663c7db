//! Realistic dialog identities and raw in-dialog messages, shared by the tests, the benches
//! (`#[path]`) and the demo. Deterministic: the same seed gives the same calls.
#![allow(dead_code)]

pub mod alloc;

use sipdialog::id::DialogKey;

/// One dialog's identity as an SBC sees it.
pub struct Identity {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl Identity {
    pub fn key(&self) -> DialogKey<'_> {
        DialogKey {
            call_id: self.call_id.as_bytes(),
            local_tag: self.local_tag.as_bytes(),
            remote_tag: self.remote_tag.as_bytes(),
        }
    }
}

/// splitmix64: a small deterministic generator, enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEF-";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

/// `n` distinct identities: Call-ID 32–48 bytes (`<random>@<host>`), tags 8–16 bytes.
pub fn identities(n: usize, seed: u64) -> Vec<Identity> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let host = "sbc1.carrier.example";
            let len = 32 + rng.below(17) as usize;
            let prefix = format!("{i:x}-");
            let random_len = len - prefix.len() - host.len() - 1;
            let call_id = format!("{prefix}{}@{host}", rng.token(random_len));
            let local = 8 + rng.below(9) as usize;
            let remote = 8 + rng.below(9) as usize;
            Identity {
                call_id,
                local_tag: rng.token(local),
                remote_tag: rng.token(remote),
            }
        })
        .collect()
}

/// A request the peer sends inside the dialog (From = peer's tag, To = ours), as real UAs
/// write it: Via with branch and rport, Max-Forwards, a Route, Contact, User-Agent.
pub fn in_dialog_request(id: &Identity, method: &str, cseq: u32) -> Vec<u8> {
    format!(
        "{method} sip:bob@192.0.2.20:5060;transport=udp SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bK{cseq:08x}{len:04x}\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:192.0.2.1;lr>\r\n\
         From: \"Alice\" <sip:alice@atlanta.example.com>;tag={remote}\r\n\
         To: <sip:bob@biloxi.example.com>;tag={local}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@198.51.100.7:5060>\r\n\
         User-Agent: softphone/1.0\r\n\
         Content-Length: 0\r\n\r\n",
        remote = id.remote_tag,
        local = id.local_tag,
        call_id = id.call_id,
        len = id.call_id.len(),
    )
    .into_bytes()
}

/// A new INVITE as a softphone sends it (~490 bytes): what the whole-call bench and the
/// allocation test put through the managers.
pub fn initial_invite(call_id: &str, from_tag: &str, branch: u64) -> Vec<u8> {
    format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bK{branch:016x}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@atlanta.example.com>;tag={from_tag}\r\n\
         To: <sip:bob@biloxi.example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@198.51.100.7:5060;transport=udp>\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER\r\n\
         Supported: replaces, timer\r\n\
         User-Agent: softphone/1.0\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// An INVITE with an SDP offer through one proxy (~910 bytes): the scanner bench's larger
/// message.
pub fn invite_with_sdp(call_id: &str, from_tag: &str, branch: u64) -> Vec<u8> {
    let sdp = "v=0\r\n\
         o=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\n\
         s=-\r\n\
         c=IN IP4 198.51.100.7\r\n\
         t=0 0\r\n\
         m=audio 49170 RTP/AVP 0 8 18 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:18 G729/8000\r\n\
         a=fmtp:18 annexb=no\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n";
    // The softphone's INVITE as the proxy in front forwards it: its Via on top, the
    // softphone's stamped below it, its Record-Route, one hop less; then the offer.
    String::from_utf8(initial_invite(call_id, from_tag, branch))
        .expect("ASCII")
        .replacen(";rport;", ";received=198.51.100.7;rport=5060;", 1)
        .replacen(
            "Via: ",
            &format!("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch:016x}.1\r\nVia: "),
            1,
        )
        .replacen(
            "Max-Forwards: 70\r\n",
            "Record-Route: <sip:192.0.2.1;lr>\r\nMax-Forwards: 69\r\n",
            1,
        )
        .replacen(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
            1,
        )
        .into_bytes()
}

/// A caller (alice, UAC) and a callee (bob, UAS) manager for 4 096 dialogs each, with their
/// own Via and Contact.
pub fn caller_and_callee() -> (
    sipdialog::manager::DialogManager,
    sipdialog::manager::DialogManager,
) {
    use sipdialog::manager::{DialogManager, ManagerConfig};
    let config = |user: &str, host: &str| ManagerConfig {
        capacity: 4_096,
        via: format!("SIP/2.0/UDP {host}").into_bytes().into(),
        contact: format!("<sip:{user}@{host}>").into_bytes().into(),
        ..ManagerConfig::default()
    };
    (
        DialogManager::new(config("alice", "198.51.100.7:5060")).expect("OS randomness"),
        DialogManager::new(config("bob", "192.0.2.20:5060")).expect("OS randomness"),
    )
}
