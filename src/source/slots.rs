//! When each followed object's source is checked: every object gets a fixed slot in the check
//! interval, derived from its UID, so a thousand followed objects are checked evenly over the
//! interval instead of together, and a restarted operator (or the next leader) keeps the
//! same slots. Slots are on the wall clock for that reason.

use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// The object's offset into every interval, in milliseconds: uniform over the interval.
pub fn phase(uid: &str, interval: Duration) -> u64 {
    let interval_ms = interval_ms(interval);
    let hash = Sha256::digest(uid.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first) % interval_ms
}

/// The object's first slot strictly after `now_ms` (milliseconds since the Unix epoch).
pub fn next_slot(uid: &str, interval: Duration, now_ms: u64) -> u64 {
    let interval_ms = interval_ms(interval);
    let phase = phase(uid, interval);
    // The last slot at or before now, then one interval on.
    let since_phase = now_ms.saturating_sub(phase);
    let last = phase + since_phase / interval_ms * interval_ms;
    if last > now_ms {
        last
    } else {
        last + interval_ms
    }
}

fn interval_ms(interval: Duration) -> u64 {
    u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    fn uid(n: usize) -> String {
        format!("5f0c6a8e-{n:04x}-4c1e-9a52-{n:012x}")
    }

    #[test]
    fn slots_come_one_interval_apart_and_never_early() {
        let now = 1_800_000_000_000;
        for n in 0..200 {
            let first = next_slot(&uid(n), FIVE_MINUTES, now);
            assert!(first > now && first <= now + 300_000, "{n}: {first}");
            // Asked again at the slot (or just after), the next one is a full interval later.
            assert_eq!(next_slot(&uid(n), FIVE_MINUTES, first), first + 300_000);
            assert_eq!(next_slot(&uid(n), FIVE_MINUTES, first + 1), first + 300_000);
            assert_eq!(next_slot(&uid(n), FIVE_MINUTES, first - 1), first);
        }
    }

    #[test]
    fn a_thousand_objects_spread_over_the_interval() {
        let now = 1_800_000_000_000;
        // Checks per 10-second window of the interval: 1000 objects over 30 windows is
        // about 33 each; all together in one window would be 1000.
        let mut windows = [0u32; 30];
        for n in 0..1000 {
            let offset = next_slot(&uid(n), FIVE_MINUTES, now) - now - 1;
            windows[usize::try_from(offset / 10_000).expect("small")] += 1;
        }
        let busiest = windows.iter().max().copied().unwrap_or_default();
        let quietest = windows.iter().min().copied().unwrap_or_default();
        assert!(busiest <= 60, "{windows:?}");
        assert!(quietest >= 10, "{windows:?}");
    }

    #[test]
    fn the_slot_is_the_same_for_every_replica_and_restart() {
        assert_eq!(phase(&uid(7), FIVE_MINUTES), phase(&uid(7), FIVE_MINUTES));
        assert_ne!(phase(&uid(7), FIVE_MINUTES), phase(&uid(8), FIVE_MINUTES));
        assert!(phase(&uid(7), Duration::from_millis(1)) == 0);
    }
}
