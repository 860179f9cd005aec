//! The modes and their schedules.
//!
//! - `enroll`: every host enrolls once, `concurrency` at a time (closed loop).
//! - `fleet`: every host re-attests every `interval` (± `jitter`), the first
//!   time at a uniformly spread offset; open loop: a due attestation is sent
//!   when due whatever the broker's pace, its latency counted from then.
//! - `tokens`: key-bound token requests at `rate` per second, open loop,
//!   spread over the hosts (a host has one exchange at a time).
//! - `mixed`: `fleet` and `tokens` together.
//! - `signed`: like `tokens`, on requests signed by each host's request key
//!   (no quote); a `register` phase first attests every host and registers
//!   a request key certified by its AK. The broker accepts signed requests
//!   while the host's last appraisal is fresh (`hosts.signed_request_max_age_secs`,
//!   120 s by default): keep `duration` below it.
//!
//! Every mode but `enroll` first enrolls the hosts the broker does not
//! know yet (a `prepare` phase, reported apart). Every loop is bounded: by
//! the host count, by `duration`, and by `max_in_flight` exchanges at once;
//! after `duration` nothing new is sent and in-flight exchanges get
//! [`DRAIN`] to finish.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::exchange::Broker;
use crate::fleet::Fleet;
use crate::proc_cpu;
use crate::stats::{OpSummary, Operation, Recorder};

/// How long in-flight exchanges may still take once a phase's time is up.
pub const DRAIN: Duration = Duration::from_secs(65);
/// Longest run accepted (a 30-minute soak fits; an endless run does not).
pub const MAX_DURATION: Duration = Duration::from_secs(4 * 3600);

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Enroll,
    Fleet,
    Tokens,
    Mixed,
    Signed,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enroll => "enroll",
            Mode::Fleet => "fleet",
            Mode::Tokens => "tokens",
            Mode::Mixed => "mixed",
            Mode::Signed => "signed",
        }
    }
}

/// The bounds and pace of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub mode: Mode,
    pub duration: Duration,
    /// `fleet`/`mixed`: each host re-attests this often.
    pub interval: Duration,
    /// `fleet`/`mixed`: ± this fraction of `interval`, uniformly.
    pub jitter: f64,
    /// `tokens`/`mixed`: token requests offered per second.
    pub rate: f64,
    /// `enroll` (and the `prepare` phase): enrollments at once.
    pub concurrency: usize,
    pub max_in_flight: usize,
    /// The broker process, to report its CPU per decision.
    pub broker_pid: Option<u32>,
}

/// The figures of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: &'static str,
    pub elapsed_secs: f64,
    pub operations: Vec<OpSummary>,
    /// Exchanges still running when the drain time ran out.
    pub unfinished: usize,
    pub broker_cpu_secs: Option<f64>,
    /// Broker CPU time per completed exchange (ok or refused).
    pub broker_cpu_us_per_decision: Option<f64>,
    pub loadgen_cpu_secs: Option<f64>,
}

impl PhaseReport {
    /// Exchanges that succeeded.
    pub fn ok(&self) -> u64 {
        self.operations.iter().map(|o| o.ok).sum()
    }

    /// Exchanges that failed, whatever the code.
    pub fn errors(&self) -> u64 {
        self.operations.iter().map(|o| o.errors).sum()
    }

    /// Exchanges due but never sent (the load generator was short).
    pub fn skipped(&self) -> u64 {
        self.operations.iter().map(|o| o.skipped).sum()
    }
}

/// Per-phase CPU bookkeeping.
struct CpuWindow {
    broker: Option<(u32, Duration)>,
    own: Option<Duration>,
}

impl CpuWindow {
    fn start(broker_pid: Option<u32>) -> Self {
        CpuWindow {
            broker: broker_pid.and_then(|pid| proc_cpu::cpu_time(pid).ok().map(|t| (pid, t))),
            own: proc_cpu::cpu_time(std::process::id()).ok(),
        }
    }

    fn finish(
        self,
        name: &'static str,
        rec: &Recorder,
        elapsed: Duration,
        unfinished: usize,
    ) -> PhaseReport {
        let operations = rec.summary(elapsed);
        let completed: u64 = operations.iter().map(|o| o.ok + o.errors).sum();
        let broker_cpu = self.broker.and_then(|(pid, before)| {
            proc_cpu::cpu_time(pid)
                .ok()
                .map(|after| after.saturating_sub(before).as_secs_f64())
        });
        let own = self.own.and_then(|before| {
            proc_cpu::cpu_time(std::process::id())
                .ok()
                .map(|after| after.saturating_sub(before).as_secs_f64())
        });
        PhaseReport {
            name,
            elapsed_secs: elapsed.as_secs_f64(),
            broker_cpu_us_per_decision: broker_cpu
                .filter(|_| completed > 0)
                .map(|c| c * 1e6 / completed as f64),
            broker_cpu_secs: broker_cpu,
            loadgen_cpu_secs: own,
            operations,
            unfinished,
        }
    }
}

/// Run `cfg` against `broker` with `fleet`; returns its phases.
pub async fn run(
    fleet: Arc<Fleet>,
    broker: Arc<Broker>,
    cfg: &RunConfig,
) -> Result<Vec<PhaseReport>, hdrhistogram::CreationError> {
    let mut phases = Vec::new();
    if cfg.mode == Mode::Enroll {
        let all: Vec<usize> = (0..fleet.hosts.len()).collect();
        phases.push(
            closed_loop_phase("enroll", &fleet, &broker, all, cfg, &[Operation::Enroll]).await?,
        );
        return Ok(phases);
    }
    let missing: Vec<usize> = fleet
        .hosts
        .iter()
        .filter(|h| h.host_id().is_none())
        .map(|h| h.index)
        .collect();
    if !missing.is_empty() {
        phases.push(
            closed_loop_phase(
                "prepare",
                &fleet,
                &broker,
                missing,
                cfg,
                &[Operation::Enroll],
            )
            .await?,
        );
    }
    if cfg.mode == Mode::Signed {
        let all: Vec<usize> = (0..fleet.hosts.len()).collect();
        const STEPS: [Operation; 2] = [Operation::Attest, Operation::RegisterKey];
        phases.push(closed_loop_phase("register", &fleet, &broker, all, cfg, &STEPS).await?);
    }
    let rec = Arc::new(Recorder::new()?);
    let slots = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
    let cpu = CpuWindow::start(cfg.broker_pid);
    let start = Instant::now();
    let end = start + cfg.duration.min(MAX_DURATION);
    let fleet_loop = matches!(cfg.mode, Mode::Fleet | Mode::Mixed).then(|| {
        tokio::spawn(fleet_schedule(
            Arc::clone(&fleet),
            Arc::clone(&broker),
            Arc::clone(&rec),
            Arc::clone(&slots),
            cfg.clone(),
            start,
            end,
        ))
    });
    let token_op = match cfg.mode {
        Mode::Tokens | Mode::Mixed => Some(Operation::Token),
        Mode::Signed => Some(Operation::SignedToken),
        Mode::Enroll | Mode::Fleet => None,
    };
    let token_loop = token_op.map(|op| {
        tokio::spawn(token_schedule(
            op,
            Arc::clone(&fleet),
            Arc::clone(&broker),
            Arc::clone(&rec),
            Arc::clone(&slots),
            cfg.rate,
            start,
            end,
        ))
    });
    for handle in [fleet_loop, token_loop].into_iter().flatten() {
        let _ = handle.await;
    }
    let unfinished = drain(&slots, cfg.max_in_flight.max(1)).await;
    phases.push(cpu.finish("load", &rec, start.elapsed(), unfinished));
    Ok(phases)
}

/// Wait until every in-flight exchange returned its slot, at most
/// [`DRAIN`]; returns how many did not.
async fn drain(slots: &Semaphore, total: usize) -> usize {
    let all = u32::try_from(total).unwrap_or(u32::MAX);
    match tokio::time::timeout(DRAIN, slots.acquire_many(all)).await {
        Ok(Ok(_)) => 0,
        _ => total.saturating_sub(slots.available_permits()),
    }
}

/// Run `steps` for each host at `indices` (a host's next step only after
/// its previous one succeeded), `concurrency` hosts at a time, until done
/// or, for the `enroll` mode, the run's duration is up (a preparation
/// phase runs to its end: regression, a `signed` run whose `register`
/// phase was cut at `duration` sent requests for unregistered keys).
async fn closed_loop_phase(
    name: &'static str,
    fleet: &Arc<Fleet>,
    broker: &Arc<Broker>,
    indices: Vec<usize>,
    cfg: &RunConfig,
    steps: &'static [Operation],
) -> Result<PhaseReport, hdrhistogram::CreationError> {
    let rec = Arc::new(Recorder::new()?);
    let cpu = CpuWindow::start(cfg.broker_pid);
    let start = Instant::now();
    // `enroll` is bounded by the run's duration; a preparation phase must
    // finish for the load that follows to mean anything (at most 4 hours).
    let bound = if cfg.mode == Mode::Enroll {
        cfg.duration
    } else {
        MAX_DURATION
    };
    let end = start + bound.min(MAX_DURATION);
    let next = Arc::new(AtomicUsize::new(0));
    let indices = Arc::new(indices);
    let workers: Vec<_> = (0..cfg.concurrency.max(1))
        .map(|_| {
            let (fleet, broker, rec, next, indices) = (
                Arc::clone(fleet),
                Arc::clone(broker),
                Arc::clone(&rec),
                Arc::clone(&next),
                Arc::clone(&indices),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&index) = indices.get(i) else { break };
                    if Instant::now() >= end {
                        break;
                    }
                    let Some(host) = fleet.claim(index) else {
                        continue;
                    };
                    for &op in steps {
                        rec.offered(op);
                        let t0 = Instant::now();
                        match perform(op, &broker, &fleet, &host).await {
                            Ok(()) => rec.ok(op, t0.elapsed()),
                            Err(e) => {
                                rec.error(op, &e.code());
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut unfinished = 0;
    for w in workers {
        let remaining = (end + DRAIN).saturating_duration_since(Instant::now());
        if tokio::time::timeout(remaining, w).await.is_err() {
            unfinished += 1;
        }
    }
    Ok(cpu.finish(name, &rec, start.elapsed(), unfinished))
}

/// One exchange of `op`.
async fn perform(
    op: Operation,
    broker: &Broker,
    fleet: &Fleet,
    host: &crate::fleet::SimHost,
) -> Result<(), crate::exchange::ExchangeError> {
    match op {
        Operation::Enroll => broker.enroll(fleet, host).await,
        Operation::Attest => broker.attest(fleet, host).await,
        Operation::Token => broker.token(fleet, host).await,
        Operation::RegisterKey => broker.register_request_key(fleet, host).await,
        Operation::SignedToken => broker.signed_token(fleet, host).await,
    }
}

/// Run one exchange of `op` for a claimed host, counted from `due`; the
/// host and the in-flight slot are released when it ends.
async fn exchange(
    op: Operation,
    host: crate::fleet::Claim,
    fleet: Arc<Fleet>,
    broker: Arc<Broker>,
    rec: Arc<Recorder>,
    permit: tokio::sync::OwnedSemaphorePermit,
    due: Instant,
) {
    match perform(op, &broker, &fleet, &host).await {
        Ok(()) => rec.ok(op, due.elapsed()),
        Err(e) => rec.error(op, &e.code()),
    }
    drop(host);
    drop(permit);
}

/// How often a due exchange looks again for its busy host (or, for a
/// token request, for any idle host).
const BUSY_RETRY: Duration = Duration::from_millis(2);
/// A token request that finds no idle host for this long is skipped
/// (`loadgen_no_idle_host`: the load generator, not the broker, is short).
const NO_IDLE_HOST_AFTER: Duration = Duration::from_secs(1);

/// Every host re-attests every `interval` ± `jitter`, first at a spread
/// offset. A host still busy when due (its token request runs: a TPM
/// answers one command at a time) is tried again shortly, its latency
/// still counted from when it was due; one still busy a whole interval
/// later is skipped (`loadgen_host_busy`).
async fn fleet_schedule(
    fleet: Arc<Fleet>,
    broker: Arc<Broker>,
    rec: Arc<Recorder>,
    slots: Arc<Semaphore>,
    cfg: RunConfig,
    start: Instant,
    end: Instant,
) {
    let mut rng = Jitter::seeded();
    let interval = cfg.interval.as_secs_f64().max(0.001);
    let jitter = cfg.jitter.clamp(0.0, 0.9);
    // (when to try, host, when it was due)
    let mut due: BinaryHeap<Reverse<(Instant, usize, Instant)>> = fleet
        .hosts
        .iter()
        .map(|h| {
            let at = start + Duration::from_secs_f64(rng.unit() * interval);
            Reverse((at, h.index, at))
        })
        .collect();
    while let Some(Reverse((at, index, was_due))) = due.pop() {
        if was_due >= end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let retry = at != was_due;
        if !retry {
            let next = interval * (1.0 + jitter * (2.0 * rng.unit() - 1.0));
            let next_due = was_due + Duration::from_secs_f64(next);
            due.push(Reverse((next_due, index, next_due)));
            rec.offered(Operation::Attest);
        }
        let Some(host) = fleet.claim(index) else {
            if was_due.elapsed() < cfg.interval {
                due.push(Reverse((Instant::now() + BUSY_RETRY, index, was_due)));
            } else {
                rec.skipped(Operation::Attest, "loadgen_host_busy");
            }
            continue;
        };
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        tokio::spawn(exchange(
            Operation::Attest,
            host,
            Arc::clone(&fleet),
            Arc::clone(&broker),
            Arc::clone(&rec),
            permit,
            was_due,
        ));
    }
}

/// Token requests (`op`: quote-based or signed) at `rate` per second
/// (open loop), each on the next idle host.
#[allow(clippy::too_many_arguments)]
async fn token_schedule(
    op: Operation,
    fleet: Arc<Fleet>,
    broker: Arc<Broker>,
    rec: Arc<Recorder>,
    slots: Arc<Semaphore>,
    rate: f64,
    start: Instant,
    end: Instant,
) {
    let period = 1.0 / rate.max(0.001);
    let cursor = Arc::new(AtomicUsize::new(0));
    for k in 0u64.. {
        let at = start + Duration::from_secs_f64(k as f64 * period);
        if at >= end || fleet.hosts.is_empty() {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        rec.offered(op);
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let (fleet, broker, rec, cursor) = (
            Arc::clone(&fleet),
            Arc::clone(&broker),
            Arc::clone(&rec),
            Arc::clone(&cursor),
        );
        tokio::spawn(async move {
            let hosts = fleet.hosts.len();
            let host = loop {
                let from = cursor.load(Ordering::Relaxed);
                if let Some(h) = (0..hosts).find_map(|i| fleet.claim((from + i) % hosts)) {
                    cursor.store((h.index + 1) % hosts, Ordering::Relaxed);
                    break Some(h);
                }
                if at.elapsed() >= NO_IDLE_HOST_AFTER {
                    break None;
                }
                tokio::time::sleep(BUSY_RETRY).await;
            };
            match host {
                Some(host) => exchange(op, host, fleet, broker, rec, permit, at).await,
                None => rec.skipped(op, "loadgen_no_idle_host"),
            }
        });
    }
}

/// SplitMix64, seeded from the system RNG: jitter needs spread, not secrecy.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        use aws_lc_rs::rand::SecureRandom;
        let mut seed = [0u8; 8];
        let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut seed);
        Jitter(u64::from_le_bytes(seed))
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_uniform_enough() {
        let mut j = Jitter(1);
        let xs: Vec<f64> = (0..10_000).map(|_| j.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
