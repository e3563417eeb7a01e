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
use crate::acks::Acks;
use crate::outcome::{Outcome, RunReport};
use crate::protection::ScaleInProtection;
use crate::queue::{LONG_POLL, MAX_RECEIVE, SqsQueue};

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
    ) -> impl Future<Output = Result<Vec<Message>, String>> + Send + 'static;

    /// True when no message is visible, delayed or in flight anywhere.
    fn is_drained(&self) -> impl Future<Output = Result<bool, String>> + Send;

    /// Makes a message received but never started visible again.
    fn hand_back(&self, receipt: &str) -> impl Future<Output = Result<(), String>> + Send;

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
    pub concurrency: usize,
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
    /// Receive only once this many slots are free (or none is busy): one
    /// receive per freed slot would cost as many SQS calls as messages,
    /// and waiting for half of them leaves them idle too long.
    receive_batch: usize,
    /// At most one receive at a time. It is never dropped while pending:
    /// SQS would still hand its messages out, to nobody, and they would stay
    /// hidden for their whole visibility timeout.
    receiving: Option<JoinHandle<Result<Vec<Message>, String>>>,
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
            permits: Arc::new(Semaphore::new(limits.concurrency)),
            tasks: JoinSet::new(),
            receive_batch: (limits.concurrency / 4).clamp(1, MAX_RECEIVE),
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
                warn!("{e}");
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
                warn!("{e}");
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
                received = async { self.receiving.as_mut().expect("checked").await }, if self.receiving.is_some() => {
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
                warn!(messaging.message.id = %id, "Message {id}: received while stopping and {e}");
            }
        }
    }
    handed_back
}

/// The transformer's SQS queue, with the deletes its handler left pending.
#[derive(Debug)]
pub struct Sqs {
    pub queue: SqsQueue,
    pub acks: Arc<Acks>,
    pub visibility_timeout: Duration,
}

impl Queue for Sqs {
    async fn receive(self: Arc<Self>, max: usize, wait: Duration) -> Result<Vec<Message>, String> {
        self.queue.receive(max, wait, self.visibility_timeout).await
    }

    async fn is_drained(&self) -> Result<bool, String> {
        self.queue.is_drained().await
    }

    async fn hand_back(&self, receipt: &str) -> Result<(), String> {
        self.queue.set_visibility(receipt, Duration::ZERO).await
    }

    async fn flush(&self) {
        self.acks.flush().await;
    }
}

#[cfg(test)]
mod tests {
    //! The loop against a queue in memory and messages that take a set
    //! time, with tokio's clock paused: time only moves when every task
    //! waits, so timings are exact and the tests take no real time.

    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Memory {
        visible: VecDeque<Message>,
        /// Received and not yet deleted or handed back, as SQS counts them.
        in_flight: usize,
        most_in_flight: usize,
        /// Finished, waiting for the next flush to be deleted.
        pending_deletes: usize,
        /// Receives still to fail before one succeeds.
        unreachable_for: u32,
        failed_receives: u32,
        handed_back: Vec<String>,
    }

    /// A queue in memory. A receive with nothing visible waits out its
    /// long poll, as SQS's does; one may be made slow with `receive_delay`.
    /// Finished messages are deleted by the next flush, which takes
    /// `flush_delay`, as the batched deletes do.
    #[derive(Debug, Default)]
    struct FakeQueue {
        memory: Mutex<Memory>,
        receive_delay: Duration,
        flush_delay: Duration,
        /// Messages with an odd number take this much longer to work on.
        stagger: Duration,
    }

    impl FakeQueue {
        fn with(messages: usize) -> Self {
            let queue = Self::default();
            queue.memory.lock().unwrap().visible = (0..messages)
                .map(|i| {
                    Message::builder()
                        .message_id(format!("m{i}"))
                        .receipt_handle(format!("r{i}"))
                        .build()
                })
                .collect();
            queue
        }

        fn done(&self) {
            self.memory.lock().unwrap().pending_deletes += 1;
        }
    }

    impl Queue for FakeQueue {
        async fn receive(
            self: Arc<Self>,
            max: usize,
            wait: Duration,
        ) -> Result<Vec<Message>, String> {
            tokio::time::sleep(self.receive_delay).await;
            let taken: Vec<Message> = {
                let mut memory = self.memory.lock().unwrap();
                if memory.unreachable_for > 0 {
                    memory.unreachable_for -= 1;
                    memory.failed_receives += 1;
                    return Err("the queue is unreachable".into());
                }
                let n = max.min(memory.visible.len());
                memory.in_flight += n;
                memory.most_in_flight = memory.most_in_flight.max(memory.in_flight);
                memory.visible.drain(..n).collect()
            };
            if taken.is_empty() {
                tokio::time::sleep(wait).await;
            }
            Ok(taken)
        }

        async fn is_drained(&self) -> Result<bool, String> {
            let memory = self.memory.lock().unwrap();
            Ok(memory.visible.is_empty() && memory.in_flight == 0)
        }

        async fn hand_back(&self, receipt: &str) -> Result<(), String> {
            let mut memory = self.memory.lock().unwrap();
            memory.in_flight -= 1;
            memory.handed_back.push(receipt.to_owned());
            Ok(())
        }

        async fn flush(&self) {
            // What is pending when the flush is asked for is deleted.
            let deleting = self.memory.lock().unwrap().pending_deletes;
            tokio::time::sleep(self.flush_delay).await;
            let mut memory = self.memory.lock().unwrap();
            memory.pending_deletes -= deleting;
            memory.in_flight -= deleting;
        }
    }

    /// Works on each message for `work`, counting how many are in hand.
    #[derive(Debug)]
    struct Worker {
        queue: Arc<FakeQueue>,
        work: Duration,
        in_hand: AtomicUsize,
        most_in_hand: AtomicUsize,
    }

    impl Handler for Worker {
        async fn handle(&self, message: Message, hand_back: CancellationToken) -> Outcome {
            let now = self.in_hand.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_hand.fetch_max(now, Ordering::SeqCst);
            let odd = message
                .message_id()
                .is_some_and(|id| id.ends_with(['1', '3', '5', '7', '9']));
            let work = self.work
                + if odd {
                    self.queue.stagger
                } else {
                    Duration::ZERO
                };
            let outcome = tokio::select! {
                () = tokio::time::sleep(work) => {
                    self.queue.done();
                    Outcome::Applied(Vec::new())
                }
                () = hand_back.cancelled() => {
                    Outcome::HandedBack(self.queue.hand_back(message.receipt_handle().unwrap()).await)
                }
            };
            self.in_hand.fetch_sub(1, Ordering::SeqCst);
            outcome
        }
    }

    struct Run {
        report: RunReport,
        took: Duration,
        queue: Arc<FakeQueue>,
        worker: Arc<Worker>,
    }

    /// Runs a listener over `queue`; shutdown is requested after
    /// `stop_after`, if given.
    async fn run(
        queue: Arc<FakeQueue>,
        work: Duration,
        limits: Limits,
        stop_after: Option<Duration>,
    ) -> Run {
        let worker = Arc::new(Worker {
            queue: Arc::clone(&queue),
            work,
            in_hand: AtomicUsize::new(0),
            most_in_hand: AtomicUsize::new(0),
        });
        let protection = ScaleInProtection::start(None, Duration::from_secs(60));
        let shutdown = CancellationToken::new();
        if let Some(after) = stop_after {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                shutdown.cancel();
            });
        }
        let started = Instant::now();
        let listener = Listener::new(
            Arc::clone(&queue),
            Arc::clone(&worker),
            limits,
            &protection,
            shutdown,
        );
        let report = listener.run().await.unwrap();
        Run {
            report,
            took: started.elapsed(),
            queue,
            worker,
        }
    }

    fn limits(mode: Mode, concurrency: usize) -> Limits {
        Limits {
            mode,
            concurrency,
            shutdown_timeout: Duration::from_secs(20),
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn drains_every_message_with_no_more_than_the_concurrency_in_hand() {
        let run = run(
            Arc::new(FakeQueue::with(10)),
            SECOND,
            limits(Mode::Drain, 2),
            None,
        )
        .await;

        assert_eq!(run.report.messages_applied, 10);
        assert_eq!(run.worker.most_in_hand.load(Ordering::SeqCst), 2);
        // Ten seconds of work two at a time, and the drain noticed at once.
        assert!(
            (5 * SECOND..6 * SECOND).contains(&run.took),
            "took {:?}",
            run.took
        );
    }

    #[tokio::test(start_paused = true)]
    async fn finished_messages_waiting_for_their_delete_count_against_the_concurrency() {
        // Messages take 1 s or 1.005 s, and a flush of the deletes 10 ms:
        // one message ends while the deletes of the one before are flushed.
        let mut queue = FakeQueue::with(20);
        queue.flush_delay = Duration::from_millis(10);
        queue.stagger = Duration::from_millis(5);
        let run = run(Arc::new(queue), SECOND, limits(Mode::Drain, 2), None).await;

        assert_eq!(run.report.messages_applied, 20);
        let most = run.queue.memory.lock().unwrap().most_in_flight;
        assert_eq!(most, 2, "in flight on the queue at once");
    }

    #[tokio::test(start_paused = true)]
    async fn draining_waits_for_messages_in_flight_elsewhere() {
        let queue = Arc::new(FakeQueue::with(0));
        queue.memory.lock().unwrap().in_flight = 1;
        let elsewhere = Arc::clone(&queue);
        tokio::spawn(async move {
            tokio::time::sleep(3 * SECOND).await;
            elsewhere.done();
        });
        let run = run(queue, SECOND, limits(Mode::Drain, 2), None).await;

        assert_eq!(run.report.messages_applied, 0);
        assert!(
            (3 * SECOND..3 * SECOND + 2 * DRAIN_RECHECK).contains(&run.took),
            "took {:?}",
            run.took
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_shutdown_what_is_not_done_by_the_deadline_is_handed_back() {
        let hour = Duration::from_secs(3600);
        let run = run(
            Arc::new(FakeQueue::with(3)),
            hour,
            limits(Mode::Serve, 4),
            Some(5 * SECOND),
        )
        .await;

        assert_eq!(run.report.handed_back, 3);
        assert_eq!(run.report.messages_applied, 0);
        let memory = run.queue.memory.lock().unwrap();
        assert_eq!(memory.handed_back.len(), 3);
        assert_eq!(memory.in_flight, 0);
        // Stopped at 5 s, then 20 s of grace.
        assert!(
            (25 * SECOND..26 * SECOND).contains(&run.took),
            "took {:?}",
            run.took
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_shutdown_messages_in_hand_that_finish_in_time_are_applied() {
        let run = run(
            Arc::new(FakeQueue::with(3)),
            10 * SECOND,
            limits(Mode::Serve, 4),
            Some(SECOND),
        )
        .await;

        assert_eq!(run.report.messages_applied, 3);
        assert_eq!(run.report.handed_back, 0);
        // Ten seconds of work, then RECEIVE_GRACE for the long poll still
        // pending, which had found nothing.
        assert!(
            (10 * SECOND + RECEIVE_GRACE..11 * SECOND + RECEIVE_GRACE).contains(&run.took),
            "took {:?}",
            run.took
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_queue_is_tried_again_after_growing_pauses() {
        let queue = FakeQueue::with(1);
        queue.memory.lock().unwrap().unreachable_for = 3;
        let run = run(Arc::new(queue), SECOND, limits(Mode::Drain, 2), None).await;

        assert_eq!(run.report.messages_applied, 1);
        assert_eq!(run.queue.memory.lock().unwrap().failed_receives, 3);
        // Pauses of 1, 2 and 4 s, then a second of work.
        assert!(
            (8 * SECOND..9 * SECOND).contains(&run.took),
            "took {:?}",
            run.took
        );
    }

    #[tokio::test(start_paused = true)]
    async fn messages_a_pending_receive_brings_after_shutdown_go_straight_back() {
        let mut queue = FakeQueue::with(2);
        queue.receive_delay = Duration::from_millis(500);
        let run = run(
            Arc::new(queue),
            SECOND,
            limits(Mode::Serve, 4),
            Some(Duration::from_millis(100)),
        )
        .await;

        assert_eq!(run.report.handed_back, 2);
        assert_eq!(
            run.worker.most_in_hand.load(Ordering::SeqCst),
            0,
            "never started"
        );
        assert_eq!(run.queue.memory.lock().unwrap().handed_back, ["r0", "r1"]);
    }
}
