//! The threads that run real calls: each has a current-thread runtime, a
//! `LocalSet` and one Lua VM (a VM is not `Send`), and runs many calls at
//! once. A call goes to the worker with the fewest calls, and keeps the
//! generation of scripts and flows it started with to its end.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backend::{Context, FarEnd, LiveBackend};
use super::{CallLog, Incoming};
use crate::catalog::AccountFlows;
use crate::engine::{self, Call, CallControl, CallFacts, DocumentStore, Overlay};
use crate::host::ModuleHost;
use crate::ids::{AccountId, DocId, DocType};
use crate::limits::Limits;
use crate::media::session::Handle;
use crate::model::Object;
use crate::reload::{Generation, Reloader};
use crate::routing::Inception;
use crate::sip::{CallInfo, Leg};
use crate::store::FlowsDir;
use crate::trace::{Event, Trace};

/// Everything a worker needs to run one call.
pub struct CallJob {
    pub call_id: String,
    pub generation: Arc<Generation>,
    pub account: Arc<AccountFlows>,
    pub facts: CallFacts,
    pub inception: Inception,
    pub info: CallInfo,
    pub leg: Leg,
    pub media: Handle,
    pub sdp: String,
    pub delayed_offer: bool,
    /// The leg is one we placed and that answered (a callback).
    pub answered: bool,
    pub events: mpsc::UnboundedReceiver<Incoming>,
    pub far_end: Arc<FarEnd>,
    pub started: Instant,
    pub started_at: jiff::Timestamp,
    pub context: Arc<Context>,
    pub notices: Vec<String>,
    pub log: Arc<CallLog>,
    pub reloader: Arc<Reloader>,
    pub limits: Limits,
    /// Where the call's events go (webhooks, the WebSocket).
    pub publisher: super::events::Publisher,
}

struct Worker {
    jobs: mpsc::UnboundedSender<CallJob>,
    load: Arc<AtomicUsize>,
}

/// The worker threads.
pub struct Workers {
    workers: Vec<Worker>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Workers {
    /// Starts `count` workers, each with a Lua VM on the current modules.
    pub fn start(count: usize, reloader: &Reloader, limits: Limits) -> Result<Self, String> {
        let mut workers = Vec::new();
        let mut threads = Vec::new();
        for n in 0..count {
            let (jobs, receiver) = mpsc::unbounded_channel();
            let load = Arc::new(AtomicUsize::new(0));
            let modules = Arc::clone(&reloader.current().modules);
            let (ready_tx, ready) = std::sync::mpsc::channel();
            let thread_load = Arc::clone(&load);
            let thread = std::thread::Builder::new()
                .name(format!("callflow-call-{n}"))
                .spawn(move || worker(receiver, thread_load, modules, limits, &ready_tx))
                .map_err(|e| e.to_string())?;
            ready
                .recv()
                .map_err(|_| "a call worker stopped while starting".to_owned())??;
            workers.push(Worker { jobs, load });
            threads.push(thread);
        }
        Ok(Self {
            workers,
            threads: Mutex::new(threads),
        })
    }

    /// Runs a call on the worker with the fewest calls.
    pub fn run(&self, job: CallJob) {
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
        else {
            return;
        };
        worker.load.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(job)) = worker.jobs.send(job) {
            worker.load.fetch_sub(1, Ordering::Relaxed);
            job.leg.refuse(503, "Service Unavailable");
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.workers.clear();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        drop(threads);
    }
}

fn worker(
    mut jobs: mpsc::UnboundedReceiver<CallJob>,
    load: Arc<AtomicUsize>,
    modules: Arc<crate::host::ModuleSet>,
    limits: Limits,
    ready: &std::sync::mpsc::Sender<Result<(), String>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let host = match ModuleHost::new(modules, limits) {
        Ok(host) => Rc::new(host),
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        while let Some(job) = jobs.recv().await {
            let host = Rc::clone(&host);
            let load = Arc::clone(&load);
            tokio::task::spawn_local(async move {
                run_call(job, &host).await;
                load.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
}

async fn run_call(job: CallJob, host: &ModuleHost) {
    let trace = Rc::new(RefCell::new(observed_trace(&job, host)));
    let backend = Rc::new(LiveBackend::new(
        job.call_id.clone(),
        job.started,
        job.leg,
        job.media,
        job.sdp,
        job.delayed_offer,
        job.events,
        job.far_end,
        Rc::clone(&trace),
        Arc::clone(&job.context),
    ));
    if job.answered {
        backend.answered_already();
    }
    backend.enter_world(&job.facts);
    let account_id = job.account.account.id.clone();
    let store: Arc<dyn DocumentStore> = Arc::new(crate::reload::Published {
        reloader: Arc::clone(&job.reloader),
    });
    let docs = Rc::new(Overlay::new(Arc::clone(&job.account), Some(store)));
    let control: Rc<dyn CallControl> = backend.clone();
    let call = Rc::new(Call::new(
        job.facts.clone(),
        Arc::clone(&job.account),
        control,
        docs,
        Rc::clone(&trace),
    ));
    for notice in &job.notices {
        call.record(Event::new(0, "warning").with("message", notice.as_str()));
    }
    let runner = host.pinned(Arc::clone(&job.generation.modules));
    let end =
        engine::route_and_run(&call, &job.facts.to, job.inception, &runner, &job.limits).await;
    backend.close().await;
    let media = backend.media_report().await;
    // The callflow the dialled number reached (not the last one a branch
    // entered): the trace's `route` event says it.
    let callflow_id = trace
        .borrow()
        .events()
        .iter()
        .find(|e| e.name == "route")
        .and_then(|e| e.fields.get("callflow_id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let hangup = call.hangup_info();
    let duration_ms = call.now_ms();
    drop(call);
    let answered_at = trace.borrow().last("answer").map(|e| e.t_ms);
    job.publisher.destroyed(
        hangup
            .as_ref()
            .map_or("NORMAL_CLEARING", |h| h.cause.as_str()),
        duration_ms,
        answered_at.map(|at| duration_ms.saturating_sub(at)),
    );
    let recordings = backend.made.take();
    let replay = backend.replay();
    let events = trace.borrow().to_json();
    let document = json!({
        "call_id": job.call_id,
        "sip_call_id": job.info.sip_call_id,
        "account_id": account_id.as_str(),
        "from": job.facts.from,
        "caller_id_name": job.facts.caller_id_name,
        "to": job.facts.to,
        "inception": job.inception.as_str(),
        "calling_device": job.facts.calling_device.as_ref().map(DocId::as_str),
        "callflow_id": (!callflow_id.is_empty()).then_some(callflow_id),
        "start": job.started_at.to_string(),
        "duration_ms": duration_ms,
        "hangup_cause": hangup.as_ref().map(|h| h.cause.clone()),
        "end": end.as_str(),
        "source": format!("{}:{}", job.info.transport, job.info.source),
        "user_agent": job.info.user_agent,
        "generation": job.generation.number,
        "media": media,
        "events": events.get("events").cloned().unwrap_or(Value::Array(Vec::new())),
        "replay": replay,
    });
    let log = job.log;
    let reloader = job.reloader;
    let written = job
        .context
        .runtime
        .spawn_blocking(move || {
            save_recordings(&reloader, &account_id, &recordings);
            log.write(&document)
        })
        .await;
    match written {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("cannot write the trace of call {}: {e}", job.call_id),
        Err(e) => tracing::warn!("cannot write the trace of call {}: {e}", job.call_id),
    }
}

/// The call's trace, its events published as they are recorded; the
/// call's `channel_create` published (and `channel_answer` for a leg that
/// answered before the call started: a callback).
fn observed_trace(job: &CallJob, host: &ModuleHost) -> Trace {
    let mut trace = Trace::with_max_events(host.limits().max_trace_events);
    trace.observe(job.publisher.observer());
    job.publisher
        .publish(super::events::Kind::ChannelCreate, serde_json::Map::new());
    if job.answered {
        job.publisher
            .publish(super::events::Kind::ChannelAnswer, serde_json::Map::new());
    }
    trace
}

/// Writes the media document of each recording whose audio was saved.
fn save_recordings(reloader: &Reloader, account: &AccountId, recordings: &[super::Recording]) {
    if recordings.is_empty() {
        return;
    }
    let store = FlowsDir::new(&reloader.paths().flows);
    let media = DocType::new(crate::store::MEDIA).ok();
    for recording in recordings {
        let (Some(media), Ok(id)) = (&media, DocId::new(&recording.id)) else {
            continue;
        };
        let Ok(reader) = hound::WavReader::open(&recording.file) else {
            continue;
        };
        let duration_ms =
            u64::from(reader.duration()) * 1000 / u64::from(reader.spec().sample_rate.max(1));
        let mut body = Object::new();
        body.insert(
            "name".into(),
            json!(
                recording
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("Recording {}", recording.id))
            ),
        );
        body.insert("media_source".into(), json!("recording"));
        body.insert("content_type".into(), json!("audio/wav"));
        body.insert("duration_ms".into(), json!(duration_ms));
        if let Err(e) = store.write_document(account, media, &id, &body) {
            tracing::warn!("cannot save recording {}: {e}", recording.id);
            continue;
        }
        if let Err(e) = reloader.reload_document(account, media, &id) {
            tracing::warn!("cannot reload account {account}: {e}");
        }
    }
}
