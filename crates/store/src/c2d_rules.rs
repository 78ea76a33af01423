//! The cloud-to-device queue rules, as pure functions over the records: which messages count,
//! which are visible, what locking the next message removes first, and which removals write
//! feedback. Every engine applies these decisions inside one transaction, so the rules are
//! written once whatever the engine.

use chrono::{DateTime, Utc};

use crate::{C2dMessage, C2dRefusal, C2dRules, C2dSettle, FeedbackRecord, FeedbackStatus};

/// A message counts in its queue (depth, `cloudToDeviceMessageCount`) until it expires.
pub fn is_live(message: &C2dMessage, now: DateTime<Utc>) -> bool {
    message.expiry_time > now
}

/// A message may be delivered when no lock holds it (never locked, abandoned, or its lock ran
/// out).
pub fn is_visible(message: &C2dMessage, now: DateTime<Utc>) -> bool {
    match (&message.lock_token, message.locked_until) {
        (None, _) => true,
        (Some(_), until) => until.is_none_or(|until| until <= now),
    }
}

/// Whether a queue holding `live` live messages takes one more.
pub fn admit(live: usize, rules: C2dRules) -> Result<(), C2dRefusal> {
    if live >= rules.max_depth {
        Err(C2dRefusal::QueueFull)
    } else {
        Ok(())
    }
}

/// Why a message leaves its queue without being settled, if it must: it expired, or it was
/// locked `max_delivery_count` times and is visible again (an expired message is `Expired`
/// even when worn out).
pub fn dead_letter(
    message: &C2dMessage,
    rules: C2dRules,
    now: DateTime<Utc>,
) -> Option<FeedbackStatus> {
    if !is_live(message, now) {
        Some(FeedbackStatus::Expired)
    } else if is_visible(message, now) && message.delivery_count >= rules.max_delivery_count {
        Some(FeedbackStatus::DeliveryCountExceeded)
    } else {
        None
    }
}

/// What locking a device's next message does to its queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockPlan {
    /// Messages removed first (by sequence number), and why.
    pub removals: Vec<(u64, FeedbackStatus)>,
    /// The message to lock, if one is left visible.
    pub deliver: Option<u64>,
}

/// Plans [`crate::C2dStore::c2d_lock_next`] over a device's whole queue (any order): the dead
/// letters go, then the oldest visible message is locked.
pub fn plan_lock_next(queue: &[C2dMessage], rules: C2dRules, now: DateTime<Utc>) -> LockPlan {
    let mut plan = LockPlan::default();
    let mut ordered: Vec<&C2dMessage> = queue.iter().collect();
    ordered.sort_by_key(|m| m.sequence_number);
    for m in ordered {
        match dead_letter(m, rules, now) {
            Some(status) => plan.removals.push((m.sequence_number, status)),
            None if plan.deliver.is_none() && is_visible(m, now) => {
                plan.deliver = Some(m.sequence_number);
            }
            None => {}
        }
    }
    plan
}

/// The messages of `queue` that planned removals name, each with why it leaves.
pub fn planned<'a>(
    queue: &'a [C2dMessage],
    removals: &'a [(u64, FeedbackStatus)],
) -> impl Iterator<Item = (&'a C2dMessage, FeedbackStatus)> + 'a {
    removals.iter().filter_map(|(number, status)| {
        queue
            .iter()
            .find(|m| m.sequence_number == *number)
            .map(|m| (m, *status))
    })
}

/// Locks a message for one delivery by `node`'s connection under `token`, counting the
/// delivery.
pub fn lock(
    message: &mut C2dMessage,
    token: String,
    node: &str,
    rules: C2dRules,
    now: DateTime<Utc>,
) {
    message.delivery_count += 1;
    message.lock_token = Some(token);
    message.locked_until = Some(now + rules.lock_duration);
    message.lock_node = Some(node.to_owned());
}

/// Whether a restart of `node` releases the message's lock: the node holds it, or a server
/// from before node ids did (no recorded node).
pub fn released_by_restart_of(message: &C2dMessage, node: &str) -> bool {
    message.lock_token.is_some() && message.lock_node.as_deref().is_none_or(|n| n == node)
}

/// How settling removes a message (`None`: abandoned, it stays, unlocked, its delivery still
/// counted).
pub fn settle_outcome(settle: C2dSettle) -> Option<FeedbackStatus> {
    match settle {
        C2dSettle::Complete => Some(FeedbackStatus::Success),
        C2dSettle::Reject => Some(FeedbackStatus::Rejected),
        C2dSettle::Abandon => None,
    }
}

/// Makes a message visible again (abandoned, or its holder is gone).
pub fn unlock(message: &mut C2dMessage) {
    message.lock_token = None;
    message.locked_until = None;
    message.lock_node = None;
}

/// Plans a purge of a device's queue: expired messages go as `Expired`, the others as
/// `Purged`.
pub fn plan_purge(queue: &[C2dMessage], now: DateTime<Utc>) -> Vec<(u64, FeedbackStatus)> {
    let mut ordered: Vec<&C2dMessage> = queue.iter().collect();
    ordered.sort_by_key(|m| m.sequence_number);
    ordered
        .into_iter()
        .map(|m| {
            let status = if is_live(m, now) {
                FeedbackStatus::Purged
            } else {
                FeedbackStatus::Expired
            };
            (m.sequence_number, status)
        })
        .collect()
}

/// The feedback record a message leaving its queue with `status` writes, if its `ack` asks
/// for one.
pub fn feedback(
    message: &C2dMessage,
    status: FeedbackStatus,
    now: DateTime<Utc>,
) -> Option<FeedbackRecord> {
    message.ack.wants(status).then(|| FeedbackRecord {
        original_message_id: message.message_id.clone(),
        device_id: message.device_id.clone(),
        device_generation_id: message.device_generation_id.clone(),
        status_code: status,
        enqueued_time_utc: now,
    })
}

/// When a feedback record written at `now` is dropped unreceived.
pub fn feedback_expiry(rules: C2dRules, now: DateTime<Utc>) -> DateTime<Utc> {
    now + rules.feedback_ttl
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AckMode;
    use chrono::TimeDelta;

    fn rules() -> C2dRules {
        C2dRules {
            max_depth: 2,
            max_delivery_count: 2,
            lock_duration: TimeDelta::seconds(60),
            feedback_ttl: TimeDelta::seconds(3600),
            feedback_lock_duration: TimeDelta::seconds(60),
            feedback_batch: 64,
        }
    }

    fn message(seq: u64, ack: AckMode, now: DateTime<Utc>) -> C2dMessage {
        C2dMessage {
            device_id: "d".into(),
            device_generation_id: "g".into(),
            message_id: format!("m{seq}"),
            correlation_id: None,
            user_id: None,
            to: "/devices/d/messages/deviceBound".into(),
            content_type: None,
            content_encoding: None,
            expiry_time: now + TimeDelta::seconds(3600),
            ack,
            properties: vec![],
            body: vec![],
            enqueued_time: now,
            sequence_number: seq,
            delivery_count: 0,
            lock_token: None,
            locked_until: None,
            lock_node: None,
        }
    }

    #[test]
    fn locking_removes_dead_letters_and_picks_the_oldest_visible() {
        let now = Utc::now();
        let mut expired = message(1, AckMode::Full, now);
        expired.expiry_time = now;
        let mut worn = message(2, AckMode::Full, now);
        worn.delivery_count = 2;
        let mut locked = message(3, AckMode::Full, now);
        lock(&mut locked, "t".into(), "n", rules(), now);
        let mut worn_but_locked = message(4, AckMode::Full, now);
        worn_but_locked.delivery_count = 2;
        lock(&mut worn_but_locked, "u".into(), "n", rules(), now);
        let next = message(6, AckMode::Full, now);
        let older = message(5, AckMode::Full, now);
        let queue = [next, expired, worn, locked, worn_but_locked, older];
        let plan = plan_lock_next(&queue, rules(), now);
        assert_eq!(
            plan.removals,
            [
                (1, FeedbackStatus::Expired),
                (2, FeedbackStatus::DeliveryCountExceeded)
            ]
        );
        assert_eq!(plan.deliver, Some(5));
        // Once its lock runs out, a locked message is visible (and counted) again.
        let later = now + rules().lock_duration;
        let plan = plan_lock_next(&queue[3..4], rules(), later);
        assert_eq!(plan.deliver, Some(3));
    }

    #[test]
    fn feedback_follows_the_ack_and_settles_map_to_outcomes() {
        let now = Utc::now();
        let positive = message(1, AckMode::Positive, now);
        assert!(feedback(&positive, FeedbackStatus::Success, now).is_some());
        assert!(feedback(&positive, FeedbackStatus::Rejected, now).is_none());
        let negative = message(2, AckMode::Negative, now);
        assert!(feedback(&negative, FeedbackStatus::Success, now).is_none());
        assert!(feedback(&negative, FeedbackStatus::Purged, now).is_some());
        assert!(
            feedback(
                &message(3, AckMode::None, now),
                FeedbackStatus::Expired,
                now
            )
            .is_none()
        );
        assert_eq!(
            settle_outcome(C2dSettle::Complete),
            Some(FeedbackStatus::Success)
        );
        assert_eq!(
            settle_outcome(C2dSettle::Reject),
            Some(FeedbackStatus::Rejected)
        );
        assert_eq!(settle_outcome(C2dSettle::Abandon), None);
        assert_eq!(admit(1, rules()), Ok(()));
        assert_eq!(admit(2, rules()), Err(C2dRefusal::QueueFull));
        let mut expired = message(4, AckMode::Full, now);
        expired.expiry_time = now;
        assert_eq!(
            plan_purge(&[message(5, AckMode::Full, now), expired], now),
            [(4, FeedbackStatus::Expired), (5, FeedbackStatus::Purged)]
        );
    }
}
