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
    /// How many each receive that found messages brought.
    received: Vec<usize>,
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
    ) -> Result<Vec<Message>, QueueError> {
        tokio::time::sleep(self.receive_delay).await;
        let taken: Vec<Message> = {
            let mut memory = self.memory.lock().unwrap();
            if memory.unreachable_for > 0 {
                memory.unreachable_for -= 1;
                memory.failed_receives += 1;
                let unreachable = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                return Err(QueueError::call("receive from", &"memory")(unreachable));
            }
            let n = max.min(memory.visible.len());
            if n > 0 {
                memory.received.push(n);
            }
            memory.in_flight += n;
            memory.most_in_flight = memory.most_in_flight.max(memory.in_flight);
            memory.visible.drain(..n).collect()
        };
        if taken.is_empty() {
            tokio::time::sleep(wait).await;
        }
        Ok(taken)
    }

    async fn is_drained(&self) -> Result<bool, QueueError> {
        let memory = self.memory.lock().unwrap();
        Ok(memory.visible.is_empty() && memory.in_flight == 0)
    }

    async fn hand_back(&self, receipt: &str) -> Result<(), QueueError> {
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

fn limits(mode: Mode, in_hand: usize) -> Limits {
    Limits {
        mode,
        in_hand,
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
async fn it_receives_again_once_half_of_the_slots_are_free() {
    // Messages end one by one (the odd ones 100 ms later): a receive per
    // freed slot would bring one message each.
    let mut queue = FakeQueue::with(40);
    queue.stagger = Duration::from_millis(100);
    let run = run(Arc::new(queue), SECOND, limits(Mode::Drain, 8), None).await;

    assert_eq!(run.report.messages_applied, 40);
    let received = run.queue.memory.lock().unwrap().received.clone();
    assert_eq!(received[0], 8, "the first receive fills every slot");
    let (last, others) = received.split_last().unwrap();
    assert!(
        others.iter().all(|&n| n >= 4) && *last >= 1,
        "each receive but the last brings at least half the slots' worth: {received:?}"
    );
    assert!(received.len() <= 10, "{received:?}");
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
    // Three messages in hand leave more than half of the eight slots free:
    // a long poll is pending too.
    let run = run(
        Arc::new(FakeQueue::with(3)),
        10 * SECOND,
        limits(Mode::Serve, 8),
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
    assert_eq!(run.report.queue_failures, 3);
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
