//! Admission: how much work a worker may take in. It holds the delivery slots, the places for
//! results awaiting their write-back, the per-tenant and per-host limits with the bound a
//! recent refusal puts on claims, and the claim cap; it sizes each pass's claim and lease, and
//! decides which of the runs taken in fit. No I/O: what it decides is unit-tested here.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use hookbeat_entity::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::politeness::{AtLimit, Key, Limits, Reservation};

/// Results awaiting their write-back per delivery slot. A request's slot comes free as soon as
/// its answer is in, so the next request need not wait for the bookkeeping of the last; this
/// bounds how far deliveries run ahead of the database.
const UNRECORDED_PER_SLOT: usize = 4;

pub(super) struct Admission {
    /// Delivery slots in all.
    concurrency: usize,
    /// Requests in flight: a slot is held from the claim until the receiver has answered.
    slots: Arc<Semaphore>,
    /// Results not yet recorded: held from the claim until the write-back commits.
    unrecorded: Arc<Semaphore>,
    limits: Arc<Limits>,
    /// The tenants and hosts that lately refused runs for being at their limit.
    at_limit: Mutex<AtLimit>,
    /// The most runs the next claim (or lease at creation) takes: what the limits let the last
    /// one keep, growing back towards `claim_batch` by a quarter while nothing is refused.
    take_at_most: AtomicUsize,
    claim_batch: usize,
    /// Whether the last materialise made runs: fires are coming due, and the next pass keeps
    /// half its places for them even while runs wait.
    fires_coming: AtomicBool,
}

/// What a pass may take in, decided at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Budget {
    /// The claim cap at the start of the pass; the pass's lease keeps to it too.
    cap: usize,
    /// Free slots, as far as the claim cap allows.
    pub slots: usize,
    /// Runs the claim may take.
    pub claim: usize,
    /// Places kept for the fires the pass makes.
    pub kept_for_fires: usize,
    /// Whether a tenant or host at its limit holds claims back until it has places.
    pub held_back: bool,
}

/// The runs a pass took in that fit under the limits, each with its place, and those that did
/// not.
pub(super) struct Admitted<T> {
    pub kept: Vec<(T, Option<Reservation>)>,
    pub refused: Vec<T>,
}

/// How much of a worker's room is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Load {
    pub sending: usize,
    pub unrecorded: usize,
}

/// A delivery's hold on a slot and on a place for its result.
pub(super) struct Permits {
    /// Given back when the receiver has answered.
    pub slot: OwnedSemaphorePermit,
    /// Given back when the result is recorded.
    pub unrecorded: OwnedSemaphorePermit,
}

impl Admission {
    pub(super) fn new(
        concurrency: usize,
        claim_batch: usize,
        per_tenant: usize,
        per_host: usize,
    ) -> Self {
        Self {
            concurrency,
            slots: Arc::new(Semaphore::new(concurrency)),
            unrecorded: Arc::new(Semaphore::new(concurrency * UNRECORDED_PER_SLOT)),
            limits: Limits::sharing(per_tenant, per_host, concurrency),
            at_limit: Mutex::default(),
            take_at_most: AtomicUsize::new(claim_batch),
            claim_batch,
            fires_coming: AtomicBool::new(false),
        }
    }

    /// The budget of a pass starting at `now`. Runs already waiting come first: when nothing
    /// else is coming due, the claim may take every free place. But while fires keep coming due,
    /// half the places are kept for them even if runs wait: a fire leased as it is made costs one
    /// write less than a claimed one, and were every fire to queue behind a backlog, the worker
    /// would deliver fewer per second just when it has fallen behind.
    pub(super) fn budget(&self, now: DateTime<Utc>) -> Budget {
        let cap = self.take_at_most.load(Ordering::Relaxed);
        let slots = self.free_slots(cap);
        let places = self.claim_bound(now);
        let free = slots.min(places.unwrap_or(usize::MAX));
        let kept_for_fires = if self.fires_coming.load(Ordering::Relaxed) {
            free / 2
        } else {
            0
        };
        Budget {
            cap,
            slots,
            claim: free - kept_for_fires,
            kept_for_fires,
            held_back: places == Some(0),
        }
    }

    /// How many of the fires a pass makes it may lease, after its claim took `claimed` of
    /// `budget.claim`: the places kept for fires if runs may still be waiting, else every free
    /// place.
    pub(super) fn offer(&self, budget: &Budget, claimed: usize, now: DateTime<Utc>) -> usize {
        let available = self
            .free_slots(budget.cap)
            .min(self.claim_bound(now).unwrap_or(usize::MAX));
        let runs_may_wait = budget.claim == 0 || claimed == budget.claim;
        if runs_may_wait {
            budget.kept_for_fires.min(available)
        } else {
            available
        }
    }

    /// Notes whether the last materialise made runs.
    pub(super) fn fires_made(&self, made: usize) {
        self.fires_coming.store(made > 0, Ordering::Relaxed);
    }

    pub(super) fn fires_coming(&self) -> bool {
        self.fires_coming.load(Ordering::Relaxed)
    }

    /// The tenants at their share of the slots: a claim leaves their runs where they are.
    pub(super) fn tenants_at_limit(&self) -> Vec<TenantId> {
        let tenants = self.limits.tenants_at_limit();
        tenants.into_iter().map(TenantId::from).collect()
    }

    /// Keeps the `runs` that fit under the limits, each with its place, in order; `key` names a
    /// run's tenant and target host (`None`: it will not be sent, so it needs no place). A
    /// refusal notes the refusing keys, so the next claims are sized by their free places, and
    /// caps the next claim at what this one kept; without one the cap grows back.
    pub(super) fn admit<T>(
        &self,
        runs: Vec<T>,
        key: impl Fn(&T) -> Option<(String, String)>,
        now: DateTime<Utc>,
    ) -> Admitted<T> {
        let (admitted, refusing) = self.reserve(runs, key);
        if admitted.refused.is_empty() {
            let now_at_most = self.take_at_most.load(Ordering::Relaxed);
            let grown = now_at_most.saturating_add((now_at_most / 4).max(1));
            self.take_at_most
                .store(grown.min(self.claim_batch), Ordering::Relaxed);
        } else {
            self.take_at_most
                .store(admitted.kept.len().max(1), Ordering::Relaxed);
            self.at_limit
                .lock()
                .expect("at-limit lock poisoned")
                .refused(refusing, now);
        }
        admitted
    }

    /// Keeps the runs that fit, as [`Self::admit`], for runs refused before and waiting in the
    /// worker: their refusal was noted when they first came, so another one changes nothing
    /// about claims. Noting it at every pass would hold claims back for as long as one slow
    /// host had runs waiting.
    pub(super) fn admit_waiting<T>(
        &self,
        runs: Vec<T>,
        key: impl Fn(&T) -> Option<(String, String)>,
    ) -> Admitted<T> {
        self.reserve(runs, key).0
    }

    /// A place for each run that fits, and the keys that refused the rest.
    fn reserve<T>(
        &self,
        runs: Vec<T>,
        key: impl Fn(&T) -> Option<(String, String)>,
    ) -> (Admitted<T>, Vec<Key>) {
        let mut kept = Vec::with_capacity(runs.len());
        let mut refused = Vec::new();
        let mut refusing: Vec<Key> = Vec::new();
        for run in runs {
            let Some((tenant, host)) = key(&run) else {
                kept.push((run, None));
                continue;
            };
            match self.limits.try_reserve(&tenant, &host) {
                Ok(reservation) => kept.push((run, Some(reservation))),
                Err(key) => {
                    if !refusing.contains(&key) {
                        refusing.push(key);
                    }
                    refused.push(run);
                }
            }
        }
        (Admitted { kept, refused }, refusing)
    }

    /// Requests in flight and results awaiting their write-back, now.
    pub(super) fn load(&self) -> Load {
        Load {
            sending: self.concurrency - self.slots.available_permits(),
            unrecorded: self.concurrency * UNRECORDED_PER_SLOT
                - self.unrecorded.available_permits(),
        }
    }

    /// A slot and a place for the result, if both are free.
    pub(super) fn permits(&self) -> Option<Permits> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        let unrecorded = self.unrecorded.clone().try_acquire_owned().ok()?;
        Some(Permits { slot, unrecorded })
    }

    /// Resolves when a tenant or host at its limit has half its places free.
    pub(super) async fn eased(&self) {
        self.limits.eased().await
    }

    /// How many deliveries could start now: free slots, as far as the unrecorded results and the
    /// claim cap allow.
    fn free_slots(&self, cap: usize) -> usize {
        self.slots
            .available_permits()
            .min(self.unrecorded.available_permits())
            .min(cap)
    }

    /// How many runs the next claim may take under the limits (see [`AtLimit`]).
    fn claim_bound(&self, now: DateTime<Utc>) -> Option<usize> {
        self.at_limit
            .lock()
            .expect("at-limit lock poisoned")
            .bound(&self.limits, now)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use hookbeat_entity::TenantId;

    use super::Admission;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn run(tenant: &str, host: &str) -> (String, String) {
        (tenant.to_owned(), host.to_owned())
    }

    #[test]
    fn a_pass_claims_every_free_slot_until_fires_come_due_then_keeps_half_for_them() {
        let admission = Admission::new(8, 8, 8, 8);
        let budget = admission.budget(at(0));
        assert_eq!(
            (budget.slots, budget.claim, budget.kept_for_fires),
            (8, 8, 0)
        );
        admission.fires_made(3);
        let budget = admission.budget(at(0));
        assert_eq!((budget.claim, budget.kept_for_fires), (4, 4));
        // A full claim means runs may still wait: fires get the kept half only.
        assert_eq!(admission.offer(&budget, 4, at(0)), 4);
        // A short claim found every waiting run: fires may have every free place.
        assert_eq!(admission.offer(&budget, 1, at(0)), 8);
    }

    #[test]
    fn deliveries_hold_their_slots_and_places_until_they_give_them_back() {
        let admission = Admission::new(2, 2, 2, 2);
        let first = admission.permits().unwrap();
        let _second = admission.permits().unwrap();
        assert_eq!(admission.budget(at(0)).slots, 0);
        assert!(admission.permits().is_none(), "no slot is left to take");
        drop(first.slot);
        // The answer is in but the result is not recorded: the slot is free again.
        assert_eq!(admission.budget(at(0)).slots, 1);
    }

    #[test]
    fn runs_over_a_host_limit_are_refused_and_the_next_claims_shrink_then_grow_back() {
        let admission = Admission::new(16, 16, 16, 2);
        let runs = vec![
            run("a", "h:1"),
            run("a", "h:1"),
            run("a", "h:1"),
            run("b", "g:1"),
        ];
        let admitted = admission.admit(runs, |r| Some(r.clone()), at(0));
        let kept: Vec<&str> = admitted.kept.iter().map(|(r, _)| r.1.as_str()).collect();
        assert_eq!(kept, vec!["h:1", "h:1", "g:1"]);
        assert_eq!(admitted.refused, vec![run("a", "h:1")]);
        // The next claim takes no more than this one kept, and none while the host is full.
        let budget = admission.budget(at(0));
        assert_eq!(budget.claim, 0);
        assert!(budget.held_back);
        // Places come free: the bound lifts to what the host has, the cap to what was kept.
        drop(admitted.kept);
        let budget = admission.budget(at(0));
        assert!(!budget.held_back);
        assert_eq!(budget.claim, 2, "the host's two places");
        // After the refusal has passed, the cap grows back by a quarter per pass.
        let later = at(5);
        assert_eq!(admission.budget(later).claim, 3);
        admission.admit(vec![run("c", "k:1")], |r| Some(r.clone()), later);
        assert_eq!(admission.budget(later).claim, 4);
    }

    #[test]
    fn runs_waiting_in_the_worker_do_not_hold_claims_back_again() {
        let admission = Admission::new(16, 16, 16, 1);
        let first = admission.admit(
            vec![run("a", "h:1"), run("a", "h:1")],
            |r| Some(r.clone()),
            at(0),
        );
        assert_eq!(first.refused.len(), 1);
        assert!(admission.budget(at(0)).held_back);
        // The host stays full past the wait: the claims are no longer held back for it...
        let later = at(0) + crate::politeness::AT_LIMIT_WAIT;
        assert!(!admission.budget(later).held_back);
        // ...and the waiting run, refused again, does not start holding them back anew.
        let again = admission.admit_waiting(first.refused, |r| Some(r.clone()));
        assert_eq!(again.refused.len(), 1);
        assert!(!admission.budget(later).held_back);
        // Once the host has a place, the waiting run takes it.
        drop(first.kept);
        let again = admission.admit_waiting(again.refused, |r| Some(r.clone()));
        assert_eq!((again.kept.len(), again.refused.len()), (1, 0));
    }

    #[test]
    fn runs_that_will_not_be_sent_need_no_place() {
        let admission = Admission::new(1, 1, 1, 1);
        let admitted = admission.admit(vec!["unreadable", "unreadable"], |_| None, at(0));
        assert_eq!(admitted.kept.len(), 2);
        assert!(admitted.kept.iter().all(|(_, place)| place.is_none()));
        assert!(admitted.refused.is_empty());
    }

    #[test]
    fn a_tenant_at_its_share_is_left_out_of_claims() {
        let admission = Admission::new(4, 4, 2, 4);
        let admitted = admission.admit(
            vec![run("busy", "h:1"), run("busy", "h:2")],
            |r| Some(r.clone()),
            at(0),
        );
        assert_eq!(admitted.kept.len(), 2);
        assert_eq!(admission.tenants_at_limit(), vec![TenantId::from("busy")]);
        drop(admitted);
        assert!(admission.tenants_at_limit().is_empty());
    }
}
