//! A real OTLP/HTTP receiver on 127.0.0.1, standing in for an OpenTelemetry
//! collector: the services export to it over the network, as they would to
//! Jaeger, and tests read back what arrived.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use prost::Message as _;
use std::sync::{Arc, Mutex};
use url::Url;

use crate::server::Server;

/// A span as exported, ids in lowercase hex.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One data point of a metric: a sum's value, or a histogram's count and sum.
#[derive(Debug, Clone)]
pub struct ReceivedPoint {
    pub service: String,
    pub metric: String,
    pub attributes: Vec<(String, String)>,
    pub value: f64,
    /// Histograms only.
    pub count: u64,
}

#[derive(Debug, Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    points: Vec<ReceivedPoint>,
}

/// The receiver; stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    url: Url,
    received: Arc<Mutex<Received>>,
    _server: Server,
}

impl Receiver {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(Arc::clone(&received));
        let server = Server::start(app).await;
        let url = Url::parse(&format!("http://{}", server.address())).unwrap();
        Self {
            url,
            received,
            _server: server,
        }
    }

    /// For `OTEL_EXPORTER_OTLP_ENDPOINT`: the exporters add `/v1/traces`...
    pub fn endpoint(&self) -> &Url {
        &self.url
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().unwrap().spans.clone()
    }

    pub fn points(&self, service: &str, metric: &str) -> Vec<ReceivedPoint> {
        self.received
            .lock()
            .unwrap()
            .points
            .iter()
            .filter(|p| p.service == service && p.metric == metric)
            .cloned()
            .collect()
    }
}

async fn traces(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = received.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = service_name(resource_spans.resource.as_ref().map(|r| &r.attributes[..]));
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                    attributes: strings(&span.attributes),
                });
            }
        }
    }
    StatusCode::OK
}

async fn metrics(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportMetricsServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = received.lock().unwrap();
    for resource_metrics in request.resource_metrics {
        let service = service_name(
            resource_metrics
                .resource
                .as_ref()
                .map(|r| &r.attributes[..]),
        );
        for scope in resource_metrics.scope_metrics {
            for metric in scope.metrics {
                let point = |attributes: &[KeyValue], value: f64, count: u64| ReceivedPoint {
                    service: service.clone(),
                    metric: metric.name.clone(),
                    attributes: strings(attributes),
                    value,
                    count,
                };
                match &metric.data {
                    Some(Data::Sum(sum)) => {
                        for p in &sum.data_points {
                            let value = match p.value {
                                Some(number_data_point::Value::AsInt(v)) => v as f64,
                                Some(number_data_point::Value::AsDouble(v)) => v,
                                None => continue,
                            };
                            received.points.push(point(&p.attributes, value, 0));
                        }
                    }
                    Some(Data::Histogram(histogram)) => {
                        for p in &histogram.data_points {
                            received.points.push(point(
                                &p.attributes,
                                p.sum.unwrap_or(0.0),
                                p.count,
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    StatusCode::OK
}

fn service_name(attributes: Option<&[KeyValue]>) -> String {
    strings(attributes.unwrap_or_default())
        .into_iter()
        .find(|(k, _)| k == "service.name")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn strings(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}
