//! Metering: every authenticated request becomes a [`UsageRecord`], written to
//! the store in batches by one background task, off the request path.
//!
//! Response bodies pass through [`MeteredBody`], which reads usage as the bytes
//! go by (SSE events for streams, the JSON body otherwise) and emits the record
//! when the body ends, fails, or is dropped because the client went away.

use crate::index::KeyEntry;
use crate::metrics::ShieldEvent;
use crate::shield::StreamGate;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use keyward_core::prices::{Day, PriceTable};
use keyward_core::sse::SseUsageReader;
use keyward_core::usage::shield_flags;
use keyward_core::usage::{self, UsageRecord};
use keyward_store::Store;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Records waiting for the writer beyond this many are dropped and counted.
const QUEUE_CAPACITY: usize = 65_536;
/// Non-streaming bodies larger than this are not parsed for usage.
const MAX_JSON_TAP: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct Meter {
    tx: mpsc::Sender<UsageRecord>,
    prices: Arc<PriceTable>,
    pub dropped: Arc<AtomicU64>,
    /// Wakes the writer early once a batch is waiting. Otherwise it wakes on its
    /// interval: a record queued from a data-plane thread wakes no other thread.
    batch_ready: Arc<tokio::sync::Notify>,
    batch_size: usize,
}

pub struct MeterWriter {
    rx: mpsc::Receiver<UsageRecord>,
    batch_ready: Arc<tokio::sync::Notify>,
    store: Arc<dyn Store>,
    batch_size: usize,
    flush_interval: Duration,
    /// Stored batches are added to the metrics and handed to the monitor.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    monitor: Option<crate::monitor::MonitorFeed>,
}

impl Meter {
    pub fn new(
        store: Arc<dyn Store>,
        prices: Arc<PriceTable>,
        batch_size: usize,
        flush_interval: Duration,
    ) -> (Meter, MeterWriter) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let batch_ready = Arc::new(tokio::sync::Notify::new());
        (
            Meter { tx, prices, dropped: Arc::new(AtomicU64::new(0)), batch_ready: batch_ready.clone(), batch_size },
            MeterWriter { rx, batch_ready, store, batch_size, flush_interval, metrics: None, monitor: None },
        )
    }

    /// Price the record and queue it. Never blocks.
    pub fn record(&self, mut r: UsageRecord) {
        self.price(&mut r);
        self.send(r);
    }

    pub fn price(&self, r: &mut UsageRecord) {
        r.cost_usd = r.model.as_deref().and_then(|m| self.prices.cost(m, Day::of_ms(r.ts_ms).as_str(), &r.usage));
    }

    /// Queue a priced record. Never blocks.
    pub fn send(&self, r: UsageRecord) {
        if self.tx.try_send(r).is_ok() {
            if self.tx.max_capacity() - self.tx.capacity() >= self.batch_size {
                self.batch_ready.notify_one();
            }
        } else {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::error!(dropped = n, "usage queue full or closed; usage records dropped");
            }
        }
    }
}

impl MeterWriter {
    /// After each stored batch: count it in `metrics` and feed it to the monitor.
    pub fn observe(&mut self, metrics: Arc<crate::metrics::Metrics>, monitor: crate::monitor::MonitorFeed) {
        self.metrics = Some(metrics);
        self.monitor = Some(monitor);
    }

    /// Write batches until `shutdown` fires, then drain what is queued and return.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // the queue is read only when the interval ends or a batch is waiting:
        // never waiting on the queue itself, this task is not woken per record
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.batch_ready.notified() => {}
                _ = shutdown.changed() => break,
            }
            if !self.drain(&mut batch).await {
                break;
            }
        }
        // everything already queued is written before we return
        self.drain(&mut batch).await;
    }

    /// Write what is queued, a batch at a time. False once every sender is gone.
    async fn drain(&mut self, batch: &mut Vec<UsageRecord>) -> bool {
        let open = loop {
            match self.rx.try_recv() {
                Ok(r) => {
                    batch.push(r);
                    if batch.len() >= self.batch_size {
                        self.flush(batch).await;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break true,
                Err(mpsc::error::TryRecvError::Disconnected) => break false,
            }
        };
        self.flush(batch).await;
        open
    }

    async fn flush(&self, batch: &mut Vec<UsageRecord>) {
        if batch.is_empty() {
            return;
        }
        let shared = Arc::new(std::mem::take(batch));
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=5 {
            match self.store.insert_usage(shared.clone()).await {
                Ok(()) => break,
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %e, attempt, records = batch.len(), "writing usage failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    tracing::error!(error = %e, records = batch.len(), "writing usage failed; records lost");
                }
            }
        }
        // the store's copy is gone once the write returned: no clone here
        *batch = Arc::try_unwrap(shared).unwrap_or_else(|shared| shared.as_ref().clone());
        let mut last_used: HashMap<&str, i64> = HashMap::new();
        for r in batch.iter() {
            let e = last_used.entry(r.key_id.as_str()).or_insert(r.ts_ms);
            *e = (*e).max(r.ts_ms);
        }
        let touches: Vec<(String, i64)> = last_used.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if let Err(e) = self.store.touch_keys(&touches).await {
            tracing::warn!(error = %e, "updating last-used times failed");
        }
        if let Some(m) = &self.metrics {
            m.add_usage(batch);
        }
        match &self.monitor {
            Some(feed) => {
                for r in batch.drain(..) {
                    feed.send(crate::monitor::MonitorInput::Usage(r));
                }
            }
            None => batch.clear(),
        }
    }
}

/// After a request: charge its tokens and cost to the key's limits, release
/// its concurrency slot, and log its metadata if the environment asks for it.
pub fn settle(key: &KeyEntry, r: &UsageRecord, holds_slot: bool) {
    let policy = key.policy();
    let tokens = r.usage.input_tokens + r.usage.output_tokens;
    if let Some(tpm) = policy.policy.tpm {
        if tokens > 0 {
            key.tpm.charge(tpm as f64, tokens as f64, Instant::now());
        }
    }
    if let Some(cost) = r.cost_usd {
        key.spend.add(Day::of_ms(r.ts_ms).month(), cost);
    }
    if holds_slot {
        key.inflight.release();
    }
    if policy.log_request_metadata {
        tracing::info!(
            key_id = %r.key_id,
            service_id = %r.service_id,
            endpoint = %r.endpoint,
            model = r.model.as_deref().unwrap_or("-"),
            status = r.status,
            input_tokens = r.usage.input_tokens,
            output_tokens = r.usage.output_tokens,
            latency_ms = r.latency_ms,
            streamed = r.streamed,
            "request"
        );
    }
}

/// Run once with the tool's name when a stream's tool call is blocked.
pub type OnBlock = Box<dyn FnOnce(&str) + Send>;

enum Tap {
    Sse(Box<SseUsageReader>),
    Json(JsonTap),
    None,
}

/// A non-streaming body as it goes by: the first frame is kept by reference
/// (a body in one frame, the usual case, is never copied); later frames are
/// gathered into one buffer.
#[derive(Default)]
struct JsonTap {
    first: Option<Bytes>,
    rest: Vec<u8>,
}

impl JsonTap {
    fn len(&self) -> usize {
        if self.rest.is_empty() {
            self.first.as_ref().map_or(0, Bytes::len)
        } else {
            self.rest.len()
        }
    }

    fn push(&mut self, data: &Bytes) {
        match &self.first {
            None => self.first = Some(data.clone()),
            Some(first) => {
                if self.rest.is_empty() {
                    self.rest.extend_from_slice(first);
                }
                self.rest.extend_from_slice(data);
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        if self.rest.is_empty() {
            self.first.as_deref().unwrap_or_default()
        } else {
            &self.rest
        }
    }
}

/// A response body that meters itself.
pub struct MeteredBody<B> {
    inner: B,
    /// The key charged for tokens and spend; its concurrency slot (if held)
    /// is released when the body ends.
    key: Arc<KeyEntry>,
    holds_slot: bool,
    tap: Tap,
    record: Option<UsageRecord>,
    meter: Meter,
    started: Instant,
    idle_timeout: Duration,
    /// Allocated once, re-armed whenever the body goes quiet.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    idle_armed: bool,
    /// Tool-call allowlist on a stream: events go through it, in order, via `queue`.
    gate: Option<Box<StreamGate>>,
    /// Called once with the tool's name when the gate blocks a tool call (the audit entry).
    on_block: Option<OnBlock>,
    queue: VecDeque<Bytes>,
    inner_done: bool,
}

impl<B> MeteredBody<B> {
    /// Pass the stream through a tool-call gate (keys with an allowlist or rules).
    pub fn with_gate(mut self, gate: StreamGate, on_block: OnBlock) -> Self {
        self.gate = Some(Box::new(gate));
        self.on_block = Some(on_block);
        self
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        inner: B,
        streamed: bool,
        record: UsageRecord,
        meter: Meter,
        started: Instant,
        idle_timeout: Duration,
        key: Arc<KeyEntry>,
        holds_slot: bool,
    ) -> Self {
        let tap = if streamed {
            Tap::Sse(Box::default())
        } else if record.endpoint == "/v1/messages" {
            Tap::Json(JsonTap::default())
        } else {
            Tap::None
        };
        MeteredBody {
            inner,
            key,
            holds_slot,
            tap,
            record: Some(record),
            meter,
            started,
            idle_timeout,
            idle: None,
            idle_armed: false,
            gate: None,
            on_block: None,
            queue: VecDeque::new(),
            inner_done: false,
        }
    }

    fn observe(&mut self, data: &Bytes) {
        match &mut self.tap {
            Tap::Sse(r) => r.feed(data),
            Tap::Json(buf) => {
                if buf.len() + data.len() <= MAX_JSON_TAP {
                    buf.push(data);
                } else {
                    self.tap = Tap::None;
                }
            }
            Tap::None => {}
        }
    }

    fn finish(&mut self, client_disconnected: bool) {
        let Some(mut r) = self.record.take() else {
            return;
        };
        match std::mem::replace(&mut self.tap, Tap::None) {
            Tap::Sse(mut reader) => {
                reader.finish();
                let st = reader.state;
                r.usage = st.usage;
                if st.model.is_some() {
                    r.model = st.model;
                }
                if st.error_type.is_some() && r.status < 400 {
                    // an `error` event mid-stream: the request failed upstream
                    r.status = 599;
                }
            }
            Tap::Json(buf) => {
                if let Some((model, u)) = usage::from_message_body(buf.bytes()) {
                    r.usage = u;
                    if model.is_some() {
                        r.model = model;
                    }
                }
            }
            Tap::None => {}
        }
        if let Some(g) = &self.gate {
            if !g.flagged.is_empty() {
                r.shield_flags |= shield_flags::TOOL_FLAGGED;
                self.key.shield[ShieldEvent::ToolFlagged as usize].fetch_add(1, Ordering::Relaxed);
            }
            if let Some(v) = &g.violation {
                if let Some(audit) = self.on_block.take() {
                    audit(&v.tool);
                }
                r.shield_flags |= shield_flags::TOOL_BLOCKED;
                self.key.shield[ShieldEvent::ToolBlocked as usize].fetch_add(1, Ordering::Relaxed);
                if r.status < 400 {
                    // the client got a `permission_error` event instead of the tool call
                    r.status = 403;
                }
            }
        }
        r.latency_ms = self.started.elapsed().as_millis().min(u32::MAX as u128) as u32;
        r.client_disconnected = client_disconnected;
        self.meter.price(&mut r);
        settle(&self.key, &r, self.holds_slot);
        self.holds_slot = false;
        self.meter.send(r);
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        // dropped before the end: the client went away (or the server is stopping)
        self.finish(true);
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.inner_done {
                this.finish(false);
                return Poll::Ready(None);
            }
            let polled = this.poll_inner(cx);
            let Some(gate) = this.gate.as_mut() else { return polled };
            // through the gate: data is re-chunked by events, held or released
            let mut out = Vec::new();
            match polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        gate.feed(data, &mut out);
                    }
                }
                Poll::Ready(None) => {
                    gate.finish(&mut out);
                    this.inner_done = true;
                }
                other => return other,
            }
            this.queue.extend(out);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.queue.is_empty() && self.gate.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.gate.is_some() {
            return SizeHint::default();
        }
        self.inner.size_hint()
    }
}

impl<B> MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// One frame of the upstream body, observed for usage. With a gate, the end
    /// of the upstream body is left to the caller (the gate may still have output).
    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle_armed = false;
                if let Some(data) = frame.data_ref() {
                    this.observe(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "upstream body failed mid-response");
                if let Some(r) = this.record.as_mut() {
                    r.status = 599;
                }
                this.finish(false);
                Poll::Ready(Some(Err(std::io::Error::other("upstream body failed"))))
            }
            Poll::Ready(None) => {
                if this.gate.is_none() {
                    this.finish(false);
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.idle_timeout;
                let deadline = tokio::time::Instant::now() + timeout;
                let idle = this.idle.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.idle_armed {
                    idle.as_mut().reset(deadline);
                    this.idle_armed = true;
                }
                if idle.as_mut().poll(cx).is_ready() {
                    tracing::warn!(timeout_s = timeout.as_secs(), "upstream body idle too long; closing");
                    if let Some(r) = this.record.as_mut() {
                        r.status = 504;
                    }
                    this.finish(false);
                    return Poll::Ready(Some(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream idle"))));
                }
                Poll::Pending
            }
        }
    }
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_tap_keeps_one_frame_and_joins_several() {
        let body = br#"{"model":"claude-x","usage":{"input_tokens":12,"output_tokens":3}}"#;
        let mut one = JsonTap::default();
        one.push(&Bytes::from_static(body));
        assert_eq!(one.bytes(), body);
        assert_eq!(one.len(), body.len());
        assert!(one.rest.is_empty(), "a body in one frame is not copied");

        let mut split = JsonTap::default();
        for part in body.chunks(7) {
            split.push(&Bytes::copy_from_slice(part));
        }
        assert_eq!(split.bytes(), body);
        assert_eq!(split.len(), body.len());
        let (model, u) = usage::from_message_body(split.bytes()).unwrap();
        assert_eq!((model.as_deref(), u.input_tokens, u.output_tokens), (Some("claude-x"), 12, 3));
        assert_eq!(JsonTap::default().bytes(), b"");
    }
}
