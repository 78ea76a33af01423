//! Cases of the exclusive readers' claims: a compare-and-swap whatever the interleaving, a
//! lease that lapses, renewals and releases that only the holder makes.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::{ClaimOutcome, Clock, ManualClock, ReaderClaim, Store};

const LEASE: TimeDelta = TimeDelta::seconds(30);

/// A time as engines keep it (whole milliseconds).
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

fn claim(key: &str, holder: &str, epoch: i64, clock: &ManualClock) -> ReaderClaim {
    ReaderClaim {
        key: key.into(),
        holder: holder.into(),
        epoch,
        until: ms(clock.now() + LEASE),
    }
}

/// Readers claiming a free partition together: the higher epoch always ends up holding it,
/// with equal epochs exactly one does, and every outcome tells the same story (a refusal
/// names the holder, a reader granted after another names it as displaced).
pub async fn concurrent_claims_leave_exactly_one_holder(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let now = clock.now();
    for round in 0..20 {
        for (epoch_a, epoch_b) in [(3, 5), (5, 3), (2, 2)] {
            let key = format!("$partition/eh/g/{round}/{epoch_a}-{epoch_b}");
            let a = claim(&key, "reader-a", epoch_a, &clock);
            let b = claim(&key, "reader-b", epoch_b, &clock);
            let (got_a, got_b) = tokio::join!(
                store.claim_reader(a.clone(), now),
                store.claim_reader(b.clone(), now),
            );
            let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
            let holder = store.reader_claim(&key, now).await.unwrap().unwrap();
            let (winner, winner_got, loser, loser_got) = if holder.holder == "reader-a" {
                (&a, &got_a, &b, &got_b)
            } else {
                (&b, &got_b, &a, &got_a)
            };
            assert_eq!(&holder, winner, "round {round}");
            if epoch_a != epoch_b {
                assert_eq!(winner.epoch, epoch_a.max(epoch_b), "round {round}");
            }
            match (winner_got, loser_got) {
                // The loser came second and was refused by the winner...
                (ClaimOutcome::Granted { displaced: None }, ClaimOutcome::Refused(by)) => {
                    assert_eq!(by, winner, "round {round}");
                }
                // ... or came first and was displaced by it.
                (
                    ClaimOutcome::Granted {
                        displaced: Some(old),
                    },
                    ClaimOutcome::Granted { displaced: None },
                ) => assert_eq!(old, loser, "round {round}"),
                other => panic!("round {round}: {other:?}"),
            }
        }
    }
}

/// A claim runs until its lease lapses, unless its holder renews it; only the holder renews
/// or releases it, and a displaced holder's renewal fails.
pub async fn claims_lapse_renew_and_release_by_their_holder(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
) {
    let key = "$partition/eh/$default/0";
    let first = claim(key, "reader-a", 7, &clock);
    let now = clock.now();
    assert_eq!(
        store.claim_reader(first.clone(), now).await.unwrap(),
        ClaimOutcome::Granted { displaced: None }
    );
    // A lower epoch is refused while the lease runs, and the holder's renewal extends it.
    let lower = claim(key, "reader-b", 1, &clock);
    assert_eq!(
        store.claim_reader(lower.clone(), now).await.unwrap(),
        ClaimOutcome::Refused(first.clone())
    );
    assert!(
        !store
            .renew_reader(key, "reader-b", now + LEASE)
            .await
            .unwrap()
    );
    let renewed = ms(now + LEASE + LEASE);
    assert!(store.renew_reader(key, "reader-a", renewed).await.unwrap());
    clock.advance(LEASE);
    assert_eq!(
        store
            .reader_claim(key, clock.now())
            .await
            .unwrap()
            .map(|c| c.until),
        Some(renewed)
    );
    // Once it lapses, any epoch takes it; the old holder can no longer renew.
    clock.advance(LEASE);
    let later = clock.now();
    assert_eq!(store.reader_claim(key, later).await.unwrap(), None);
    let taker = claim(key, "reader-b", 1, &clock);
    let ClaimOutcome::Granted {
        displaced: Some(old),
    } = store.claim_reader(taker.clone(), later).await.unwrap()
    else {
        panic!("a lapsed claim is taken over");
    };
    assert_eq!(old.holder, "reader-a");
    assert!(
        !store
            .renew_reader(key, "reader-a", later + LEASE)
            .await
            .unwrap()
    );
    // Releasing another's claim does nothing; the holder's own frees the key.
    store.release_reader(key, "reader-a").await.unwrap();
    assert_eq!(
        store.reader_claim(key, later).await.unwrap(),
        Some(taker.clone())
    );
    store.release_reader(key, "reader-b").await.unwrap();
    assert_eq!(store.reader_claim(key, later).await.unwrap(), None);
    assert!(
        !store
            .renew_reader(key, "reader-b", later + LEASE)
            .await
            .unwrap()
    );
    // Keys are apart.
    let other = claim("$partition/eh/$default/1", "reader-c", 0, &clock);
    store.claim_reader(other.clone(), later).await.unwrap();
    assert_eq!(store.reader_claim(key, later).await.unwrap(), None);
}
