//! The receive loop, shaped like mini-redis's `Listener`: the struct's
//! fields are all of the loop's state, and each step is a method.
//!
//! [`Listener::run`] repeats two steps until it is time to stop:
//! [`next_messages`](Listener::next_messages) (wait for a slot, decide
//! whether the queue is drained, receive) and
//! [`dispatch`](Listener::dispatch) (one task per message, each holding a
//! permit). Then [`finish`](Listener::finish) lets the messages in hand
//! end, handing back what is not done by the shutdown deadline.
//!
//! It sees the queue through [`Queue`] and the work through [`Handler`], so
//! the deadline and drain logic is tested here with paused time, beside
//! the tests against LocalStack.

use aws_sdk_sqs::types::Message;
use pipeline_core::error_chain;
use pipeline_core::retry::Backoff;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Mode;
use crate::outcome::{Outcome, RunReport};
use crate::protection::ScaleInProtection;
use crate::queue::{LONG_POLL, MAX_RECEIVE, QueueError};

/// In drain mode receives do not wait (short polls), so that the end of
/// the work is noticed at once; after one that found nothing, the next
/// waits for a message in hand to finish, or [`DRAIN_RECHECK`].
const DRAIN_POLL: Duration = Duration::ZERO;
const DRAIN_RECHECK: Duration = Duration::from_millis(50);

/// Pauses while the queue cannot be reached: 1 s, 2 s, 4 s ... 30 s.
const UNREACHABLE_QUEUE: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(30),
    attempts: None,
    full_jitter: false,
};

/// Once nothing is in hand, how long a pending receive is still given to
/// return what it may have taken, so that it can be handed back.
const RECEIVE_GRACE: Duration = Duration::from_secs(1);

/// The queue as the loop sees it.
pub trait Queue: Send + Sync + 'static {
    /// Receives up to `max` messages, waiting up to `wait` for the first.
    fn receive(
        self: Arc<Self>,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Message>, QueueError>> + Send + 'static;

    /// True when no message is visible, delayed or in flight anywhere.
    fn is_drained(&self) -> impl Future<Output = Result<bool, QueueError>> + Send;

    /// Makes a message received but never started visible again.
    fn hand_back(&self, receipt: &str) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Deletes the finished messages still waiting to be: until then SQS
    /// counts them in flight.
    fn flush(&self) -> impl Future<Output = ()> + Send;
}

/// The work on one message. The message is the handler's from here: when
/// the future ends, the queue has been told.
pub trait Handler: Send + Sync + 'static {
    /// `hand_back` is cancelled at the shutdown deadline.
    fn handle(
        &self,
        message: Message,
        hand_back: CancellationToken,
    ) -> impl Future<Output = Outcome> + Send;
}

/// How the loop runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub mode: Mode,
    /// Messages in hand at once.
    pub in_hand: usize,
    /// After shutdown is requested, how long the messages in hand get.
    pub shutdown_timeout: Duration,
}

/// What one step of the loop came to.
enum Step {
    /// Go round again: something changed (a message finished, a pause).
    Again,
    /// Stop receiving: shutdown, or the queue is drained.
    Stop,
    Messages(Vec<Message>),
}

/// The receive loop's state.
pub struct Listener<'a, Q, H> {
    queue: Arc<Q>,
    handler: Arc<H>,
    limits: Limits,
    protection: &'a ScaleInProtection,
    shutdown: CancellationToken,
    /// One permit per message in hand: never receive more than can be
    /// started now, so that no message waits out its visibility timeout in
    /// this process's memory.
    permits: Arc<Semaphore>,
    /// The messages in hand.
    tasks: JoinSet<Outcome>,
    /// Receive only once this many slots are free (or none is busy): half
    /// of them. One receive per freed slot would cost as many SQS calls as
    /// messages (and as many deletes: they are flushed before each
    /// receive). Half of the slots are the messages fetched ahead of the
    /// database (see `Config::messages_in_hand`): when they are all taken,
    /// the other half is still being written while the next ones arrive.
    receive_batch: usize,
    /// At most one receive at a time. It is never dropped while pending:
    /// SQS would still hand its messages out, to nobody, and they would stay
    /// hidden for their whole visibility timeout.
    receiving: Option<JoinHandle<Result<Vec<Message>, QueueError>>>,
    /// The last receive came back empty.
    found_nothing: bool,
    /// Pauses while the queue cannot be reached; `None` after a success.
    backoff: Option<Box<dyn Iterator<Item = Duration> + Send>>,
    /// Cancelled when the shutdown deadline passes: unfinished messages
    /// are then handed back to the queue.
    hand_back: CancellationToken,
    report: RunReport,
}

impl<Q, H> std::fmt::Debug for Listener<'_, Q, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("limits", &self.limits)
            .field("in_hand", &self.tasks.len())
            .field("receiving", &self.receiving.is_some())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl<'a, Q: Queue, H: Handler> Listener<'a, Q, H> {
    pub fn new(
        queue: Arc<Q>,
        handler: Arc<H>,
        limits: Limits,
        protection: &'a ScaleInProtection,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            queue,
            handler,
            protection,
            shutdown,
            permits: Arc::new(Semaphore::new(limits.in_hand)),
            tasks: JoinSet::new(),
            receive_batch: (limits.in_hand / 2).clamp(1, MAX_RECEIVE),
            limits,
            receiving: None,
            found_nothing: false,
            backoff: None,
            hand_back: CancellationToken::new(),
            report: RunReport::default(),
        }
    }

    /// Receives and hands out messages until shutdown or, in
    /// [`Mode::Drain`], until the queue is drained; then finishes.
    pub async fn run(mut self) -> anyhow::Result<RunReport> {
        let started = Instant::now();
        loop {
            match self.next_messages().await? {
                Step::Stop => break,
                Step::Again => {}
                Step::Messages(messages) => self.dispatch(messages).await?,
            }
        }
        self.finish().await;
        self.report.log(started.elapsed());
        Ok(self.report)
    }

    /// One step towards the next messages.
    async fn next_messages(&mut self) -> anyhow::Result<Step> {
        if self.shutdown.is_cancelled() {
            return Ok(Step::Stop);
        }
        // Every way through the loop passes here after the messages in hand
        // changed.
        self.protection.set_busy(!self.tasks.is_empty());
        if self.receiving.is_none() {
            match self.wait_for_slots().await {
                Step::Messages(_) => {}
                other => return Ok(other),
            }
            self.start_receive().await;
        }
        self.collect_receive().await
    }

    /// Returns `Messages` (with none) when a receive may start now.
    async fn wait_for_slots(&mut self) -> Step {
        let free = self.permits.available_permits();
        if free < self.receive_batch && !self.tasks.is_empty() {
            return self.wait_for_a_message_in_hand().await;
        }
        if self.limits.mode == Mode::Drain {
            if self.found_nothing && !self.tasks.is_empty() {
                // Nothing visible: poll again when a slot frees up, not in a
                // busy loop.
                self.found_nothing = false;
                return self.wait_for_a_message_in_hand().await;
            }
            if self.tasks.is_empty() {
                match self.drained().await {
                    Step::Messages(_) => {}
                    other => return other,
                }
            }
        }
        Step::Messages(Vec::new())
    }

    /// In drain mode, with nothing in hand: `Stop` once the queue holds
    /// nothing anywhere, `Messages` (with none) to receive again.
    async fn drained(&mut self) -> Step {
        // Messages waiting to be deleted count as in flight.
        self.queue.flush().await;
        match self.queue.is_drained().await {
            Ok(true) => Step::Stop,
            // Messages are hidden elsewhere (another worker, a retry
            // delay): look again shortly.
            Ok(false) if self.found_nothing => {
                tokio::time::sleep(DRAIN_RECHECK).await;
                Step::Messages(Vec::new())
            }
            Ok(false) => Step::Messages(Vec::new()),
            Err(e) => {
                warn!("{}", error_chain(&e));
                self.report.queue_failures += 1;
                self.pause().await;
                Step::Again
            }
        }
    }

    async fn wait_for_a_message_in_hand(&mut self) -> Step {
        tokio::select! {
            () = self.shutdown.cancelled() => Step::Stop,
            Some(done) = self.tasks.join_next() => {
                self.report.add(done);
                Step::Again
            }
        }
    }

    async fn start_receive(&mut self) {
        // Finished messages still count as in flight on SQS until deleted:
        // deleting them before each receive keeps that count within the
        // concurrency, and batches the deletes by about `receive_batch`.
        // The slots are counted first: one freed during the flush may have
        // a delete still pending.
        let free = self.permits.available_permits();
        self.queue.flush().await;
        let wait = match self.limits.mode {
            Mode::Drain => DRAIN_POLL,
            Mode::Serve => LONG_POLL,
        };
        let receive = Arc::clone(&self.queue).receive(free.min(MAX_RECEIVE), wait);
        self.receiving = Some(tokio::spawn(receive));
    }

    /// Waits for the pending receive, or for a message in hand to finish.
    async fn collect_receive(&mut self) -> anyhow::Result<Step> {
        let Some(pending) = self.receiving.as_mut() else {
            return Ok(Step::Again);
        };
        let received = tokio::select! {
            () = self.shutdown.cancelled() => return Ok(Step::Stop),
            Some(done) = self.tasks.join_next() => {
                self.report.add(done);
                return Ok(Step::Again);
            }
            received = pending => received,
        };
        self.receiving = None;
        match received {
            Ok(Ok(messages)) => {
                self.backoff = None;
                self.found_nothing = messages.is_empty();
                Ok(Step::Messages(messages))
            }
            Ok(Err(e)) => {
                // The queue unreachable: not a reason to die; wait and try again.
                warn!("{}", error_chain(&e));
                self.report.queue_failures += 1;
                self.pause().await;
                Ok(Step::Again)
            }
            Err(e) => anyhow::bail!("the receive task failed: {e}"),
        }
    }

    /// Starts one task per message, each holding a permit until it ends.
    async fn dispatch(&mut self, messages: Vec<Message>) -> anyhow::Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.protection.hold().await;
        for message in messages {
            let permit = Arc::clone(&self.permits).acquire_owned().await?;
            let handler = Arc::clone(&self.handler);
            let hand_back = self.hand_back.clone();
            self.tasks.spawn(async move {
                let outcome = handler.handle(message, hand_back).await;
                drop(permit);
                outcome
            });
        }
        Ok(())
    }

    /// Growing pauses while the queue cannot be reached, cut short by
    /// shutdown.
    async fn pause(&mut self) {
        let pauses = self
            .backoff
            .get_or_insert_with(|| Box::new(UNREACHABLE_QUEUE.pauses()));
        let delay = pauses.next().unwrap_or(UNREACHABLE_QUEUE.max);
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }

    /// Lets the messages in hand finish; after a shutdown signal, only until
    /// the deadline, when the rest are handed back. A receive still pending
    /// may yet return messages: they were never started, so they go
    /// straight back.
    async fn finish(&mut self) {
        if !self.tasks.is_empty() {
            info!(
                in_flight = self.tasks.len(),
                "Finishing {} message(s) in hand",
                self.tasks.len()
            );
        }
        let deadline = tokio::time::sleep(self.limits.shutdown_timeout);
        tokio::pin!(deadline);
        let mut deadline_passed = !self.shutdown.is_cancelled();
        while !self.tasks.is_empty() || self.receiving.is_some() {
            tokio::select! {
                Some(done) = self.tasks.join_next() => self.report.add(done),
                received = pending_receive(&mut self.receiving), if self.receiving.is_some() => {
                    self.receiving = None;
                    if let Ok(Ok(messages)) = received {
                        self.report.handed_back += hand_back_unstarted(&*self.queue, &messages).await;
                    }
                }
                () = &mut deadline, if !deadline_passed => {
                    deadline_passed = true;
                    if !self.tasks.is_empty() {
                        warn!(in_flight = self.tasks.len(), "Shutdown deadline passed: handing {} message(s) back", self.tasks.len());
                    }
                    self.hand_back.cancel();
                }
                // With nothing in hand, a long poll that has found nothing
                // is not waited for.
                () = tokio::time::sleep(RECEIVE_GRACE), if self.tasks.is_empty() => break,
            }
        }
        self.queue.flush().await;
    }
}

/// What the pending receive returns; never ready when none is pending.
async fn pending_receive(
    receiving: &mut Option<JoinHandle<Result<Vec<Message>, QueueError>>>,
) -> Result<Result<Vec<Message>, QueueError>, tokio::task::JoinError> {
    match receiving {
        Some(receive) => receive.await,
        None => std::future::pending().await,
    }
}

/// Makes messages that were received but never started visible again.
async fn hand_back_unstarted(queue: &impl Queue, messages: &[Message]) -> u64 {
    let mut handed_back = 0;
    for message in messages {
        let id = message.message_id().unwrap_or_default();
        let Some(receipt) = message.receipt_handle() else {
            continue;
        };
        match queue.hand_back(receipt).await {
            Ok(()) => {
                info!(messaging.message.id = %id, "Message {id}: received while stopping: handed back to the queue");
                handed_back += 1;
            }
            Err(e) => {
                let e = error_chain(&e);
                warn!(messaging.message.id = %id, "Message {id}: received while stopping and {e}");
            }
        }
    }
    handed_back
}

#[cfg(test)]
mod tests;
