//! The device twin port, and the scan that twin queries read devices and twins through.

use async_trait::async_trait;

pub use ironhub_query::{Aggregate as AggregateOp, HintOp as ScanOp};

use crate::{
    AuthType, ConnectionState, DeviceRecord, DeviceStatus, Result, TwinRecord, WriteConflict,
};

/// A device with its twin (`None` while the twin was never written).
pub type DeviceTwin = (DeviceRecord, Option<TwinRecord>);

/// What a scan may narrow on: the device id, a field of the device's registry record that its
/// twin shows, or a property of the twin's tags, desired or reported properties (the keys
/// below the section, e.g. `["powerState"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwinField {
    DeviceId,
    Device(DeviceField),
    Tags(Vec<String>),
    Desired(Vec<String>),
    Reported(Vec<String>),
}

/// A scalar of the device's registry record, as the twin shows it: `status` (`"enabled"`,
/// `"disabled"`), `connectionState` (`"Connected"`, `"Disconnected"`), `capabilities.iotEdge`
/// (a boolean) and `authenticationType` (`"sas"`, `"selfSigned"`, `"certificateAuthority"`,
/// `"none"`). Engines keep the first two in columns of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceField {
    Status,
    ConnectionState,
    IotEdge,
    AuthenticationType,
}

/// "`field` `op` `values`" (one value, or the candidates of `In`), compared by type: a
/// string is never equal to a number. Values are strings, numbers or booleans.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanCondition {
    pub field: TwinField,
    pub op: ScanOp,
    pub values: Vec<serde_json::Value>,
}

impl ScanCondition {
    /// For a condition on a two-valued registry field (`status`: enabled?, `connectionState`:
    /// connected?, `capabilities.iotEdge`), the flags of the devices that satisfy it, exactly
    /// (none when no device can: values are compared by type and case, `'Disabled'` is not
    /// `'disabled'`); `None` for another field or an order (not narrowed).
    pub fn flags(&self) -> Option<Vec<bool>> {
        let (yes, no): (serde_json::Value, serde_json::Value) = match self.field {
            TwinField::Device(DeviceField::Status) => (
                DeviceStatus::Enabled.as_str().into(),
                DeviceStatus::Disabled.as_str().into(),
            ),
            TwinField::Device(DeviceField::ConnectionState) => (
                ConnectionState::Connected.as_str().into(),
                ConnectionState::Disconnected.as_str().into(),
            ),
            TwinField::Device(DeviceField::IotEdge) => (true.into(), false.into()),
            _ => return None,
        };
        self.admitted([(true, yes), (false, no)])
    }

    /// For a condition on `authenticationType`, the types of the devices that satisfy it,
    /// exactly (see [`ScanCondition::flags`]); `None` for another field or an order.
    pub fn auth_types(&self) -> Option<Vec<AuthType>> {
        if self.field != TwinField::Device(DeviceField::AuthenticationType) {
            return None;
        }
        self.admitted(
            [
                AuthType::Sas,
                AuthType::SelfSigned,
                AuthType::CertificateAuthority,
                AuthType::None,
            ]
            .map(|t| (t, t.as_str().into())),
        )
    }

    /// The keys of the candidates whose value equals one of the condition's values, for an
    /// equality or `IN`; `None` for an order.
    fn admitted<K, const N: usize>(
        &self,
        candidates: [(K, serde_json::Value); N],
    ) -> Option<Vec<K>> {
        if !matches!(self.op, ScanOp::Eq | ScanOp::In) {
            return None;
        }
        Some(
            candidates
                .into_iter()
                .filter(|(_, v)| self.values.contains(v))
                .map(|(k, _)| k)
                .collect(),
        )
    }
}

/// One page of a scan over devices and their twins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TwinScan {
    /// Only devices whose id sorts after this one.
    pub after: Option<String>,
    /// At most this many devices; fewer means the scan is complete.
    pub limit: usize,
    /// Conditions every wanted device satisfies. An engine may use any of them to skip
    /// devices (an index, a filter), or none: it may return devices that fail them, never
    /// leave out one that passes them all. The caller checks every device it gets. The
    /// engines apply equalities and `IN` on registry fields ([`TwinField::Device`]) exactly
    /// (see [`ScanCondition::flags`]), so that a page of a few disabled devices among many
    /// reads only those.
    pub conditions: Vec<ScanCondition>,
}

/// A `GROUP BY` for the engine to compute ([`TwinStore::aggregate_twins`]): over the devices
/// that satisfy every condition (exactly: typed, `'0'` is not `0`, a missing property
/// satisfies none), one group per distinct combination of the values of `group_by` (a
/// missing property is its own value, apart from `null`; `1` and `1.0` are apart, as their
/// JSON texts are), each with the aggregates of `aggregates`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TwinAggregate {
    pub conditions: Vec<ScanCondition>,
    pub group_by: Vec<TwinField>,
    /// `COUNT()` (no field), or `SUM`, `AVG`, `MIN`, `MAX` of a field, computed as
    /// [`ironhub_query::Accumulator`] does over the group's devices in id order.
    pub aggregates: Vec<(AggregateOp, Option<TwinField>)>,
}

impl TwinAggregate {
    /// Whether every aggregate is `COUNT` (which counts devices, whatever its argument), so
    /// that an engine can count the groups without reading any value.
    pub fn counts_only(&self) -> bool {
        self.aggregates
            .iter()
            .all(|(f, _)| *f == AggregateOp::Count)
    }
}

/// One group of a [`TwinAggregate`].
#[derive(Debug, Clone, PartialEq)]
pub struct TwinGroup {
    /// The value of each `group_by` field (`None`: missing).
    pub keys: Vec<Option<serde_json::Value>>,
    /// The value of each aggregate (`None`: undefined, e.g. `SUM` over no numbers).
    pub values: Vec<Option<serde_json::Value>>,
    /// The smallest device id in the group.
    pub first: String,
}

/// The first devices in the order of one twin property ([`TwinStore::top_twins`]), as the
/// language orders values: missing, `null`, booleans (`false` first), numbers, strings (by
/// code point), then arrays and objects; devices with equal values in id order (also when
/// `descending`, which reverses the order of values only).
#[derive(Debug, Clone, PartialEq)]
pub struct TwinTop {
    /// Every one holds, exactly (as for [`TwinAggregate::conditions`]).
    pub conditions: Vec<ScanCondition>,
    /// A property of tags, desired or reported properties.
    pub order_by: TwinField,
    pub descending: bool,
    pub limit: usize,
}

/// Device twins, written compare-and-swap on their etag.
#[async_trait]
pub trait TwinStore: Send + Sync {
    /// A device's twin, if one was ever written (a device without one has an empty twin).
    async fn get_twin(&self, device_id: &str) -> Result<Option<TwinRecord>>;
    /// Writes a twin, if its device exists and (with `if_match`) the stored twin's etag is that
    /// one (no stored twin matches `""`). Assigns a new etag.
    async fn put_twin(
        &self,
        twin: TwinRecord,
        if_match: Option<String>,
    ) -> Result<std::result::Result<TwinRecord, WriteConflict>>;
    /// Devices after `scan.after` in id order, each with its twin and its live
    /// `cloudToDeviceMessageCount`, at most `scan.limit`, narrowed by `scan.conditions` as
    /// far as the engine can (see [`TwinScan::conditions`]).
    async fn scan_twins(&self, scan: &TwinScan) -> Result<Vec<DeviceTwin>>;
    /// The groups of `request`, ordered by their first device id, or `None` when this
    /// engine does not compute it (the caller then reads every twin through
    /// [`TwinStore::scan_twins`]). An engine that answers must answer exactly, or not at all.
    async fn aggregate_twins(&self, request: &TwinAggregate) -> Result<Option<Vec<TwinGroup>>> {
        let _ = request;
        Ok(None)
    }
    /// The first `request.limit` devices that satisfy its conditions, in its order, each with
    /// its twin and its live `cloudToDeviceMessageCount`; or `None` when this engine cannot
    /// give exactly that (then the caller reads every twin and sorts them itself).
    async fn top_twins(&self, request: &TwinTop) -> Result<Option<Vec<DeviceTwin>>> {
        let _ = request;
        Ok(None)
    }
}
