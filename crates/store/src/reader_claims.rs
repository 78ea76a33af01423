//! The port of exclusive partition readers (Event Hubs' epoch receivers): who holds each
//! consumer group's partition, with what epoch, until when. A claim is a compare-and-swap in
//! the store, so of readers claiming together on any nodes the rule decides exactly once: a
//! claim whose epoch is at least the live holder's replaces it, a lower one is refused. A
//! claim has a lease its holder renews; a dead node's claim lapses when the lease runs out.
//! The domain (`hub::epochs`) names the keys and tells a displaced holder over the bus.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;

/// A reader's claim on a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderClaim {
    /// What is held (the domain's name of an event hub's consumer group and partition,
    /// compared exactly).
    pub key: String,
    /// The reader holding it: unique among every reader of every node.
    pub holder: String,
    pub epoch: i64,
    /// The claim lapses at this time unless renewed.
    pub until: DateTime<Utc>,
}

/// What a claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The claim is stored; the claim it replaced, if another reader held one (live or
    /// lapsed), so the domain can tell that reader.
    Granted { displaced: Option<ReaderClaim> },
    /// A live claim with a higher epoch holds the partition (returned as stored).
    Refused(ReaderClaim),
}

impl ClaimOutcome {
    /// The rule every engine applies inside its transaction: `new` against the claim stored
    /// under its key (`current`), at `now`.
    pub fn decide(current: Option<&ReaderClaim>, new: &ReaderClaim, now: DateTime<Utc>) -> Self {
        match current {
            Some(c) if c.holder == new.holder => ClaimOutcome::Granted { displaced: None },
            Some(c) if c.until > now && c.epoch > new.epoch => ClaimOutcome::Refused(c.clone()),
            other => ClaimOutcome::Granted {
                displaced: other.cloned(),
            },
        }
    }
}

/// Exclusive readers' claims (see the module documentation).
#[async_trait]
pub trait ReaderClaimStore: Send + Sync {
    /// Stores `claim` under its key if [`ClaimOutcome::decide`] grants it against the claim
    /// stored there, as one compare-and-swap: of claims made together, each is decided
    /// against the one stored before it, never against a stale read.
    async fn claim_reader(&self, claim: ReaderClaim, now: DateTime<Utc>) -> Result<ClaimOutcome>;
    /// Extends `holder`'s claim on `key` to `until`, only while it is still the stored one
    /// (even lapsed, if no one took it since): `false` when another reader holds `key` or
    /// nothing does.
    async fn renew_reader(&self, key: &str, holder: &str, until: DateTime<Utc>) -> Result<bool>;
    /// Removes `holder`'s claim on `key`, if it is the stored one.
    async fn release_reader(&self, key: &str, holder: &str) -> Result<()>;
    /// The live claim on `key` at `now` (a lapsed one is none).
    async fn reader_claim(&self, key: &str, now: DateTime<Utc>) -> Result<Option<ReaderClaim>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(holder: &str, epoch: i64, until: i64) -> ReaderClaim {
        ReaderClaim {
            key: "k".into(),
            holder: holder.into(),
            epoch,
            until: DateTime::from_timestamp(until, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn a_higher_or_equal_epoch_displaces_a_lower_one_is_refused_until_the_lease_lapses() {
        let now = DateTime::from_timestamp(100, 0).unwrap_or_default();
        let held = claim("a", 5, 130);
        let granted = |c: &ReaderClaim| ClaimOutcome::decide(Some(&held), c, now);
        assert_eq!(
            granted(&claim("b", 5, 130)),
            ClaimOutcome::Granted {
                displaced: Some(held.clone())
            }
        );
        assert_eq!(
            granted(&claim("b", 4, 130)),
            ClaimOutcome::Refused(held.clone())
        );
        // The holder renewing is never refused nor displaces itself.
        assert_eq!(
            granted(&claim("a", 5, 140)),
            ClaimOutcome::Granted { displaced: None }
        );
        assert_eq!(
            ClaimOutcome::decide(None, &claim("b", 0, 130), now),
            ClaimOutcome::Granted { displaced: None }
        );
        let lapsed = claim("a", 5, 100);
        assert!(matches!(
            ClaimOutcome::decide(Some(&lapsed), &claim("b", 1, 130), now),
            ClaimOutcome::Granted { displaced: Some(_) }
        ));
    }
}
