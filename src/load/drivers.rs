//! Connection patterns: when a client's sessions start and end.
//!
//! * `steady`: one session for the whole iteration; the group connects evenly over `ramp`.
//! * `cycle`: sessions of `up`, `down` apart, each a new sender — the seed's
//!   `while :; do timeout 1 python tester.py room_a; done`; first connects spread over `ramp`.
//! * `tabs`: one session per tab, opened evenly over `ramp`, closed after `hold` or at the end of
//!   the iteration — the browser-tab waves of the django-channels report.

use std::sync::Arc;

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::crew::{Crew, Work};
use super::pacing::wait_while_sending;
use super::session::{self, SessionPlan};
use super::{LoadContext, Phase};
use crate::observe::analysis::SessionReport;
use crate::observe::latency::LatencyBook;
use crate::scenario::{ClientGroup, CloseMode, Pattern, Scenario};

/// One client of the scenario.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Label used in events and loss records, e.g. `room_a/cycle#0`.
    pub label: String,
    /// Room index.
    pub room: usize,
    /// Server instance it connects to.
    pub instance: usize,
    /// Its group's settings.
    pub group: ClientGroup,
    /// Index within its group.
    pub index: usize,
}

/// Every client of `scenario`, spread round-robin over `instances`.
pub fn clients(scenario: &Scenario, instances: usize) -> Vec<ClientSpec> {
    let mut out = Vec::new();
    for (room_index, room) in scenario.rooms.iter().enumerate() {
        let mut per_pattern: std::collections::HashMap<&str, usize> = Default::default();
        for group in &room.clients {
            for index in 0..group.count {
                let n = per_pattern.entry(group.pattern.name()).or_default();
                out.push(ClientSpec {
                    label: format!("{}/{}#{}", room.name, group.pattern.name(), n),
                    room: room_index,
                    instance: out.len() % instances.max(1),
                    group: group.clone(),
                    index,
                });
                *n += 1;
            }
        }
    }
    out
}

/// One iteration's part of a client: where its latency goes, the iteration's phase, when it
/// started, and an empty vector (the last iteration's, kept) for its session reports.
pub struct Shift {
    /// The iteration's latency histograms.
    pub book: Arc<LatencyBook>,
    /// The iteration's phase.
    pub phase: watch::Receiver<Phase>,
    /// When the iteration started.
    pub start: Instant,
    /// Where the client's session reports go.
    pub reports: Vec<SessionReport>,
}

/// Every WebSocket client of a run, each driven by a member of a [`Crew`] for the whole run.
pub struct Clients {
    ctx: Arc<LoadContext>,
    specs: Vec<ClientSpec>,
}

impl Clients {
    /// The clients `specs`, sending through `ctx`.
    pub fn new(ctx: Arc<LoadContext>, specs: Vec<ClientSpec>) -> Self {
        Clients { ctx, specs }
    }

    /// Client `index`'s spec.
    pub fn spec(&self, index: usize) -> &ClientSpec {
        &self.specs[index]
    }

    /// A crew of one member per client.
    pub fn crew(self) -> Crew<Clients> {
        let size = self.specs.len();
        Crew::start(self, size)
    }
}

impl Work for Clients {
    type Job = Shift;
    type Done = Vec<SessionReport>;

    async fn run(&self, member: usize, shift: Shift) -> Vec<SessionReport> {
        drive(&self.ctx, &self.specs[member], shift).await
    }
}

/// Runs one client through an iteration: its sessions' reports, in `shift.reports`.
async fn drive(ctx: &LoadContext, spec: &ClientSpec, shift: Shift) -> Vec<SessionReport> {
    let Shift {
        book,
        mut phase,
        start: iteration_start,
        mut reports,
    } = shift;
    let plan = |connect_at, close_at, up, close| SessionPlan {
        client: &spec.label,
        room: spec.room,
        instance: spec.instance,
        rate: spec.group.rate,
        payload: spec.group.payload,
        reader: spec.group.reader,
        phase: spec.group.phase,
        connect_at,
        close_at,
        up,
        close,
    };
    let ramped = |ramp: Duration| iteration_start + ramp.mul_f64(spec.index as f64 / spec.group.count.max(1) as f64);
    match spec.group.pattern {
        Pattern::Steady { ramp } => {
            let at = ramped(ramp);
            reports.extend(session::run(ctx, &book, plan(at, None, None, CloseMode::Graceful), &mut phase).await);
        }
        Pattern::Cycle { up, down, close, ramp } => {
            let mut at = ramped(ramp);
            while *phase.borrow() == Phase::Send {
                reports.extend(session::run(ctx, &book, plan(at, None, Some(up), close), &mut phase).await);
                at = Instant::now() + down;
                if !wait_while_sending(&mut phase, at).await {
                    break;
                }
            }
        }
        Pattern::Tabs { ramp, hold, close } => {
            let close_at = hold.map(|h| iteration_start + ramp + h);
            reports.extend(session::run(ctx, &book, plan(ramped(ramp), close_at, None, close), &mut phase).await);
        }
    }
    reports
}
