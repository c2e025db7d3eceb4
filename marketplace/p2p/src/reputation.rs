//! Peer reputation: success rate, latency, availability and recency, updated by every real
//! retrieval, and by every invalid record or message a peer sends.
//!
//! The score is in [0, 1]. Unknown peers start neutral (0.5 priors on every factor), so a
//! new peer is tried before one that has failed, and after one that has served well. A peer whose
//! score falls below the floor, once there is enough evidence to judge it, is banned for a while:
//! disconnected, and its records and messages dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// What one interaction with a peer came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served what was asked, correctly.
    Success,
    /// Answered, but with nothing useful (for example "not found").
    Empty,
    /// Answered with data that failed verification (wrong content id, bad signature, stranger key).
    Invalid,
    /// Did not answer within the timeout, or the connection failed.
    Unavailable,
}

#[derive(Debug, Clone)]
pub struct ReputationConfig {
    /// Weight of the newest latency sample in the moving average.
    pub latency_alpha: f64,
    /// Latency at which the latency score is one half.
    pub latency_reference: Duration,
    /// Age at which the recency score falls to 1/e.
    pub recency_horizon: Duration,
    /// Below this score (with at least `min_observations`) a peer is banned.
    pub floor: f64,
    pub min_observations: u32,
    /// How long a ban lasts; afterwards the peer starts again from neutral.
    pub ban_duration: Duration,
    /// Most peers tracked; the least recently seen are forgotten first.
    pub max_peers: usize,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            latency_alpha: 0.3,
            latency_reference: Duration::from_millis(200),
            recency_horizon: Duration::from_secs(600),
            floor: 0.15,
            min_observations: 4,
            ban_duration: Duration::from_secs(600),
            max_peers: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PeerRecord {
    pub successes: u32,
    pub invalid: u32,
    pub empty: u32,
    pub unavailable: u32,
    /// Exponentially weighted moving average of answer latency, in milliseconds.
    pub latency_ewma_ms: Option<f64>,
    pub last_seen: Instant,
}

impl PeerRecord {
    fn new(now: Instant) -> PeerRecord {
        PeerRecord {
            successes: 0,
            invalid: 0,
            empty: 0,
            unavailable: 0,
            latency_ewma_ms: None,
            last_seen: now,
        }
    }

    pub fn observations(&self) -> u32 {
        self.successes + self.invalid + self.empty + self.unavailable
    }
}

#[derive(Debug)]
pub struct Reputation {
    config: ReputationConfig,
    peers: HashMap<PeerId, PeerRecord>,
    banned: HashMap<PeerId, Instant>,
}

impl Reputation {
    pub fn new(config: ReputationConfig) -> Reputation {
        Reputation {
            config,
            peers: HashMap::new(),
            banned: HashMap::new(),
        }
    }

    pub fn config(&self) -> &ReputationConfig {
        &self.config
    }

    /// Records an interaction; returns true when it pushed the peer below the floor (now banned).
    pub fn record(&mut self, peer: PeerId, outcome: Outcome, latency: Option<Duration>) -> bool {
        self.record_at(peer, outcome, latency, Instant::now())
    }

    pub fn record_at(
        &mut self,
        peer: PeerId,
        outcome: Outcome,
        latency: Option<Duration>,
        now: Instant,
    ) -> bool {
        if self.peers.len() >= self.config.max_peers && !self.peers.contains_key(&peer) {
            self.evict_oldest();
        }
        let alpha = self.config.latency_alpha;
        let rec = self
            .peers
            .entry(peer)
            .or_insert_with(|| PeerRecord::new(now));
        match outcome {
            Outcome::Success => rec.successes += 1,
            // Serving forged data is worse than not answering: it costs a verification and a retry,
            // and it is deliberate, so it counts three times.
            Outcome::Invalid => rec.invalid += 3,
            Outcome::Empty => rec.empty += 1,
            Outcome::Unavailable => rec.unavailable += 1,
        }
        if let Some(l) = latency {
            let ms = l.as_secs_f64() * 1e3;
            rec.latency_ewma_ms = Some(match rec.latency_ewma_ms {
                Some(prev) => alpha * ms + (1.0 - alpha) * prev,
                None => ms,
            });
        }
        rec.last_seen = now;
        let obs = rec.observations();
        let score = self.score_at(&peer, now);
        if obs >= self.config.min_observations
            && score < self.config.floor
            && !self.banned.contains_key(&peer)
        {
            self.banned.insert(peer, now + self.config.ban_duration);
            return true;
        }
        false
    }

    fn evict_oldest(&mut self) {
        if let Some(oldest) = self
            .peers
            .iter()
            .min_by_key(|(_, r)| r.last_seen)
            .map(|(p, _)| *p)
        {
            self.peers.remove(&oldest);
        }
    }

    pub fn get(&self, peer: &PeerId) -> Option<&PeerRecord> {
        self.peers.get(peer)
    }

    pub fn score(&self, peer: &PeerId) -> f64 {
        self.score_at(peer, Instant::now())
    }

    /// `success × (0.5 + 0.25 availability + 0.25 latency) × (0.75 + 0.25 recency)`, each factor in
    /// [0, 1]. Success multiplies everything: a peer that answers fast with forged data is worth
    /// nothing. Rates use a Laplace prior (one success and one failure assumed), so a single
    /// observation moves the score without deciding it. Forged answers count as unavailable too.
    pub fn score_at(&self, peer: &PeerId, now: Instant) -> f64 {
        let Some(r) = self.peers.get(peer) else {
            return 0.5 * (0.5 + 0.25 * 0.5 + 0.25 * 0.5) * (0.75 + 0.25 * 0.5);
        };
        let n = f64::from(r.observations());
        let success = (f64::from(r.successes) + 1.0) / (n + 2.0);
        let answered = f64::from(r.successes + r.empty);
        let availability = (answered + 1.0) / (n + 2.0);
        let latency = match r.latency_ewma_ms {
            Some(ms) => {
                let reference = self.config.latency_reference.as_secs_f64() * 1e3;
                reference / (reference + ms)
            }
            None => 0.5,
        };
        let age = now.saturating_duration_since(r.last_seen).as_secs_f64();
        let recency = (-age / self.config.recency_horizon.as_secs_f64().max(1e-9)).exp();
        success * (0.5 + 0.25 * availability + 0.25 * latency) * (0.75 + 0.25 * recency)
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned
            .get(peer)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Lifts expired bans; the peer starts again from neutral.
    pub fn expire_bans(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, u)| **u <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.banned.remove(&p);
            self.peers.remove(&p);
        }
    }

    /// `peers` ordered best first (banned peers removed); ties keep their input order.
    pub fn rank(&self, peers: impl IntoIterator<Item = PeerId>) -> Vec<PeerId> {
        let now = Instant::now();
        let mut scored: Vec<(f64, PeerId)> = peers
            .into_iter()
            .filter(|p| !self.is_banned(p))
            .map(|p| (self.score_at(&p, now), p))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_peers_rank_first_and_bad_ones_are_banned() {
        let mut rep = Reputation::new(ReputationConfig::default());
        let (good, bad, new) = (PeerId::random(), PeerId::random(), PeerId::random());
        for _ in 0..3 {
            rep.record(good, Outcome::Success, Some(Duration::from_millis(5)));
        }
        assert!(!rep.record(bad, Outcome::Invalid, None));
        assert!(rep.score(&bad) < rep.score(&new));
        assert!(rep.score(&good) > rep.score(&new));
        assert_eq!(rep.rank([bad, new, good]), vec![good, new, bad]);
        // Enough evidence of forgery crosses the floor.
        let mut banned = false;
        for _ in 0..3 {
            banned |= rep.record(bad, Outcome::Invalid, None);
        }
        assert!(banned && rep.is_banned(&bad));
        assert_eq!(rep.rank([bad, good]), vec![good]);
    }

    #[test]
    fn slow_peers_score_below_fast_ones() {
        let mut rep = Reputation::new(ReputationConfig::default());
        let (fast, slow) = (PeerId::random(), PeerId::random());
        rep.record(fast, Outcome::Success, Some(Duration::from_millis(2)));
        rep.record(slow, Outcome::Success, Some(Duration::from_secs(2)));
        assert!(rep.score(&fast) > rep.score(&slow));
    }
}
