//! Who is calling: the peer address and the listener of the connection a task serves, set
//! by the accept loop for the connection's whole life so that the domain can name the caller
//! in a diagnostic log without every adapter passing it down.

use std::cell::RefCell;
use std::net::IpAddr;

tokio::task_local! {
    static CALLER: Option<Caller>;
    static API_VERSION: RefCell<Option<Box<str>>>;
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

/// Runs `future` with `caller` as the current task's caller (and room for the `api-version`
/// its protocol names later: [`set_api_version`]).
///
/// Not an `async fn`: one would keep `future` as its argument beside the scope that holds it,
/// doubling what every held connection's task stores.
pub fn scope<F: Future>(caller: Caller, future: F) -> impl Future<Output = F::Output> {
    CALLER.scope(Some(caller), API_VERSION.scope(RefCell::new(None), future))
}

/// Runs `future` with `caller` as its caller when there is one, and the current `api-version`
/// (for a task spawned on behalf of a connection: task-locals do not cross `tokio::spawn`).
pub fn within<F: Future>(caller: Option<Caller>, future: F) -> impl Future<Output = F::Output> {
    let version = API_VERSION.try_with(|v| v.borrow().clone()).ok().flatten();
    CALLER.scope(caller, API_VERSION.scope(RefCell::new(version), future))
}

/// The current task's caller, when a connection set one.
pub fn current() -> Option<Caller> {
    CALLER.try_with(|c| *c).ok().flatten()
}

/// Runs `future` (one request) with the `api-version` its client asked for, when it named
/// one.
pub fn with_api_version<F: Future>(
    api_version: Option<&str>,
    future: F,
) -> impl Future<Output = F::Output> {
    API_VERSION.scope(RefCell::new(api_version.map(Box::from)), future)
}

/// Records the `api-version` the current connection's protocol named once for all its
/// operations (MQTT's username); nothing outside a [`scope`].
pub fn set_api_version(api_version: &str) {
    let _ = API_VERSION.try_with(|v| *v.borrow_mut() = Some(api_version.into()));
}

/// The `api-version` of the current request or connection, as Azure's logs name it in
/// `operationVersion`: a dated version `2019-03-31` as `March2019` (the month and year the
/// Device Provisioning Service's log examples show), anything else as sent.
pub fn operation_version() -> Option<String> {
    API_VERSION
        .try_with(|v| v.borrow().as_deref().map(month_year))
        .ok()
        .flatten()
}

fn month_year(api_version: &str) -> String {
    let (date, preview) = match api_version.strip_suffix("-preview") {
        Some(date) => (date, "Preview"),
        None => (api_version, ""),
    };
    match chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") {
        Ok(day) => format!("{}{preview}", day.format("%B%Y")),
        Err(_) => api_version.to_owned(),
    }
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

    #[tokio::test]
    async fn the_api_version_is_named_as_azures_logs_name_it() {
        assert_eq!(operation_version(), None);
        let named = |v: &'static str| with_api_version(Some(v), async { operation_version() });
        assert_eq!(named("2019-03-31").await.as_deref(), Some("March2019"));
        assert_eq!(named("2021-10-01").await.as_deref(), Some("October2021"));
        assert_eq!(
            named("2020-09-30-preview").await.as_deref(),
            Some("September2020Preview")
        );
        assert_eq!(named("2021-13-01").await.as_deref(), Some("2021-13-01"));
        assert_eq!(named("latest").await.as_deref(), Some("latest"));
        assert_eq!(
            with_api_version(None, async { operation_version() }).await,
            None
        );
        let caller = Caller {
            ip: IpAddr::from([127, 0, 25, 7]),
            listener: "mqtt",
        };
        let set_later = scope(caller, async {
            set_api_version("2021-04-12");
            operation_version()
        });
        assert_eq!(set_later.await.as_deref(), Some("April2021"));
    }
}
