//! Which executions discovery has already seen and let go of (issue 9:
//! "memory must not grow with the daemon's age"). Once a discovered watch's
//! terminal transition and details are out, the daemon drops the watch and
//! keeps only a `Record` here, so the next walk does not rediscover it.
//!
//! In: an execution ARN and its creation time. Out: `contains`. A record is a
//! 16-byte hash of the ARN and the creation time in whole seconds: 24 bytes,
//! held in a sorted `Vec` (plus a small unsorted tail of recent inserts), so
//! memory is about 24–27 bytes per record with no per-entry overhead.
//! Records fall away once they are before `since` or past the service's
//! 90-day retention (`prune`): a flow running 1,000 executions a day holds
//! at most ~90,000 records, about 2.4 MB.
//!
//! A table's set is a `SharedSeen`: its walk and the state writer hold the
//! same one, so `[state]` saves the records without a second copy in memory.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// How long the service keeps terminal executions: older ones are never
/// listed again, so their records can go.
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Inserts collected unsorted before they are merged into the sorted part:
/// a lookup scans at most this many (6 KB), a merge happens once per this many.
const RECENT_CAP: usize = 256;

const RECORD_BYTES: usize = 24;

/// One table's records, held by its walk and by the state writer (which
/// locks it only to copy it out for a write).
pub type SharedSeen = Arc<Mutex<SeenSet>>;

/// One execution seen: a hash of its ARN and when it was created.
/// Ordered by key, then creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Record {
    key: [u8; 16],
    /// Seconds since the Unix epoch (negative before it), rounded down.
    created_at: i64,
}

impl Record {
    /// The record of the execution `execution_arn` created at `created_at`.
    /// The same ARN created at another second is another execution.
    pub fn new(execution_arn: &str, created_at: SystemTime) -> Record {
        let digest = Sha256::digest(execution_arn.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Record {
            key,
            created_at: unix_secs(created_at),
        }
    }

    fn to_bytes(self) -> [u8; RECORD_BYTES] {
        let mut out = [0u8; RECORD_BYTES];
        out[..16].copy_from_slice(&self.key);
        out[16..].copy_from_slice(&self.created_at.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Record {
        let mut key = [0u8; 16];
        key.copy_from_slice(&bytes[..16]);
        let mut secs = [0u8; 8];
        secs.copy_from_slice(&bytes[16..RECORD_BYTES]);
        Record {
            key,
            created_at: i64::from_be_bytes(secs),
        }
    }
}

/// Whole seconds since the epoch, rounded down (so 0.5 s before it is -1).
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let before = e.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            if before.subsec_nanos() > 0 {
                whole.saturating_neg().saturating_sub(1)
            } else {
                whole.saturating_neg()
            }
        }
    }
}

/// The records of one `[[watch_flow]]` table. Serializes for `[state]` as
/// one base64 string of 24-byte records (32 characters each).
#[derive(Clone, Default)]
pub struct SeenSet {
    /// Sorted, no duplicates.
    sorted: Vec<Record>,
    /// Recent inserts, unsorted, at most `RECENT_CAP`; none is in `sorted`.
    recent: Vec<Record>,
}

impl SeenSet {
    pub fn new() -> SeenSet {
        SeenSet::default()
    }

    /// Remembers the execution; `false` if it was already there.
    pub fn insert(&mut self, execution_arn: &str, created_at: SystemTime) -> bool {
        let record = Record::new(execution_arn, created_at);
        if self.has(&record) {
            return false;
        }
        if self.recent.len() >= RECENT_CAP {
            self.merge();
        }
        if self.recent.capacity() == 0 {
            self.recent.reserve_exact(RECENT_CAP);
        }
        self.recent.push(record);
        true
    }

    pub fn contains(&self, execution_arn: &str, created_at: SystemTime) -> bool {
        self.has(&Record::new(execution_arn, created_at))
    }

    /// Drops every record created before `before` (in whole seconds, so a
    /// record in the same second as `before` stays: keeping one too many is
    /// harmless, forgetting one would rediscover it). Returns how many went.
    pub fn prune(&mut self, before: SystemTime) -> usize {
        let cut = unix_secs(before);
        let len = self.len();
        self.sorted.retain(|r| r.created_at >= cut);
        self.recent.retain(|r| r.created_at >= cut);
        // Give memory back after a large prune; keep an eighth for growth.
        let keep = self.sorted.len() + self.sorted.len() / 8;
        if self.sorted.capacity() > keep + RECENT_CAP {
            self.sorted.shrink_to(keep);
        }
        len - self.len()
    }

    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held, for the memory bound and its test.
    pub fn heap_bytes(&self) -> usize {
        (self.sorted.capacity() + self.recent.capacity()) * size_of::<Record>()
    }

    /// Every record, sorted.
    fn records(&self) -> Vec<Record> {
        let mut all: Vec<Record> = self.sorted.iter().chain(&self.recent).copied().collect();
        all.sort_unstable();
        all
    }

    fn has(&self, record: &Record) -> bool {
        self.sorted.binary_search(record).is_ok() || self.recent.contains(record)
    }

    /// Moves the recent inserts into the sorted part: one backward merge in
    /// place, growing by an eighth at most so capacity stays near the length
    /// (at most 27 bytes a record).
    fn merge(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        self.recent.sort_unstable();
        let (old, add) = (self.sorted.len(), self.recent.len());
        let needed = old + add;
        if self.sorted.capacity() < needed {
            self.sorted.reserve_exact(add + needed / 8);
        }
        self.sorted.resize(needed, Record::default());
        let (mut i, mut j, mut k) = (old, add, needed);
        while j > 0 {
            if i > 0 && self.sorted[i - 1] > self.recent[j - 1] {
                self.sorted[k - 1] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k - 1] = self.recent[j - 1];
                j -= 1;
            }
            k -= 1;
        }
        self.recent.clear();
    }
}

/// Equal when they hold the same records, however they were inserted.
impl PartialEq for SeenSet {
    fn eq(&self, other: &SeenSet) -> bool {
        self.len() == other.len() && self.records() == other.records()
    }
}

impl Eq for SeenSet {}

impl fmt::Debug for SeenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeenSet").field("len", &self.len()).finish()
    }
}

impl Serialize for SeenSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(self.len() * RECORD_BYTES);
        for r in self.sorted.iter().chain(&self.recent) {
            bytes.extend_from_slice(&r.to_bytes());
        }
        serializer.serialize_str(&aws_smithy_types::base64::encode(bytes))
    }
}

impl<'de> Deserialize<'de> for SeenSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SeenSet, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = aws_smithy_types::base64::decode(&text)
            .map_err(|e| de::Error::custom(format!("seen records are not base64: {e}")))?;
        if bytes.len() % RECORD_BYTES != 0 {
            return Err(de::Error::custom(format!(
                "seen records: {} bytes is not a whole number of {RECORD_BYTES}-byte records",
                bytes.len()
            )));
        }
        let mut sorted: Vec<Record> = bytes
            .chunks_exact(RECORD_BYTES)
            .map(Record::from_bytes)
            .collect();
        // The file may have been written unmerged or edited: sort it here.
        sorted.sort_unstable();
        sorted.dedup();
        sorted.shrink_to_fit();
        Ok(SeenSet {
            sorted,
            recent: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn arn(n: usize) -> String {
        format!(
            "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-{n:06}"
        )
    }

    #[test]
    fn an_inserted_execution_is_contained_and_a_second_insert_says_so() {
        let mut seen = SeenSet::new();
        assert!(!seen.contains(&arn(1), at(1_000)));
        assert!(seen.insert(&arn(1), at(1_000)));
        assert!(seen.contains(&arn(1), at(1_000)));
        assert!(!seen.insert(&arn(1), at(1_000)));
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn the_same_arn_created_at_another_time_is_another_execution() {
        let mut seen = SeenSet::new();
        seen.insert(&arn(1), at(1_000));
        assert!(!seen.contains(&arn(1), at(1_001)));
        // Within one second it is the same record: the key is whole seconds.
        assert!(seen.contains(&arn(1), at(1_000) + Duration::from_millis(999)));
    }

    #[test]
    fn lookups_find_records_across_many_merges() {
        let mut seen = SeenSet::new();
        // Inserted out of order, so merges interleave with what is there.
        let order: Vec<usize> = (0..3_000).map(|i| (i * 7_919) % 3_000).collect();
        for &n in &order {
            assert!(seen.insert(&arn(n), at(n as u64)), "insert {n}");
        }
        assert_eq!(seen.len(), 3_000);
        for n in 0..3_000 {
            assert!(seen.contains(&arn(n), at(n as u64)), "lost {n}");
            assert!(!seen.insert(&arn(n), at(n as u64)), "duplicate {n}");
        }
        assert!(!seen.contains(&arn(3_000), at(3_000)));
        assert!(seen.sorted.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn prune_drops_records_created_before_the_cut_and_keeps_the_rest() {
        let mut seen = SeenSet::new();
        for n in 0..1_000 {
            seen.insert(&arn(n), at(10_000 + n as u64));
        }
        // Half merged, half still recent: both parts are pruned.
        assert_eq!(seen.prune(at(10_500) + Duration::from_millis(400)), 500);
        assert_eq!(seen.len(), 500);
        assert!(!seen.contains(&arn(499), at(10_499)));
        assert!(seen.contains(&arn(500), at(10_500)), "same second stays");
        assert!(seen.contains(&arn(999), at(10_999)));
    }

    #[test]
    fn a_record_takes_24_bytes_and_a_large_set_at_most_27_per_record() {
        assert_eq!(size_of::<Record>(), 24);
        let mut seen = SeenSet::new();
        let n = 30_000; // a month at 1,000 executions a day
        for i in 0..n {
            seen.insert(&arn(i), at(i as u64));
        }
        // 24 bytes and at most an eighth of slack, plus the recent inserts'
        // fixed buffer.
        let per_record = seen.heap_bytes() as f64 / n as f64;
        let bound = |len: usize| 27.0 + (RECENT_CAP * 24) as f64 / len as f64;
        assert!(per_record <= bound(n), "{per_record} bytes per record");
        // And after dropping most of them, the memory goes back too.
        seen.prune(at(80_000));
        let per_record = seen.heap_bytes() as f64 / seen.len() as f64;
        assert!(
            per_record <= bound(seen.len()),
            "{per_record} bytes per record after prune"
        );
    }

    #[test]
    fn it_round_trips_through_json_as_one_compact_string() {
        let mut seen = SeenSet::new();
        for n in 0..300 {
            seen.insert(&arn(n), at(1_700_000_000 + n as u64));
        }
        let json = serde_json::to_string(&seen).unwrap();
        // base64 of 24 bytes is 32 characters, plus the two quotes.
        assert_eq!(json.len(), 300 * 32 + 2);
        let back: SeenSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), 300);
        for n in 0..300 {
            assert!(back.contains(&arn(n), at(1_700_000_000 + n as u64)));
        }
    }

    #[test]
    fn a_damaged_record_string_is_an_error_not_a_panic() {
        let err = serde_json::from_str::<SeenSet>("\"AAAA\"").unwrap_err();
        assert!(err.to_string().contains("24-byte records"), "{err}");
        assert!(serde_json::from_str::<SeenSet>("\"not base64!\"").is_err());
    }

    #[test]
    fn times_before_the_epoch_round_down() {
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(500)), -1);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(2)), -2);
        assert_eq!(unix_secs(at(5) + Duration::from_millis(999)), 5);
    }
}
