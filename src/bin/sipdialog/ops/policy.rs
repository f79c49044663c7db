//! The `--policy` file: TOML whose keys are the fields of [`Policy`] (every one optional, the
//! rest keep their defaults), read at start and again on SIGHUP.
//!
//! ```toml
//! max_dialogs_per_source = 1000
//! new_dialogs_per_second_per_source = 50
//! trusted_sources = ["10.0.0.0/8"]
//! transfer_targets = ["192.0.2.0/24"]
//! ```

use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;
use sipdialog::security::Policy;

/// The file's fields: [`Policy`]'s, each optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    max_dialogs: Option<u32>,
    max_early_dialogs: Option<u32>,
    max_dialogs_per_source: Option<u32>,
    new_dialogs_per_second: Option<u32>,
    new_dialog_burst: Option<u32>,
    new_dialogs_per_second_per_source: Option<u32>,
    new_dialog_burst_per_source: Option<u32>,
    error_answers_per_second_per_source: Option<u32>,
    error_answer_burst_per_source: Option<u32>,
    max_sources: Option<u32>,
    source_idle_ms: Option<u64>,
    trusted_sources: Option<Vec<IpNet>>,
    retry_after_s: Option<u32>,
    max_message_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_line_bytes: Option<usize>,
    max_body_bytes: Option<usize>,
    max_route_entries: Option<usize>,
    max_route_bytes: Option<usize>,
    max_invite_records: Option<usize>,
    invite_record_bytes: Option<usize>,
    dialog_bytes: Option<usize>,
    max_refer_to_bytes: Option<usize>,
    max_refers_per_second: Option<u32>,
    max_subscriptions: Option<u32>,
    transfer_targets: Option<Vec<IpNet>>,
}

/// `base` with what the file at `path` sets.
pub fn load(path: &Path, base: Policy) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: PolicyFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut p = base;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = file.$field { p.$field = v; } )* };
    }
    set!(
        max_dialogs,
        max_early_dialogs,
        max_dialogs_per_source,
        new_dialogs_per_second,
        new_dialog_burst,
        new_dialogs_per_second_per_source,
        new_dialog_burst_per_source,
        error_answers_per_second_per_source,
        error_answer_burst_per_source,
        max_sources,
        source_idle_ms,
        trusted_sources,
        retry_after_s,
        max_message_bytes,
        max_headers,
        max_line_bytes,
        max_body_bytes,
        max_route_entries,
        max_route_bytes,
        max_invite_records,
        invite_record_bytes,
        dialog_bytes,
        max_refers_per_second,
        max_subscriptions
    );
    if let Some(max) = file.max_refer_to_bytes {
        p.refer_limits.max_len = max;
    }
    if let Some(nets) = file.transfer_targets {
        p.transfer_targets = Some(nets);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_set_and_unknown_keys_refused() {
        let dir = std::env::temp_dir().join(format!("sipdialog-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.toml");
        std::fs::write(
            &path,
            "max_dialogs_per_source = 7\ntrusted_sources = [\"10.0.0.0/8\"]\n\
             transfer_targets = [\"192.0.2.0/24\"]\nmax_refer_to_bytes = 99\n",
        )
        .unwrap();
        let p = load(&path, Policy::default()).unwrap();
        assert_eq!(p.max_dialogs_per_source, 7);
        assert!(p.is_trusted("10.1.1.1".parse().unwrap()));
        assert!(p.allows_transfer_to(b"192.0.2.9") && !p.allows_transfer_to(b"198.51.100.1"));
        assert_eq!(p.refer_limits.max_len, 99);
        assert_eq!(p.max_dialogs, Policy::default().max_dialogs);
        std::fs::write(&path, "max_dialogz = 1\n").unwrap();
        assert!(load(&path, Policy::default()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
