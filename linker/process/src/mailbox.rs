//! The linker's mailbox: every message it receives passes through here, so that requests are
//! taken in as they arrive, handled one at a time in a sensible order, and answered before their
//! senders stop waiting, even while the linker is busy.
//!
//! A Kinode process can answer only its *prompting* message: the request it received last, or,
//! once the answer to a request it sent arrives, the request that was prompting when it sent it
//! (the kernel keeps it with the outstanding request). So:
//!
//! - The linker awaits the VFS, the kernel and the app store with [`await_response`], its own
//!   receive loop, rather than `send_and_await_response` (which leaves everything else queued in
//!   the kernel, out of sight): a request that arrives meanwhile is taken in at once, with the
//!   time it arrived. None is dropped.
//! - A request that cannot be handled at once is *parked*: kept here, and, while it is the
//!   prompting message, a `timer:distro:sys` timer is set for it. The timer's answer makes it the
//!   prompting message again, so the linker can answer it then: with its answer if it was handled
//!   meanwhile; with `Busy` if it was not started and its sender is about to stop waiting; or
//!   else by setting the timer again, a quarter of the time the request has waited so far later
//!   (from [`FIRST_POLL_MS`] up to [`POLL_MS`]).
//! - One job runs at a time ([`next`]): cheap reads first (`ListApis`, `Linked`, `Packages`,
//!   asking whether auto-linking is on, `Explain`: they change nothing and take little), then the
//!   rest (links, installs, downloads, kit uploads, switching auto-linking, auto-linking's ticks)
//!   in the order they arrived. So installs never overlap, and two installs of one package never
//!   interleave. Reads waiting behind a long job are also answered between its steps, where the
//!   node is in a consistent state ([`serve_reads`]: between the dependents a library's install
//!   re-links, and between the packages a tick handles).
//! - A sender waits `expects_response` seconds for its answer. A request not started a quarter
//!   of that before (at least [`MIN_MARGIN`], at most [`MAX_MARGIN`]) is answered `Busy`, saying
//!   how long it waited, how many requests were ahead of it and what the linker was doing; it is
//!   never started, so nothing changed. The time counts from when the linker took the request in,
//!   which is late by at most the longest stretch the linker goes without taking in a message
//!   (composing a large package, or the node busy compiling a process it starts).
//!
//! A request whose sender awaits no answer is handled in turn and not answered. Parked requests
//! live in memory: if the linker dies, their senders time out.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use kinode_process_lib::{
    await_message, get_blob, println, Address, Capability, Message, Request, Response, SendError,
};

use crate::api::{Busy, LinkerError};
use crate::service::{self, Parsed};

/// The longest a parked request's timer waits, in milliseconds: the longest an answer waits to be
/// sent once it is ready.
pub const POLL_MS: u64 = 100;

/// The shortest a parked request's timer waits, in milliseconds. In between, a timer waits a
/// quarter of the time its request has waited so far: an answer is sent at most a quarter late, and
/// a request waiting long costs about twenty timers more.
pub const FIRST_POLL_MS: u64 = 2;

/// The least time a request is started before its sender stops waiting: covers the longest the
/// linker or the node may go without taking in a message (composing a large package, the kernel
/// compiling a process it starts).
pub const MIN_MARGIN: Duration = Duration::from_secs(2);

/// The most time a request is started before its sender stops waiting.
pub const MAX_MARGIN: Duration = Duration::from_secs(30);

/// The context of a parked request's timer: this prefix, then the job's number.
const PARK: &str = "park:";

/// The context of a request [`await_response`] awaits: this prefix, then a number.
const AWAIT: &str = "await:";

/// A request the linker received: everything it needs once the message itself is gone.
pub struct Incoming {
    /// The sender.
    pub source: Address,
    /// The capabilities it attached.
    pub capabilities: Vec<Capability>,
    /// The request's blob.
    pub blob: Option<Vec<u8>>,
    /// What the body is.
    pub parsed: Parsed,
}

/// What a job is.
pub enum Work {
    /// Answer a request.
    Request(Incoming),
    /// One look at the node for auto-linking (`watch::tick`).
    Tick,
}

/// A unit of work, in the order the mailbox hands them out.
pub struct Job {
    seq: u64,
    /// What to do.
    pub work: Work,
    arrived: Instant,
    /// How long its sender waits for an answer; `None` if it awaits none.
    timeout: Option<Duration>,
    /// Whether it is the prompting message, so that its answer is sent at once.
    direct: bool,
}

impl Job {
    /// Whether it is a cheap read, handled before other work.
    fn is_read(&self) -> bool {
        matches!(&self.work, Work::Request(incoming) if incoming.parsed.is_read())
    }

    /// When it is too late to start it: its sender would not get the answer in time.
    fn busy_at(&self) -> Option<Instant> {
        let timeout = self.timeout?;
        let margin = (timeout / 4).clamp(MIN_MARGIN, MAX_MARGIN).min(timeout);
        Some(self.arrived + (timeout - margin))
    }

    /// What handling it means, for `Busy` answers: `installing app:test.os`.
    fn doing(&self) -> String {
        match &self.work {
            Work::Request(incoming) => incoming.parsed.doing(),
            Work::Tick => "looking for packages the app store installed".to_owned(),
        }
    }
}

/// An answer: the response body and blob.
pub struct Answer {
    /// The response body.
    pub body: Vec<u8>,
    /// The response blob.
    pub blob: Option<Vec<u8>>,
}

/// A job under way, as the mailbox remembers it.
struct Running {
    seq: u64,
    arrived: Instant,
    /// What it is doing, for `Busy` answers.
    doing: String,
}

impl Running {
    fn of(job: &Job) -> Running {
        Running {
            seq: job.seq,
            arrived: job.arrived,
            doing: job.doing(),
        }
    }
}

#[derive(Default)]
struct State {
    /// Jobs not started, in arrival order.
    waiting: VecDeque<Job>,
    /// Jobs under way, outermost first ([`serve_reads`] runs reads inside a long job).
    running: Vec<Running>,
    /// Answers of parked requests, sent when their timer next fires.
    ready: BTreeMap<u64, Answer>,
    /// Numbers jobs and awaited requests.
    counter: u64,
}

impl State {
    fn number(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// The position in `waiting` of the job to run next: the first read, else (unless
    /// `reads_only`) the first job.
    fn next_position(&self, reads_only: bool) -> Option<usize> {
        let read = self.waiting.iter().position(Job::is_read);
        if reads_only {
            read
        } else {
            read.or_else(|| (!self.waiting.is_empty()).then_some(0))
        }
    }

    /// How many jobs would run before a job that is a read or not (`read`) and waits behind the
    /// first `behind` waiting ones (all of them for a new one), counting the job under way.
    fn ahead(&self, read: bool, behind: usize) -> usize {
        let earlier = self.waiting.iter().take(behind);
        let before = if read {
            earlier.filter(|job| job.is_read()).count()
        } else {
            self.waiting.iter().filter(|job| job.is_read()).count()
                + earlier.filter(|job| !job.is_read()).count()
        };
        before + usize::from(!self.running.is_empty())
    }

    /// Starts the job at `position`.
    fn start(&mut self, position: usize) -> Option<Job> {
        let job = self.waiting.remove(position)?;
        self.running.push(Running::of(&job));
        Some(job)
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

/// The next job: a waiting one if there is any, else the next message to arrive (a request, or
/// auto-linking's timer). Takes in everything else that arrives meanwhile.
pub fn next() -> Job {
    loop {
        if let Some(job) = with(|state| {
            let position = state.next_position(false)?;
            state.start(position)
        }) {
            return job;
        }
        if let Some(job) = take_in(await_message(), true) {
            with(|state| state.running.push(Running::of(&job)));
            return job;
        }
    }
}

/// Ends a job: its answer is sent now if its request is the prompting message, or when its timer
/// next fires; a request whose sender awaits no answer gets none.
pub fn finish(job: Job, answer: Option<Answer>) {
    with(|state| state.running.retain(|running| running.seq != job.seq));
    let Some(answer) = answer.filter(|_| job.timeout.is_some()) else {
        return;
    };
    if job.direct {
        respond(answer);
    } else {
        with(|state| state.ready.insert(job.seq, answer));
    }
}

/// Answers the waiting reads, between the steps of a long job.
pub fn serve_reads(our: &Address) {
    while let Some(mut job) = with(|state| {
        let position = state.next_position(true)?;
        state.start(position)
    }) {
        let answer = match &mut job.work {
            Work::Request(incoming) => Some(service::answer(our, incoming)),
            Work::Tick => None,
        };
        finish(job, answer);
    }
}

/// Sends `request` expecting an answer within `timeout` seconds and waits for it, taking in
/// whatever else arrives meanwhile. The answer is the prompting message's again (the kernel
/// restores it), and its blob is the one `get_blob` returns. The error says why there is none
/// (`Timeout`, `Offline`).
pub fn await_response(request: Request, timeout: u64) -> Result<Message, String> {
    let context = format!("{AWAIT}{}", with(State::number));
    request
        .expects_response(timeout)
        .context(context.as_bytes())
        .send()
        .map_err(|error| error.to_string())?;
    loop {
        let received = await_message();
        let answered = match &received {
            Ok(message) => !message.is_request() && message.context() == Some(context.as_bytes()),
            Err(error) => error.context() == Some(context.as_bytes()),
        };
        if answered {
            return received.map_err(|error| error.to_string());
        }
        take_in(received, false);
    }
}

/// Waits `millis` milliseconds on a `timer:distro:sys` timer, taking in whatever arrives
/// meanwhile.
pub fn sleep(millis: u64) {
    let timer = Request::to(("our", "timer", "distro", "sys"))
        .body(serde_json::json!({ "SetTimer": millis }).to_string());
    if let Err(error) = await_response(timer, millis / 1000 + 5) {
        println!("linker: its timer did not answer: {error}");
    }
}

/// Takes in one message. At the top of the loop (`top`) with nothing waiting, a request or tick
/// is returned to run at once; otherwise a request is parked, a tick queued, a parked request's
/// timer handled, and anything else (a late answer) dropped.
fn take_in(received: Result<Message, SendError>, top: bool) -> Option<Job> {
    let message = match received {
        Ok(message) => message,
        Err(error) => {
            timer_fired(error.context(), top);
            return None;
        }
    };
    let Message::Request {
        source,
        expects_response,
        body,
        capabilities,
        ..
    } = message
    else {
        return timer_fired(message.context(), top);
    };
    // The blob belongs to the message just received: it is read before anything else is.
    let blob = get_blob().map(|blob| blob.bytes);
    let parsed = service::parse(&source, &body);
    let timeout = expects_response.map(Duration::from_secs);
    if let Parsed::Bad(reason) = &parsed {
        if timeout.is_some() {
            respond(answer_of(&crate::api::Response::BadRequest(reason.clone())));
        }
        return None;
    }
    let mut job = Job {
        seq: with(State::number),
        work: Work::Request(Incoming {
            source,
            capabilities,
            blob,
            parsed,
        }),
        arrived: Instant::now(),
        timeout,
        direct: false,
    };
    if top && with(|state| state.waiting.is_empty()) {
        job.direct = true;
        return Some(job);
    }
    park(job);
    None
}

/// Handles the answer (or time-out) of one of the linker's own timers: a parked request's, or
/// auto-linking's. A tick is returned to run at once if nothing waits (at the top of the loop),
/// else queued behind what does.
fn timer_fired(context: Option<&[u8]>, top: bool) -> Option<Job> {
    let context = context.unwrap_or_default();
    if context == crate::watch::TIMER_CONTEXT {
        let job = Job {
            seq: with(State::number),
            work: Work::Tick,
            arrived: Instant::now(),
            timeout: None,
            direct: false,
        };
        if top && with(|state| state.waiting.is_empty()) {
            return Some(job);
        }
        with(|state| state.waiting.push_back(job));
        return None;
    }
    let seq = std::str::from_utf8(context)
        .ok()
        .and_then(|context| context.strip_prefix(PARK))
        .and_then(|seq| seq.parse().ok());
    if let Some(seq) = seq {
        fired(seq);
    }
    None
}

/// Parks a request just received (so the prompting message): it waits its turn, with a timer
/// set for it, or is answered `Busy` at once if it is already too late to start it.
fn park(job: Job) {
    let now = Instant::now();
    if job.busy_at().is_some_and(|at| at <= now) {
        let ahead = with(|state| state.ahead(job.is_read(), state.waiting.len()));
        respond_busy(&job, ahead);
        return;
    }
    if job.timeout.is_some() {
        arm(&job, now);
    }
    with(|state| state.waiting.push_back(job));
}

/// What becomes of a parked request whose timer fired.
enum Fired {
    /// Too late to start it: answered `Busy`, with how many jobs were ahead of it.
    Busy(Job, usize),
    /// Its timer is set again: when it arrived, and when it would be too late to start it, if
    /// it is not started.
    Wait(Instant, Option<Instant>),
    /// Nothing: it was answered already.
    Gone,
}

/// A parked request's timer fired: it is the prompting message, so it is answered now if it can
/// be, or its timer is set again.
fn fired(seq: u64) {
    if let Some(answer) = with(|state| state.ready.remove(&seq)) {
        respond(answer);
        return;
    }
    let now = Instant::now();
    let fired = with(|state| {
        let Some(position) = state.waiting.iter().position(|job| job.seq == seq) else {
            return state
                .running
                .iter()
                .find(|running| running.seq == seq)
                .map_or(Fired::Gone, |running| Fired::Wait(running.arrived, None));
        };
        let job = &state.waiting[position];
        match job.busy_at() {
            Some(at) if at <= now => {
                let ahead = state.ahead(job.is_read(), position);
                state
                    .waiting
                    .remove(position)
                    .map_or(Fired::Gone, |job| Fired::Busy(job, ahead))
            }
            at => Fired::Wait(job.arrived, at),
        }
    });
    match fired {
        Fired::Busy(job, ahead) => respond_busy(&job, ahead),
        Fired::Wait(arrived, busy_at) => set_timer(seq, delay(now, arrived, busy_at)),
        Fired::Gone => {}
    }
}

/// How long to wait before a parked request's timer fires: a quarter of the time since it
/// `arrived`, between [`FIRST_POLL_MS`] and [`POLL_MS`], or less if it would be too late to start
/// it by then.
fn delay(now: Instant, arrived: Instant, busy_at: Option<Instant>) -> u64 {
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let poll = (millis(now.saturating_duration_since(arrived)) / 4).clamp(FIRST_POLL_MS, POLL_MS);
    busy_at.map_or(poll, |at| {
        millis(at.saturating_duration_since(now)).min(poll)
    })
}

fn arm(job: &Job, now: Instant) {
    set_timer(job.seq, delay(now, job.arrived, job.busy_at()));
}

/// Sets a parked request's timer; the request must be the prompting message.
fn set_timer(seq: u64, millis: u64) {
    let sent = Request::to(("our", "timer", "distro", "sys"))
        .body(serde_json::json!({ "SetTimer": millis }).to_string())
        .expects_response(millis / 1000 + 5)
        .context(format!("{PARK}{seq}").into_bytes())
        .send();
    if let Err(error) = sent {
        println!("linker: cannot set the timer of a waiting request: {error}");
    }
}

/// Answers a request that was not started in time `Busy`.
fn respond_busy(job: &Job, ahead: usize) {
    let Work::Request(incoming) = &job.work else {
        return;
    };
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let doing = with(|state| state.running.first().map(|running| running.doing.clone()));
    let error = LinkerError::Busy(Busy {
        waited_ms: millis(job.arrived.elapsed()),
        timeout_ms: job.timeout.map_or(0, millis),
        ahead: u32::try_from(ahead).unwrap_or(u32::MAX),
        doing: doing.unwrap_or_else(|| "starting up".to_owned()),
    });
    respond(answer_of(&service::refusal(&incoming.parsed, error)));
}

/// A response as an answer.
pub fn answer_of(response: &crate::api::Response) -> Answer {
    let body = serde_json::to_vec(response).unwrap_or_else(|error| {
        println!("linker: cannot serialise a response: {error}");
        Vec::new()
    });
    Answer { body, blob: None }
}

/// Answers the prompting message.
fn respond(answer: Answer) {
    let mut response = Response::new().body(answer.body);
    if let Some(bytes) = answer.blob {
        response = response.blob_bytes(bytes);
    }
    if let Err(error) = response.send() {
        println!("linker: cannot answer a request: {error}");
    }
}
