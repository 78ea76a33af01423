//! The names a hub uses on NATS: streams, KV buckets and subjects, all under `ironhub.{hub}`.

/// Escapes `s` to letters, digits, `-` and `_`, writing any other byte as `=XX` (hex), so a
/// device id, module id or node id is one subject token and a valid KV key.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// A hub's names on NATS, and how many copies of what it creates JetStream keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The hub's name as stream and bucket names allow it (letters, digits, `-`, `_`).
    hub: String,
    /// The replicas of every stream and bucket created (at least 1).
    replicas: usize,
}

impl Names {
    /// The names of hub `hub` (its host name's first label, e.g. `myhub`).
    pub fn new(hub: &str) -> Self {
        let hub = hub
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Names { hub, replicas: 1 }
    }

    /// The same names, creating streams and buckets with `replicas` copies (0 counts as 1).
    pub fn with_replicas(self, replicas: usize) -> Self {
        Names {
            replicas: replicas.max(1),
            ..self
        }
    }

    /// The replicas of every stream and bucket created.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The JetStream stream holding partition `partition` of event stream `stream`.
    pub fn partition_stream(&self, stream: &str, partition: u32) -> String {
        format!(
            "ironhub_{}_{}_{partition}",
            self.hub,
            escape(stream).replace('=', "_")
        )
    }

    /// The subject appends to that partition are published on.
    pub fn partition_subject(&self, stream: &str, partition: u32) -> String {
        format!("ironhub.{}.events.{}.{partition}", self.hub, escape(stream))
    }

    /// The KV bucket of the hub's event streams: partition counts, consumer groups,
    /// checkpoints.
    pub fn log_bucket(&self) -> String {
        format!("ironhub_{}_log", self.hub)
    }

    /// The KV bucket recording which node holds each device's connection.
    pub fn presence_bucket(&self) -> String {
        format!("ironhub_{}_presence", self.hub)
    }

    /// The subject a node's bus answers requests on.
    pub fn node_subject(&self, node: &str) -> String {
        format!("ironhub.{}.bus.{}", self.hub, escape(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_tokens() {
        assert_eq!(escape("d1/m.1 x"), "d1=2Fm=2E1=20x");
        let n = Names::new("my.hub");
        assert_eq!(
            n.partition_stream("$events", 3),
            "ironhub_my_hub__24events_3"
        );
        assert_eq!(
            n.partition_subject("$events", 3),
            "ironhub.my_hub.events.=24events.3"
        );
        assert_eq!(
            n.node_subject("node-2.eu"),
            "ironhub.my_hub.bus.node-2=2Eeu"
        );
        assert_eq!(n.presence_bucket(), "ironhub_my_hub_presence");
    }
}
