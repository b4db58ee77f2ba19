//! JSON-RPC middleware that counts calls by method and outcome and times
//! them. Method names come from the client, so only the methods the server
//! serves get their own label; anything else counts as `unknown`, and a
//! batch as `batch` (the label set stays bounded whatever clients send).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use jsonrpsee::MethodResponse;
use jsonrpsee::core::middleware::{Batch, Notification, RpcServiceT};
use jsonrpsee::types::Request;

use crate::metrics::{MethodLabel, MethodOutcomeLabel, RpcMetrics};

#[derive(Clone, Debug)]
pub struct Metered<S> {
    pub service: S,
    pub metrics: RpcMetrics,
    pub known: Arc<HashSet<&'static str>>,
}

impl<S> Metered<S> {
    fn label(&self, method: &str) -> &'static str {
        self.known.get(method).copied().unwrap_or("unknown")
    }
}

fn observe(metrics: &RpcMetrics, method: &'static str, ok: bool, started: Instant) {
    metrics
        .latency
        .get_or_create(&MethodLabel { method })
        .observe(started.elapsed().as_secs_f64());
    let outcome = if ok { "ok" } else { "error" };
    metrics
        .requests
        .get_or_create(&MethodOutcomeLabel { method, outcome })
        .inc();
}

impl<S> RpcServiceT for Metered<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let method = self.label(request.method_name());
        let (service, metrics) = (self.service.clone(), self.metrics.clone());
        async move {
            let started = Instant::now();
            let response = service.call(request).await;
            observe(&metrics, method, response.is_success(), started);
            response
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let (service, metrics) = (self.service.clone(), self.metrics.clone());
        async move {
            let started = Instant::now();
            let response = service.batch(batch).await;
            observe(&metrics, "batch", response.is_success(), started);
            response
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.service.notification(n)
    }
}
