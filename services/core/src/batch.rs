//! SQS calls in batches of up to ten, made by a task of their own.
//!
//! Both services batch: the importer its messages, the transformer its
//! deletes. One design serves both. Items reach the task through a channel;
//! it sends what has arrived together as soon as the batch is full, `linger`
//! has passed since its oldest item, or [`Batcher::flush`] asks, and with a
//! `linger` of zero whatever is ready goes at once: a lone item is never
//! held back waiting for company. What a batch's outcome means for each item
//! is the [`Sink`]'s business.

use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// SQS takes at most ten entries per batch call.
pub const MAX_BATCH: usize = 10;

/// Sends one batch of at most [`MAX_BATCH`] items.
pub trait Sink<T>: Send + 'static {
    fn send(&mut self, batch: Vec<T>) -> impl Future<Output = ()> + Send;
}

enum Command<T> {
    Item(T),
    /// Send everything pending now, then answer.
    Flush(oneshot::Sender<()>),
}

/// The handle of a batching task; the task sends what is pending and ends
/// once this is dropped.
#[derive(Debug)]
pub struct Batcher<T> {
    commands: mpsc::UnboundedSender<Command<T>>,
}

impl<T: Send + 'static> Batcher<T> {
    /// Starts the task. Its handle tells whether it ended or died.
    pub fn start(sink: impl Sink<T>, linger: Duration) -> (Self, JoinHandle<()>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(sink, linger, receiver));
        (Self { commands }, task)
    }

    /// Queues an item; gives it back when the task is gone.
    pub fn push(&self, item: T) -> Result<(), T> {
        self.commands
            .send(Command::Item(item))
            .map_err(|mpsc::error::SendError(command)| match command {
                Command::Item(item) => item,
                Command::Flush(_) => unreachable!("an item was sent"),
            })
    }

    /// Returns once everything queued before it has been sent (or the task
    /// is gone).
    pub async fn flush(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).is_ok() {
            finished.await.ok();
        }
    }
}

async fn run<T, S: Sink<T>>(
    mut sink: S,
    linger: Duration,
    mut commands: mpsc::UnboundedReceiver<Command<T>>,
) {
    let mut pending: Vec<T> = Vec::with_capacity(MAX_BATCH);
    // When the oldest pending item has waited long enough.
    let mut due: Option<Instant> = None;
    loop {
        let command = tokio::select! {
            command = commands.recv() => command,
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                send(&mut sink, &mut pending).await;
                due = None;
                continue;
            }
        };
        match command {
            Some(Command::Item(item)) => {
                pending.push(item);
                // Whatever else is ready joins it.
                while pending.len() < MAX_BATCH {
                    match commands.try_recv() {
                        Ok(Command::Item(item)) => pending.push(item),
                        Ok(Command::Flush(done)) => {
                            send(&mut sink, &mut pending).await;
                            due = None;
                            done.send(()).ok();
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if pending.len() >= MAX_BATCH || linger.is_zero() {
                    send(&mut sink, &mut pending).await;
                    due = None;
                } else if !pending.is_empty() {
                    due.get_or_insert_with(|| Instant::now() + linger);
                }
            }
            Some(Command::Flush(done)) => {
                send(&mut sink, &mut pending).await;
                due = None;
                done.send(()).ok();
            }
            None => {
                send(&mut sink, &mut pending).await;
                return;
            }
        }
    }
}

async fn send<T, S: Sink<T>>(sink: &mut S, pending: &mut Vec<T>) {
    if !pending.is_empty() {
        sink.send(std::mem::take(pending)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A batch, and when it was sent.
    type Sent = (Duration, Vec<u32>);

    /// Records each batch and when it was sent.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Sent>>>);

    struct Recording {
        batches: Recorder,
        started: Instant,
    }

    impl Sink<u32> for Recording {
        async fn send(&mut self, batch: Vec<u32>) {
            let at = self.started.elapsed();
            self.batches.0.lock().unwrap().push((at, batch));
        }
    }

    fn start(linger: Duration) -> (Batcher<u32>, JoinHandle<()>, Recorder) {
        let batches = Recorder::default();
        let sink = Recording {
            batches: batches.clone(),
            started: Instant::now(),
        };
        let (batcher, task) = Batcher::start(sink, linger);
        (batcher, task, batches)
    }

    fn sent(batches: &Recorder) -> Vec<Sent> {
        batches.0.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_linger_what_is_ready_goes_at_once_ten_at_most() {
        let (batcher, task, batches) = start(Duration::ZERO);
        for i in 0..12 {
            batcher.push(i).unwrap();
        }
        drop(batcher);
        task.await.unwrap();
        let sent = sent(&batches);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(sent[0], (Duration::ZERO, (0..10).collect()));
        assert_eq!(sent[1], (Duration::ZERO, vec![10, 11]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lingering_item_waits_for_company_then_goes_alone() {
        let linger = Duration::from_millis(100);
        let (batcher, task, batches) = start(linger);
        batcher.push(1).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        batcher.push(2).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        batcher.push(3).unwrap();
        batcher.flush().await;
        drop(batcher);
        task.await.unwrap();
        assert_eq!(
            sent(&batches),
            [(linger, vec![1, 2]), (Duration::from_millis(230), vec![3])],
            "the first two after the oldest's linger, the third at the flush"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_push_to_a_stopped_batcher_gives_the_item_back() {
        let (batcher, task, _) = start(Duration::ZERO);
        task.abort();
        let _ = task.await;
        assert_eq!(batcher.push(7), Err(7));
    }
}
