//! The printed report of a run: per phase and operation, offered and
//! achieved rates, latency percentiles, errors by code, broker CPU per
//! decision, and the achieved rate as a fraction of the in-process ceiling
//! when one was measured in the same run.

use std::fmt::Write as _;

use serde::Serialize;

use crate::ceiling::CeilingReport;
use crate::run::{PhaseReport, RunConfig};
use crate::stats::Operation;

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub target: String,
    pub hosts: usize,
    pub sources: usize,
    pub config: RunConfig,
    pub phases: Vec<PhaseReport>,
    pub ceiling: Option<CeilingReport>,
    /// The load average (1, 5, 15 min) at the end: other work on the machine.
    pub load_average: Option<String>,
}

impl RunReport {
    /// Every exchange sent in every phase succeeded, none was left
    /// running, and every operation of every phase succeeded at least once.
    /// (Exchanges the load generator could not send are reported, not
    /// failures: the broker never saw them.)
    pub fn clean(&self) -> bool {
        self.phases
            .iter()
            .all(|p| p.errors() == 0 && p.unfinished == 0 && p.operations.iter().all(|o| o.ok > 0))
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let _ = writeln!(
            out,
            "writ-loadgen {}: {} hosts over {} source addresses -> {}; duration {} s, \
             interval {} s ±{:.0} %, token rate {}/s, max in flight {}",
            c.mode.as_str(),
            self.hosts,
            self.sources,
            self.target,
            c.duration.as_secs(),
            c.interval.as_secs_f64(),
            c.jitter * 100.0,
            c.rate,
            c.max_in_flight
        );
        for p in &self.phases {
            let _ = writeln!(out, "phase {} ({:.1} s):", p.name, p.elapsed_secs);
            let _ = writeln!(
                out,
                "  {:<7} {:>10} {:>10} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "op",
                "offered/s",
                "ok/s",
                "ok",
                "errors",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "p99.9",
                "max"
            );
            for o in &p.operations {
                let _ = writeln!(
                    out,
                    "  {:<7} {:>10.1} {:>10.1} {:>9} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                    o.operation.as_str(),
                    o.offered_per_sec,
                    o.achieved_per_sec,
                    o.ok,
                    o.errors,
                    o.p50_ms,
                    o.p90_ms,
                    o.p99_ms,
                    o.p999_ms,
                    o.max_ms
                );
                for (code, n) in &o.errors_by_code {
                    let _ = writeln!(out, "    error {code}: {n}");
                }
                for (reason, n) in &o.skipped_by_reason {
                    let _ = writeln!(out, "    not sent ({reason}): {n}");
                }
                if let Some(ceiling) = &self.ceiling {
                    if matches!(
                        o.operation,
                        Operation::Attest | Operation::Token | Operation::SignedToken
                    ) && ceiling.per_sec > 0.0
                    {
                        let _ = writeln!(
                            out,
                            "    = {:.1} % of the in-process ceiling ({:.0}/s)",
                            100.0 * o.achieved_per_sec / ceiling.per_sec,
                            ceiling.per_sec
                        );
                    }
                }
            }
            if p.unfinished > 0 {
                let _ = writeln!(out, "  unfinished after the drain time: {}", p.unfinished);
            }
            match (p.broker_cpu_secs, p.broker_cpu_us_per_decision) {
                (Some(cpu), per) => {
                    let _ = writeln!(
                        out,
                        "  broker CPU {cpu:.2} s ({:.2} cores){}",
                        cpu / p.elapsed_secs.max(1e-9),
                        per.map(|us| format!(", {us:.0} µs per decision"))
                            .unwrap_or_default()
                    );
                }
                (None, _) => {
                    let _ = writeln!(out, "  broker CPU: not measured (no --broker-pid)");
                }
            }
            if let Some(own) = p.loadgen_cpu_secs {
                let _ = writeln!(
                    out,
                    "  loadgen CPU {own:.2} s ({:.2} cores)",
                    own / p.elapsed_secs.max(1e-9)
                );
            }
        }
        if let Some(c) = &self.ceiling {
            let _ = writeln!(
                out,
                "in-process ceiling (appraisal + decision + token mint, {} threads, {:.1} s): \
                 {:.0} decisions/s, {:.1} µs per decision per thread",
                c.threads, c.seconds, c.per_sec, c.us_per_decision
            );
        }
        if let Some(l) = &self.load_average {
            let _ = writeln!(out, "load average at the end: {l}");
        }
        out
    }
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}
