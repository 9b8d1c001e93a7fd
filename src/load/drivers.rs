//! Connection patterns: when a client's sessions start and end.
//!
//! * `steady`: one session for the whole iteration.
//! * `cycle`: sessions of `up`, `down` apart, each a new sender — the seed's
//!   `while :; do timeout 1 python tester.py room_a; done`.
//! * `tabs`: one session per tab, opened evenly over `ramp`, closed after `hold` or at the end of
//!   the iteration — the browser-tab waves of the django-channels report.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

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

/// Runs one client through an iteration that started at `iteration_start`.
pub async fn drive(
    ctx: Arc<LoadContext>,
    book: Arc<LatencyBook>,
    spec: ClientSpec,
    mut phase: watch::Receiver<Phase>,
    iteration_start: Instant,
) -> Vec<SessionReport> {
    let mut reports = Vec::new();
    let plan = |close_at, close| SessionPlan {
        client: &spec.label,
        room: spec.room,
        instance: spec.instance,
        rate: spec.group.rate,
        payload: spec.group.payload,
        reader: spec.group.reader,
        close_at,
        close,
    };
    match spec.group.pattern {
        Pattern::Steady => {
            reports.extend(session::run(&ctx, &book, plan(None, CloseMode::Graceful), &mut phase).await);
        }
        Pattern::Cycle { up, down, close } => {
            while *phase.borrow() == Phase::Send {
                let close_at = Instant::now() + up;
                reports.extend(session::run(&ctx, &book, plan(Some(close_at), close), &mut phase).await);
                if !wait_while_sending(&mut phase, Instant::now() + down).await {
                    break;
                }
            }
        }
        Pattern::Tabs { ramp, hold, close } => {
            let offset = ramp.mul_f64(spec.index as f64 / spec.group.count.max(1) as f64);
            if wait_while_sending(&mut phase, iteration_start + offset).await {
                let close_at = hold.map(|h| iteration_start + ramp + h);
                reports.extend(session::run(&ctx, &book, plan(close_at, close), &mut phase).await);
            }
        }
    }
    reports
}

/// Sleeps until `deadline`; false if the send phase ended first.
async fn wait_while_sending(phase: &mut watch::Receiver<Phase>, deadline: Instant) -> bool {
    loop {
        if *phase.borrow() != Phase::Send {
            return false;
        }
        tokio::select! {
            _ = sleep_until(deadline) => return *phase.borrow() == Phase::Send,
            changed = phase.changed() => if changed.is_err() { return false },
        }
    }
}
