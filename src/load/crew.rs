//! A crew: one long-lived task per member for the whole run, given its part of each round as a
//! job, where a task per member per round would be spawned and freed again.
//!
//! Every spawned task's cell (its future, a few KiB for a client's) is a heap block of its own.
//! Spawned each iteration by the runner, whose long-lived records grow between iterations, those
//! cells land in new holes of the heap round after round: in a soak's page-fault trace
//! (`bench/pagefaults.sh`) they took 18–30% of leakrun's new pages. A member's task, its mailbox
//! and its future's state are allocated once, when the crew starts.
//!
//! A member that panicked, was aborted or did not answer within the bound is reported as
//! [`Lost`] for that round and started afresh for the next.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::heap;

/// What each member of a crew does with a job.
pub trait Work: Send + Sync + 'static {
    /// One round's part of a member's work.
    type Job: Send + 'static;
    /// What a member gives back for a job.
    type Done: Send + 'static;

    /// Member `member`'s part of one round.
    fn run(&self, member: usize, job: Self::Job) -> impl Future<Output = Self::Done> + Send;
}

/// Why a member gave nothing back for a round.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    /// Its task panicked.
    #[error("panicked")]
    Panicked,
    /// Its task ended without answering: aborted, or its runtime shutting down.
    #[error("was cancelled")]
    Cancelled,
    /// It did not answer within the bound, and was aborted.
    #[error("did not end within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
}

/// One member's mailbox: a job in and an answer out, each a slot with its wake-up. A slot and a
/// `Notify` are all a member holds between rounds: a channel would keep a block of 32 slots
/// each way, kilobytes per client, which ten thousand clients feel (`bench/c10k.sh`).
struct Mailbox<W: Work> {
    job: Mutex<Option<W::Job>>,
    job_ready: Notify,
    answer: Mutex<Option<W::Done>>,
    answer_ready: Notify,
}

impl<W: Work> Mailbox<W> {
    fn new() -> Self {
        Mailbox {
            job: Mutex::new(None),
            job_ready: Notify::new(),
            answer: Mutex::new(None),
            answer_ready: Notify::new(),
        }
    }
}

/// What a slot holds now, taken out of it.
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Puts `value` in a slot.
fn put<T>(slot: &Mutex<Option<T>>, value: T) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
}

/// One member: its mailbox, its task, and whether it owes an answer.
struct Member<W: Work> {
    mailbox: Arc<Mailbox<W>>,
    task: JoinHandle<()>,
    busy: bool,
}

pub struct Crew<W: Work> {
    work: Arc<W>,
    members: Vec<Member<W>>,
    /// Tasks started after the first: members that were lost.
    restarts: u64,
}

impl<W: Work> Crew<W> {
    /// Starts `size` members, each waiting for its first job.
    pub fn start(work: W, size: usize) -> Self {
        let work = Arc::new(work);
        let members = (0..size).map(|index| Self::member(&work, index)).collect();
        Crew {
            work,
            members,
            restarts: 0,
        }
    }

    /// The work its members do.
    pub fn work(&self) -> &W {
        &self.work
    }

    /// How many members the crew has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the crew has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// How many members' tasks were started afresh after one was lost.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// A member's task: a job in, its work's answer out, until the crew aborts it.
    fn member(work: &Arc<W>, index: usize) -> Member<W> {
        let mailbox = Arc::new(Mailbox::<W>::new());
        let task = heap::spawn_harness({
            let (work, mailbox) = (work.clone(), mailbox.clone());
            async move {
                loop {
                    mailbox.job_ready.notified().await;
                    let Some(job) = take(&mailbox.job) else {
                        continue;
                    };
                    let done = work.run(index, job).await;
                    put(&mailbox.answer, done);
                    mailbox.answer_ready.notify_one();
                }
            }
        });
        Member {
            mailbox,
            task,
            busy: false,
        }
    }

    /// Gives member `index` its job for the round. A member whose task has ended, or that has
    /// not answered its last job, is started afresh first.
    pub fn assign(&mut self, index: usize, job: W::Job) {
        let member = &self.members[index];
        if member.busy || member.task.is_finished() {
            self.restart(index);
        }
        let member = &mut self.members[index];
        put(&member.mailbox.job, job);
        member.mailbox.job_ready.notify_one();
        member.busy = true;
    }

    /// Member `index`'s answer to its job, waiting at most `bound`. A member that does not
    /// answer is aborted; a lost member is started afresh for the next round.
    pub async fn answer(&mut self, index: usize, bound: Duration) -> Result<W::Done, Lost> {
        let member = &mut self.members[index];
        let waited = timeout(bound, async {
            tokio::select! {
                _ = member.mailbox.answer_ready.notified() => None,
                ended = &mut member.task => Some(ended),
            }
        })
        .await;
        let lost = match waited {
            Ok(None) => match take(&member.mailbox.answer) {
                Some(done) => {
                    member.busy = false;
                    return Ok(done);
                }
                None => Lost::Cancelled,
            },
            // The task never ends by itself: it panicked or was aborted.
            Ok(Some(Err(error))) if error.is_panic() => Lost::Panicked,
            Ok(Some(_)) => Lost::Cancelled,
            Err(_) => Lost::TimedOut(bound),
        };
        self.restart(index);
        Err(lost)
    }

    /// Aborts member `index`'s task and starts a new one in its place.
    fn restart(&mut self, index: usize) {
        self.members[index].task.abort();
        self.members[index] = Self::member(&self.work, index);
        self.restarts += 1;
    }
}

impl<W: Work> Drop for Crew<W> {
    /// Nothing a crew started outlives it, idle or mid-job.
    fn drop(&mut self) {
        self.members.iter().for_each(|member| member.task.abort());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Doubles its job; panics on 13; never answers 99; counts the jobs it started.
    struct Doubler {
        started: AtomicUsize,
    }

    impl Work for Doubler {
        type Job = u32;
        type Done = (usize, u32);

        async fn run(&self, member: usize, job: u32) -> (usize, u32) {
            self.started.fetch_add(1, Ordering::Relaxed);
            match job {
                13 => panic!("a member's work panicked"),
                99 => std::future::pending().await,
                job => (member, job * 2),
            }
        }
    }

    fn crew(size: usize) -> Crew<Doubler> {
        Crew::start(
            Doubler {
                started: AtomicUsize::new(0),
            },
            size,
        )
    }

    #[tokio::test]
    async fn each_member_answers_its_own_job_round_after_round_in_the_same_task() {
        let mut crew = crew(3);
        let first_tasks: Vec<_> = crew.members.iter().map(|m| m.task.id()).collect();
        for round in 0..4u32 {
            (0..3).for_each(|i| crew.assign(i, round * 10 + i as u32));
            for i in 0..3 {
                let answer = crew.answer(i, Duration::from_secs(5)).await;
                assert_eq!(answer, Ok((i, (round * 10 + i as u32) * 2)));
            }
        }
        let tasks: Vec<_> = crew.members.iter().map(|m| m.task.id()).collect();
        assert_eq!(tasks, first_tasks, "no member was started afresh");
        assert_eq!(crew.restarts(), 0);
        assert_eq!(crew.work.started.load(Ordering::Relaxed), 12);
    }

    #[tokio::test]
    async fn a_member_that_panicked_is_lost_for_its_round_and_answers_the_next() {
        let mut crew = crew(2);
        crew.assign(0, 13);
        crew.assign(1, 1);
        assert_eq!(crew.answer(0, Duration::from_secs(5)).await, Err(Lost::Panicked));
        assert_eq!(crew.answer(1, Duration::from_secs(5)).await, Ok((1, 2)));
        assert_eq!(crew.restarts(), 1);
        crew.assign(0, 4);
        assert_eq!(crew.answer(0, Duration::from_secs(5)).await, Ok((0, 8)));
    }

    #[tokio::test]
    async fn a_member_that_does_not_answer_is_aborted_within_the_bound_and_replaced() {
        let mut crew = crew(1);
        crew.assign(0, 99);
        let stuck = crew.members[0].task.abort_handle();
        let bound = Duration::from_millis(50);
        assert_eq!(crew.answer(0, bound).await, Err(Lost::TimedOut(bound)));
        assert_eq!(Lost::TimedOut(bound).to_string(), "did not end within 50ms");
        tokio::task::yield_now().await;
        assert!(stuck.is_finished(), "the stuck task was aborted");
        crew.assign(0, 5);
        assert_eq!(crew.answer(0, Duration::from_secs(5)).await, Ok((0, 10)));
    }

    #[tokio::test]
    async fn a_job_given_to_a_member_that_has_not_answered_goes_to_a_fresh_one() {
        let mut crew = crew(1);
        crew.assign(0, 99);
        // The stuck job was never collected; the next round's job must not queue behind it.
        crew.assign(0, 3);
        assert_eq!(crew.answer(0, Duration::from_secs(5)).await, Ok((0, 6)));
        assert_eq!(crew.restarts(), 1);
    }

    #[tokio::test]
    async fn dropping_the_crew_ends_every_task_idle_or_working() {
        let mut crew = crew(2);
        crew.assign(0, 99);
        let handles: Vec<_> = crew.members.iter().map(|m| m.task.abort_handle()).collect();
        drop(crew);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(handles.iter().all(|h| h.is_finished()));
    }
}
