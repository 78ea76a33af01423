//! A module's runtime fields in the SQLite store (connection state, last activity): written
//! without a new etag, by the modules port and by a node's recovery.

use ironhub_store::ModuleRecord;
use rusqlite::{Connection, params};

use crate::error::Result;

/// Writes a module's document as it is, etag included (its runtime fields changed).
pub(crate) fn store_runtime(conn: &Connection, module: &ModuleRecord) -> Result<()> {
    conn.prepare_cached("UPDATE modules SET doc = ?3 WHERE device_id = ?1 AND module_id = ?2")?
        .execute(params![
            module.device_id,
            module.module_id,
            serde_json::to_string(module)?
        ])?;
    Ok(())
}

/// Marks disconnected the modules whose connection `node` (or no known node) held; how many.
pub(crate) fn disconnect_node_modules(
    conn: &Connection,
    node: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    let docs: Vec<String> = conn
        .prepare(
            "SELECT doc FROM modules WHERE json_extract(doc, '$.connectionState') = 'Connected'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut disconnected = 0;
    for doc in &docs {
        let mut module: ModuleRecord = serde_json::from_str(doc)?;
        if module.runtime().disconnect_from(node, now) {
            store_runtime(conn, &module)?;
            disconnected += 1;
        }
    }
    Ok(disconnected)
}
