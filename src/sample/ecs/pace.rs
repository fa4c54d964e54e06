//! How often ECS refreshes the task's stats, learnt from the documents, and so when
//! `/task/stats` is worth reading. EC2 refreshes every second; Fargate and Managed
//! Instances every 10 s (`read − preread` in every document AWS publishes from them).
//! Reading at the refresh's pace, on the first tick after each refresh, saves the polls
//! that would only find the same document again; each value then stands for the seconds
//! since the document before ([`crate::sample::Weight`]).

use super::metadata::{MAX_PACE_SECS, Stats};

const NS: u64 = 1_000_000_000;
/// Ticks come a second apart, a little late: a poll (of the stats, or of `/task`) is due
/// at the tick nearest to its interval after the last one.
pub const TICK_SLACK: u64 = NS / 2;
/// A new document found by a poll at most this long after one that found a document
/// was refreshed between the two: the refresh's phase, to within a tick.
const ONE_TICK: u64 = NS + NS / 2;

/// The clock of one stats document, from its containers' `read` and `preread`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// The newest `read` (ns since the epoch): how far the document has come.
    pub newest: u64,
    /// The containers' `read` times added up (wrapping): changes when any container's
    /// stats were refreshed, including one that is not the newest.
    pub fingerprint: u64,
    /// The shortest `read − preread` (ns): the interval at which the platform says it
    /// read the stats. `None` when no container has both (Docker's first reading).
    pub stated: Option<u64>,
}

impl Clock {
    /// The clock of `stats`; `None` when no container has stats yet.
    pub fn of(stats: &Stats) -> Option<Clock> {
        let mut clock: Option<Clock> = None;
        for s in stats.values().flatten() {
            let Some(read) = s.read_nanos() else {
                continue;
            };
            let stated = s.refresh_nanos(read);
            let c = clock.get_or_insert(Clock {
                newest: read,
                fingerprint: 0,
                stated,
            });
            c.newest = c.newest.max(read);
            c.fingerprint = c.fingerprint.wrapping_add(read);
            c.stated = match (c.stated, stated) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        clock
    }
}

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A document with stats, of this clock.
    Document(Clock),
    /// No answer, or one without stats: says nothing of the refresh.
    Nothing,
}

/// What a document found by a poll is to the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// The document of the last poll again: nothing to add.
    Same,
    /// A refreshed document. `weight`: the seconds its values stand for (the agent's
    /// time since the last new document, at most two refreshes; 1 for the first).
    /// `learnt`: the pace, when this document made it known or changed it.
    New { weight: u32, learnt: Option<u32> },
}

/// The refresh pace learnt so far and the phase of the refreshes on the agent's clock.
#[derive(Debug, Default)]
pub struct Pace {
    /// Seconds between refreshes, once two documents in a row said or showed it.
    secs: Option<u32>,
    /// The shortest interval seen between two successive documents (ns): the pace of
    /// documents that do not state one.
    shortest_seen: Option<u64>,
    /// Clock of the last document found.
    last: Option<Clock>,
    /// When (agent's clock, ns) the last new document was found: the next one's values
    /// stand for the time since.
    last_new_at: Option<u64>,
    /// When a refresh was last found on the agent's clock (within a tick of happening,
    /// or on the grid of refreshes a pace apart since): the next is due a pace later.
    /// `None` until a refresh is caught within a tick.
    phase: Option<u64>,
    /// When the last poll ran, and whether it found a document.
    last_poll: Option<(u64, bool)>,
    /// Refreshes found on their due tick since one was caught within a tick: every
    /// [`PROBE_EVERY`]th poll comes a tick early, so that refreshes drifting earlier
    /// against the agent's ticks are still found just after they happen.
    on_grid: u32,
}

/// One poll in this many comes a tick before the refresh is due.
const PROBE_EVERY: u32 = 10;

impl Pace {
    /// The refresh interval, once known.
    pub fn secs(&self) -> Option<u32> {
        self.secs
    }

    /// The refresh interval known, or else the one the last document told (what `check`,
    /// which reads one or two documents, can say).
    pub fn told(&self) -> Option<u32> {
        self.secs
            .or_else(|| self.last.and_then(|last| self.told_by(last)))
    }

    /// When (agent's clock, ns) the next poll is due: `None` while every tick is (the
    /// pace or its phase not known, or a pace of a second).
    fn next_due(&self) -> Option<u64> {
        match (self.secs, self.phase) {
            (Some(secs), Some(phase)) if secs > 1 => {
                let due = phase.saturating_add(u64::from(secs) * NS);
                let probe = self.on_grid + 1 >= PROBE_EVERY;
                Some(if probe { due - NS } else { due })
            }
            _ => None,
        }
    }

    /// Whether a poll at `now` (ns on the agent's clock) may find a new document: on
    /// every tick until the pace and its phase are known (and where the pace is a
    /// second), then on the tick a pace after the last refresh found, and on each tick
    /// after it until the refresh comes.
    pub fn due(&self, now: u64) -> bool {
        self.next_due()
            .is_none_or(|due| now.saturating_add(TICK_SLACK) >= due)
    }

    /// How many ticks after `now` (a second apart) no poll is due: the first due one
    /// wakes the loop.
    pub fn quiet_ticks(&self, now: u64) -> u32 {
        self.next_due().map_or(0, |due| ticks_before(due, now))
    }

    /// How long (ns) since a poll last found a new document, if one did.
    pub fn unchanged_for(&self, now: u64) -> Option<u64> {
        self.last_new_at.map(|at| now.saturating_sub(at))
    }

    /// Takes what a poll started at `now` found.
    pub fn found(&mut self, found: Found, now: u64) -> News {
        let Found::Document(clock) = found else {
            // Says nothing of the refreshes: polls go on every tick until one answers.
            self.last_poll = Some((now, false));
            return News::Same;
        };
        let same = self.last.is_some_and(|last| {
            (last.newest, last.fingerprint) == (clock.newest, clock.fingerprint)
        });
        let previous_poll = self.last_poll.replace((now, true));
        if same {
            return News::Same;
        }
        let learnt = self.learn(clock);
        let just_refreshed =
            previous_poll.is_some_and(|(at, found)| found && now.saturating_sub(at) <= ONE_TICK);
        let due = self.next_due();
        (self.phase, self.on_grid) = match (self.secs, self.phase, due) {
            // Caught within a tick of happening: the phase itself.
            _ if just_refreshed => (Some(now), 0),
            // A probe a tick early found it: refreshes now come earlier.
            (_, _, Some(due)) if self.on_grid + 1 >= PROBE_EVERY && now < due + TICK_SLACK => {
                (Some(now), 0)
            }
            // Found when due (or later, after polls that failed or a stall): the
            // refreshes keep their grid.
            (Some(secs), Some(phase), Some(due)) if now.saturating_add(TICK_SLACK) >= due => {
                let step = u64::from(secs) * NS;
                let steps = ((now.saturating_add(TICK_SLACK) - phase) / step).max(1);
                (Some(phase + steps * step), self.on_grid + 1)
            }
            // At start: every tick until a refresh is caught within one.
            _ => (None, 0),
        };
        let cap = self.secs.unwrap_or(1).saturating_mul(2);
        let weight = self.last_new_at.replace(now).map_or(1, |at| {
            let secs = now.saturating_sub(at).saturating_add(NS / 2) / NS;
            u32::try_from(secs).unwrap_or(u32::MAX).clamp(1, cap)
        });
        News::New { weight, learnt }
    }

    /// Learns the pace from a new document: the one two documents in a row tell (a
    /// stats clock that jumps moves one document's `read − preread` too; a container
    /// paused at start would tell a minute). The pace when it became known or changed.
    fn learn(&mut self, clock: Clock) -> Option<u32> {
        if let Some(last) = self.last
            && clock.newest > last.newest
        {
            let between = clock.newest - last.newest;
            self.shortest_seen = Some(self.shortest_seen.map_or(between, |s| s.min(between)));
        }
        let told = self.last.replace(clock).and_then(|last| self.told_by(last));
        let secs = self.told_by(clock);
        let learnt = secs.filter(|s| Some(*s) != self.secs && told == Some(*s));
        if learnt.is_some() {
            self.secs = learnt;
        }
        learnt
    }

    /// The pace a document tells: its `read − preread`, else the documents' spacing.
    fn told_by(&self, clock: Clock) -> Option<u32> {
        clock.stated.or(self.shortest_seen).and_then(whole_secs)
    }
}

/// How many ticks after `now` (a second apart, each up to [`TICK_SLACK`] late) come
/// before `due` (both ns on the source's clock).
pub fn ticks_before(due: u64, now: u64) -> u32 {
    let room = due.saturating_sub(now.saturating_add(TICK_SLACK));
    u32::try_from(room.saturating_sub(1) / NS).unwrap_or(u32::MAX)
}

/// An interval in ns as whole seconds (at least 1), if a pace can be that long.
fn whole_secs(ns: u64) -> Option<u32> {
    let secs = u32::try_from(ns.saturating_add(NS / 2) / NS).ok()?.max(1);
    (secs <= MAX_PACE_SECS).then_some(secs)
}

/// The windows the agent fills: what the pace is said against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub period_secs: u64,
    /// Datums sent at high resolution (`--storage-resolution 1`, the default under 60 s).
    pub high_resolution: bool,
}

/// The line that says the pace, at start-up and in `check`.
pub fn said(secs: u32) -> String {
    if secs == 1 {
        return "ECS refreshes task stats every second here: /task/stats is read every \
                second"
            .to_owned();
    }
    format!(
        "ECS refreshes task stats every {secs} s here: /task/stats is read once each \
         {secs} s, just after the refresh, and each value stands for the {secs} s it \
         covers (a {secs}-second average, counted {secs} times)"
    )
}

/// What a period shorter than the pace does, and what to choose instead; `None` when
/// every window gets a refresh.
pub fn period_warning(period_secs: u64, high_resolution: bool, secs: u32) -> Option<String> {
    let pace = u64::from(secs);
    if period_secs >= pace {
        return None;
    }
    let share = if pace.is_multiple_of(period_secs) {
        let n = pace / period_secs;
        format!("{} of every {n} windows", n - 1)
    } else {
        format!("about {} % of windows", 100 - period_secs * 100 / pace)
    };
    let alarm = if high_resolution {
        format!(
            " (sent at high resolution, an alarm over {period_secs}-second periods sees \
             missing data there)"
        )
    } else {
        String::new()
    };
    Some(format!(
        "--period {period_secs} is shorter than the {secs} s at which ECS refreshes task \
         stats here: {share} will have no CPU or memory values{alarm}; choose --period \
         {secs} or a multiple of it (60 for standard resolution)"
    ))
}

#[cfg(test)]
mod tests {
    use super::super::metadata::testing::*;
    use super::*;

    /// A document of one container read at `read` s, Docker's reading before at
    /// `read − stated` s.
    fn clock(read: u64, stated: Option<u64>) -> Found {
        Found::Document(Clock {
            newest: read * NS,
            fingerprint: read * NS,
            stated: stated.map(|s| s * NS),
        })
    }

    /// Polls every tick from `from` to `to` s (agent's clock, each tick 30 ms late)
    /// against a source whose newest refresh at `t` s was read at `read(t)` ns, stating
    /// `stated` s between reads; the ticks at which a poll was due, and for each
    /// document found new, how late (s) after its refresh.
    fn run_on(
        pace: &mut Pace,
        from: u64,
        to: u64,
        read: impl Fn(f64) -> u64,
        stated: u64,
    ) -> (Vec<u64>, Vec<f64>) {
        let (mut polled, mut late) = (Vec::new(), Vec::new());
        for tick in from..to {
            let now = tick * NS + 30_000_000;
            if !pace.due(now) {
                continue;
            }
            polled.push(tick);
            let read = read(now as f64 / NS as f64);
            let found = Found::Document(Clock {
                newest: read,
                fingerprint: read,
                stated: Some(stated * NS),
            });
            if let News::New { .. } = pace.found(found, now) {
                late.push((now - read) as f64 / NS as f64);
            }
        }
        (polled, late)
    }

    /// `run_on` a source refreshed every `every` s at `offset` s past its multiples.
    fn run(pace: &mut Pace, from: u64, to: u64, every: u64, offset: f64) -> Vec<u64> {
        let read = |t: f64| {
            let refreshes = ((t - offset) / every as f64).floor().max(0.0);
            // Refresh k reads at k × every: the offset moves when it is served.
            (refreshes * every as f64 * NS as f64) as u64
        };
        run_on(pace, from, to, read, every).0
    }

    #[test]
    fn a_10_s_source_is_polled_every_tick_until_a_refresh_is_caught_then_once_a_refresh() {
        let mut pace = Pace::default();
        // Refreshes at 10k + 0.4 s: polls go on every tick until one finds the refresh
        // of 10.4 s, at the tick of 11; that second document confirms the pace.
        let polled = run(&mut pace, 1, 12, 10, 0.4);
        assert_eq!(polled, (1..12).collect::<Vec<_>>());
        assert_eq!(pace.secs(), Some(10));
        // Then the tick after each refresh, and no other: the nine between are quiet.
        assert_eq!(pace.quiet_ticks(11 * NS + 30_000_000), 9);
        assert_eq!(pace.quiet_ticks(15 * NS + 30_000_000), 5);
        let polled = run(&mut pace, 12, 100, 10, 0.4);
        assert_eq!(polled, [21, 31, 41, 51, 61, 71, 81, 91]);
        assert!(!pace.due(91 * NS + 30_000_000 + 9 * NS));
        assert!(pace.due(91 * NS + 30_000_000 + 10 * NS));
        // The tenth poll on the grid comes a tick early: it finds nothing new, the next
        // tick does, and the phase is caught afresh.
        let polled = run(&mut pace, 100, 130, 10, 0.4);
        assert_eq!(polled, [101, 110, 111, 121]);
    }

    #[test]
    fn refreshes_drifting_earlier_than_the_ticks_are_still_found_just_after() {
        // Every 9.95 s: against 1-s ticks the refresh comes 0.05 s earlier each time.
        let mut pace = Pace::default();
        let read = |t: f64| (((t - 0.4) / 9.95).floor().max(0.0) * 9.95 + 0.4) * NS as f64;
        let (polled, late) = run_on(&mut pace, 1, 4000, |t| read(t) as u64, 10);
        let refreshes = 4000.0 / 9.95;
        assert!(
            polled.len() as f64 <= 1.2 * refreshes + 10.0,
            "{} polls for {refreshes:.0} refreshes",
            polled.len()
        );
        let worst = late[10..].iter().cloned().fold(0.0, f64::max);
        assert!(
            worst < 2.0,
            "a refresh found {worst:.2} s after it happened"
        );
    }

    #[test]
    fn a_refresh_in_the_second_after_the_first_poll_sets_the_phase_at_once() {
        let mut pace = Pace::default();
        // Started at 10: the first poll finds the document of 0.4 s, the next the one of
        // 10.4 s, refreshed between the two.
        let polled = run(&mut pace, 10, 40, 10, 0.4);
        assert_eq!(polled, [10, 11, 21, 31]);
    }

    #[test]
    fn a_refresh_that_slips_past_its_tick_costs_one_poll_and_moves_the_phase() {
        let mut pace = Pace::default();
        run(&mut pace, 1, 12, 10, 0.95);
        // Refreshes 0.95 s past the tick before ours: now 1.1 s late, past the tick of
        // 21: that poll finds nothing new, the next one does, and the phase follows.
        let polled = run(&mut pace, 12, 60, 10, 1.1);
        assert_eq!(polled, [21, 22, 32, 42, 52]);
    }

    #[test]
    fn a_poll_that_wakes_late_keeps_the_grid() {
        let mut pace = Pace::default();
        run(&mut pace, 1, 12, 10, 0.4);
        // The tick of 21 runs 0.8 s late (a busy machine): the refresh of 20.4 s is
        // found, and the next is still due at the tick of 31.
        let news = pace.found(clock(20, Some(10)), 21 * NS + 800_000_000);
        assert!(matches!(news, News::New { .. }));
        assert!(!pace.due(30 * NS + 30_000_000));
        assert!(pace.due(31 * NS + 30_000_000));
    }

    #[test]
    fn a_one_second_source_is_polled_every_tick() {
        let mut pace = Pace::default();
        let polled = run(&mut pace, 1, 31, 1, 0.5);
        assert_eq!(polled.len(), 30);
        assert_eq!(pace.secs(), Some(1));
        assert_eq!(pace.quiet_ticks(31 * NS), 0, "no tick is slept through");
    }

    #[test]
    fn after_a_failed_poll_the_refreshes_keep_their_grid() {
        let mut pace = Pace::default();
        run(&mut pace, 1, 30, 10, 0.4);
        assert!(!pace.due(25 * NS));
        pace.found(Found::Nothing, 31 * NS);
        assert!(pace.due(32 * NS), "every tick while the endpoint fails");
        let polled = run(&mut pace, 32, 60, 10, 0.4);
        assert_eq!(polled, [32, 41, 51]);
    }

    #[test]
    fn the_pace_is_what_two_documents_in_a_row_tell() {
        let mut pace = Pace::default();
        let first = pace.found(clock(100, Some(10)), 0);
        assert_eq!(
            first,
            News::New {
                weight: 1,
                learnt: None
            }
        );
        assert_eq!((pace.secs(), pace.told()), (None, Some(10)));
        assert_eq!(pace.found(clock(100, Some(10)), NS), News::Same);
        assert_eq!(
            pace.found(clock(110, Some(10)), 2 * NS),
            News::New {
                weight: 2,
                learnt: Some(10)
            }
        );
        assert_eq!(
            pace.found(clock(120, Some(10)), 12 * NS),
            News::New {
                weight: 10,
                learnt: None
            },
            "said once"
        );

        // Docker's first reading has no `preread`: the documents' own spacing.
        let mut pace = Pace::default();
        pace.found(clock(100, None), 0);
        assert_eq!(pace.secs(), None);
        assert!(pace.due(NS), "every tick while the pace is unknown");
        assert_eq!(
            pace.found(clock(105, None), 5 * NS),
            News::New {
                weight: 5,
                learnt: Some(5)
            }
        );
        // One document that says otherwise (a stats clock that jumped) changes nothing;
        // two in a row do.
        let mut pace = Pace::default();
        pace.found(clock(100, Some(10)), 0);
        pace.found(clock(110, Some(10)), NS);
        assert!(matches!(
            pace.found(clock(141, Some(31)), 2 * NS),
            News::New { learnt: None, .. }
        ));
        pace.found(clock(151, Some(10)), 3 * NS);
        assert_eq!(pace.secs(), Some(10));
        pace.found(clock(156, Some(5)), 4 * NS);
        assert!(matches!(
            pace.found(clock(161, Some(5)), 5 * NS),
            News::New {
                learnt: Some(5),
                ..
            }
        ));
        // A pause is no pace: a statement past a minute is not believed.
        let mut pace = Pace::default();
        pace.found(clock(1000, Some(600)), 0);
        pace.found(clock(1600, Some(600)), NS);
        assert_eq!(pace.secs(), None);
    }

    #[test]
    fn a_document_stands_for_the_time_since_the_last_at_most_two_refreshes() {
        let mut pace = Pace::default();
        run(&mut pace, 1, 22, 10, 0.4);
        let weight = |news| match news {
            News::New { weight, .. } => weight,
            News::Same => 0,
        };
        // Two polls failed: the refresh of 50.4 s, found at 51, after the one of 20.4.
        pace.found(Found::Nothing, 31 * NS);
        pace.found(Found::Nothing, 41 * NS);
        assert_eq!(weight(pace.found(clock(50, Some(10)), 51 * NS)), 20);
        assert_eq!(weight(pace.found(clock(60, Some(10)), 61 * NS)), 10);
        // EC2: a tick that found the same document; the next stands for both seconds.
        let mut pace = Pace::default();
        pace.found(clock(1, Some(1)), NS);
        pace.found(clock(2, Some(1)), 2 * NS);
        assert_eq!(pace.found(clock(2, Some(1)), 3 * NS), News::Same);
        assert_eq!(weight(pace.found(clock(4, Some(1)), 4 * NS)), 2);
    }

    #[test]
    fn stats_that_stop_changing_are_counted_from_the_last_new_document() {
        let mut pace = Pace::default();
        assert_eq!(pace.unchanged_for(5 * NS), None, "none found yet");
        pace.found(clock(100, Some(10)), NS);
        pace.found(clock(100, Some(10)), 30 * NS);
        assert_eq!(pace.unchanged_for(31 * NS), Some(30 * NS));
    }

    #[test]
    fn a_document_in_which_a_container_other_than_the_newest_moved_on_is_new() {
        let at = |doc: &mut Stats, id: &str, read: &str| {
            if let Some(Some(s)) = doc.get_mut(id) {
                s.read = Some(read.to_owned());
            }
        };
        let mut doc = stats(FARGATE_STATS);
        // The fixture's containers were read 0.5 ms apart, a second after `preread`.
        assert_eq!(Clock::of(&doc).unwrap().stated, Some(NS));
        at(&mut doc, APP_ID, "2026-11-25T15:10:05.1Z");
        let first = Clock::of(&doc).unwrap();
        // The sidecar's stats refreshed, still older than the app's.
        at(&mut doc, SIDECAR_ID, "2026-11-25T15:10:01.1005Z");
        let second = Clock::of(&doc).unwrap();
        assert_eq!(first.newest, second.newest);
        let mut pace = Pace::default();
        pace.found(Found::Document(first), 0);
        assert_eq!(pace.found(Found::Document(first), NS), News::Same);
        assert!(matches!(
            pace.found(Found::Document(second), 2 * NS),
            News::New { .. }
        ));
        assert_eq!(Clock::of(&Stats::new()), None, "no stats yet");
    }

    #[test]
    fn the_warning_says_what_a_short_period_loses_and_what_to_choose() {
        let w = period_warning(2, true, 10).unwrap();
        assert!(w.contains("--period 2 is shorter than the 10 s"), "{w}");
        assert!(
            w.contains("4 of every 5 windows will have no CPU or memory"),
            "{w}"
        );
        assert!(w.contains("high resolution"), "{w}");
        assert!(w.contains("choose --period 10 or a multiple of it"), "{w}");
        let w = period_warning(3, false, 10).unwrap();
        assert!(w.contains("about 70 % of windows"), "{w}");
        assert!(!w.contains("high resolution"), "{w}");
        assert_eq!(period_warning(10, true, 10), None);
        assert_eq!(period_warning(60, false, 10), None);
        assert_eq!(period_warning(1, true, 1), None);
    }
}
