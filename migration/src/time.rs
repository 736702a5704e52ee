//! RFC 3339 timestamps for status fields, and durations as people read them.

/// Now, RFC 3339 in UTC with seconds.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Seconds between two RFC 3339 timestamps, or `None` when either does not parse.
pub fn seconds_between(from: &str, to: &str) -> Option<f64> {
    let a: k8s_openapi::jiff::Timestamp = from.parse().ok()?;
    let b: k8s_openapi::jiff::Timestamp = to.parse().ok()?;
    Some((b.as_millisecond() - a.as_millisecond()) as f64 / 1000.0)
}

/// A duration as `12.3s`, `4m05s` or `2h03m`.
pub fn human(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s as u64) % 60)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s as u64) % 3600) / 60)
    }
}
