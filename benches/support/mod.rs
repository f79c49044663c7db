//! Shared by the benches: realistic dialogs (from the test kit) and the ratio report, which
//! reads the medians criterion measured in this same run and prints subject/baseline ratios.
#![allow(dead_code)]

#[path = "../../tests/common/mod.rs"]
pub mod calls;

use std::path::PathBuf;
use std::time::SystemTime;

use sipdialog::state::DialogState;
use sipdialog::table::{DialogHandle, DialogTable, NewDialog};

/// A table holding one confirmed dialog per identity, sized to hold exactly those (plus
/// `spare` free slots), and the handles in identity order.
pub fn filled_table(ids: &[calls::Identity], spare: u32) -> (DialogTable, Vec<DialogHandle>) {
    let table = DialogTable::with_capacity(ids.len() as u32 + spare).expect("OS randomness");
    let init = NewDialog {
        state: DialogState::CONFIRMED,
        local_cseq: 1,
        remote_cseq: Some(1),
        now_ms: 0,
    };
    let handles = ids
        .iter()
        .map(|id| table.insert(&id.key(), &init).expect("insert"))
        .collect();
    (table, handles)
}

/// What the ordinary way keeps per dialog beside its string key: the hot slot's fields.
#[derive(Default)]
pub struct Record {
    pub state: u8,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    pub created_ms: u64,
    pub active_ms: u64,
}

/// Where criterion writes its results (the same search order criterion uses).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// Runs one bench binary's criterion benches, then hands back a report that reads the medians
/// they measured.
pub fn run(bench: fn(&mut criterion::Criterion)) -> Report {
    let report = Report::new();
    let mut c = criterion::Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    report
}

/// Collects medians measured since the report was created.
pub struct Report {
    started: SystemTime,
    lines: Vec<String>,
}

impl Report {
    pub fn new() -> Report {
        Report {
            started: SystemTime::now(),
            lines: Vec::new(),
        }
    }

    /// The median (ns per iteration) of `group/id`, if measured in this run.
    pub fn median_ns(&self, group: &str, id: &str) -> Option<f64> {
        let path = criterion_dir()
            .join(group)
            .join(id)
            .join("new/estimates.json");
        let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
        if modified < self.started {
            return None;
        }
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        json["median"]["point_estimate"].as_f64()
    }

    /// Adds a line comparing `subject` with `baseline` (both `group/id` paths of this run).
    pub fn ratio(&mut self, label: &str, group: &str, subject: &str, baseline: &str) {
        let line = match (self.median_ns(group, subject), self.median_ns(group, baseline)) {
            (Some(s), Some(b)) => format!(
                "{label}: {subject} {s:.1} ns vs {baseline} {b:.1} ns (medians) -> the baseline takes {:.2}x as long",
                b / s
            ),
            _ => format!("{label}: not measured in this run (filtered out?)"),
        };
        self.lines.push(line);
    }

    /// Adds a line with one median.
    pub fn median(&mut self, label: &str, group: &str, id: &str) {
        let line = match self.median_ns(group, id) {
            Some(m) => format!("{label}: {m:.2} ns (median)"),
            None => format!("{label}: not measured in this run (filtered out?)"),
        };
        self.lines.push(line);
    }

    pub fn print(&self) {
        println!("\n== ratios from this run ==");
        for line in &self.lines {
            println!("{line}");
        }
    }
}
