//! What a hub's move (`crate::hub_move`) reports per kind of record.

/// One kind of record: how many were read from the source, written to the target, and then
/// counted in the target. A copy is right when the three agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub kind: &'static str,
    pub read: u64,
    pub written: u64,
    pub counted: u64,
}

impl Tally {
    pub(crate) fn new(kind: &'static str) -> Self {
        Tally {
            kind,
            read: 0,
            written: 0,
            counted: 0,
        }
    }

    /// Whether read, written and counted agree.
    pub fn agrees(&self) -> bool {
        self.read == self.written && self.written == self.counted
    }
}
