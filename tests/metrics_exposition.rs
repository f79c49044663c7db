//! The metrics exposition, read back by an independent OpenMetrics parser
//! (`openmetrics-parser`, strict: `# EOF`, `_total` on counters, histogram structure), and the
//! Grafana dashboard checked against what the registry really exports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openmetrics_parser::openmetrics::parse_openmetrics;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use sipdialog::dialog::Role;
use sipdialog::metrics::{MessageKind, Metrics, ReferOutcome, TableStats, TerminationReason};
use sipdialog::wire::Method;

use common::alloc::{allocations_during, TrackingAlloc};

#[global_allocator]
static GLOBAL: TrackingAlloc = TrackingAlloc;

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

#[derive(Debug)]
struct FakeTable;

impl TableStats for FakeTable {
    fn capacity(&self) -> u64 {
        1_024
    }
    fn live(&self) -> u64 {
        5
    }
    fn by_phase(&self) -> (u64, u64) {
        (2, 3)
    }
    fn slab_bytes(&self) -> u64 {
        131_072
    }
    fn index_bytes(&self) -> u64 {
        65_536
    }
    fn invite_records(&self) -> (u64, u64) {
        (7, 4_096)
    }
    fn dialog_bytes(&self) -> u64 {
        1_750
    }
    fn sources(&self) -> u64 {
        11
    }
}

/// The scripted updates, from two threads so that more than one shard holds counts.
fn scripted() -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::with_shards(4));
    let other = Arc::clone(&metrics);
    let worker = std::thread::spawn(move || {
        for _ in 0..3 {
            other.dialog_created(Role::Uas);
        }
        for _ in 0..10 {
            other.message(MessageKind::Request, Method::Invite);
        }
        other.dialog_terminated(TerminationReason::Bye, 45_000);
        other.setup_completed(300);
        other.rejected(481);
    });
    for _ in 0..2 {
        metrics.dialog_created(Role::Uac);
    }
    for _ in 0..7 {
        metrics.message(MessageKind::Response, Method::Bye);
    }
    metrics.dialog_terminated(TerminationReason::Bye, 200_000);
    metrics.dialog_terminated(TerminationReason::TimeoutAck, 32_000);
    metrics.setup_completed(4_000);
    metrics.rejected(481);
    metrics.rejected(599);
    metrics.refer(ReferOutcome::Accepted);
    metrics.refer(ReferOutcome::Succeeded);
    assert!(worker.join().is_ok());
    metrics
}

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    assert!(encode(&mut text, registry).is_ok());
    text
}

fn scripted_text() -> String {
    let mut registry = Registry::default();
    scripted().register(&mut registry, Arc::new(FakeTable));
    scrape(&registry)
}

fn parse(text: &str) -> Exposition {
    match parse_openmetrics(text) {
        Ok(exposition) => exposition,
        Err(e) => panic!("exposition does not parse: {e}\n{text}"),
    }
}

/// Every sample of a family as `{label=value,…} -> value` (counters and gauges).
fn values(exposition: &Exposition, name: &str, kind: OpenMetricsType) -> BTreeMap<String, f64> {
    let family = &exposition.families[name];
    assert_eq!(family.family_type, kind, "{name}");
    assert!(!family.help.is_empty(), "{name} has HELP");
    family
        .iter_samples()
        .map(|sample| {
            let labels = sample.get_labelset().map(|set| {
                set.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let value = match &sample.value {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(g) => g.as_f64(),
                other => panic!("{name}: unexpected value {other:?}"),
            };
            (labels.unwrap_or_default(), value)
        })
        .collect()
}

fn expect(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// `(sum, count, [(le, cumulative count)])` of an unlabelled histogram.
fn histogram(exposition: &Exposition, name: &str) -> (f64, u64, Vec<(f64, f64)>) {
    let family = &exposition.families[name];
    assert_eq!(family.family_type, OpenMetricsType::Histogram, "{name}");
    assert!(name.ends_with("_seconds"), "{name} is in base units");
    assert!(family.get_label_names().is_empty(), "{name}");
    let samples: Vec<_> = family.iter_samples().collect();
    assert_eq!(samples.len(), 1, "{name}");
    match &samples[0].value {
        OpenMetricsValue::Histogram(h) => (
            h.sum.map(|s| s.as_f64()).unwrap_or(f64::NAN),
            h.count.unwrap_or(u64::MAX),
            h.buckets
                .iter()
                .map(|b| (b.upper_bound, b.count.as_f64()))
                .collect(),
        ),
        other => panic!("{name}: not a histogram: {other:?}"),
    }
}

#[test]
fn exposition_has_every_family_with_its_type() {
    let text = scripted_text();
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    let exposition = parse(&text);
    let families: BTreeMap<&str, (OpenMetricsType, Vec<String>)> = exposition
        .families
        .values()
        .map(|f| {
            let labels = f.get_label_names().to_vec();
            (f.family_name.as_str(), (f.family_type, labels))
        })
        .collect();
    use OpenMetricsType::{Counter, Gauge, Histogram};
    let l = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let expected: BTreeMap<&str, (OpenMetricsType, Vec<String>)> = [
        ("sipdialog_dialogs_created", (Counter, l(&["role"]))),
        ("sipdialog_dialogs_terminated", (Counter, l(&["reason"]))),
        ("sipdialog_messages", (Counter, l(&["kind", "method"]))),
        ("sipdialog_rejected", (Counter, l(&["status"]))),
        ("sipdialog_rate_limited", (Counter, l(&[]))),
        ("sipdialog_refer", (Counter, l(&["outcome"]))),
        ("sipdialog_setup_duration_seconds", (Histogram, l(&[]))),
        ("sipdialog_dialog_duration_seconds", (Histogram, l(&[]))),
        ("sipdialog_dialogs_active", (Gauge, l(&["state"]))),
        ("sipdialog_table_capacity_dialogs", (Gauge, l(&[]))),
        ("sipdialog_table_slots_in_use", (Gauge, l(&[]))),
        ("sipdialog_table_bytes", (Gauge, l(&[]))),
        ("sipdialog_invite_records", (Gauge, l(&[]))),
        ("sipdialog_invite_record_bytes", (Gauge, l(&[]))),
        ("sipdialog_dialog_data_bytes", (Gauge, l(&[]))),
        ("sipdialog_security_sources", (Gauge, l(&[]))),
    ]
    .into_iter()
    .collect();
    assert_eq!(families, expected);
    for family in exposition.families.values() {
        assert!(
            family.help.ends_with('.'),
            "{} HELP: {:?}",
            family.family_name,
            family.help
        );
    }
    assert_eq!(exposition.families["sipdialog_table_bytes"].unit, "bytes");

    // Counter samples carry `_total` (the parser rejects a counter without it; checked on the
    // text too so the suffix is asserted, not assumed).
    for name in [
        "sipdialog_dialogs_created",
        "sipdialog_dialogs_terminated",
        "sipdialog_messages",
        "sipdialog_rejected",
        "sipdialog_rate_limited",
        "sipdialog_refer",
    ] {
        let samples: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
        assert!(!samples.is_empty(), "{name}");
        for line in samples {
            assert!(line.starts_with(&format!("{name}_total")), "{line}");
        }
    }
    assert!(text.contains("sipdialog_rate_limited_total 0\n"));
}

#[test]
fn counters_have_exact_values() {
    let exposition = parse(&scripted_text());
    use OpenMetricsType::Counter;
    assert_eq!(
        values(&exposition, "sipdialog_dialogs_created", Counter),
        expect(&[("role=uac", 2.0), ("role=uas", 3.0), ("role=observed", 0.0)])
    );
    assert_eq!(
        values(&exposition, "sipdialog_dialogs_terminated", Counter),
        expect(&[
            ("reason=bye", 2.0),
            ("reason=cancel", 0.0),
            ("reason=rejected", 0.0),
            ("reason=timeout_ack", 1.0),
            ("reason=timeout_idle", 0.0),
            ("reason=replaced", 0.0),
            ("reason=error", 0.0),
        ])
    );

    let messages = values(&exposition, "sipdialog_messages", Counter);
    let methods = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
        "other",
    ];
    assert_eq!(
        messages.len(),
        2 * methods.len(),
        "every kind × method is exported"
    );
    for kind in ["request", "response"] {
        for method in methods {
            let expected = match (kind, method) {
                ("request", "INVITE") => 10.0,
                ("response", "BYE") => 7.0,
                _ => 0.0,
            };
            assert_eq!(
                messages.get(&format!("kind={kind},method={method}")),
                Some(&expected),
                "{kind} {method}"
            );
        }
    }

    let mut rejected = expect(&[("status=481", 2.0), ("status=other", 1.0)]);
    for status in [
        "400", "403", "405", "408", "413", "486", "489", "491", "500", "501", "503", "505", "513",
        "603",
    ] {
        rejected.insert(format!("status={status}"), 0.0);
    }
    assert_eq!(values(&exposition, "sipdialog_rejected", Counter), rejected);
    assert_eq!(
        values(&exposition, "sipdialog_rate_limited", Counter),
        expect(&[("", 0.0)])
    );
    assert_eq!(
        values(&exposition, "sipdialog_refer", Counter),
        expect(&[
            ("outcome=accepted", 1.0),
            ("outcome=rejected", 0.0),
            ("outcome=succeeded", 1.0),
            ("outcome=failed", 0.0),
        ])
    );
}

#[test]
fn histograms_have_exact_buckets_and_sums() {
    let exposition = parse(&scripted_text());

    // Setup 0.3 s and 4 s.
    let (sum, count, buckets) = histogram(&exposition, "sipdialog_setup_duration_seconds");
    assert!((sum - 4.3).abs() < 1e-9, "sum {sum}");
    assert_eq!(count, 2);
    let bounds = [
        0.1,
        0.25,
        0.5,
        1.0,
        2.0,
        3.0,
        5.0,
        8.0,
        13.0,
        20.0,
        30.0,
        60.0,
        f64::INFINITY,
    ];
    let cumulative = [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2];
    let expected: Vec<(f64, f64)> = bounds
        .iter()
        .zip(cumulative)
        .map(|(b, c)| (*b, c as f64))
        .collect();
    assert_eq!(buckets, expected);

    // Durations 45 s, 200 s (bye) and 32 s (timeout_ack).
    let (sum, count, buckets) = histogram(&exposition, "sipdialog_dialog_duration_seconds");
    assert!((sum - 277.0).abs() < 1e-9, "sum {sum}");
    assert_eq!(count, 3);
    let bounds = [
        1.0,
        5.0,
        10.0,
        30.0,
        60.0,
        120.0,
        300.0,
        600.0,
        1800.0,
        3600.0,
        7200.0,
        f64::INFINITY,
    ];
    let cumulative = [0, 0, 0, 0, 2, 2, 3, 3, 3, 3, 3, 3];
    let expected: Vec<(f64, f64)> = bounds
        .iter()
        .zip(cumulative)
        .map(|(b, c)| (*b, c as f64))
        .collect();
    assert_eq!(buckets, expected);
}

#[test]
fn gauges_read_the_table_at_scrape() {
    let exposition = parse(&scripted_text());
    use OpenMetricsType::Gauge;
    assert_eq!(
        values(&exposition, "sipdialog_dialogs_active", Gauge),
        expect(&[("state=early", 2.0), ("state=confirmed", 3.0)])
    );
    assert_eq!(
        values(&exposition, "sipdialog_table_capacity_dialogs", Gauge),
        expect(&[("", 1024.0)])
    );
    assert_eq!(
        values(&exposition, "sipdialog_table_slots_in_use", Gauge),
        expect(&[("", 5.0)])
    );
    assert_eq!(
        values(&exposition, "sipdialog_table_bytes", Gauge),
        expect(&[("", 196_608.0)])
    );
    assert_eq!(
        values(&exposition, "sipdialog_invite_records", Gauge),
        expect(&[("", 7.0)])
    );
    assert_eq!(
        values(&exposition, "sipdialog_invite_record_bytes", Gauge),
        expect(&[("", 4_096.0)])
    );
    assert_eq!(
        values(&exposition, "sipdialog_dialog_data_bytes", Gauge),
        expect(&[("", 1_750.0)])
    );
    assert_eq!(
        values(&exposition, "sipdialog_security_sources", Gauge),
        expect(&[("", 11.0)])
    );
}

#[test]
fn scrapes_see_later_updates_and_sub_registries_keep_their_labels() {
    let metrics = Arc::new(Metrics::new());
    let mut registry = Registry::default();
    let sub = registry.sub_registry_with_label(("instance".into(), "sbc-a".into()));
    metrics.register(sub, Arc::new(FakeTable));

    let first = parse(&scrape(&registry));
    metrics.dialog_created(Role::Observed);
    let second = parse(&scrape(&registry));
    let created = |e: &Exposition| values(e, "sipdialog_dialogs_created", OpenMetricsType::Counter);
    assert_eq!(
        created(&first).get("instance=sbc-a,role=observed"),
        Some(&0.0)
    );
    assert_eq!(
        created(&second).get("instance=sbc-a,role=observed"),
        Some(&1.0)
    );
    assert_eq!(
        values(
            &second,
            "sipdialog_table_capacity_dialogs",
            OpenMetricsType::Gauge
        ),
        expect(&[("instance=sbc-a", 1024.0)])
    );
}

/// The sample names a query may use: counters with `_total`, histograms' `_bucket`, `_sum`,
/// `_count`, gauges as they are; taken from the parsed exposition, not from a list.
fn exported_series(exposition: &Exposition) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for family in exposition.families.values() {
        let name = &family.family_name;
        match family.family_type {
            OpenMetricsType::Counter => {
                names.insert(format!("{name}_total"));
            }
            OpenMetricsType::Histogram => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.clone());
            }
        }
    }
    names
}

/// Identifiers starting with `sipdialog_` outside string literals.
fn metric_names(promql: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = promql.chars().peekable();
    let mut word = String::new();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.starts_with("sipdialog_") {
            names.push(std::mem::take(&mut word));
        }
        word.clear();
        in_string = c == '"';
    }
    if word.starts_with("sipdialog_") {
        names.push(word);
    }
    names
}

#[test]
fn dashboard_queries_name_only_exported_metrics() {
    let dashboard: serde_json::Value =
        match serde_json::from_str(include_str!("../src/metrics/grafana-dashboard.json")) {
            Ok(v) => v,
            Err(e) => panic!("dashboard JSON: {e}"),
        };
    let exported = exported_series(&parse(&scripted_text()));

    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let inputs = dashboard["__inputs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(inputs
        .iter()
        .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"));

    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Active dialogs by state",
        "Calls per second by role",
        "Terminations by reason",
        "Rejects by status",
        "Setup time (INVITE to 2xx)",
        "Table use",
    ] {
        assert!(titles.contains(&wanted), "panel {wanted}");
    }
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");

    let mut used = BTreeSet::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{title} has queries");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = target["expr"].as_str().unwrap_or("");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr}");
            for name in names {
                assert!(exported.contains(&name), "{title}: {name} is not exported");
                used.insert(name);
            }
        }
    }
    for wanted in [
        "sipdialog_dialogs_active",
        "sipdialog_dialogs_created_total",
        "sipdialog_dialogs_terminated_total",
        "sipdialog_rejected_total",
        "sipdialog_setup_duration_seconds_bucket",
        "sipdialog_table_slots_in_use",
        "sipdialog_table_capacity_dialogs",
    ] {
        assert!(used.contains(wanted), "dashboard uses {wanted}");
    }

    // The template variable queries an exported metric too.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for variable in variables {
        for name in metric_names(variable["definition"].as_str().unwrap_or("")) {
            assert!(exported.contains(&name), "variable uses {name}");
        }
    }
}

#[test]
fn readme_names_only_exported_metrics() {
    let readme = include_str!("../src/metrics/README.md");
    let exposition = parse(&scripted_text());
    let mut known = exported_series(&exposition);
    known.extend(exposition.families.keys().cloned());
    let names = metric_names(readme);
    assert!(names.len() >= 12, "README documents the metrics");
    for name in names {
        assert!(
            known.contains(&name),
            "README names {name}, which is not exported"
        );
    }
    for example in [
        "rate(sipdialog_dialogs_created_total[1m])",
        "histogram_quantile(0.95, sum by (le) (rate(sipdialog_setup_duration_seconds_bucket[5m])))",
    ] {
        assert!(readme.contains(example), "README shows {example}");
    }
}

#[test]
fn updates_allocate_nothing() {
    // The counter can see an allocation, so a zero below means something.
    assert_eq!(
        allocations_during(|| drop(std::hint::black_box(vec![1u8; 64]))),
        1
    );
    let metrics = Arc::new(Metrics::with_shards(4));
    let worker = Arc::clone(&metrics);
    // A fresh thread: its first update also assigns its shard index, without allocating.
    let counted = std::thread::spawn(move || {
        allocations_during(|| {
            for i in 0..1_000u64 {
                worker.dialog_created(Role::Uas);
                worker.dialog_terminated(TerminationReason::Bye, i * 997);
                worker.setup_completed(i * 61);
                worker.message(MessageKind::Request, Method::Invite);
                worker.message(MessageKind::Response, Method::Extension);
                worker.rejected(481);
                worker.rejected(599);
                worker.rate_limited();
                worker.refer(ReferOutcome::Failed);
            }
        })
    })
    .join();
    assert!(matches!(counted, Ok(0)), "{counted:?}");
    assert_eq!(metrics.snapshot().created(Role::Uas), 1_000);
}

#[test]
fn metric_name_extraction() {
    assert_eq!(
        metric_names(r#"sum(rate(sipdialog_a_total{x="sipdialog_no"}[1m])) / sipdialog_b"#),
        ["sipdialog_a_total", "sipdialog_b"]
    );
}
