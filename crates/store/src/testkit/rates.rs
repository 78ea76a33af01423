//! Cases of the rate windows port. Each case gets two handles on one store, as two nodes
//! sharing it would have.

use std::sync::Arc;

use crate::{RateWindows, WindowCount};

fn count(key: &str, window: u64, count: u64) -> WindowCount {
    WindowCount {
        key: key.into(),
        window,
        count,
    }
}

/// Counts add up whoever adds them, each answer is the total after the addition, in the
/// order asked, and adding 0 reads the total without changing it.
pub async fn counts_add_up_across_nodes(a: Arc<dyn RateWindows>, b: Arc<dyn RateWindows>) {
    assert_eq!(
        a.add_to_windows(vec![count("k", 10, 3)]).await.unwrap(),
        [3]
    );
    assert_eq!(
        b.add_to_windows(vec![count("k", 10, 4)]).await.unwrap(),
        [7]
    );
    assert_eq!(
        a.add_to_windows(vec![count("other", 10, 1), count("k", 10, 0)])
            .await
            .unwrap(),
        [1, 7],
        "answers come in the order asked; 0 reads"
    );
    assert_eq!(b.add_to_windows(vec![]).await.unwrap(), Vec::<u64>::new());
}

/// Each key has its own count in each window.
pub async fn keys_and_windows_are_apart(a: Arc<dyn RateWindows>, b: Arc<dyn RateWindows>) {
    a.add_to_windows(vec![count("k", 1, 5), count("k", 2, 1), count("K", 1, 2)])
        .await
        .unwrap();
    assert_eq!(
        b.add_to_windows(vec![count("k", 1, 0), count("k", 2, 0), count("K", 1, 0)])
            .await
            .unwrap(),
        [5, 1, 2],
        "keys are case-sensitive and windows separate"
    );
}

/// Old windows are forgotten, newer ones kept.
pub async fn old_windows_are_forgotten(a: Arc<dyn RateWindows>, b: Arc<dyn RateWindows>) {
    a.add_to_windows(vec![count("k", 1, 1), count("k", 2, 2), count("j", 3, 3)])
        .await
        .unwrap();
    assert_eq!(b.forget_windows_before(3).await.unwrap(), 2);
    assert_eq!(
        a.add_to_windows(vec![count("k", 1, 0), count("k", 2, 0), count("j", 3, 0)])
            .await
            .unwrap(),
        [0, 0, 3]
    );
}

/// Nodes adding at the same time lose none of each other's counts.
pub async fn concurrent_additions_are_not_lost(a: Arc<dyn RateWindows>, b: Arc<dyn RateWindows>) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let w = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            w.add_to_windows(vec![count("k", 7, 1), count("j", 7, 2)])
                .await
                .unwrap()
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap()[0]);
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=20).collect::<Vec<u64>>(),
        "each addition saw its own total"
    );
    assert_eq!(
        a.add_to_windows(vec![count("j", 7, 0)]).await.unwrap(),
        [40]
    );
}
