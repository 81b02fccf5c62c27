//! `memory://`: a real broker inside the process, with the same semantics as the others (leases
//! expire and redeliver, delivery limit → dead letter, delayed retry held by the broker,
//! paid-before-free) — the embedded fleet runs on it. Time is tokio's, so tests drive leases and
//! delays with a paused clock. Publishing is "durable" for the life of the process.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use clipfleet_proto::{PoolName, Priority, WorkerId};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::{LeaseToken, check_headers, headers_for_retry, retries_of};
use crate::{
    Broker, BrokerAdmin, BrokerError, BrokerErrorKind, BrokerResult, ControlBus,
    DEAD_REASON_HEADER, Delivery, Headers, Lease, Nack, Outgoing, PoolSpec, PrioritySelector,
    QueueDepth, QueueRef, Receive, Topic,
};

/// The in-process broker. Clones share the same queues.
#[derive(Debug, Clone, Default)]
pub struct InMemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// Woken whenever a message becomes ready, so waiting receivers look again.
    ready: Notify,
}

/// Where a stored message sits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    Jobs(PoolName, Priority),
    Dead(PoolName),
    Events,
    Control(WorkerId),
}

#[derive(Debug, Clone)]
struct Stored {
    body: bytes::Bytes,
    headers: Headers,
    /// Deliveries of this copy so far.
    deliveries: u32,
}

#[derive(Debug)]
struct Leased {
    slot: Slot,
    stored: Stored,
    expires: Instant,
}

#[derive(Debug, Default)]
struct PoolState {
    spec: PoolSpec,
    selector: PrioritySelector,
}

#[derive(Debug, Default)]
struct State {
    pools: HashMap<PoolName, PoolState>,
    ready: HashMap<Slot, VecDeque<Stored>>,
    leases: HashMap<u64, Leased>,
    /// Lease expiries, earliest first; entries whose lease was settled or extended are stale
    /// and skipped when popped.
    expiries: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Messages waiting out a retry delay, by due time.
    delayed: BTreeMap<(Instant, u64), (Slot, Stored)>,
    next_id: u64,
}

impl InMemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        InMemoryBroker::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state (each operation is a
        // few collection edits); keep serving rather than poisoning every caller.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn not_found(what: String) -> BrokerError {
    BrokerError::new(BrokerErrorKind::NotFound, what)
}

fn lease_lost() -> BrokerError {
    BrokerError::new(
        BrokerErrorKind::LeaseLost,
        "lease expired or already settled",
    )
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn slot_exists(&self, slot: &Slot) -> bool {
        match slot {
            Slot::Jobs(pool, _) | Slot::Dead(pool) => self.pools.contains_key(pool),
            Slot::Events => true,
            Slot::Control(_) => self.ready.contains_key(slot),
        }
    }

    /// Returns expired leases to their queues and due delayed messages to theirs. Returns
    /// whether anything became ready.
    fn reap(&mut self, now: Instant) -> bool {
        let mut woke = false;
        while let Some(Reverse((expires, id))) = self.expiries.peek().copied() {
            if expires > now {
                break;
            }
            self.expiries.pop();
            if self.leases.get(&id).is_some_and(|l| l.expires <= now) {
                let leased = self.leases.remove(&id).expect("checked above");
                self.give_back(leased.slot, leased.stored);
                woke = true;
            }
        }
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (slot, stored) = entry.remove();
            if self.slot_exists(&slot) {
                self.ready.entry(slot).or_default().push_back(stored);
                woke = true;
            }
        }
        woke
    }

    /// A delivery comes back unsettled: to the front of its queue, or to the dead letters once
    /// it has used up its deliveries.
    fn give_back(&mut self, slot: Slot, stored: Stored) {
        if let Slot::Jobs(pool, _) = &slot {
            let Some(state) = self.pools.get(pool) else {
                return; // pool deleted meanwhile
            };
            if stored.deliveries >= state.spec.max_deliveries {
                let dead = Slot::Dead(pool.clone());
                self.ready
                    .entry(dead)
                    .or_default()
                    .push_back(dead_copy(stored, "delivery_limit"));
                return;
            }
        }
        if self.slot_exists(&slot) {
            self.ready.entry(slot).or_default().push_front(stored);
        }
    }

    fn take(
        &mut self,
        queue: &Arc<QueueRef>,
        max: usize,
        lease_for: Duration,
        now: Instant,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        while out.len() < max {
            let slot = match queue.as_ref() {
                QueueRef::Jobs(pool) => {
                    let paid = Slot::Jobs(pool.clone(), Priority::Paid);
                    let free = Slot::Jobs(pool.clone(), Priority::Free);
                    let has = |s: &Slot| self.ready.get(s).is_some_and(|q| !q.is_empty());
                    let (paid_ready, free_ready) = (has(&paid), has(&free));
                    let Some(state) = self.pools.get_mut(pool) else {
                        break;
                    };
                    match state.selector.pick(paid_ready, free_ready) {
                        Some(Priority::Paid) => paid,
                        Some(_) => free,
                        None => break,
                    }
                }
                QueueRef::Dead(pool) => Slot::Dead(pool.clone()),
                QueueRef::Events => Slot::Events,
                QueueRef::Control(worker) => Slot::Control(worker.clone()),
            };
            let Some(mut stored) = self.ready.get_mut(&slot).and_then(VecDeque::pop_front) else {
                break;
            };
            stored.deliveries += 1;
            let id = self.next_id();
            let expires = now + lease_for;
            let priority = match &slot {
                Slot::Jobs(_, priority) => *priority,
                _ => Priority::Free,
            };
            out.push(Delivery {
                lease: Lease {
                    queue: queue.clone(),
                    token: LeaseToken::Memory { id },
                },
                body: stored.body.clone(),
                retries: retries_of(&stored.headers),
                headers: stored.headers.clone(),
                delivery_count: stored.deliveries,
                priority,
            });
            self.expiries.push(Reverse((expires, id)));
            self.leases.insert(
                id,
                Leased {
                    slot,
                    stored,
                    expires,
                },
            );
        }
        out
    }

    /// The earliest instant at which something may become ready.
    fn next_change(&self) -> Option<Instant> {
        let lease = self.expiries.peek().map(|Reverse((at, _))| *at);
        let delayed = self.delayed.first_key_value().map(|((at, _), _)| *at);
        match (lease, delayed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn settle(&mut self, lease: &Lease) -> BrokerResult<Leased> {
        let id = memory_id(lease)?;
        self.leases.remove(&id).ok_or_else(lease_lost)
    }
}

/// The id inside a lease this broker issued.
#[allow(irrefutable_let_patterns)] // refutable once another backend is compiled in
fn memory_id(lease: &Lease) -> BrokerResult<u64> {
    if let LeaseToken::Memory { id } = &lease.token {
        Ok(*id)
    } else {
        Err(BrokerError::new(
            BrokerErrorKind::InvalidInput,
            "not a memory:// lease",
        ))
    }
}

fn dead_copy(mut stored: Stored, reason: &str) -> Stored {
    stored
        .headers
        .insert(DEAD_REASON_HEADER.into(), reason.into());
    stored.deliveries = 0;
    stored
}

/// The slots a queue reads from: a jobs queue has one per priority class.
fn slots_of(queue: &QueueRef) -> Vec<Slot> {
    match queue {
        QueueRef::Jobs(pool) => vec![
            Slot::Jobs(pool.clone(), Priority::Paid),
            Slot::Jobs(pool.clone(), Priority::Free),
        ],
        QueueRef::Dead(pool) => vec![Slot::Dead(pool.clone())],
        QueueRef::Events => vec![Slot::Events],
        QueueRef::Control(worker) => vec![Slot::Control(worker.clone())],
    }
}

fn slot_of(topic: &Topic) -> Slot {
    match topic {
        Topic::Jobs(pool, priority) => Slot::Jobs(pool.clone(), *priority),
        Topic::Events => Slot::Events,
        Topic::Control => Slot::Events, // never stored as such: fanned out in `publish_all`
    }
}

#[async_trait]
impl Broker for InMemoryBroker {
    async fn ensure_pool(&self, pool: &PoolName, spec: PoolSpec) -> BrokerResult<()> {
        let spec = spec.validate()?;
        let mut state = self.lock();
        state.pools.entry(pool.clone()).or_default().spec = spec;
        Ok(())
    }

    async fn publish_all(&self, topic: &Topic, messages: Vec<Outgoing>) -> BrokerResult<()> {
        for message in &messages {
            check_headers(&message.headers)?;
        }
        {
            let mut state = self.lock();
            if let Topic::Jobs(pool, _) = topic
                && !state.pools.contains_key(pool)
            {
                return Err(not_found(format!("pool {pool} is not declared")));
            }
            let targets: Vec<Slot> = match topic {
                Topic::Control => state
                    .ready
                    .keys()
                    .filter(|slot| matches!(slot, Slot::Control(_)))
                    .cloned()
                    .collect(),
                other => vec![slot_of(other)],
            };
            for slot in targets {
                let queue = state.ready.entry(slot).or_default();
                queue.extend(messages.iter().map(|m| Stored {
                    body: m.body.clone(),
                    headers: m.headers.clone(),
                    deliveries: 0,
                }));
            }
        }
        self.inner.ready.notify_waiters();
        Ok(())
    }

    async fn receive(&self, queue: &QueueRef, options: Receive) -> BrokerResult<Vec<Delivery>> {
        let queue = Arc::new(queue.clone());
        let deadline = Instant::now() + options.wait;
        loop {
            let notified = self.inner.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_change = {
                let mut state = self.lock();
                let now = Instant::now();
                state.reap(now);
                match queue.as_ref() {
                    QueueRef::Jobs(pool) | QueueRef::Dead(pool)
                        if !state.pools.contains_key(pool) =>
                    {
                        return Err(not_found(format!("pool {pool} is not declared")));
                    }
                    QueueRef::Control(worker)
                        if !state.ready.contains_key(&Slot::Control(worker.clone())) =>
                    {
                        return Err(not_found(format!("worker {worker} has not subscribed")));
                    }
                    _ => {}
                }
                let taken = state.take(&queue, options.max.max(1), options.lease, now);
                if !taken.is_empty() {
                    return Ok(taken);
                }
                if now >= deadline {
                    return Ok(Vec::new());
                }
                state.next_change()
            };
            let wake_at = next_change.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    async fn ack(&self, leases: &[Lease]) -> BrokerResult<()> {
        if leases.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        let mut lost = 0;
        for lease in leases {
            if state.settle(lease).is_err() {
                lost += 1;
            }
        }
        if lost > 0 {
            return Err(BrokerError::new(
                BrokerErrorKind::LeaseLost,
                format!(
                    "{lost} of {} leases expired or were already settled",
                    leases.len()
                ),
            ));
        }
        Ok(())
    }

    async fn nack(&self, lease: &Lease, action: Nack) -> BrokerResult<()> {
        {
            let mut state = self.lock();
            let leased = state.settle(lease)?;
            match action {
                Nack::Requeue => state.give_back(leased.slot, leased.stored),
                Nack::RetryAfter(delay) => {
                    let copy = Stored {
                        body: leased.stored.body,
                        headers: headers_for_retry(&leased.stored.headers),
                        deliveries: 0,
                    };
                    let id = state.next_id();
                    state
                        .delayed
                        .insert((Instant::now() + delay, id), (leased.slot, copy));
                }
            }
        }
        self.inner.ready.notify_waiters();
        Ok(())
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> BrokerResult<()> {
        let QueueRef::Jobs(pool) = lease.queue() else {
            return Err(BrokerError::new(
                BrokerErrorKind::Unsupported,
                format!("{} has no dead-letter queue", lease.queue()),
            ));
        };
        let mut state = self.lock();
        let leased = state.settle(lease)?;
        let dead = Slot::Dead(pool.clone());
        state
            .ready
            .entry(dead)
            .or_default()
            .push_back(dead_copy(leased.stored, reason));
        Ok(())
    }

    async fn extend_lease(&self, lease: &Lease, lease_for: Duration) -> BrokerResult<()> {
        let id = memory_id(lease)?;
        let mut state = self.lock();
        let now = Instant::now();
        state.reap(now);
        let expires = now + lease_for;
        let leased = state.leases.get_mut(&id).ok_or_else(lease_lost)?;
        leased.expires = expires;
        state.expiries.push(Reverse((expires, id)));
        Ok(())
    }

    async fn depth(&self, queue: &QueueRef) -> BrokerResult<QueueDepth> {
        let mut state = self.lock();
        state.reap(Instant::now());
        let slots = slots_of(queue);
        if let QueueRef::Jobs(pool) | QueueRef::Dead(pool) = queue
            && !state.pools.contains_key(pool)
        {
            return Err(not_found(format!("pool {pool} is not declared")));
        }
        let ready = slots
            .iter()
            .map(|s| state.ready.get(s).map_or(0, VecDeque::len))
            .sum::<usize>();
        let in_flight = state
            .leases
            .values()
            .filter(|l| slots.contains(&l.slot))
            .count();
        let delayed = state
            .delayed
            .values()
            .filter(|(slot, _)| slots.contains(slot))
            .count();
        Ok(QueueDepth {
            ready: ready as u64,
            in_flight: Some(in_flight as u64),
            delayed: Some(delayed as u64),
            consumers: None,
        })
    }

    async fn check(&self) -> BrokerResult<()> {
        Ok(())
    }

    fn control_bus(&self) -> Option<&dyn ControlBus> {
        Some(self)
    }

    fn admin(&self) -> Option<&dyn BrokerAdmin> {
        Some(self)
    }
}

#[async_trait]
impl ControlBus for InMemoryBroker {
    async fn subscribe_control(&self, worker: &WorkerId) -> BrokerResult<()> {
        self.lock()
            .ready
            .entry(Slot::Control(worker.clone()))
            .or_default();
        Ok(())
    }
}

#[async_trait]
impl BrokerAdmin for InMemoryBroker {
    async fn delete_pool(&self, pool: &PoolName) -> BrokerResult<()> {
        let mut state = self.lock();
        state.pools.remove(pool);
        let ours = |slot: &Slot| matches!(slot, Slot::Jobs(p, _) | Slot::Dead(p) if p == pool);
        state.ready.retain(|slot, _| !ours(slot));
        state.leases.retain(|_, leased| !ours(&leased.slot));
        state.delayed.retain(|_, (slot, _)| !ours(slot));
        Ok(())
    }

    async fn purge(&self, queue: &QueueRef) -> BrokerResult<u64> {
        let mut state = self.lock();
        let slots = slots_of(queue);
        let mut purged = 0;
        for slot in slots {
            if let Some(queue) = state.ready.get_mut(&slot) {
                purged += queue.len() as u64;
                queue.clear();
            }
        }
        Ok(purged)
    }

    async fn move_messages(
        &self,
        from: &QueueRef,
        to: &QueueRef,
        max: usize,
    ) -> BrokerResult<usize> {
        let target = |priority: Priority| match to {
            QueueRef::Jobs(pool) => Ok(Slot::Jobs(pool.clone(), priority)),
            QueueRef::Dead(pool) => Ok(Slot::Dead(pool.clone())),
            other => Err(BrokerError::new(
                BrokerErrorKind::InvalidInput,
                format!("messages move between jobs and dead-letter queues, not to {other}"),
            )),
        };
        let mut state = self.lock();
        for priority in [Priority::Paid, Priority::Free] {
            let slot = target(priority)?;
            if !state.slot_exists(&slot) {
                return Err(not_found(format!("{to}: no such queue")));
            }
        }
        let from_dead = matches!(from, QueueRef::Dead(_));
        let mut moved = 0;
        for source in slots_of(from) {
            if !state.slot_exists(&source) {
                return Err(not_found(format!("{from}: no such queue")));
            }
            let priority = match &source {
                Slot::Jobs(_, priority) => *priority,
                _ => Priority::Free,
            };
            while moved < max {
                let Some(mut stored) = state.ready.get_mut(&source).and_then(VecDeque::pop_front)
                else {
                    break;
                };
                if from_dead {
                    stored.headers.remove(DEAD_REASON_HEADER);
                    stored.deliveries = 0;
                }
                state
                    .ready
                    .entry(target(priority)?)
                    .or_default()
                    .push_back(stored);
                moved += 1;
            }
        }
        drop(state);
        if moved > 0 {
            self.inner.ready.notify_waiters();
        }
        Ok(moved)
    }
}
