//! ECS task scale-in protection.
//!
//! When the transformer service scales in, ECS stops the tasks it picks. A
//! task stopped while it holds messages hands them back (or, past its stop
//! timeout, leaves them to reappear after their visibility timeout): nothing
//! is lost, but the work is done twice and late. So while a transformer holds
//! messages it asks the ECS agent to protect its task
//! (`PUT $ECS_AGENT_URI/task-protection/v1/state`), and once it has held
//! none for [`IDLE_GRACE`] it lifts the protection again, so that scale-in
//! stops idle tasks instead.
//!
//! Protection holds deployments back too: ECS does not stop a protected
//! task to replace it. Under a steady backlog a transformer is never idle,
//! so renewing forever would stall every deployment. A busy stretch is
//! therefore protected for at most `SCALE_IN_PROTECTION_MAX`; then the
//! protection is lifted and not asked for again until the task has been
//! idle once. A deployment or scale-in waits at most that long, and the
//! task it stops finishes or hands back its messages within
//! `SHUTDOWN_TIMEOUT`, as on any SIGTERM.
//!
//! The receive loop says what it wants ([`ScaleInProtection::set_busy`]),
//! and a task of its own talks to the agent. Only work taken while the task
//! is unprotected waits, for one call ([`ScaleInProtection::hold`]), so that
//! no message is worked on before its task is protected. A failed call is
//! logged and tried again; it does not stop the transformer. Outside ECS
//! (`ECS_AGENT_URI` unset) nothing is called.

use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};
use url::Url;

use endpoint::{Endpoint, HttpEndpoint};

mod endpoint;

/// How long one protection lasts. It is renewed while the task stays busy,
/// so this only bounds how long a task that stopped answering keeps
/// scale-in away.
pub const EXPIRY: Duration = Duration::from_secs(10 * 60);

/// A protection is renewed once no more than this is left of it. (At
/// exactly this much: waking at the renewal time must renew, or the loop
/// would wake again at once until the clock moved on.)
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// Nothing in hand for this long lifts the protection: a transformer that
/// is busy receives again within milliseconds of finishing a batch, and
/// two agent calls per batch would be a waste.
pub const IDLE_GRACE: Duration = Duration::from_secs(2);

/// The default of `SCALE_IN_PROTECTION_MAX`.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(15 * 60);

/// After a failed call, the next try.
const RETRY: Duration = Duration::from_secs(5);

/// The agent's answers are small and local; a call that takes longer is
/// failed and tried again.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The task's protection, as the receive loop wants it.
#[derive(Debug)]
pub struct ScaleInProtection {
    busy: watch::Sender<bool>,
    /// What the agent last confirmed; `None` outside ECS.
    confirmed: Option<watch::Receiver<Confirmed>>,
    agent: Option<JoinHandle<()>>,
}

/// What the agent has done so far.
#[derive(Debug, Clone, Copy, Default)]
struct Confirmed {
    /// The task is protected. False from the moment a release is asked for.
    protected: bool,
    /// The last call failed: work does not wait for the agent meanwhile.
    failing: bool,
    /// The busy stretch reached its limit: unprotected on purpose until
    /// the task is idle, and work does not wait for a protection.
    declined: bool,
}

impl ScaleInProtection {
    /// Talks to the agent at `agent_uri` (the value of `ECS_AGENT_URI`),
    /// protecting a busy stretch for at most `limit`; with `None`, does
    /// nothing.
    pub fn start(agent_uri: Option<&Url>, limit: Duration) -> Self {
        let (busy, wanted) = watch::channel(false);
        let Some(uri) = agent_uri else {
            return Self {
                busy,
                confirmed: None,
                agent: None,
            };
        };
        let endpoint = HttpEndpoint::new(uri);
        info!(
            ecs.agent.url = %endpoint.url(),
            "Scale-in protection through {} while messages are in hand",
            endpoint.url()
        );
        Self::with_endpoint(endpoint, limit, busy, wanted)
    }

    fn with_endpoint(
        endpoint: impl Endpoint,
        limit: Duration,
        busy: watch::Sender<bool>,
        wanted: watch::Receiver<bool>,
    ) -> Self {
        let (confirm, confirmed) = watch::channel(Confirmed::default());
        let agent = Agent {
            endpoint,
            confirm,
            limit,
        };
        Self {
            busy,
            confirmed: Some(confirmed),
            agent: Some(tokio::spawn(agent.follow(wanted))),
        }
    }

    /// Says that messages are in hand and, unless the task is protected
    /// already, waits until it is, or until the agent fails to answer.
    /// While the agent is failing, does not wait.
    pub async fn hold(&self) {
        self.set_busy(true);
        let Some(confirmed) = &self.confirmed else {
            return;
        };
        let mut confirmed = confirmed.clone();
        // Bounded: the work must go on if the agent does not answer.
        let _ = tokio::time::timeout(
            CALL_TIMEOUT,
            confirmed.wait_for(|c| c.protected || c.failing || c.declined),
        )
        .await;
    }

    /// Says whether messages are in hand. Cheap: call it as often as the
    /// answer may have changed.
    pub fn set_busy(&self, busy: bool) {
        self.busy.send_if_modified(|current| {
            let changed = *current != busy;
            *current = busy;
            changed
        });
    }

    /// Lifts the protection, if any, and stops talking to the agent.
    pub async fn stop(self) {
        self.set_busy(false);
        let Self { busy, agent, .. } = self;
        drop(busy);
        if let Some(agent) = agent {
            agent.await.ok();
        }
    }
}

/// The task that keeps the protection as the receive loop wants it.
struct Agent<E> {
    endpoint: E,
    confirm: watch::Sender<Confirmed>,
    /// The longest busy stretch that is protected.
    limit: Duration,
}

impl<E: Endpoint> Agent<E> {
    /// Keeps the protection as `wanted` says until its sender is dropped,
    /// then lifts it.
    async fn follow(self, mut wanted: watch::Receiver<bool>) {
        // Until when the task is protected, by this process's clock.
        let mut protected_until: Option<Instant> = None;
        // When the protection of the current busy stretch began.
        let mut stretch_began: Option<Instant> = None;
        // The stretch reached the limit: no protection until idle.
        let mut declined = false;
        loop {
            let busy = *wanted.borrow_and_update();
            let now = Instant::now();
            let limit_at = stretch_began.map(|began| began + self.limit);
            let protect = match (busy, protected_until) {
                // The lift at the limit failed: again.
                (true, Some(_)) if declined => Some(false),
                (true, None) if declined => None,
                (true, Some(_)) if limit_at.is_some_and(|at| at <= now) => {
                    info!(
                        ecs.agent.url = %self.endpoint.url(),
                        "Busy for {} in a row: lifting scale-in protection until idle, so that a deployment or scale-in can stop this task",
                        humantime::format_duration(self.limit)
                    );
                    declined = true;
                    self.confirm.send_modify(|c| c.declined = true);
                    Some(false)
                }
                (true, None) => Some(true),
                (true, Some(until)) if until.saturating_duration_since(now) <= RENEW_BEFORE => {
                    Some(true)
                }
                (false, _) if (protected_until.is_some() || declined) => {
                    if !self.stays_idle(&mut wanted).await {
                        // Busy again within the grace: nothing changes.
                        continue;
                    }
                    stretch_began = None;
                    declined = false;
                    self.confirm.send_modify(|c| c.declined = false);
                    protected_until.map(|_| false)
                }
                _ => None,
            };
            let mut retry_at = None;
            if let Some(protect) = protect {
                match self.set(protect).await {
                    Ok(()) => {
                        protected_until = protect.then(|| now + EXPIRY);
                        if protect {
                            stretch_began.get_or_insert(now);
                        }
                    }
                    Err(()) => retry_at = Some(Instant::now() + RETRY),
                }
            }
            let renew_at = protected_until.map(|until| until - RENEW_BEFORE);
            let lift_at = protected_until.and(stretch_began.map(|began| began + self.limit));
            let wake = [retry_at, renew_at, lift_at].into_iter().flatten().min();
            tokio::select! {
                changed = wanted.changed() => if changed.is_err() { break },
                () = sleep_until(wake) => {}
            }
        }
        // The transformer is stopping.
        self.confirm.send_modify(|c| c.protected = false);
        if protected_until.is_some()
            && let Err(e) = self.endpoint.put(false).await
        {
            warn!(ecs.agent.url = %self.endpoint.url(), "{e}");
        }
    }

    /// Asks the agent to protect the task or not, and says so to the
    /// transformer; a failure is logged once per run of failures.
    async fn set(&self, protect: bool) -> Result<(), ()> {
        if !protect {
            // Work taken from now on waits for a new protection.
            self.confirm.send_modify(|c| c.protected = false);
        }
        let was_failing = self.confirm.borrow().failing;
        match self.endpoint.put(protect).await {
            Ok(()) => {
                if was_failing {
                    info!(ecs.agent.url = %self.endpoint.url(), "Scale-in protection works again");
                }
                self.confirm.send_modify(|c| {
                    c.protected = protect;
                    c.failing = false;
                });
                Ok(())
            }
            Err(e) => {
                // Once per run of failures: the agent may be away for a
                // while, and the work goes on without it.
                if !was_failing {
                    warn!(ecs.agent.url = %self.endpoint.url(), "{e}; trying again every {}s", RETRY.as_secs());
                }
                self.confirm.send_modify(|c| c.failing = true);
                Err(())
            }
        }
    }

    /// Waits [`IDLE_GRACE`]: true if nothing came in hand meanwhile (or
    /// the transformer is stopping).
    async fn stays_idle(&self, wanted: &mut watch::Receiver<bool>) -> bool {
        let grace = tokio::time::sleep(IDLE_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                () = &mut grace => return true,
                changed = wanted.changed() => match changed {
                    Err(_) => return true,
                    Ok(()) if *wanted.borrow() => return false,
                    Ok(()) => {}
                },
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
