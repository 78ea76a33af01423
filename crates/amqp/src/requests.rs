//! The request/response nodes: `$cbs` (`put-token`, claims-based security) and `$management`
//! (Event Hubs' READ of the entity and of a partition). A request comes on a link to the node,
//! its answer goes back on the client's link from the node, correlated by message id, with
//! `status-code` and `status-description` application properties.

use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties};
use fe2o3_amqp::types::primitives::{Array, OrderedMap, SimpleValue, Value};
use ironhub_auth::Rights;
use ironhub_hub::{Hub, HubError};

use crate::AmqpContext;
use crate::claims::Claims;
use crate::message::{text_property, timestamp, value_text};

/// The token types `put-token` accepts: SAS tokens, as Event Hubs and IoT Hub name them.
/// The `type` of a `put-token` carrying a JWT from an identity provider (IoT Hub's `jwt`;
/// uamqp's JWT authentication sends `bearer`).
const BEARER_TOKEN_TYPES: [&str; 2] = ["jwt", "bearer"];

const SAS_TOKEN_TYPES: [&str; 2] = [
    "servicebus.windows.net:sastoken",
    "azure-devices.net:sastoken",
];

/// A request's answer: status, description and body.
pub struct Reply {
    status: i32,
    description: String,
    body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply {
            status: 200,
            description: "OK".into(),
            body,
        }
    }

    fn error(status: i32, description: impl Into<String>) -> Self {
        Reply {
            status,
            description: description.into(),
            body: Value::Null,
        }
    }

    fn from_hub(e: &HubError) -> Self {
        Reply::error(i32::from(e.status()), e.to_string())
    }

    /// The response message to `request`.
    pub fn into_message(self, request: &Message<Body<Value>>) -> Message<AmqpValue<Value>> {
        let request_properties = request.properties.as_ref();
        let mut application = OrderedMap::new();
        application.insert("status-code".to_owned(), SimpleValue::Int(self.status));
        application.insert(
            "status-description".to_owned(),
            SimpleValue::String(self.description),
        );
        Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                correlation_id: request_properties.and_then(|p| p.message_id.clone()),
                to: request_properties.and_then(|p| p.reply_to.clone()),
                ..Properties::default()
            }),
            application_properties: Some(ApplicationProperties(application)),
            body: AmqpValue(self.body),
            footer: None,
        }
    }
}

/// Answers a `$cbs` request: a `put-token` whose token the domain accepts is recorded in
/// `claims` for its audience. An audience naming a device (`{host}/devices/{id}`, what the
/// device SDKs put) is a device's login, decided by [`ironhub_hub::Hub::authenticate`];
/// any other is a service's token.
pub async fn cbs(ctx: &AmqpContext, claims: &Claims, request: &Message<Body<Value>>) -> Reply {
    let operation = text_property(request, "operation");
    if operation.as_deref() != Some("put-token") {
        return Reply::error(
            400,
            format!("The operation {operation:?} is not supported."),
        );
    }
    let kind = text_property(request, "type").unwrap_or_default();
    let bearer_kind = BEARER_TOKEN_TYPES.contains(&kind.as_str());
    if !bearer_kind && !SAS_TOKEN_TYPES.contains(&kind.as_str()) {
        return Reply::error(400, format!("The token type '{kind}' is not supported."));
    }
    let Some(audience) = text_property(request, "name") else {
        return Reply::error(400, "The put-token request has no name (audience).");
    };
    let token = match &request.body {
        Body::Value(AmqpValue(value)) => value_text(value),
        _ => None,
    };
    let Some(token) = token else {
        return Reply::error(400, "The put-token request carries no token.");
    };
    // uamqp's `JWTTokenAuth` (the Python service SDK's) puts SAS tokens with the type `jwt` too.
    let bearer = bearer_kind && !token.trim_start().starts_with("SharedAccessSignature ");
    if bearer {
        // uamqp sends `Bearer {jwt}`; IoT Hub's own clients the bare JWT.
        let header = if ironhub_auth::oidc::bearer_token(token).is_some() {
            token.to_owned()
        } else {
            format!("Bearer {token}")
        };
        return match ctx.hub.authorize_service_bearer(&header).await {
            Ok(grant) => {
                claims.put(&audience, grant);
                Reply::ok(Value::Null)
            }
            Err(e) => {
                tracing::debug!(audience, error = %e, "bearer put-token refused");
                Reply::from_hub(&e)
            }
        };
    }
    if let Some((device_id, module_id)) = audience_device(&audience) {
        let login = ironhub_hub::DeviceLogin {
            device_id: &device_id,
            module_id: module_id.as_deref(),
            credentials: ironhub_auth::Credentials::new(Some(token), &[] as &[&[u8]]),
            ..ironhub_hub::DeviceLogin::default()
        };
        return match ctx.hub.authenticate(&login).await {
            Ok(device) => {
                claims.put_device(device);
                Reply::ok(Value::Null)
            }
            Err(e) => {
                tracing::debug!(audience, error = %e, "device put-token refused");
                Reply::from_hub(&e)
            }
        };
    }
    match ctx
        .hub
        .authorize_service_token(token, &[Rights::SERVICE_CONNECT])
    {
        Ok(grant) => {
            claims.put(&audience, grant);
            Reply::ok(Value::Null)
        }
        Err(e) => {
            tracing::debug!(audience, error = %e, "put-token refused");
            Reply::from_hub(&e)
        }
    }
}

/// The device (and module) a token's audience names: `[amqps://]{host}/devices/{id}` or
/// `…/devices/{id}/modules/{mid}`, percent-encoded or not (the Node SDK puts the token's
/// `sr` as it is).
fn audience_device(audience: &str) -> Option<(String, Option<String>)> {
    let decoded = percent_encoding::percent_decode_str(audience).decode_utf8_lossy();
    let rest = decoded
        .split_once("://")
        .map_or(&*decoded, |(_, rest)| rest);
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let is = |part: &str, name: &str| part.eq_ignore_ascii_case(name);
    match parts.as_slice() {
        [_host, devices, id] if is(devices, "devices") && !id.is_empty() => {
            Some(((*id).to_owned(), None))
        }
        [_host, devices, id, modules, mid]
            if is(devices, "devices")
                && !id.is_empty()
                && is(modules, "modules")
                && !mid.is_empty() =>
        {
            Some(((*id).to_owned(), Some((*mid).to_owned())))
        }
        _ => None,
    }
}

/// Answers a `$management` READ of the Event Hubs-compatible entity or one of its partitions.
pub async fn management(
    ctx: &AmqpContext,
    claims: &Claims,
    request: &Message<Body<Value>>,
) -> Reply {
    let operation = text_property(request, "operation");
    if operation.as_deref() != Some("READ") {
        return Reply::error(
            400,
            format!("The operation {operation:?} is not supported."),
        );
    }
    let name = text_property(request, "name").unwrap_or_default();
    // The hub's entity, or a custom event stream endpoint of message routing by its name.
    let stream = (!name.eq_ignore_ascii_case(&ctx.entity)).then_some(name.as_str());
    let Ok(hub) = ctx.hub.for_endpoint(stream).await else {
        return Reply::error(
            404,
            format!("The messaging entity '{name}' could not be found."),
        );
    };
    let entity_name = stream.map_or_else(|| ctx.entity.clone(), str::to_owned);
    let entity_path = format!("/{entity_name}");
    let authorized = match text_property(request, "security_token") {
        Some(token) => ctx
            .hub
            .authorize_service_token(&token, &[Rights::SERVICE_CONNECT])
            .map(|grant| {
                ctx.hub
                    .grant_covers(&grant, &entity_path, ironhub_auth::unix_now())
            })
            .unwrap_or(false),
        None => claims.allows(&ctx.hub, &entity_path),
    };
    if !authorized {
        return Reply::error(401, "Unauthorized: no valid token for the entity.");
    }
    match text_property(request, "type").as_deref() {
        Some("com.microsoft:eventhub") => entity(&hub, &entity_name),
        Some("com.microsoft:partition") => {
            let partition = text_property(request, "partition").unwrap_or_default();
            match partition.parse::<u32>() {
                Ok(p) => match partition_properties(&hub, &entity_name, p).await {
                    Ok(reply) => reply,
                    Err(e) => Reply::from_hub(&e),
                },
                Err(_) => Reply::error(404, format!("The partition '{partition}' does not exist.")),
            }
        }
        other => Reply::error(400, format!("The entity type {other:?} is not supported.")),
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut map = OrderedMap::new();
    for (k, v) in entries {
        map.insert(Value::String(k.to_owned()), v);
    }
    Value::Map(map)
}

fn entity(hub: &Hub, name: &str) -> Reply {
    let count = hub.events().partition_count();
    let ids: Vec<Value> = (0..count).map(|p| Value::String(p.to_string())).collect();
    Reply::ok(map(vec![
        ("name", Value::String(name.to_owned())),
        (
            "created_at",
            Value::Timestamp(timestamp(hub.settings().created_time)),
        ),
        (
            "partition_count",
            Value::Int(i32::try_from(count).unwrap_or(i32::MAX)),
        ),
        ("partition_ids", Value::Array(Array::from(ids))),
    ]))
}

async fn partition_properties(hub: &Hub, name: &str, partition: u32) -> Result<Reply, HubError> {
    let view = hub.partition(partition).await?;
    let last = hub.last_event(partition).await?;
    let (offset, time) = match &last {
        Some(e) => (e.sequence_number.to_string(), e.enqueued_time),
        None => ("-1".to_owned(), chrono::DateTime::UNIX_EPOCH),
    };
    Ok(Reply::ok(map(vec![
        ("name", Value::String(name.to_owned())),
        ("partition", Value::String(partition.to_string())),
        (
            "begin_sequence_number",
            Value::Long(i64::try_from(view.beginning_sequence_number).unwrap_or(i64::MAX)),
        ),
        (
            "last_enqueued_sequence_number",
            Value::Long(view.last_enqueued_sequence_number),
        ),
        ("last_enqueued_offset", Value::String(offset)),
        ("last_enqueued_time_utc", Value::Timestamp(timestamp(time))),
        ("is_partition_empty", Value::Bool(view.is_empty)),
    ])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_audiences() {
        let device = |id: &str| Some((id.to_owned(), None));
        assert_eq!(audience_device("h.example/devices/d1"), device("d1"));
        assert_eq!(audience_device("h.example%2Fdevices%2Fd1"), device("d1"));
        assert_eq!(
            audience_device("amqps://h.example/devices/d1"),
            device("d1")
        );
        assert_eq!(audience_device("h.example"), None);
        assert_eq!(
            audience_device("h.example%2Fdevices%2Fd1%2Fmodules%2Fm1"),
            Some(("d1".to_owned(), Some("m1".to_owned())))
        );
        assert_eq!(audience_device("h.example/devices/d1/modules/"), None);
        assert_eq!(audience_device("h.example/devices/d1/twin"), None);
        assert_eq!(audience_device("sb://h.example/hub"), None);
    }
}
