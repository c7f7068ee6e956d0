//! The end-of-run summary: a table on stderr, a JSON file with every
//! figure, the HDR percentile distribution, and an SVG of the latency
//! percentile curve.

use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::{Args, Mode, Stats};

pub struct Report {
    pub mode: Mode,
    pub msgs_per_sec: f64,
    pub bytes_per_sec: f64,
    pub messages: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub latency: Histogram<u64>,
    pub produce_latency: Histogram<u64>,
    pub fetch_latency: Histogram<u64>,
    pub violations: Vec<String>,
    params: Value,
}

fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "p9999": h.value_at_quantile(0.9999),
        "max": h.max(),
        "count": h.len(),
    })
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

impl Report {
    pub fn new(args: &Args, stats: &Stats, messages: u64, bytes: u64, elapsed_s: f64, violations: Vec<String>) -> Self {
        let produce_latency = stats.produce_lat.lock().unwrap().clone();
        let fetch_latency = stats.fetch_lat.lock().unwrap().clone();
        let latency = match args.mode {
            Mode::Produce => produce_latency.clone(),
            Mode::Consume => fetch_latency.clone(),
            Mode::E2e => stats.e2e.lock().unwrap().clone(),
        };
        let params = json!({
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "client": format!("{:?}", args.client).to_lowercase(),
            "bootstrap_server": args.bootstrap_server,
            "topic": args.topic,
            "partitions": args.partitions,
            "producers": args.producers,
            "consumers": args.consumers,
            "message_size": args.message_size,
            "batch_size": args.batch_size,
            "linger_ms": args.linger_ms,
            "acks": format!("{:?}", args.acks).to_lowercase(),
            "rate": args.rate,
            "duration": args.duration,
            "messages": args.messages,
            "warmup": args.warmup,
            "inflight": args.inflight,
            "fetch_max_bytes": args.fetch_max_bytes,
        });
        Report {
            mode: args.mode,
            msgs_per_sec: messages as f64 / elapsed_s.max(1e-9),
            bytes_per_sec: bytes as f64 / elapsed_s.max(1e-9),
            messages,
            errors: stats.errors.load(Ordering::Relaxed),
            elapsed_s,
            latency,
            produce_latency,
            fetch_latency,
            violations,
            params,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "msgs_per_sec": self.msgs_per_sec,
            "bytes_per_sec": self.bytes_per_sec,
            "messages": self.messages,
            "errors": self.errors,
            "elapsed_s": self.elapsed_s,
            "latency_us": percentiles(&self.latency),
            "latency_kind": match self.mode {
                Mode::Produce => "produce request, from the intended send time",
                Mode::Consume => "fetch request",
                Mode::E2e => "end to end, from the send stamp to the consumer",
            },
            "produce_latency_us": percentiles(&self.produce_latency),
            "fetch_latency_us": percentiles(&self.fetch_latency),
            "correctness_violations": self.violations,
            "params": self.params,
            "shardlog_version": env!("CARGO_PKG_VERSION"),
            "machine": {
                "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
                "kernel": kernel(),
            },
        })
    }

    pub fn print(&self) {
        let ms = |v: u64| v as f64 / 1000.0;
        let h = &self.latency;
        eprintln!();
        eprintln!("mode          {:?}", self.mode);
        eprintln!("messages      {}", self.messages);
        eprintln!("elapsed       {:.2} s", self.elapsed_s);
        eprintln!("throughput    {:.0} msg/s, {:.1} MB/s", self.msgs_per_sec, self.bytes_per_sec / 1e6);
        eprintln!("errors        {}", self.errors);
        eprintln!(
            "latency (ms)  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.value_at_quantile(0.9999)),
            ms(h.max())
        );
        if self.mode == Mode::E2e {
            eprintln!("correctness   {}", if self.violations.is_empty() { "every message consumed exactly once, in order" } else { "VIOLATED" });
        }
    }
}

/// The HdrHistogram percentile distribution text (values in ms).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 { format!("{:.2}", 1.0 / (1.0 - q)) } else { "inf".into() };
        out.push_str(&format!("{:12.3} {:14.12} {:10} {:>14}\n", v.value_iterated_to() as f64 / 1000.0, q, v.count_since_last_iteration(), inv));
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    ));
    out
}

/// Latency (ms) against percentile on a log scale of 1/(1-p), as an SVG.
pub fn svg(h: &Histogram<u64>, title: &str) -> String {
    let (w, ht, left, bottom, top, right) = (800.0, 480.0, 70.0, 60.0, 40.0, 20.0);
    let max_x = 5.0f64; // up to 99.999%
    let points: Vec<(f64, f64)> = (0..=500)
        .map(|i| {
            let x = max_x * f64::from(i) / 500.0;
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect();
    let max_y = points.iter().map(|p| p.1).fold(0.001, f64::max) * 1.1;
    let sx = |x: f64| left + x / max_x * (w - left - right);
    let sy = |y: f64| ht - bottom - y / max_y * (ht - top - bottom);
    let mut s = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{ht}" font-family="sans-serif" font-size="12">"#);
    s.push_str(&format!(r#"<rect width="{w}" height="{ht}" fill="white"/><text x="{}" y="22" font-size="15" text-anchor="middle">{title}</text>"#, w / 2.0));
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].iter().enumerate() {
        let x = sx(i as f64);
        s.push_str(&format!(
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"##,
            top,
            ht - bottom,
            ht - bottom + 18.0
        ));
    }
    for i in 0..=5 {
        let y = max_y * f64::from(i) / 5.0;
        let py = sy(y);
        s.push_str(&format!(
            r##"<line x1="{left}" y1="{py}" x2="{}" y2="{py}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{y:.2}</text>"##,
            w - right,
            left - 6.0,
            py + 4.0
        ));
    }
    let path: Vec<String> = points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
    s.push_str(&format!(r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##, path.join(" ")));
    s.push_str(&format!(r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#, w / 2.0, ht - 15.0));
    s.push_str(&format!(r#"<text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">latency (ms)</text>"#, ht / 2.0, ht / 2.0));
    s.push_str("</svg>\n");
    s
}
