//! The simulator's clock. State is computed lazily from timestamps on every read, so "time
//! passing" is only this clock moving: real time (optionally sped up) for demos, or a manual
//! clock that only the admin API advances, for deterministic tests.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// Wall-clock time multiplied by `speed`.
    #[default]
    Real,
    /// Frozen until `POST /_sim/clock/advance`.
    Manual,
}

/// How long each asynchronous transition takes, in simulated milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Durations {
    /// COPYING → VALIDATING (or COPY_FAILED).
    pub copying_ms: u64,
    /// VALIDATING → AVAILABLE (or VALIDATION_FAILED).
    pub validating_ms: u64,
    /// ASSOCIATING → ACTIVE (or ASSOCIATION_FAILED).
    pub associating_ms: u64,
    /// DISSOCIATING → association gone.
    pub dissociating_ms: u64,
    /// DELETING → package gone.
    pub deleting_ms: u64,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            copying_ms: 2000,
            validating_ms: 1000,
            associating_ms: 3000,
            dissociating_ms: 2000,
            deleting_ms: 1000,
        }
    }
}

impl Durations {
    /// Every transition immediate (still computed through the same code path).
    pub fn instant() -> Self {
        Durations {
            copying_ms: 0,
            validating_ms: 0,
            associating_ms: 0,
            dissociating_ms: 0,
            deleting_ms: 0,
        }
    }
}

/// What `GET /_sim/clock` shows and `PUT /_sim/clock` accepts (every member optional on PUT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClockSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ClockMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durations: Option<Durations>,
    /// Read-only: simulated epoch milliseconds now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_epoch_ms: Option<u64>,
    /// Read-only: simulated milliseconds since the simulator started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Clock {
    mode: ClockMode,
    speed: f64,
    /// Simulated epoch ms at `anchor_real`; re-anchored on every mode/speed change so that
    /// simulated time never jumps backwards.
    anchor_sim_ms: f64,
    anchor_real: Instant,
    start_sim_ms: u64,
    pub durations: Durations,
}

impl Clock {
    pub fn new(mode: ClockMode, speed: f64, durations: Durations) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            mode,
            speed: sane_speed(speed),
            anchor_sim_ms: now as f64,
            anchor_real: Instant::now(),
            start_sim_ms: now,
            durations,
        }
    }

    /// Simulated epoch milliseconds.
    pub fn now_ms(&self) -> u64 {
        match self.mode {
            ClockMode::Manual => self.anchor_sim_ms as u64,
            ClockMode::Real => {
                let real = self.anchor_real.elapsed().as_secs_f64() * 1000.0;
                (self.anchor_sim_ms + real * self.speed) as u64
            }
        }
    }

    /// Milliseconds on the simulated clock since the simulator started.
    pub fn elapsed_ms(&self, at_ms: u64) -> u64 {
        at_ms.saturating_sub(self.start_sim_ms)
    }

    fn reanchor(&mut self) {
        self.anchor_sim_ms = self.now_ms() as f64;
        self.anchor_real = Instant::now();
    }

    pub fn advance(&mut self, ms: u64) {
        self.reanchor();
        self.anchor_sim_ms += ms as f64;
    }

    pub fn apply(&mut self, settings: &ClockSettings) {
        self.reanchor();
        if let Some(mode) = settings.mode {
            self.mode = mode;
        }
        if let Some(speed) = settings.speed {
            self.speed = sane_speed(speed);
        }
        if let Some(durations) = settings.durations {
            self.durations = durations;
        }
    }

    pub fn settings(&self) -> ClockSettings {
        let now = self.now_ms();
        ClockSettings {
            mode: Some(self.mode),
            speed: Some(self.speed),
            durations: Some(self.durations),
            now_epoch_ms: Some(now),
            elapsed_ms: Some(self.elapsed_ms(now)),
        }
    }
}

fn sane_speed(speed: f64) -> f64 {
    if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let mut clock = Clock::new(ClockMode::Manual, 1.0, Durations::default());
        let t0 = clock.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(clock.now_ms(), t0);
        clock.advance(1500);
        assert_eq!(clock.now_ms(), t0 + 1500);
        assert_eq!(clock.elapsed_ms(clock.now_ms()), 1500);
    }

    #[test]
    fn switching_mode_never_goes_back() {
        let mut clock = Clock::new(ClockMode::Real, 1000.0, Durations::default());
        std::thread::sleep(std::time::Duration::from_millis(5));
        let before = clock.now_ms();
        clock.apply(&ClockSettings {
            mode: Some(ClockMode::Manual),
            ..Default::default()
        });
        assert!(clock.now_ms() >= before);
    }
}
