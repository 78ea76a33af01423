//! Who is calling: the peer address and the listener of the connection a task serves, set
//! by the accept loop for the connection's whole life so that the domain can name the caller
//! in a diagnostic log without every adapter passing it down.

use std::net::IpAddr;

tokio::task_local! {
    static CALLER: Caller;
}

/// The connection behind the current task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The peer's IP address.
    pub ip: IpAddr,
    /// The listener that accepted it (`https`, `mqtt` or `amqp`), or the WebSocket
    /// subprotocol's transport on the HTTPS listener (`mqtt-ws`, `amqp-ws`).
    pub listener: &'static str,
}

impl Caller {
    /// The address as Azure's logs show it: the last IPv4 octet (or IPv6 group) masked.
    pub fn masked_ip(&self) -> String {
        mask(self.ip)
    }
}

/// Runs `future` with `caller` as the current task's caller.
pub async fn scope<F: Future>(caller: Caller, future: F) -> F::Output {
    CALLER.scope(caller, future).await
}

/// Runs `future` with `caller` as its caller when there is one (for a task spawned on behalf
/// of a connection: task-locals do not cross `tokio::spawn`).
pub async fn within<F: Future>(caller: Option<Caller>, future: F) -> F::Output {
    match caller {
        Some(caller) => CALLER.scope(caller, future).await,
        None => future.await,
    }
}

/// The current task's caller, when a connection set one.
pub fn current() -> Option<Caller> {
    CALLER.try_with(|c| *c).ok()
}

/// `24.18.226.XXX`, as Azure masks a caller's address.
pub fn mask(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.XXX")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:XXXX",
                s[0], s[1], s[2], s[3], s[4], s[5], s[6]
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_caller_is_known_inside_its_scope_only() {
        assert_eq!(current(), None);
        let caller = Caller {
            ip: IpAddr::from([127, 0, 25, 7]),
            listener: "mqtt",
        };
        let seen = scope(caller, async { current() }).await;
        assert_eq!(seen, Some(caller));
        assert_eq!(caller.masked_ip(), "127.0.25.XXX");
    }
}
