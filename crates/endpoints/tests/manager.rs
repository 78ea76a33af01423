//! `EndpointPumps` follows the routing document: new endpoints start, changed ones restart,
//! removed ones stop, and a document whose sink cannot be built changes nothing.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use ironhub_endpoints::{
    Allowances, EndpointKind, EndpointPumps, EndpointStreams, Health, Settings, SinkContext,
    SinkFactory, sink, validate_with,
};
use ironhub_store::EventLog;
use serde_json::json;

/// Streams in a directory, one embedded log per name, opened once.
#[derive(Debug)]
struct DirStreams {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<dyn EventLog>>>,
}

impl DirStreams {
    fn get(&self, name: &str) -> Arc<dyn EventLog> {
        self.open
            .lock()
            .expect("lock")
            .entry(name.to_owned())
            .or_insert_with(|| open_log(&self.dir.join(name), 1))
            .clone()
    }
}

#[async_trait]
impl EndpointStreams for DirStreams {
    async fn delivery_stream(&self, endpoint: &str) -> ironhub_store::Result<Arc<dyn EventLog>> {
        Ok(self.get(&format!("delivery.{endpoint}")))
    }
    async fn dead_letters(&self, endpoint: &str) -> ironhub_store::Result<Arc<dyn EventLog>> {
        Ok(self.get(&format!("dead.{endpoint}")))
    }
}

fn storage(name: &str, container: &str) -> Settings {
    validate_with(
        EndpointKind::StorageContainers,
        &json!({"name": name, "containerName": container, "encoding": "json",
                "batchFrequencyInSeconds": 1}),
        Allowances::ANY,
    )
    .expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pumps_follow_the_routing_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let streams = Arc::new(DirStreams {
        dir: dir.path().join("streams"),
        open: Mutex::new(HashMap::new()),
    });
    let context = SinkContext {
        hub_name: "hub".into(),
        file_root: dir.path().join("files"),
    };
    let factory: SinkFactory = Arc::new(move |s: &Settings| sink(s, &context));
    let pumps = EndpointPumps::new(streams.clone(), factory, fast(5));

    pumps
        .apply(&[storage("Cold", "cold"), storage("warm", "warm")])
        .await
        .expect("applied");
    assert_eq!(pumps.statuses().await.len(), 2);
    for name in ["delivery.Cold", "delivery.warm"] {
        append_all(&streams.get(name), vec![message("d", b"first", None)]).await;
    }
    let delivered = |name: &'static str| {
        let pumps = &pumps;
        async move {
            let mut status = pumps.watch(name).await.expect("running");
            tokio::time::timeout(WAIT, status.wait_for(|s| s.delivered == 1))
                .await
                .expect("delivered in time")
                .expect("pump running")
                .clone()
        }
    };
    assert_eq!(delivered("cold").await.health_status, Health::Healthy);
    delivered("WARM").await;

    // A document with an endpoint whose directory cannot exist changes nothing.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").expect("write");
    let refused = pumps
        .apply(&[
            storage("Cold", "cold"),
            storage("broken", &blocker.join("sub").to_string_lossy()),
        ])
        .await
        .expect_err("refused");
    assert!(refused.0.contains("containerName"), "{refused}");
    assert_eq!(pumps.statuses().await.len(), 2);
    assert_eq!(pumps.status("warm").await.map(|s| s.delivered), Some(1));

    // warm removed, Cold changed (restarted: its counts start again), hot added.
    let changed = validate_with(
        EndpointKind::StorageContainers,
        &json!({"name": "Cold", "containerName": "cold2", "encoding": "json",
                "batchFrequencyInSeconds": 1}),
        Allowances::ANY,
    )
    .expect("valid");
    pumps
        .apply(&[changed, storage("hot", "hot")])
        .await
        .expect("applied");
    assert!(pumps.status("warm").await.is_none());
    assert_eq!(pumps.status("cold").await.map(|s| s.delivered), Some(0));
    append_all(
        &streams.get("delivery.Cold"),
        vec![message("d", b"second", None)],
    )
    .await;
    delivered("cold").await;
    let second = std::fs::read_dir(dir.path().join("files/cold2/hub/0"))
        .expect("the new container")
        .count();
    assert_eq!(second, 1);
    pumps.stop().await;
    assert!(pumps.statuses().await.is_empty());
}
