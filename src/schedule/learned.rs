//! Learned polling (issue 11): spend each request where an execution is
//! likely to end. Pure: plain values, no clock, no I/O.
//!
//! In: terminal answers (`observe_ended`: `endedAt − startedAt`), watches
//! that stopped without one (`observe_censored`), the ages of the watches
//! still running, and the exponential policy the learned one must not
//! outspend. Out: the delay before the next poll of a watch of age *a*
//! (`Schedule::next_delay`), or `None` while nothing is learned (the caller
//! then keeps the exponential schedule unchanged).
//!
//! - **Summary.** Per (region, flow, alias) a `DurationModel`: two
//!   histograms of `BINS` log-spaced bins from 1 ms to 25 h (about 10 %
//!   wide; bin 0 is everything under 1 ms), one for durations that ended
//!   and one for ages at which a watch stopped without an end (removed,
//!   abandoned: censored, not an ending). Absolute seconds, so a saved model
//!   means the same under any `[poll]`, and a millisecond flow (a test's, a
//!   bench's compressed time) is resolved as finely as an hour-long one.
//!   Every observation first multiplies all weights by `DECAY` (half-life
//!   `HALF_LIFE` observations), so a flow that changes is followed.
//!   Serialized it is two arrays of `BINS` numbers, 2–3 KiB of JSON.
//! - **Estimate.** A Kaplan–Meier life table over the bins, the histograms
//!   first smoothed [1 2 1]/4: an ended run is at risk up to its bin and
//!   ends there; a censored one (stopped, or still running at its current
//!   age) is at risk up to its bin, half of it in its own bin. A faint
//!   log-uniform prior (`PRIOR_WEIGHT` observations in all) keeps every
//!   hazard finite and positive. Within a bin the hazard is constant. The
//!   *support* ends one bin past the last holding an observation: beyond
//!   it the estimate knows nothing.
//! - **Placement.** Poll density n(a) = c·√h(a) (the Lagrange optimum of
//!   expected lag for a given expected number of requests), clamped to
//!   [1/`interval_max`, 1/floor] with floor = `interval_initial` / 2, the
//!   smallest gap: it scales with the user's own policy and never polls
//!   faster than twice the pace the user already accepted for the first
//!   poll; past the support, 1/`interval_max`. `c` is found by bisection
//!   so that the expected requests per execution under the learned
//!   distribution equal `SPEND` (95 %) of those of the exponential schedule
//!   (interval_initial × multiplierᵏ capped at interval_max) under the same
//!   distribution, or of a budget (the region's share: its rate × the mean
//!   duration / its watches), whichever is less. Both counts stop at the
//!   support: the prior's thin tail out to 25 h would otherwise cost both
//!   schedules the same dozens of polls at interval_max and the margin
//!   would come out of the body, where the executions really end.
//!   Polls follow the density (`Schedule::next_delay`), except that where
//!   it falls by half or more at a bin edge (past a mode) and at least a
//!   quarter of a poll's worth lies between the last poll and that edge,
//!   the poll goes at the edge: within its 10 % bin a sharp mode (every
//!   run 20 s) may sit anywhere, and a poll placed by the density alone
//!   could land just before it, with the next one far past it.
//! - **Censoring.** The first runs seen ending are the short ones; counting
//!   the still-running ones as not-ended-yet removes that bias. A running
//!   watch counts with weight `1 − W/N_eff` (W: the decayed weight of ended
//!   runs, N_eff = 1/(1 − DECAY)): full weight at a cold start, none once the
//!   decayed sample is full (a full sample of recent endings is unbiased,
//!   and the running ones at full weight would outweigh it and flatten the
//!   hazard); but fully, whatever W, once it runs past the age where the
//!   ended sample alone leaves under `OVERDUE` (5 %) running: the sample
//!   has gone stale (runs got longer), and without the running ones it
//!   would think the new runs rare there and spend far too freely on them.
//! - **Cold start** (`Models::estimate`): a (flow, alias) with fewer than
//!   `MIN_OBSERVATIONS` (decayed) endings borrows the flow's other aliases in
//!   its region; if they have fewer too, all flows of the region; with no
//!   ending at all in the region, `None`.
//!
//! Cost: an estimate and its schedule take O(`BINS` × 60) arithmetic; a
//! caller polling many watches of one flow should keep the `Schedule` and
//! rebuild it when the model changes.
//!
//! Why one file of this size: the model, its estimate and the schedule it
//! places are one calculation that must agree on bins, weights and units.
//! The models by key and their cold-start fallback are `models.rs`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod models;
pub use models::{Level, ModelKey, Models};

/// Histogram bins: bin 0 is [0, 1 ms), bins 1.. are log-spaced up to 25 h
/// (10 % wide). Absolute seconds, so a saved model means the same under any
/// `[poll]` policy; from 1 ms so a millisecond flow (a test's, or a bench's
/// compressed time) is resolved as finely as an hour-long one.
pub const BINS: usize = 192;
/// The lower edge of bin 1.
const MIN_SECS: f64 = 1e-3;
/// The upper edge of the last bin; longer durations count in the last bin.
const MAX_SECS: f64 = 25.0 * 3600.0;
/// Observations after which an old one weighs half.
pub const HALF_LIFE: f64 = 30.0;
/// Below this decayed weight of endings a level borrows from the next one.
pub const MIN_OBSERVATIONS: f64 = 10.0;
/// The share of the exponential schedule's expected requests a learned one
/// aims at: a sample of a few dozen decayed runs misjudges the real count by
/// a few percent either way, and "no more requests" must hold in reality.
const SPEND: f64 = 0.95;
/// Polls counted one by one when estimating a schedule's requests; the rest
/// (a millisecond policy over 25 h) is integrated.
const MAX_WALK: usize = 4096;
/// A poll goes at a bin edge where the density falls by this factor...
const SNAP_DROP: f64 = 2.0;
/// ...when at least this share of a poll lies between the last poll and it.
const SNAP_SHARE: f64 = 0.25;
/// Pseudo-observations spread evenly over the bins.
const PRIOR_WEIGHT: f64 = 0.5;
/// A running watch counts fully as censored where the ended sample alone
/// leaves less than this share still running (see `running_weight`).
const OVERDUE: f64 = 0.05;

fn decay() -> f64 {
    0.5f64.powf(1.0 / HALF_LIFE)
}

/// The effective sample size of a full decayed histogram.
fn effective_size() -> f64 {
    1.0 / (1.0 - decay())
}

/// The log-width of bins 1..
fn ratio() -> f64 {
    (MAX_SECS / MIN_SECS).ln() / (BINS - 1) as f64
}

/// The bins' edges in seconds: `edges()[i]..edges()[i + 1]` is bin i.
fn edges() -> [f64; BINS + 1] {
    let mut e = [0.0; BINS + 1];
    for (i, edge) in e.iter_mut().enumerate().skip(1) {
        *edge = MIN_SECS * ((i - 1) as f64 * ratio()).exp();
    }
    e
}

fn bin(d: Duration) -> usize {
    let secs = d.as_secs_f64();
    if secs < MIN_SECS {
        return 0;
    }
    (1 + ((secs / MIN_SECS).ln() / ratio()).floor() as usize).min(BINS - 1)
}

/// What one (region, flow, alias) has taught: decayed histograms of ended
/// durations and of censored ages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SavedModel", into = "SavedModel")]
pub struct DurationModel {
    ended: Vec<f32>,
    censored: Vec<f32>,
}

/// The model as stored: lengths are checked on load.
#[derive(Serialize, Deserialize)]
struct SavedModel {
    ended: Vec<f32>,
    censored: Vec<f32>,
}

impl TryFrom<SavedModel> for DurationModel {
    type Error = String;
    fn try_from(saved: SavedModel) -> Result<Self, String> {
        let fine = |v: &[f32]| v.len() == BINS && v.iter().all(|w| w.is_finite() && *w >= 0.0);
        if !fine(&saved.ended) || !fine(&saved.censored) {
            return Err(format!(
                "a duration model has {BINS} non-negative weights per histogram"
            ));
        }
        Ok(DurationModel {
            ended: saved.ended,
            censored: saved.censored,
        })
    }
}

impl From<DurationModel> for SavedModel {
    fn from(m: DurationModel) -> SavedModel {
        SavedModel {
            ended: m.ended,
            censored: m.censored,
        }
    }
}

impl Default for DurationModel {
    fn default() -> Self {
        DurationModel {
            ended: vec![0.0; BINS],
            censored: vec![0.0; BINS],
        }
    }
}

impl DurationModel {
    /// Records a terminal answer: the execution took `duration`
    /// (`endedAt − startedAt`).
    pub fn observe_ended(&mut self, duration: Duration) {
        self.fade();
        self.ended[bin(duration)] += 1.0;
    }

    /// Records a watch that stopped at `age` without an end (abandoned,
    /// removed): it ran at least that long.
    pub fn observe_censored(&mut self, age: Duration) {
        self.fade();
        self.censored[bin(age)] += 1.0;
    }

    /// The decayed number of endings seen.
    pub fn weight(&self) -> f64 {
        self.ended.iter().map(|&w| f64::from(w)).sum()
    }

    /// The decayed number of watches that stopped without an end.
    pub fn stopped(&self) -> f64 {
        self.censored.iter().map(|&w| f64::from(w)).sum()
    }

    fn fade(&mut self) {
        let d = decay() as f32;
        for w in self.ended.iter_mut().chain(self.censored.iter_mut()) {
            *w *= d;
            // Keep the stored numbers short and the arrays sparse-looking.
            if *w < 1e-4 {
                *w = 0.0;
            }
        }
    }

    /// The distribution this model (alone) gives, counting the watches still
    /// running at `running` ages as censored.
    pub fn estimate(&self, running: &[Duration]) -> Estimate {
        Estimate::new(&[self], running)
    }
}

/// An estimated duration distribution: a constant hazard per bin and the
/// survival at each bin's lower edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    edges: [f64; BINS + 1],
    /// Hazard per second within bin i.
    hazard: [f64; BINS],
    /// P(duration ≥ edges[i]); `survival[BINS]` is beyond 25 h.
    survival: [f64; BINS + 1],
    /// The upper edge of the bin after the last one holding an observation
    /// (ended, stopped or running): what lies beyond is the prior alone.
    support: f64,
}

impl Estimate {
    /// Pools `models` (summed histograms), adds the running watches as
    /// censored (see `running_weight`) and runs the life table.
    fn new(models: &[&DurationModel], running: &[Duration]) -> Estimate {
        let mut ended = [0.0f64; BINS];
        let mut censored = [0.0f64; BINS];
        for m in models {
            for i in 0..BINS {
                ended[i] += f64::from(m.ended[i]);
                censored[i] += f64::from(m.censored[i]);
            }
        }
        if !running.is_empty() {
            let alone = Estimate::life_table(&ended, &censored);
            let weight: f64 = ended.iter().sum();
            for &age in running {
                censored[bin(age)] += running_weight(weight, alone.survival(age));
            }
        }
        Estimate::life_table(&ended, &censored)
    }

    fn life_table(ended: &[f64; BINS], censored: &[f64; BINS]) -> Estimate {
        let edges = edges();
        // Smooth both histograms with a [1 2 1]/4 kernel: a few dozen
        // samples in ~10 bins are noisy, and a neighbouring bin is only 10 %
        // away. (Smoothing the hazard instead would turn a bin where all
        // end, q ≈ 1, into a hazard so steep that a quarter of it ends
        // everyone in the bin before: the estimate would then think few
        // reach the real ending and spend its polls far too freely there.)
        let smooth = |h: &[f64; BINS]| -> [f64; BINS] {
            std::array::from_fn(|i| {
                let left = if i > 0 { h[i - 1] } else { h[i] };
                let right = if i + 1 < BINS { h[i + 1] } else { h[i] };
                0.25 * left + 0.5 * h[i] + 0.25 * right
            })
        };
        let mut deaths = smooth(ended);
        let gone = smooth(censored);
        for d in deaths.iter_mut() {
            *d += PRIOR_WEIGHT / BINS as f64;
        }
        let mut hazard = [0.0f64; BINS];
        let mut survival = [1.0f64; BINS + 1];
        let mut at_risk: f64 = deaths.iter().sum::<f64>() + gone.iter().sum::<f64>();
        for i in 0..BINS {
            let n = at_risk - gone[i] / 2.0;
            // The prior keeps n ≥ deaths[i] > 0.
            let q = (deaths[i] / n).min(1.0 - 1e-9);
            hazard[i] = -(1.0 - q).ln() / (edges[i + 1] - edges[i]);
            survival[i + 1] = survival[i] * (1.0 - q);
            at_risk -= deaths[i] + gone[i];
        }
        let last = (0..BINS).rev().find(|&i| ended[i] + censored[i] > 0.0);
        Estimate {
            edges,
            hazard,
            survival,
            // One bin more: the smoothing spreads the last bin there.
            support: last.map_or(MAX_SECS, |i| edges[(i + 2).min(BINS)]),
        }
    }

    /// P(duration > `age`).
    pub fn survival(&self, age: Duration) -> f64 {
        let a = age.as_secs_f64().min(MAX_SECS);
        let i = bin(age);
        self.survival[i] * (-self.hazard[i] * (a - self.edges[i]).max(0.0)).exp()
    }

    /// The survival that requests are counted against: zero past the
    /// support. The prior's thin tail reaches 25 h; counted, it would cost
    /// both schedules the same dozens of polls at `interval_max` (most of
    /// the total at a short policy), and the learned one's margin would come
    /// out of where the executions really end.
    fn alive(&self, at: f64) -> f64 {
        if at >= self.support {
            return 0.0;
        }
        self.survival(Duration::from_secs_f64(at))
    }

    /// ∫ S(a) da over bin `i` from `from`, within the support.
    fn mass(&self, i: usize, from: f64) -> f64 {
        let start = from.max(self.edges[i]);
        let width = (self.edges[i + 1].min(self.support) - start).max(0.0);
        if width == 0.0 {
            return 0.0;
        }
        let alive = self.survival(Duration::from_secs_f64(start));
        let h = self.hazard[i];
        if h * width > 1e-12 {
            alive * (1.0 - (-h * width).exp()) / h
        } else {
            alive * width
        }
    }

    /// The age below which half the executions end.
    pub fn median(&self) -> Duration {
        let i = (0..BINS)
            .find(|&i| self.survival[i + 1] <= 0.5)
            .unwrap_or(BINS - 1);
        let into = (self.survival[i] / 0.5).ln() / self.hazard[i];
        Duration::from_secs_f64((self.edges[i] + into).clamp(0.0, MAX_SECS))
    }

    /// The expected duration, within the support (seconds).
    pub fn mean_secs(&self) -> f64 {
        (0..BINS).map(|i| self.mass(i, 0.0)).sum()
    }

    /// The requests per execution a region affords: `rate` requests per
    /// second shared by `watches` watches, each watched about as long as an
    /// execution takes here.
    pub fn share(&self, rate: f64, watches: usize) -> f64 {
        rate * self.mean_secs() / watches.max(1) as f64
    }

    /// Expected requests per execution of `policy`'s exponential schedule
    /// under this distribution: a poll at age 0, then one at each
    /// interval_initial × multiplierᵏ (capped at interval_max) step while the
    /// execution has not ended by the previous poll.
    pub fn exponential_requests(&self, policy: &Exponential) -> f64 {
        let mut requests = 1.0;
        let mut at = 0.0;
        let mut gap = policy.initial.as_secs_f64().max(1e-3);
        let max = policy.max.as_secs_f64().max(1e-3);
        for _ in 0..MAX_WALK {
            let alive = self.alive(at);
            if alive < 1e-9 {
                return requests;
            }
            requests += alive;
            at += gap.min(max);
            gap = (gap * policy.multiplier).min(max);
        }
        requests + self.rest(at, |_| 1.0 / max)
    }

    /// The expected polls after a walk stopped at `at`, at `density` per
    /// second: Σ S(tₖ) ≈ ∫ n·S da + S(at)/2.
    fn rest(&self, at: f64, density: impl Fn(usize) -> f64) -> f64 {
        let from = at.min(MAX_SECS);
        let mut sum = 0.5 * self.alive(from);
        for i in bin(Duration::from_secs_f64(from))..BINS {
            sum += density(i) * self.mass(i, from);
        }
        sum
    }

    /// The learned schedule: poll density ∝ √hazard, spending `SPEND` of the
    /// exponential schedule's expected requests, or `budget` (requests per
    /// execution), whichever is less.
    pub fn schedule(&self, policy: &Exponential, budget: Option<f64>) -> Schedule {
        let exponential = self.exponential_requests(policy);
        let target = SPEND * budget.map_or(exponential, |b| exponential.min(b));
        let floor = policy.floor().as_secs_f64();
        let max = policy.max.as_secs_f64().max(floor);
        let root: Vec<f64> = self.hazard.iter().map(|h| h.sqrt()).collect();
        // Past the support nothing was seen: the prior's hazard there says
        // nothing either, so poll at interval_max, as the exponential
        // schedule does by then.
        let density = |c: f64, i: usize| {
            if self.edges[i] >= self.support {
                return 1.0 / max;
            }
            (c * root[i]).clamp(1.0 / max, 1.0 / floor)
        };
        let masses: Vec<f64> = (0..BINS).map(|i| self.mass(i, 0.0)).collect();
        // Expected requests ≈ offset + ∫ n(a) S(a) da: roughly the poll at
        // age 0 and the one that sees the end, less half a gap; the offset is
        // then corrected against the exact count of the schedule found.
        let integral = |c: f64| (0..BINS).map(|i| density(c, i) * masses[i]).sum::<f64>();
        let build = |c: f64| Schedule {
            edges: self.edges,
            density: std::array::from_fn(|i| density(c, i)),
            floor: policy.floor(),
            max: policy.max.max(policy.floor()),
        };
        let mut offset = 1.5;
        let mut best = build(0.0);
        for _ in 0..4 {
            let (mut lo, mut hi) = (1e-9f64, 1e9f64);
            for _ in 0..60 {
                let mid = (lo * hi).sqrt();
                if offset + integral(mid) > target {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            best = build(lo);
            let exact = self.requests(&best);
            let predicted = offset + integral(lo);
            // Close enough either way: under by 1 % leaves little unspent.
            if exact <= target * 1.001 && exact >= target * 0.99 {
                break;
            }
            offset += exact - predicted;
        }
        best
    }

    /// Expected requests per execution of `schedule`: a poll at age 0, then
    /// each next one while the execution has not ended by the previous one.
    fn requests(&self, schedule: &Schedule) -> f64 {
        let mut requests = 1.0;
        let mut at = Duration::ZERO;
        for _ in 0..MAX_WALK {
            let alive = self.alive(at.as_secs_f64());
            if alive < 1e-9 {
                return requests;
            }
            requests += alive;
            at += schedule.next_delay(at);
        }
        requests + self.rest(at.as_secs_f64(), |i| schedule.density[i])
    }
}

/// The censored weight of a watch still running at an age where the ended
/// sample alone leaves `survival`. A cold start (little `ended` weight)
/// counts every running watch fully: the first endings are the short ones.
/// A full sample of recent endings is unbiased on its own, and the running
/// ones at full weight would outweigh it and flatten the hazard; but a
/// watch running where that sample says almost nothing runs is evidence it
/// has gone stale (a flow whose runs got longer), and counts fully: without
/// it the stale sample would think the new runs rare past its old ages and
/// spend many times its budget polling them there.
fn running_weight(ended: f64, survival: f64) -> f64 {
    let cold = (1.0 - ended / effective_size()).max(0.0);
    let overdue = (1.0 - survival / OVERDUE).clamp(0.0, 1.0);
    cold.max(overdue)
}

/// The exponential policy a learned schedule is measured against (the
/// contract's `[poll]` interval_initial, multiplier, interval_max).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exponential {
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
}

impl Exponential {
    /// The policy of a `[poll]` section; a multiplier below 1 counts as 1.
    pub fn from_settings(settings: &crate::config::PollSettings) -> Exponential {
        Exponential {
            initial: settings.interval_initial,
            multiplier: settings.multiplier.max(1.0),
            max: settings.interval_max,
        }
    }

    /// The smallest gap a learned schedule leaves: interval_initial / 2,
    /// at least 1 ms, at most interval_max.
    pub fn floor(&self) -> Duration {
        (self.initial / 2)
            .max(Duration::from_millis(1))
            .min(self.max.max(Duration::from_millis(1)))
    }
}

/// Poll density per bin, ready to place polls.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    edges: [f64; BINS + 1],
    /// Polls per second within bin i, already clamped.
    density: [f64; BINS],
    floor: Duration,
    max: Duration,
}

impl Schedule {
    /// How long to wait after a poll at `age` (the execution's age: now −
    /// startedAt): the gap that spends one poll's worth of density, within
    /// [floor, interval_max].
    pub fn next_delay(&self, age: Duration) -> Duration {
        let mut at = age.as_secs_f64();
        let mut left = 1.0;
        let mut i = bin(age);
        while i < BINS {
            let end = self.edges[i + 1];
            let room = (end - at).max(0.0) * self.density[i];
            if room >= left {
                at += left / self.density[i];
                left = 0.0;
                break;
            }
            left -= room;
            at = end.max(at);
            // Past a mode, poll at the edge where the density falls off
            // (see the module comment).
            if i + 1 < BINS
                && self.density[i + 1] * SNAP_DROP < self.density[i]
                && 1.0 - left >= SNAP_SHARE
            {
                left = 0.0;
                break;
            }
            i += 1;
        }
        if left > 0.0 {
            return self.max;
        }
        Duration::from_secs_f64((at - age.as_secs_f64()).max(0.0)).clamp(self.floor, self.max)
    }
}

#[cfg(test)]
mod tests;
