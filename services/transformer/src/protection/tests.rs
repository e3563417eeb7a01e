//! The protection's timing against an endpoint in memory, with tokio's
//! clock paused: ten minutes pass in no time, exactly.

use super::*;
use std::sync::{Arc, Mutex};

/// Records each call and when it came; refuses the first `refuse` ones.
#[derive(Debug)]
struct Fake {
    url: Url,
    started: Instant,
    refuse: usize,
    calls: Mutex<Vec<(Duration, bool, bool)>>,
}

impl Fake {
    fn new(refuse: usize) -> Arc<Self> {
        Arc::new(Self {
            url: Url::parse("http://agent.invalid/task-protection/v1/state").unwrap(),
            started: Instant::now(),
            refuse,
            calls: Mutex::new(Vec::new()),
        })
    }

    /// (seconds since the start, protect, refused) of each call.
    fn calls(&self) -> Vec<(u64, bool, bool)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(at, protect, refused)| (at.as_secs(), *protect, *refused))
            .collect()
    }
}

impl Endpoint for Arc<Fake> {
    fn url(&self) -> &Url {
        &self.url
    }

    async fn put(&self, protected: bool) -> Result<(), String> {
        let mut calls = self.calls.lock().unwrap();
        let refused = calls.len() < self.refuse;
        calls.push((self.started.elapsed(), protected, refused));
        if refused {
            Err("the agent answered HTTP 400 Bad Request".to_owned())
        } else {
            Ok(())
        }
    }
}

fn start(fake: &Arc<Fake>, limit: Duration) -> ScaleInProtection {
    let (busy, wanted) = watch::channel(false);
    ScaleInProtection::with_endpoint(Arc::clone(fake), limit, busy, wanted)
}

const MINUTE: u64 = 60;

#[tokio::test(start_paused = true)]
async fn a_long_busy_stretch_is_renewed_before_its_protection_expires() {
    let fake = Fake::new(0);
    let protection = start(&fake, Duration::from_secs(60 * MINUTE));

    protection.hold().await;
    tokio::time::sleep(Duration::from_secs(12 * MINUTE)).await;
    protection.stop().await;

    // Each protection lasts EXPIRY (10 min) and is renewed when RENEW_BEFORE
    // (5 min) is left: at 5 and 10 minutes. Lifted on stopping.
    assert_eq!(
        fake.calls(),
        [
            (0, true, false),
            (5 * MINUTE, true, false),
            (10 * MINUTE, true, false),
            (12 * MINUTE, false, false),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn after_refusals_it_is_tried_again_and_works_again() {
    let fake = Fake::new(2);
    let protection = start(&fake, Duration::from_secs(60 * MINUTE));

    // The first call is refused: the work does not wait for the agent.
    protection.hold().await;
    assert_eq!(fake.started.elapsed(), Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let confirmed = *protection.confirmed.as_ref().unwrap().borrow();
    assert!(confirmed.protected && !confirmed.failing, "{confirmed:?}");
    protection.stop().await;

    // Tried again every RETRY (5 s) until it works.
    assert_eq!(
        fake.calls(),
        [
            (0, true, true),
            (5, true, true),
            (10, true, false),
            (11, false, false)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_stretch_is_unprotected_at_its_limit_until_the_task_has_been_idle() {
    let fake = Fake::new(0);
    let protection = start(&fake, Duration::from_secs(7 * MINUTE));

    protection.hold().await;
    tokio::time::sleep(Duration::from_secs(9 * MINUTE)).await;
    // Idle for less than the grace: still the same stretch.
    protection.set_busy(false);
    tokio::time::sleep(IDLE_GRACE / 2).await;
    protection.hold().await;
    tokio::time::sleep(Duration::from_secs(3 * MINUTE)).await;
    // Idle for the grace: the next work is protected again.
    protection.set_busy(false);
    tokio::time::sleep(IDLE_GRACE + Duration::from_secs(1)).await;
    protection.hold().await;
    protection.stop().await;

    let again = 12 * MINUTE + 1 + IDLE_GRACE.as_secs() + 1;
    assert_eq!(
        fake.calls(),
        [
            (0, true, false),
            (5 * MINUTE, true, false),
            (7 * MINUTE, false, false),
            (again, true, false),
            (again, false, false),
        ]
    );
}
