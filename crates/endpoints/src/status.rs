//! An endpoint's health as IoT Hub reports it (`GET …/routingEndpointsHealth`: `healthStatus`
//! `unknown`, `healthy`, `degraded`, `unhealthy`, `dead`, with the last error and the times of
//! the last attempts), plus the counts of delivered and dead-lettered messages since the pump
//! started.

use chrono::{DateTime, Utc};
use ironhub_store::EndpointHealth;
use serde::Serialize;

/// IoT Hub's endpoint health states (ARM's `healthStatus`).
pub use ironhub_store::EndpointHealthStatus as Health;

/// A snapshot of an endpoint's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub endpoint_id: String,
    pub health_status: Health,
    pub last_known_error: Option<String>,
    pub last_known_error_time: Option<DateTime<Utc>>,
    pub last_successful_send_attempt_time: Option<DateTime<Utc>>,
    pub last_send_attempt_time: Option<DateTime<Utc>>,
    /// Messages delivered since the pump started.
    pub delivered: u64,
    /// Messages dead-lettered since the pump started.
    pub dead_lettered: u64,
}

impl EndpointStatus {
    /// The status as ARM's `EndpointHealthData` has it (times in RFC 1123).
    pub fn to_health(&self) -> EndpointHealth {
        let time = |t: Option<DateTime<Utc>>| t.map(ironhub_wire::hub::arm_time);
        EndpointHealth {
            endpoint_id: self.endpoint_id.clone(),
            health_status: self.health_status,
            last_known_error: self.last_known_error.clone(),
            last_known_error_time: time(self.last_known_error_time),
            last_successful_send_attempt_time: time(self.last_successful_send_attempt_time),
            last_send_attempt_time: time(self.last_send_attempt_time),
        }
    }
}

/// A partition's last outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    Retrying,
    /// Dead-lettered, and nothing delivered since (retries after it keep this state).
    Dead,
}

/// The health of an endpoint from its partitions' last outcomes.
pub(crate) fn health(outcomes: &[Option<Outcome>]) -> Health {
    let seen: Vec<Outcome> = outcomes.iter().flatten().copied().collect();
    if seen.is_empty() {
        return Health::Unknown;
    }
    let delivered = seen.iter().filter(|o| **o == Outcome::Delivered).count();
    if delivered == seen.len() {
        Health::Healthy
    } else if delivered > 0 {
        Health::Degraded
    } else if seen.contains(&Outcome::Dead) {
        Health::Dead
    } else {
        Health::Unhealthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_partitions() {
        use Outcome::*;
        assert_eq!(health(&[None, None]), Health::Unknown);
        assert_eq!(health(&[Some(Delivered), None]), Health::Healthy);
        assert_eq!(health(&[Some(Delivered), Some(Retrying)]), Health::Degraded);
        assert_eq!(health(&[Some(Retrying), None]), Health::Unhealthy);
        assert_eq!(health(&[Some(Retrying), Some(Dead)]), Health::Dead);
        assert_eq!(
            serde_json::to_value(Health::Unhealthy).ok(),
            Some(serde_json::json!("unhealthy"))
        );
    }
}
